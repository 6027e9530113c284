"""Command lines for aria2c as a seeder or a leecher."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .procs import LOOPBACK

# aria2 stops by itself after this many seconds, in case the test process
# dies before its finalizers run (--stop-with-process covers the usual case).
SAFETY_STOP_SECONDS = 300


def aria2c_path() -> str | None:
    return shutil.which("aria2c")


def aria2_argv(
    torrent: Path,
    directory: Path,
    listen_port: int,
    log_file: Path,
    seed: bool,
    extra: list[str] | None = None,
    udp_trackers: bool = False,
) -> list[str]:
    """aria2c arguments: loopback only, tracker as the sole peer source.

    As a seeder it checks the existing data and seeds until stopped; as a
    leecher it exits once the download is complete (``--seed-time=0``),
    announcing ``stopped`` on the way out.

    ``udp_trackers`` lets it announce to ``udp://`` trackers.  aria2 has no
    switch for that alone: its UDP tracker client lives on the DHT socket and
    exists only with ``--enable-dht=true``.  So the DHT node runs, on
    127.0.0.1 at ``listen_port`` (UDP), with no entry point and a routing
    table file of its own in ``log_file``'s directory (empty at start), so it
    knows no other node; and aria2 does not use DHT for private torrents,
    which is all the tests make.  The tracker stays the only peer source.
    """
    binary = aria2c_path() or "aria2c"
    dht = _udp_tracker_options(listen_port, log_file) if udp_trackers else ["--enable-dht=false"]
    argv = [
        binary,
        "--no-conf=true",
        "--enable-rpc=false",
        f"--interface={LOOPBACK}",
        "--disable-ipv6=true",
        f"--listen-port={listen_port}",
        *dht,
        "--enable-dht6=false",
        "--enable-peer-exchange=false",
        "--bt-enable-lpd=false",
        f"--dir={directory}",
        "--file-allocation=none",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--summary-interval=0",
        "--console-log-level=notice",
        f"--log={log_file}",
        "--log-level=info",
        f"--stop-with-process={os.getpid()}",
        f"--stop={SAFETY_STOP_SECONDS}",
    ]
    if seed:
        # Hash the existing file instead of trusting it blindly; seed with
        # no ratio or time limit until the test stops the process.
        argv += ["--check-integrity=true", "--seed-ratio=0.0"]
    else:
        argv += ["--seed-time=0"]
    argv += list(extra or [])
    argv.append(str(torrent))
    return argv


def _udp_tracker_options(listen_port: int, log_file: Path) -> list[str]:
    """A DHT node that knows nobody, for its UDP socket (see :func:`aria2_argv`)."""
    routing_table = log_file.with_name(f"{log_file.stem}-dht.dat")
    routing_table.unlink(missing_ok=True)
    return [
        "--enable-dht=true",
        f"--dht-listen-port={listen_port}",
        f"--dht-file-path={routing_table}",
    ]
