"""Run the tracker as a subprocess; read its counters over HTTP, whichever protocol peers use."""

from __future__ import annotations

import json
import os
import secrets
import socket
import struct
import sys
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.logger import eventFromJSON, formatEvent

from tracker.core.bencode import bdecode
from tracker.udp.protocol import PROTOCOL_ID

from .procs import ManagedProcess, free_port, port_is_open, wait_until

STARTUP_TIMEOUT = 20.0
REPO_ROOT = Path(__file__).resolve().parents[2]
# A short announce interval keeps clients that only announce on their own
# schedule (aria2, Transmission) from waiting minutes to learn of new peers.
DEFAULT_OPTIONS: Sequence[str] = ("--interval", "10", "--min-interval", "1")


@dataclass
class RunningTracker:
    """A tracker process listening on a loopback address of its own (see :func:`tracker_host`)."""

    process: ManagedProcess
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def announce_url(self) -> str:
        return f"{self.base_url}/announce"

    @property
    def udp_announce_url(self) -> str:
        """The BEP 15 announce URL: the tracker serves UDP on its HTTP port and interface."""
        return f"udp://{self.host}:{self.port}/announce"

    @property
    def scrape_url(self) -> str:
        return f"{self.base_url}/scrape"

    def scrape(self, info_hash: bytes) -> dict[str, int]:
        """Return the scrape counters for one torrent ({} if the tracker has none)."""
        # Percent-encode every byte: '+' for space (urlencode's habit) is
        # not part of the BitTorrent query convention.
        query = "info_hash=" + urllib.parse.quote(info_hash, safe="")
        body = http_get(f"{self.scrape_url}?{query}")
        decoded = bdecode(body)
        if b"failure reason" in decoded:
            raise AssertionError(f"scrape failed: {decoded[b'failure reason']!r}")
        stats = decoded.get(b"files", {}).get(info_hash, {})
        return {key.decode(): int(value) for key, value in stats.items()}

    def seeders(self, info_hash: bytes) -> int:
        return self.scrape(info_hash).get("complete", 0)

    def leechers(self, info_hash: bytes) -> int:
        return self.scrape(info_hash).get("incomplete", 0)


def http_get(url: str, timeout: float = 5.0) -> bytes:
    """GET ``url`` and return the body (the tracker answers errors with 200 too)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return bytes(response.read())


def tracker_argv(
    host: str, port: int, database: Path, extra: Sequence[str] = DEFAULT_OPTIONS
) -> list[str]:
    """The documented way to launch the tracker in the foreground."""
    return [
        sys.executable,
        "-m",
        "twisted",
        "tracker",
        "--listen",
        f"tcp:{port}:interface={host}",
        "--database",
        str(database),
        *extra,
    ]


def start_tracker(workdir: Path, extra: Sequence[str] = DEFAULT_OPTIONS) -> RunningTracker:
    """Start the tracker and wait until it accepts connections.

    That is HTTP and, unless ``extra`` holds ``--no-udp``, a UDP connect
    request too, so ``udp_announce_url`` works as soon as this returns.
    The caller must ``process.stop()`` it, also when this raises: the process
    is stopped here if it never comes up.
    """
    udp = "--no-udp" not in extra
    workdir.mkdir(parents=True, exist_ok=True)
    host = tracker_host()
    port = free_port(host)
    process = ManagedProcess(
        "tracker",
        tracker_argv(host, port, workdir / "db.sqlite3", extra),
        workdir / "tracker.log",
        cwd=workdir,
        env=_tracker_env(),
    )
    try:
        wait_until(
            lambda: _tracker_up(process, host, port, udp),
            STARTUP_TIMEOUT,
            f"the tracker to listen on {host} port {port}",
        )
    except BaseException:
        process.stop()
        raise
    return RunningTracker(process=process, host=host, port=port)


def tracker_host() -> str:
    """A loopback address (in 127.0.0.0/8, not 127.0.0.1) for one tracker.

    libtorrent keeps a UDP tracker's connection ID for 60 seconds in a cache
    shared by every session of the process and keyed by the tracker's IP
    address alone.  The libtorrent peers of every test share this process,
    so trackers of successive tests on one address would be sent the last
    one's ID.  The peers themselves stay on 127.0.0.1.
    """
    second, third, fourth = (
        secrets.randbelow(254) + 1,
        secrets.randbelow(256),
        secrets.randbelow(254) + 1,
    )
    return f"127.{second}.{third}.{fourth}"


def _tracker_env() -> dict[str, str]:
    """The test's environment, with the checkout importable even when not installed."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _tracker_up(process: ManagedProcess, host: str, port: int, udp: bool) -> bool:
    if not process.running():
        raise RuntimeError(
            f"tracker exited with code {process.proc.returncode}:\n{process.log_tail()}"
        )
    return port_is_open(port, host) and (not udp or udp_connect_answers(host, port))


def udp_connect_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Tell whether a BEP 15 connect request to ``host:port`` gets a connect reply."""
    transaction = os.urandom(4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(PROTOCOL_ID + struct.pack("!I", 0) + transaction, (host, port))
            reply = sock.recv(2048)
        except OSError:  # a timeout, or ICMP port unreachable while nothing is bound
            return False
    return len(reply) == 16 and reply[:8] == struct.pack("!I", 0) + transaction


def log_problems(process: ManagedProcess, max_lines: int = 20) -> str:
    """Warnings, errors, tracebacks and UDP refusals from the tracker's log.

    For failure messages.  ``python -m twisted`` writes JSON text sequences
    (RFC 7464: each event is 0x1E, JSON, newline); the routine info events
    would drown the interesting ones.  The UDP tracker's info-level summary
    of datagrams it refused is kept: it is the only trace a client's
    malformed or unanswered UDP request leaves.
    """
    problems = []
    # Not splitlines(): it would also split at the 0x1E record separators.
    for raw in process.log_tail(200_000).split("\n"):
        line = raw.strip("\x1e \r")
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            problems.append(line)  # plain text: a traceback or a crash message
            continue
        if not isinstance(event, dict):
            continue
        level = (event.get("log_level") or {}).get("name", "")
        if level in ("warn", "error", "critical") or event.get("isError") or "log_failure" in event:
            text = event.get("log_text") or event.get("log_format") or ""
            failure = event.get("log_failure")
            problems.append(f"[{level}] {text} {failure if failure else ''}".strip())
        elif event.get("log_namespace") == "tracker.udp.protocol":
            problems.append(f"[{level}] {formatEvent(eventFromJSON(line))}")
    return "\n".join(problems[-max_lines:]) or "(no warnings or errors)"


def describe(value: Any) -> str:
    """Short printable form of a decoded tracker value, for assertion messages."""
    text = repr(value)
    return text if len(text) < 600 else text[:600] + "..."
