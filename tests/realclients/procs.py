"""Process, port and polling utilities with hard time bounds."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """Return a port on ``host`` that is free for both TCP and UDP right now.

    Both, because every program here binds the two: the tracker serves UDP
    announces on its HTTP port, and libtorrent, aria2 and Transmission keep a
    UDP socket (uTP, UDP trackers) on their peer port.  The port is released
    before it is used, so another program could take it in between; on a
    test machine that race is rare enough to accept.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagrams:
                try:
                    datagrams.bind((host, port))
                except OSError:
                    continue
                return port


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports (see :func:`free_port`)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def port_is_open(port: int, host: str = LOOPBACK) -> bool:
    """Tell whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.25,
    on_tick: Callable[[], None] | None = None,
) -> None:
    """Poll ``predicate`` until it is true; raise ``TimeoutError`` after ``timeout`` s.

    ``on_tick`` runs before every poll; it lets a caller nudge a client (for
    example force a re-announce) while waiting.
    """
    deadline = time.monotonic() + timeout
    while True:
        if on_tick is not None:
            on_tick()
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class ManagedProcess:
    """A child process in its own process group, logging to a file.

    The child gets a new session so that :meth:`stop` can signal it together
    with anything it spawned, and nothing outlives the test.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(cwd) if cwd is not None else None,
            env=env,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for the process to exit; return its code or None."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, max_bytes: int = 4000) -> str:
        """Return the end of the process log, for failure messages."""
        self._log.flush()
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-max_bytes:].decode("utf-8", "replace")

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 8.0) -> None:
        """Stop the whole process group: ``sig`` first, SIGKILL after ``grace`` s.

        Safe to call more than once; the group is killed even when the leader
        has already exited, in case it left children behind.
        """
        if self.running():
            self._signal_group(sig)
            if self.wait(grace) is None:
                self._signal_group(signal.SIGKILL)
                self.wait(5.0)
        self._signal_group(signal.SIGKILL)
        if not self._log.closed:
            self._log.close()
