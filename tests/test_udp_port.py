"""The batching UDP port, through real sockets on the loopback interface."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tracker.udp import port as udp_port
from tracker.udp.port import BATCH, BatchingPort, _Messages, listen_udp

#: Datagrams that do not fit one batch.
MANY = 3 * BATCH + 5


class Echo(DatagramProtocol):
    """Answers each datagram with its own bytes reversed, to the address it came from."""

    def __init__(self) -> None:
        self.dropped: list[tuple[int, str]] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.transport.write(data[::-1], addr)

    def repliesDropped(self, count: int, reason: str) -> None:
        self.dropped.append((count, reason))


def sender(family: int = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    client = socket.socket(family, socket.SOCK_DGRAM)
    client.bind((host, 0))
    client.settimeout(5)
    return client


def receive(client: socket.socket, count: int) -> list[bytes]:
    return [client.recv(2048) for _ in range(count)]


class BatchingPortTests(TestCase):
    timeout = 30

    def listen(self, protocol: DatagramProtocol, interface: str = "127.0.0.1") -> BatchingPort:
        port = listen_udp(reactor, 0, protocol, interface)
        assert isinstance(port, BatchingPort)
        self.addCleanup(port.stopListening)
        return port

    def client(self, *args: Any) -> socket.socket:
        client = sender(*args)
        self.addCleanup(client.close)
        return client

    def queued(self, port: BatchingPort, send: Any) -> Any:
        """Run C{send} while the port does not read, so its datagrams wait in one queue."""
        port.stopReading()

        def sent(result: object) -> object:
            port.startReading()
            return result

        return deferToThread(send).addBoth(sent)

    @inlineCallbacks
    def test_queued_datagrams_answered_in_batches(self) -> Any:
        """Datagrams from several clients read together are each answered, to their sender,
        in the order sent, with fewer system calls than datagrams."""
        protocol = Echo()
        port = self.listen(protocol)
        target = ("127.0.0.1", port.getHost().port)
        clients = [self.client() for _ in range(3)]
        sends: list[int] = []
        flush = port._send

        def counted(pending: list[tuple[bytes, Any]]) -> None:
            sends.append(len(pending))
            flush(pending)

        port._send = counted  # type: ignore[method-assign]

        def send() -> None:
            for k in range(MANY):
                clients[k % 3].sendto(b"datagram %d" % k, target)

        yield self.queued(port, send)
        replies = yield deferToThread(lambda: [receive(c, MANY // 3 + 1) for c in clients[:2]])
        last = yield deferToThread(receive, clients[2], MANY // 3)
        for n, answers in enumerate([*replies, last]):
            expected = [(b"datagram %d" % k)[::-1] for k in range(n, MANY, 3)]
            self.assertEqual(answers, expected)
        self.assertEqual(sum(sends), MANY)
        self.assertLess(len(sends), MANY // 2)
        self.assertLessEqual(max(sends), BATCH)

    @inlineCallbacks
    def test_ipv6(self) -> Any:
        protocol = Echo()
        port = self.listen(protocol, "::1")
        client = self.client(socket.AF_INET6, "::1")
        target = ("::1", port.getHost().port)
        yield self.queued(port, lambda: [client.sendto(b"v6 %d" % k, target) for k in range(5)])
        replies = yield deferToThread(receive, client, 5)
        self.assertEqual(replies, [(b"v6 %d" % k)[::-1] for k in range(5)])

    @inlineCallbacks
    def test_refused_reply_does_not_stop_the_others(self) -> Any:
        """A reply the kernel refuses (broadcast without SO_BROADCAST) is reported to the
        protocol, and the batch's other replies still go."""

        class Broadcasting(Echo):
            def datagramReceived(self, data: bytes, addr: Any) -> None:
                self.transport.write(b"to everyone", ("255.255.255.255", 9))
                super().datagramReceived(data, addr)

        protocol = Broadcasting()
        port = self.listen(protocol)
        client = self.client()
        target = ("127.0.0.1", port.getHost().port)
        yield self.queued(port, lambda: [client.sendto(b"x%d" % k, target) for k in range(3)])
        replies = yield deferToThread(receive, client, 3)
        self.assertEqual(replies, [b"0x", b"1x", b"2x"])
        self.assertEqual(protocol.dropped, [(1, "EACCES")] * 3)

    @inlineCallbacks
    def test_remembered_addresses_are_bounded(self) -> Any:
        """More clients than the port remembers: each still gets its own answers."""
        protocol = Echo()
        port = self.listen(protocol)
        port.remembered = 2
        clients = [self.client() for _ in range(5)]
        target = ("127.0.0.1", port.getHost().port)

        def send() -> None:
            for _ in range(2):
                for k, client in enumerate(clients):
                    client.sendto(b"client %d" % k, target)

        yield self.queued(port, send)
        replies = yield deferToThread(lambda: [receive(c, 2) for c in clients])
        for k, answers in enumerate(replies):
            self.assertEqual(answers, [(b"client %d" % k)[::-1]] * 2)
        self.assertLessEqual(len(port._hosts), 2)

    @inlineCallbacks
    def test_write_outside_a_batch_goes_at_once(self) -> Any:
        protocol = Echo()
        port = self.listen(protocol)
        client = self.client()
        port.write(b"unasked", client.getsockname())
        reply = yield deferToThread(client.recv, 2048)
        self.assertEqual(reply, b"unasked")


