"""Run the tracker as a subprocess and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracker.bencode import bdecode

from .procs import LOOPBACK, ManagedProcess, free_port, port_is_open, wait_until

STARTUP_TIMEOUT = 20.0
REPO_ROOT = Path(__file__).resolve().parents[2]
# A short announce interval keeps clients that only announce on their own
# schedule (aria2, Transmission) from waiting minutes to learn of new peers.
DEFAULT_OPTIONS: Sequence[str] = ("--interval", "10", "--min-interval", "1")


@dataclass
class RunningTracker:
    """A tracker process listening on 127.0.0.1."""

    process: ManagedProcess
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def announce_url(self) -> str:
        return f"{self.base_url}/announce"

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


def tracker_argv(port: int, database: Path, extra: Sequence[str] = DEFAULT_OPTIONS) -> list[str]:
    """The documented way to launch the tracker in the foreground."""
    return [
        sys.executable,
        "-m",
        "twisted",
        "tracker",
        "--listen",
        f"tcp:{port}:interface={LOOPBACK}",
        "--database",
        str(database),
        *extra,
    ]


def start_tracker(workdir: Path, extra: Sequence[str] = DEFAULT_OPTIONS) -> RunningTracker:
    """Start the tracker and wait until it accepts connections.

    The caller must ``process.stop()`` it, also when this raises: the process
    is stopped here if it never comes up.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = ManagedProcess(
        "tracker",
        tracker_argv(port, workdir / "db.sqlite3", extra),
        workdir / "tracker.log",
        cwd=workdir,
        env=_tracker_env(),
    )
    try:
        wait_until(
            lambda: _tracker_up(process, port),
            STARTUP_TIMEOUT,
            f"the tracker to listen on port {port}",
        )
    except BaseException:
        process.stop()
        raise
    return RunningTracker(process=process, port=port)


def _tracker_env() -> dict[str, str]:
    """The test's environment, with the checkout importable even when not installed."""
    env = dict(os.environ)
    paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _tracker_up(process: ManagedProcess, port: int) -> bool:
    if not process.running():
        raise RuntimeError(
            f"tracker exited with code {process.proc.returncode}:\n{process.log_tail()}"
        )
    return port_is_open(port)


def log_problems(process: ManagedProcess, max_lines: int = 20) -> str:
    """Warnings, errors and tracebacks from the tracker's log, for failure messages.

    ``python -m twisted`` writes JSON text sequences (RFC 7464: each event
    is 0x1E, JSON, newline); the routine info events would drown the
    interesting ones.
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
    return "\n".join(problems[-max_lines:]) or "(no warnings or errors)"


def describe(value: Any) -> str:
    """Short printable form of a decoded tracker value, for assertion messages."""
    text = repr(value)
    return text if len(text) < 600 else text[:600] + "..."
