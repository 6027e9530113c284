"""The tracker under a flood, on real sockets: nobody is starved, nothing grows without bound."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase

from tests.flooder import block
from tests.test_network import CLIENT_TIMEOUT, NetworkTestCase, announce_target, get
from tracker.core.config import TrackerConfig
from tracker.http.resource import TrackerResource
from tracker.http.site import REQUESTS_PER_TURN, TrackerChannel, TrackerSite
from tracker.store.memory import MemoryPeerStore

FLOODER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flooder.py")
#: Connections of the flood, and the longest a newcomer may wait for its answer among them.
FLOODERS = 300
NEWCOMER_LIMIT = 2.0
#: The most a connection may make the tracker hold: replies not yet sent (the transport's
#: buffer size, plus the reply that went over it) and input not yet parsed (one read, plus the
#: 16 KiB Twisted reads ahead of a request it is still answering).
UNSENT_BOUND = 64 * 1024 + 1024
UNPARSED_BOUND = 64 * 1024 + 16 * 1024 + 1024
#: What the client that never reads tries to send.
NEVER_READ_TOTAL = 16 * 1024 * 1024


def send_until_blocked(sock: socket.socket, total: int, stall: float) -> int:
    """Pipeline announces down C{sock} without reading a reply, until C{total} bytes have gone
    or a send has waited C{stall} seconds; the bytes sent."""
    sock.settimeout(stall)
    whole = block(0)
    data = whole
    sent = 0
    while sent < total:
        try:
            n = sock.send(data)
        except (socket.timeout, BlockingIOError, ConnectionError):
            break
        sent += n
        data = data[n:] or whole
    return sent


def newcomer_wait(port: int, n: int) -> float:
    """Seconds a new client waits for the answer to one announce; infinity if it is not
    answered within the client's timeout."""
    started = time.monotonic()
    try:
        reply = get("127.0.0.1", port, announce_target(900 + n, 7000 + n))
    except OSError:
        return float("inf")
    assert reply.status == 200 and b"interval" in reply.decoded(), reply.raw
    return time.monotonic() - started


class TurnTests(SynchronousTestCase):
    """How a connection's pipelined requests are spread over turns of the reactor, and held
    while its replies wait to be sent, seen on a transport in memory."""

    def setUp(self) -> None:
        self.clock = Clock()
        resource = TrackerResource(MemoryPeerStore(), TrackerConfig(), self.clock)
        site = TrackerSite(resource, reactor=self.clock)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 6881))
        assert isinstance(channel, TrackerChannel)
        self.channel = channel
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 6881))
        channel.makeConnection(self.transport)
        self.addCleanup(channel.connectionLost, None)  # type: ignore[arg-type]

    def turn(self) -> None:
        """One turn of a reactor: the calls due now run, but not those they schedule for now
        (which L{Clock.advance} would run as well)."""
        due = [c for c in self.clock.getDelayedCalls() if c.getTime() <= self.clock.seconds()]
        for call in due:
            func, args, kw = call.func, call.args, call.kw
            call.cancel()
            func(*args, **kw)

    def replies(self) -> int:
        return self.transport.value().count(b"HTTP/1.1 200 ")

    def request(self, n: int) -> bytes:
        return b"GET " + announce_target(n, 6000 + n) + b" HTTP/1.1\r\nHost: t\r\n\r\n"

    def pipelined(self, count: int) -> bytes:
        return b"".join(self.request(n) for n in range(count))

    def test_pipelined_requests_answered_a_few_per_turn(self) -> None:
        """Of ten requests arriving in one read, REQUESTS_PER_TURN (2) are answered at once;
        the connection is then read no further until its next turn of the reactor, and the
        rest are answered REQUESTS_PER_TURN a turn."""
        self.channel.dataReceived(self.pipelined(10))
        self.assertEqual(self.replies(), REQUESTS_PER_TURN)
        self.assertEqual(self.transport.producerState, "paused")
        answered = [self.replies()]
        for _ in range(10):
            self.turn()
            answered.append(self.replies())
        per_turn = [min(10, REQUESTS_PER_TURN * (n + 1)) for n in range(11)]
        self.assertEqual(answered, per_turn)
        self.assertEqual(self.transport.producerState, "producing")

    def test_requests_in_separate_reads_not_held(self) -> None:
        """Requests that arrive one read at a time, as clients that wait for each answer send
        them, are each answered at once and the connection is never paused."""
        for n in range(10):
            self.channel.dataReceived(self.request(n))
            self.assertEqual(self.replies(), n + 1)
        self.assertEqual(self.transport.producerState, "producing")
        # Only the idle timeout is pending: no turn was asked for.
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_held_while_replies_wait(self) -> None:
        """When the transport says its buffer is full (it calls pauseProducing), the request
        being answered is finished and nothing more is read or parsed until the transport has
        sent it all (resumeProducing)."""
        first = self.request(0)
        self.channel.dataReceived(first[:-1])
        self.channel.pauseProducing()  # as the transport does from write() once over its buffer
        self.channel.dataReceived(first[-1:] + self.request(1))
        self.assertEqual(self.replies(), 1)
        self.assertEqual(self.transport.producerState, "paused")
        self.turn()
        self.assertEqual(self.replies(), 1)
        self.channel.resumeProducing()
        self.assertEqual(self.replies(), 2)
        self.assertEqual(self.transport.producerState, "producing")


