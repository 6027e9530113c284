"""The tracker on real sockets: clients over IPv4 and IPv6, and clients that misbehave."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from typing import Any
from urllib.parse import quote_from_bytes

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web import http

from tests.helpers import info_hash, peer_id
from tests.test_resource import LogCapture
from tracker.core.bencode import bdecode
from tracker.core.config import TrackerConfig
from tracker.http.resource import TrackerResource
from tracker.http.site import TrackerSite
from tracker.store.sqlite import SQLitePeerStore

#: How long any one client waits for the tracker before the test fails.
CLIENT_TIMEOUT = 5.0


class Response:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split(b" ")[1]) if lines[0].startswith(b"HTTP/") else 0
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in lines[1:])
        }

    def decoded(self) -> dict[bytes, Any]:
        value = bdecode(self.body)
        assert isinstance(value, dict)
        return value


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or resets it, as a server
    may when it drops a client whose input it did not read)."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=CLIENT_TIMEOUT)
    sock.settimeout(CLIENT_TIMEOUT)
    return sock


def exchange(host: str, port: int, data: bytes) -> Response:
    """Send C{data} on a fresh connection and read the reply (blocking; run in a thread)."""
    with connect(host, port) as sock:
        sock.sendall(data)
        return Response(read_all(sock))


def get(host: str, port: int, target: bytes) -> Response:
    return exchange(
        host, port, b"GET " + target + b" HTTP/1.1\r\nHost: tracker\r\nConnection: close\r\n\r\n"
    )


def announce_target(peer: int, port: int, torrent: int = 1, left: int = 100) -> bytes:
    return (
        f"/announce?info_hash={quote_from_bytes(info_hash(torrent))}"
        f"&peer_id={quote_from_bytes(peer_id(peer))}&port={port}&left={left}&compact=1"
    ).encode()


class NetworkTestCase(TestCase):
    timeout = 30
    #: Seconds the site lets a connection sit idle.
    idle_timeout: float = 10

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        directory = tempfile.mkdtemp(prefix="tracker-network-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.store = SQLitePeerStore(os.path.join(directory, "tracker.sqlite3"))
        yield self.store.start()
        self.addCleanup(self.store.stop)
        self.config = TrackerConfig()
        self.site = TrackerSite(
            TrackerResource(self.store, self.config, reactor), timeout=self.idle_timeout
        )
        self._connections_lost: list[Deferred[None]] = []
        self._protocols: list[Any] = []
        self._track_connections()

    def _track_connections(self) -> None:
        """Remember each server-side connection so the test can wait for all of them to close."""
        build = self.site.buildProtocol

        def build_tracked(address: Any) -> Any:
            protocol = build(address)
            lost: Deferred[None] = Deferred()
            connection_lost = protocol.connectionLost

            def tracked_connection_lost(reason: Any) -> None:
                connection_lost(reason)
                lost.callback(None)

            protocol.connectionLost = tracked_connection_lost
            self._connections_lost.append(lost)
            self._protocols.append(protocol)
            return protocol

        self.site.buildProtocol = build_tracked  # type: ignore[method-assign]

    def listen(self, interface: str) -> int:
        port = reactor.listenTCP(0, self.site, interface=interface)  # type: ignore[arg-type]
        self.addCleanup(self._close_all, port)
        address: Any = port.getHost()
        return int(address.port)

    @inlineCallbacks
    def _close_all(self, port: Any) -> Any:
        yield port.stopListening()
        for protocol in self._protocols:
            transport = getattr(protocol, "transport", None)
            if transport is not None and transport.connected:
                transport.abortConnection()
        yield gatherResults(self._connections_lost)


class ServingTests(NetworkTestCase):
    @inlineCallbacks
    def test_two_peers_see_each_other_ipv4(self) -> Any:
        """Two clients announcing over IPv4 are each handed the other's address and port."""
        port = self.listen("127.0.0.1")
        first = yield deferToThread(get, "127.0.0.1", port, announce_target(1, 6001))
        second = yield deferToThread(get, "127.0.0.1", port, announce_target(2, 6002))
        third = yield deferToThread(get, "127.0.0.1", port, announce_target(1, 6001))
        self.assertEqual((first.status, second.status), (200, 200))
        self.assertEqual(first.decoded()[b"peers"], b"")
        loopback = socket.inet_aton("127.0.0.1")
        self.assertEqual(second.decoded()[b"peers"], loopback + (6001).to_bytes(2, "big"))
        self.assertEqual(third.decoded()[b"peers"], loopback + (6002).to_bytes(2, "big"))
        self.assertEqual(second.decoded()[b"external ip"], loopback)
        self.assertEqual(second.headers[b"content-length"], b"%d" % len(second.body))

    @inlineCallbacks
    def test_scrape(self) -> Any:
        """A scrape over the network reports what announces recorded."""
        port = self.listen("127.0.0.1")
        yield deferToThread(get, "127.0.0.1", port, announce_target(1, 6001, left=0))
        yield deferToThread(get, "127.0.0.1", port, announce_target(2, 6002))
        target = b"/scrape?info_hash=" + quote_from_bytes(info_hash(1)).encode()
        target += b"&info_hash=" + quote_from_bytes(info_hash(2)).encode()
        reply = yield deferToThread(get, "127.0.0.1", port, target)
        self.assertEqual(reply.status, 200)
        self.assertEqual(
            reply.decoded()[b"files"],
            {
                info_hash(1): {b"complete": 1, b"incomplete": 1, b"downloaded": 0},
                info_hash(2): {b"complete": 0, b"incomplete": 0, b"downloaded": 0},
            },
        )

    @inlineCallbacks
    def test_two_peers_see_each_other_ipv6(self) -> Any:
        """Over IPv6 (::1) peers are handed to each other in peers6, 18 bytes each."""
        port = self.listen("::1")
        yield deferToThread(get, "::1", port, announce_target(1, 6001))
        second = yield deferToThread(get, "::1", port, announce_target(2, 6002))
        reply = second.decoded()
        loopback = socket.inet_pton(socket.AF_INET6, "::1")
        self.assertEqual(reply[b"peers6"], loopback + (6001).to_bytes(2, "big"))
        self.assertEqual(reply[b"peers"], b"")
        self.assertEqual(reply[b"external ip"], loopback)
        files = yield deferToThread(
            get, "::1", port, b"/scrape?info_hash=" + quote_from_bytes(info_hash(1)).encode()
        )
        self.assertEqual(files.decoded()[b"files"][info_hash(1)][b"incomplete"], 2)

    @inlineCallbacks
    def test_stopped_with_another_key_refused(self) -> Any:
        """Over a real port, a stopped announce for another port with another key than the
        peer started with gets a bencoded failure and the peer stays; its own key, in either
        case, removes it."""
        port = self.listen("127.0.0.1")
        target = announce_target(1, 6001)
        yield deferToThread(get, "127.0.0.1", port, target + b"&key=565E1D1F&event=started")
        elsewhere = announce_target(1, 6002) + b"&key=DEADBEEF&event=stopped"
        wrong = yield deferToThread(get, "127.0.0.1", port, elsewhere)
        self.assertEqual(wrong.status, 200)
        self.assertIn(b"registered with another key", wrong.decoded()[b"failure reason"])
        scrape = b"/scrape?info_hash=" + quote_from_bytes(info_hash(1)).encode()
        kept = yield deferToThread(get, "127.0.0.1", port, scrape)
        self.assertEqual(kept.decoded()[b"files"][info_hash(1)][b"incomplete"], 1)
        right = yield deferToThread(get, "127.0.0.1", port, target + b"&key=565e1d1f&event=stopped")
        self.assertNotIn(b"failure reason", right.decoded())
        gone = yield deferToThread(get, "127.0.0.1", port, scrape)
        self.assertEqual(gone.decoded()[b"files"][info_hash(1)][b"incomplete"], 0)

    @inlineCallbacks
    def test_head_and_post(self) -> Any:
        """HEAD is answered without a body; POST with a small body gets 405."""
        port = self.listen("127.0.0.1")
        target = announce_target(1, 6001)
        head = yield deferToThread(
            exchange, "127.0.0.1", port, b"HEAD " + target + b" HTTP/1.0\r\n\r\n"
        )
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        post = yield deferToThread(
            exchange,
            "127.0.0.1",
            port,
            b"POST " + target + b" HTTP/1.0\r\nContent-Length: 2\r\n\r\nab",
        )
        self.assertEqual(post.status, 405)
        self.assertIn(b"failure reason", post.decoded())


