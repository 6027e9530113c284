"""The WebSocket tracker's timers on a test clock: idle connections closed, silent peers out,
and exactly one sweep scheduled while there are connections, none when there are none."""

from __future__ import annotations

import json
import random
from typing import Any, Callable

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock, Cooperator
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.fuzz.targets import WS_HANDSHAKE, masked, server_frames
from tracker.core.config import TrackerConfig
from tracker.http.resource import TrackerResource
from tracker.http.site import TrackerSite
from tracker.store.memory import MemoryPeerStore
from tracker.ws.tracker import WebSocketTracker

TORRENT = "t" * 20


def announce(peer: str, torrent: str = TORRENT) -> bytes:
    message = {"action": "announce", "info_hash": torrent, "peer_id": peer * 20, "left": 5}
    return masked(json.dumps(message).encode())


class SweepTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.resource = TrackerResource(MemoryPeerStore(), TrackerConfig(), self.clock)
        websocket = self.resource.websocket
        assert websocket is not None
        self.websocket: WebSocketTracker = websocket
        self.site = TrackerSite(self.resource, timeout=None, reactor=self.clock)
        self.rng = random.Random(1)

    def open(self) -> tuple[Any, StringTransport]:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(WS_HANDSHAKE)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
        transport.clear()
        return channel, transport

    def sweeps(self) -> int:
        return len([call for call in self.clock.getDelayedCalls() if call.active()])

    def pass_time(self, seconds: float) -> None:
        """C{seconds} on the clock, a second at a time, each sweep run to its end."""
        for _ in range(int(seconds)):
            self.clock.advance(1)
            self.clock.advance(0)

    def test_one_sweep_while_connected(self) -> None:
        """A sweep is scheduled with the first connection, one at a time whatever connects
        while one runs, and none once every connection is gone."""
        self.assertEqual(self.sweeps(), 0)
        first, _ = self.open()
        self.assertEqual(self.sweeps(), 1)
        # The sweep's steps wait until the test lets them run.
        steps: list[Callable[[], None]] = []
        self.websocket._cooperator = Cooperator(scheduler=steps.append)
        every = self.clock.getDelayedCalls()[0].getTime() - self.clock.seconds()
        self.clock.advance(every)
        self.assertEqual(self.sweeps(), 0)
        # While the sweep is under way, the only connection goes and another comes.
        first.connectionLost(Failure(ConnectionDone()))
        second, _ = self.open()
        self.assertEqual(self.sweeps(), 0)
        while steps:
            steps.pop(0)()
        self.assertEqual(self.sweeps(), 1)
        third, _ = self.open()
        self.assertEqual(self.sweeps(), 1)
        second.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.sweeps(), 1)
        third.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.sweeps(), 0)
        self.assertEqual(self.websocket.connections, {})

    def test_idle_connection_closed_and_its_peers_out(self) -> None:
        """A connection silent for the idle timeout gets a close frame (1000) and is closed,
        its peer leaving the swarm; one that keeps talking stays."""
        quiet, quiet_transport = self.open()
        busy, busy_transport = self.open()
        quiet.dataReceived(announce("q"))
        busy.dataReceived(announce("b"))
        # Past the idle timeout, and past the sweep after it (every 30 s).
        for _ in range(int(self.websocket.idle_timeout + 40) // 10):
            self.pass_time(10)
            busy.dataReceived(announce("b"))
        frames = server_frames(quiet_transport.value())
        self.assertEqual(frames[-1][0], 8)
        self.assertEqual(int.from_bytes(frames[-1][1][:2], "big"), 1000)
        self.assertTrue(quiet_transport.disconnecting)
        self.assertFalse(busy_transport.disconnecting)
        quiet.connectionLost(Failure(ConnectionDone()))
        group = self.resource.stats.groups.torrents[TORRENT.encode("latin-1")]
        self.assertEqual((group.complete, group.incomplete), (0, 1))
        self.assertEqual(self.resource.stats.websocket.closes["idle"], 1)
        busy.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.sweeps(), 0)

    def test_silent_peer_leaves_its_swarm(self) -> None:
        """A peer that stops announcing leaves its swarm after the idle timeout, though its
        connection, busy announcing another torrent, stays open."""
        channel, transport = self.open()
        channel.dataReceived(announce("p", torrent="s" * 20))
        # Past the idle timeout, and past the sweep after it (every 30 s).
        for _ in range(int(self.websocket.idle_timeout + 40) // 10):
            self.pass_time(10)
            channel.dataReceived(announce("p"))
        self.assertFalse(transport.disconnecting)
        self.assertEqual(list(self.resource.stats.groups.torrents), [TORRENT.encode("latin-1")])
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.resource.stats.groups.torrents, {})

    def test_closing_connection_dropped_if_stuck(self) -> None:
        """A connection closed by the tracker whose close never completes (a client that
        stopped reading) is dropped outright at a later sweep."""
        channel, transport = self.open()
        channel.dataReceived(masked(b"{}", opcode=2))
        self.assertTrue(transport.disconnecting)
        self.pass_time(60)
        self.assertTrue(transport.disconnected)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.sweeps(), 0)