class FloodTests(NetworkTestCase):
    timeout = 90

    def start_flood(self, port: int, connections: int, seconds: float) -> subprocess.Popen[str]:
        flooder = subprocess.Popen(
            [sys.executable, FLOODER, str(port), str(connections), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )

        def stop() -> None:
            if flooder.poll() is None:
                flooder.kill()
            flooder.communicate()

        self.addCleanup(stop)
        return flooder

    @inlineCallbacks
    def test_newcomer_answered_under_flood(self) -> Any:
        """With 300 connections pipelining announces as fast as the tracker reads them, a new
        client connecting among them has its announce answered within 2 seconds, every time."""
        port = self.listen("127.0.0.1")
        flooder = self.start_flood(port, FLOODERS, 30)
        assert flooder.stdout is not None
        ready = yield deferToThread(flooder.stdout.readline)
        self.assertEqual(ready, "ready\n")
        # Let every flooding connection fill its socket and the tracker's reads.
        yield deferLater(reactor, 1.0, lambda: None)
        waits = []
        for n in range(5):
            wait = yield deferToThread(newcomer_wait, port, n)
            waits.append(wait)
        self.assertIsNone(flooder.poll(), "the flood ended before the newcomers were answered")
        self.assertLess(max(waits), NEWCOMER_LIMIT, [f"{wait:.2f}" for wait in waits])

    @inlineCallbacks
    def test_client_that_never_reads(self) -> Any:
        """A client that pipelines announces and never reads the replies makes the tracker hold
        at most about 64 KiB of replies and 80 KiB of its requests: the tracker stops reading
        from it, so that the client's own sends block. Other clients are served meanwhile."""
        port = self.listen("127.0.0.1")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        # Small buffers on the client's side, so that the kernel holds little of the flood.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.settimeout(CLIENT_TIMEOUT)
        yield deferToThread(sock.connect, ("127.0.0.1", port))
        sent = yield deferToThread(send_until_blocked, sock, NEVER_READ_TOTAL, 2.0)
        [channel] = [
            p for p in self._protocols if p.transport.getPeer().port == sock.getsockname()[1]
        ]
        transport = channel.transport
        # Twisted's transport keeps what it could not send yet in these two.
        unsent = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        unparsed = len(channel._buffer) + sum(map(len, channel._dataBuffer))
        self.assertLess(unsent, UNSENT_BOUND)
        self.assertLess(unparsed, UNPARSED_BOUND)
        self.assertLess(sent, NEVER_READ_TOTAL, "the tracker read everything sent")
        wait = yield deferToThread(newcomer_wait, port, 0)
        self.assertLess(wait, NEWCOMER_LIMIT)


class NeverReadingTimeoutTests(NetworkTestCase):
    idle_timeout = 1.0

    @inlineCallbacks
    def test_never_reading_client_closed(self) -> Any:
        """A client that never reads its replies, once the tracker has stopped reading from it,
        is closed by the idle timeout: the tracker does not hold its connection for ever. (The
        close is forced by Twisted's abort timeout, 15 s by default, shortened here, since the
        replies it holds cannot be sent.)"""
        self.patch(TrackerChannel, "abortTimeout", 1)
        port = self.listen("127.0.0.1")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(CLIENT_TIMEOUT)
        yield deferToThread(sock.connect, ("127.0.0.1", port))
        sent = yield deferToThread(send_until_blocked, sock, NEVER_READ_TOTAL, 0.5)
        self.assertLess(sent, NEVER_READ_TOTAL, "the tracker read everything sent")
        [lost] = self._connections_lost
        deadline = time.monotonic() + 10
        while not lost.called and time.monotonic() < deadline:
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(lost.called, "the connection was still open 10 s after the client stalled")