class AbuseTests(NetworkTestCase):
    @inlineCallbacks
    def assertStillServing(self, port: int) -> Any:
        reply = yield deferToThread(get, "127.0.0.1", port, announce_target(99, 6099))
        self.assertEqual(reply.status, 200)
        self.assertIn(b"interval", reply.decoded())

    @inlineCallbacks
    def test_oversized_request_line(self) -> Any:
        """A request line over 16 KiB (a scrape of 1000 hashes is 60 KB) gets 414 and a
        bencoded reason naming the limit, then the connection closes; the next client is
        served."""
        port = self.listen("127.0.0.1")
        hashes = "&".join(f"info_hash={quote_from_bytes(info_hash(n))}" for n in range(1000))
        line = b"GET /scrape?" + hashes.encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n"
        reply = yield deferToThread(exchange, "127.0.0.1", port, line)
        self.assertEqual(reply.status, 414)
        self.assertIn(b"16384", reply.decoded()[b"failure reason"])
        self.assertEqual(reply.headers[b"content-length"], b"%d" % len(reply.body))
        yield self.assertStillServing(port)

    @inlineCallbacks
    def test_malformed_request_lines(self) -> Any:
        """Request lines Twisted refuses get 400 and a closed connection; the next client is
        served. Since Twisted 24.7 that includes a control or high byte in the target, a space
        too many and an unknown HTTP version."""
        port = self.listen("127.0.0.1")
        lines = [b"GET /announce", b"GET /announce HTTP/1.1 more"]
        if hasattr(http, "_parseRequestLine"):
            lines += [
                b"GET /announce?info_hash=\x01 HTTP/1.1",
                b"GET /announce?x=\xff HTTP/1.1",
                b"GET  /announce HTTP/1.1",
                b"GET /announce HTTP/2.0",
            ]
        for line in lines:
            request = line + b"\r\nConnection: close\r\n\r\n"
            reply = yield deferToThread(exchange, "127.0.0.1", port, request)
            self.assertEqual(reply.status, 400, line)
        yield self.assertStillServing(port)

    @inlineCallbacks
    def test_oversized_header(self) -> Any:
        """A header line over 16 KiB gets 431 and a bencoded reason; the next client is
        served."""
        port = self.listen("127.0.0.1")
        request = b"GET /announce HTTP/1.1\r\nX-Junk: " + b"j" * 20000 + b"\r\n\r\n"
        reply = yield deferToThread(exchange, "127.0.0.1", port, request)
        self.assertEqual(reply.status, 431)
        self.assertIn(b"header", reply.decoded()[b"failure reason"])
        yield self.assertStillServing(port)

    @inlineCallbacks
    def test_large_body_refused(self) -> Any:
        """A POST declaring a large body gets 413 before the body is read; the next client is
        served."""
        port = self.listen("127.0.0.1")

        def post() -> Response:
            with connect("127.0.0.1", port) as sock:
                sock.sendall(b"POST /announce HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n")
                sock.sendall(b"x" * 4096)
                return Response(read_all(sock))

        reply = yield deferToThread(post)
        self.assertEqual(reply.status, 413)
        self.assertIn(b"failure reason", reply.decoded())
        yield self.assertStillServing(port)

    @inlineCallbacks
    def test_unreadable_content_type_refused(self) -> Any:
        """A POST whose Content-Type holds a byte Python reads as a line break (which made
        Twisted's parser raise out of the connection, closing it without an answer and logging
        a traceback) gets 400 and a bencoded reason, and nothing is logged; the next client is
        served."""
        port = self.listen("127.0.0.1")
        captured = LogCapture(self)
        for byte in b"\x0b\x0c\x1c\x1d\x1e\x85":
            request = (
                b"POST /announce HTTP/1.1\r\nContent-Type: application/x-www-form-%c"
                b"urlencoded\r\nContent-Length: 3\r\n\r\na=b" % byte
            )
            reply = yield deferToThread(exchange, "127.0.0.1", port, request)
            self.assertEqual(reply.status, 400, byte)
            self.assertIn(b"Content-Type", reply.decoded()[b"failure reason"])
        self.assertEqual(captured.failures(), [])
        yield self.assertStillServing(port)

    @inlineCallbacks
    def test_chunked_body_refused(self) -> Any:
        """A body of unannounced length (chunked) gets 413 as well."""
        port = self.listen("127.0.0.1")
        request = b"POST /announce HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        reply = yield deferToThread(exchange, "127.0.0.1", port, request)
        self.assertEqual(reply.status, 413)
        yield self.assertStillServing(port)

    @inlineCallbacks
    def test_half_sent_request_does_not_block(self) -> Any:
        """A client that sends half a request and stalls does not hold up other clients."""
        port = self.listen("127.0.0.1")
        stalled = yield deferToThread(connect, "127.0.0.1", port)
        self.addCleanup(stalled.close)
        stalled.sendall(b"GET /announce?info_hash=")
        started = time.monotonic()
        yield self.assertStillServing(port)
        self.assertLess(time.monotonic() - started, 2)

    @inlineCallbacks
    def test_many_bad_clients(self) -> Any:
        """64 connections sending garbage are each answered or closed, and a good client
        connecting among them is served."""
        port = self.listen("127.0.0.1")
        garbage = [
            b"\x00\xff\xfe garbage\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /announce HTTP/9.9\r\n\r\n",
            b"GET /announce HTTP/1.1\r\n" + b"X: y\r\n" * 1000 + b"\r\n",
            b"GET /announce?info_hash=%zz HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /scrape?" + b"&" * 10000 + b" HTTP/1.0\r\n\r\n",
            b"GET /announce?" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
        ]

        def storm() -> list[bytes]:
            sockets = []
            try:
                for n in range(64):
                    sock = connect("127.0.0.1", port)
                    sockets.append(sock)
                    sock.sendall(garbage[n % len(garbage)])
                good = get("127.0.0.1", port, announce_target(99, 6099))
                assert good.status == 200, good.raw
                return [read_all(sock) for sock in sockets]
            finally:
                for sock in sockets:
                    sock.close()

        started = time.monotonic()
        replies = yield deferToThread(storm)
        self.assertEqual(len(replies), 64)
        for raw in replies:
            # Each was dropped, refused with 4xx, or answered with a tracker failure reason.
            reply = Response(raw)
            self.assertTrue(
                not raw
                or 400 <= reply.status < 500
                or (reply.status == 200 and b"failure reason" in reply.decoded()),
                raw[:200],
            )
        self.assertLess(time.monotonic() - started, 10)
        yield self.assertStillServing(port)


