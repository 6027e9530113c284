"""A small swarm of real clients around a tracker (or several sharing one store), torn down
as a unit."""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Union

from .aria2 import aria2_argv
from .lt_peer import LibtorrentPeer
from .payload import Payload, sha256_file
from .procs import ManagedProcess, free_ports, wait_until
from .tracker import RunningTracker, log_problems
from .transmission import transmission_argv

# Seconds a seeder gets to check its data and reach the tracker.
REGISTER_TIMEOUT = 30.0
# Seconds one transfer may take; with the setup around it a test stays
# well under 90 s.  Transmission needs the most: it unchokes on a 10 s timer.
TRANSFER_TIMEOUT = 60.0
# How often a libtorrent seeder re-announces while it waits for a leecher
# it has to dial itself.
REANNOUNCE_EVERY = 2.0

Client = Union[LibtorrentPeer, ManagedProcess]


class Swarm:
    """Starts clients for one payload and stops every one of them in :meth:`close`.

    ``tracker`` is the one that waits and scrapes ask unless told otherwise;
    ``other_trackers`` are nodes sharing its swarms (through Redis), which some
    clients announce to instead and whose state diagnostics show too.
    """

    def __init__(
        self,
        workdir: Path,
        tracker: RunningTracker,
        payload: Payload,
        other_trackers: Sequence[RunningTracker] = (),
    ) -> None:
        self.workdir = workdir
        self.tracker = tracker
        self.trackers = [tracker, *other_trackers]
        self.payload = payload
        self.clients: list[Client] = []
        self._ports: set[int] = {each.port for each in self.trackers}
        self.listen_ports: dict[str, int] = {}

    # -- starting clients ---------------------------------------------------

    def libtorrent(
        self,
        name: str,
        directory: Path,
        proxy_port: int | None = None,
        payload: Payload | None = None,
    ) -> LibtorrentPeer:
        """A libtorrent peer; it seeds if ``directory`` already holds the payload.

        ``payload``, the swarm's own by default, may be the same file in a
        torrent naming another tracker (:func:`~.payload.retargeted`).
        """
        peer = LibtorrentPeer(name, self._port(name), proxy_port)
        self.clients.append(peer)
        peer.add_torrent((payload or self.payload).torrent, directory)
        return peer

    def aria2(self, name: str, directory: Path, seed: bool) -> ManagedProcess:
        """An aria2c process; with a ``udp://`` payload it gets the UDP tracker client."""
        argv = aria2_argv(
            self.payload.torrent,
            directory,
            self._port(name),
            self.workdir / f"{name}.log",
            seed,
            udp_trackers=self.payload.over_udp,
        )
        return self._spawn(name, argv)

    def transmission(self, name: str, directory: Path, seed: bool) -> ManagedProcess:
        argv = transmission_argv(
            self.payload.torrent,
            self.workdir / f"{name}-config",
            directory,
            self._port(name),
            verify=seed,
        )
        return self._spawn(name, argv)

    # -- waiting --------------------------------------------------------------

    def wait_for_seeder(self, tracker: RunningTracker | None = None) -> None:
        """Wait until ``tracker`` (the swarm's by default) counts a seeder, so a leecher's
        first announce there finds it."""
        asked = tracker or self.tracker
        info_hash = self.payload.info_hash
        self._wait(
            lambda: asked.seeders(info_hash) >= 1,
            REGISTER_TIMEOUT,
            f"a seeder at {asked.base_url}",
        )

    def wait_for_download(
        self,
        directory: Path,
        on_tick: Callable[[], None] | None = None,
        timeout: float = TRANSFER_TIMEOUT,
    ) -> float:
        """Wait until ``directory`` holds the payload with the right SHA-256; return seconds."""
        target = directory / self.payload.name
        started = time.monotonic()
        self._wait(
            lambda: sha256_file(target) == self.payload.sha256,
            timeout,
            f"{target} to match the seeded file",
            interval=0.5,
            on_tick=on_tick,
        )
        return time.monotonic() - started

    def wait_for_scrape(
        self,
        description: str,
        predicate: Callable[[dict[str, int]], bool],
        tracker: RunningTracker | None = None,
    ) -> None:
        """Wait until the scrape counters of ``tracker`` (the swarm's by default) satisfy
        ``predicate``."""
        asked = tracker or self.tracker
        info_hash = self.payload.info_hash
        self._wait(lambda: predicate(asked.scrape(info_hash)), 20.0, description)

    def reannouncer(self, peer: LibtorrentPeer) -> Callable[[], None]:
        """A tick function making ``peer`` announce every few seconds.

        A seeder that must dial a leecher (Transmission never dials loopback
        peers) only learns of it from a fresh announce.
        """
        last = [0.0]

        def tick() -> None:
            now = time.monotonic()
            if now - last[0] >= REANNOUNCE_EVERY:
                last[0] = now
                peer.reannounce()

        return tick

    # -- reporting and teardown -------------------------------------------

    def diagnostics(self) -> str:
        """Client logs, alerts and tracker state, for assertion messages."""
        parts = []
        for client in self.clients:
            if isinstance(client, LibtorrentPeer):
                parts.append(client.report())
            else:
                log = client.log_tail(2500).replace("\r", "\n")
                parts.append(f"--- {client.name} (exit {client.proc.poll()}) ---\n{log}")
        for tracker in self.trackers:
            # Named by address only when there are several.
            which = f" {tracker.base_url}" if len(self.trackers) > 1 else ""
            try:
                scrape = tracker.scrape(self.payload.info_hash)
                parts.append(f"--- tracker{which} scrape: {scrape}")
            except Exception as error:  # noqa: BLE001 - diagnostics must not mask the failure
                parts.append(f"--- tracker{which} scrape failed: {error!r}")
            problems = log_problems(tracker.process)
            parts.append(f"--- tracker{which} log problems ---\n{problems}")
        return "\n".join(parts)

    def close(self) -> None:
        """Stop every client, newest first.

        SIGINT, not SIGTERM: it is the signal aria2 and Transmission answer
        with a clean shutdown that includes the 'stopped' announce.
        """
        while self.clients:
            client = self.clients.pop()
            if isinstance(client, LibtorrentPeer):
                client.close()
            else:
                client.stop(signal.SIGINT)

    # -- internals --------------------------------------------------------------

    def _wait(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        what: str,
        interval: float = 0.25,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        def tick() -> None:
            self._check_alive()
            for client in self.clients:
                if isinstance(client, LibtorrentPeer):
                    client.poll_alerts()
            if on_tick is not None:
                on_tick()

        try:
            wait_until(predicate, timeout, what, interval=interval, on_tick=tick)
        except (TimeoutError, RuntimeError) as error:
            raise AssertionError(f"{error}\n{self.diagnostics()}") from error

    def _check_alive(self) -> None:
        """Fail fast when a tracker died instead of waiting out the timeout."""
        for tracker in self.trackers:
            if not tracker.process.running():
                raise RuntimeError(f"the tracker process at {tracker.base_url} exited")

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.workdir / f"{name}.out", cwd=self.workdir)
        self.clients.append(process)
        return process

    def _port(self, name: str) -> int:
        """A free port not yet handed to another client (it may not be bound yet)."""
        while True:
            (port,) = free_ports(1)
            if port not in self._ports:
                self._ports.add(port)
                self.listen_ports[name] = port
                return port