class OtherWayOfPuttingTests(BatchingPortTests):
    """The same, with replies put in the way the other interpreter puts them (PyPy through
    cffi's objects, CPython through memoryviews), so that both ways are tested on each."""

    def setUp(self) -> None:
        other = _Messages.put_cdata if _Messages.put is _Messages.put_views else _Messages.put_views
        self.patch(_Messages, "put", other)


class FallbackTests(TestCase):
    def test_reactor_without_sockets(self) -> None:
        """A reactor of another kind (a test's memory reactor) gets its own listenUDP."""
        calls = []

        class Reactor:
            def listenUDP(self, *args: Any, **kwargs: Any) -> str:
                calls.append((args, kwargs))
                return "its own port"

        protocol = Echo()
        self.assertEqual(listen_udp(Reactor(), 6969, protocol, "::"), "its own port")
        self.assertEqual(calls, [((6969, protocol), {"interface": "::"})])

    def test_system_without_batching(self) -> None:
        """Without recvmmsg (another system, or no cffi): Twisted's own port, still serving."""
        self.patch(udp_port, "AVAILABLE", False)
        port = listen_udp(reactor, 0, Echo(), "127.0.0.1")
        self.addCleanup(port.stopListening)
        self.assertNotIsInstance(port, BatchingPort)
        self.assertEqual(port.getHost().type, "UDP")


class ReusePortTests(TestCase):
    def reusing(self, port: int = 0) -> Any:
        listening = listen_udp(reactor, port, Echo(), "127.0.0.1", reuse_port=True)
        self.addCleanup(listening.stopListening)
        return listening

    def check_shared(self) -> None:
        first = self.reusing()
        port = first.getHost().port
        second = self.reusing(port)
        self.assertEqual(second.getHost().port, port)
        for listening in (first, second):
            option = listening.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
            self.assertEqual(option, 1)
        # A port that does not ask for the option is refused the address.
        self.assertRaises(CannotListenError, listen_udp, reactor, port, Echo(), "127.0.0.1")

    def test_batching_port(self) -> None:
        """With reuse_port, the batching port binds with SO_REUSEPORT and two share a port;
        without it the socket has no such option."""
        self.check_shared()
        plain = listen_udp(reactor, 0, Echo(), "127.0.0.1")
        self.addCleanup(plain.stopListening)
        self.assertIsInstance(plain, BatchingPort)
        self.assertEqual(plain.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 0)

    def test_system_without_batching(self) -> None:
        """Without recvmmsg, Twisted's own port is made on a socket bound with SO_REUSEPORT."""
        self.patch(udp_port, "AVAILABLE", False)
        self.check_shared()
        self.assertNotIsInstance(self.reusing(), BatchingPort)