class IdleTimeoutTests(NetworkTestCase):
    idle_timeout = 0.5

    @inlineCallbacks
    def test_idle_connection_closed(self) -> Any:
        """A connection that sends nothing is closed once the idle timeout passes."""
        port = self.listen("127.0.0.1")

        def idle() -> tuple[bytes, float]:
            with connect("127.0.0.1", port) as sock:
                started = time.monotonic()
                data = read_all(sock)
                return data, time.monotonic() - started

        data, elapsed = yield deferToThread(idle)
        self.assertEqual(data, b"")
        self.assertGreater(elapsed, 0.3)
        self.assertLess(elapsed, 3)

    @inlineCallbacks
    def test_stalled_request_closed(self) -> Any:
        """A connection that stops halfway through a request is closed after the idle timeout,
        and the tracker keeps serving."""
        port = self.listen("127.0.0.1")

        def stall() -> float:
            with connect("127.0.0.1", port) as sock:
                sock.sendall(b"GET /announce?info_hash=abc HTTP/1.1\r\nHost: x\r\n")
                started = time.monotonic()
                read_all(sock)
                return time.monotonic() - started

        elapsed = yield deferToThread(stall)
        self.assertLess(elapsed, 3)
        reply = yield deferToThread(get, "127.0.0.1", port, announce_target(1, 6001))
        self.assertEqual(reply.status, 200)


class ArgsResource:
    """A host application's resource that reads request.args, as most twisted.web code does."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        return repr(sorted(request.args.items())).encode()


class HostResourcesTests(NetworkTestCase):
    """TrackerSite skips parsing request.args for the tracker, yet a host application's own
    resources mounted beside it still get them, parsed as Twisted parses them."""

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        yield super().setUp()
        from twisted.web.resource import IResource, Resource
        from zope.interface import directlyProvides

        root = Resource()
        root.putChild(b"tracker", TrackerResource(self.store, self.config, reactor))
        echo = ArgsResource()
        directlyProvides(echo, IResource)
        root.putChild(b"echo", echo)  # type: ignore[arg-type]
        self.site.resource = root

    @inlineCallbacks
    def test_args_for_host_resources(self) -> Any:
        """A plain resource sees request.args; the tracker beside it answers announces."""
        port = self.listen("127.0.0.1")
        echoed = yield deferToThread(get, "127.0.0.1", port, b"/echo?a=1&b=x+y&a=2")
        self.assertEqual(echoed.body, repr([(b"a", [b"1", b"2"]), (b"b", [b"x y"])]).encode())
        answered = yield deferToThread(
            get, "127.0.0.1", port, b"/tracker" + announce_target(1, 6001)
        )
        self.assertEqual(answered.decoded()[b"peers"], b"")
