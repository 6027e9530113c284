"""
The WebSocket tracker through real sockets on 127.0.0.1: a small client of our own
(L{tests.wsclient}) speaks to a L{TrackerSite} as browsers do, one rule of the protocol a test.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import time
from typing import Any, Callable
from urllib.parse import quote_from_bytes

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.helpers import info_hash, peer_id, totals
from tests.test_network import announce_target, connect, exchange, get, read_all
from tests.test_private import KEY, PRIVATE, passkey_table
from tests.test_udp import Client, announce_packet, parse_announce_reply, scrape_packet
from tests.wsclient import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    HandshakeRefused,
    WebSocketClient,
    client_frame,
    frame_header,
)
from tracker.core.bencode import bdecode
from tracker.core.config import TrackerConfig
from tracker.core.interfaces import SwarmCounts
from tracker.http.private import PrivateTrackerResource
from tracker.http.resource import TrackerResource
from tracker.http.site import TrackerSite
from tracker.ops.access import AccessControlledStore, AccessList
from tracker.store.access import WHITELIST, Account, MemoryAccessStore
from tracker.store.memory import MemoryPeerStore
from tracker.store.sqlite import SQLitePeerStore
from tracker.udp.protocol import UDPTracker
from tracker.ws.tracker import WebSocketTracker

HOST = "127.0.0.1"


def ih(n: int) -> str:
    """Torrent C{n}'s info hash as a client sends it: one character a byte, NULs included."""
    return info_hash(n).decode("latin-1")


def pid(n: int) -> str:
    return peer_id(n).decode("latin-1")


def oid(n: int) -> str:
    return f"offer-{n:014d}"


def announce(
    peer: int, torrent: int = 1, offers: Any = 0, first_offer: int = 0, **fields: Any
) -> dict[str, Any]:
    """An announce as WebTorrent sends it, with C{offers} offers numbered from
    C{first_offer} (or C{offers} as given, if it is not a number)."""
    message: dict[str, Any] = {
        "action": "announce",
        "info_hash": ih(torrent),
        "peer_id": pid(peer),
        "numwant": 10,
        "uploaded": 0,
        "downloaded": 0,
        "left": 100,
        "event": "started",
    }
    if not isinstance(offers, int):
        message["offers"] = offers
    elif offers:
        message["offers"] = [
            {"offer": {"type": "offer", "sdp": f"v=0 offer {n}"}, "offer_id": oid(n)}
            for n in range(first_offer, first_offer + offers)
        ]
    message.update(fields)
    return message


def answer(peer: int, to: int, offer: int, torrent: int = 1) -> dict[str, Any]:
    return {
        "action": "announce",
        "info_hash": ih(torrent),
        "peer_id": pid(peer),
        "to_peer_id": pid(to),
        "offer_id": oid(offer),
        "answer": {"type": "answer", "sdp": f"v=0 answer to {offer}"},
    }


def scrape_target(torrent: int) -> bytes:
    return b"/scrape?info_hash=" + quote_from_bytes(info_hash(torrent)).encode()


class ShiftedClock:
    """The reactor's clock moved by C{shift} seconds; delayed calls go to the reactor."""

    def __init__(self) -> None:
        self.shift = 0.0

    def seconds(self) -> float:
        return float(reactor.seconds()) + self.shift  # type: ignore[attr-defined]

    def callLater(self, delay: float, f: Any, *args: Any, **kwargs: Any) -> IDelayedCall:
        return reactor.callLater(delay, f, *args, **kwargs)  # type: ignore[attr-defined, no-any-return]


class WebSocketTestCase(TestCase):
    """A tracker on 127.0.0.1 with WebSocket on, its memory store, its clock shiftable."""

    timeout = 30
    config = TrackerConfig()

    def setUp(self) -> None:
        self.store = MemoryPeerStore()
        self.clock = ShiftedClock()
        self.resource = self.make_resource()
        websocket = self.resource.websocket
        assert websocket is not None
        self.websocket: WebSocketTracker = websocket
        self.site = TrackerSite(self.resource, timeout=10)
        port = reactor.listenTCP(0, self.site, interface=HOST)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        self.port = int(port.getHost().port)
        # Every connection closed by the end of a test, so that no sweep is left scheduled.
        self.addCleanup(self.all_closed)

    def make_resource(self) -> TrackerResource:
        return TrackerResource(self.store, self.config, self.clock)  # type: ignore[arg-type]

    def client(self, **kwargs: Any) -> WebSocketClient:
        """A client, closed at the end of the test if it is still open then."""
        client = WebSocketClient(HOST, self.port, **kwargs)
        self.addCleanup(client.close)
        return client

    def in_thread(self, work: Callable[[], Any]) -> Deferred[Any]:
        """Run C{work}, the clients' side, in a thread while the reactor serves."""
        return deferToThread(work)

    @inlineCallbacks
    def until(self, condition: Callable[[], bool], seconds: float = 5.0) -> Any:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                self.fail("timed out waiting for the tracker")
            yield deferLater(reactor, 0.01, lambda: None)

    @inlineCallbacks
    def all_closed(self) -> Any:
        websocket = self.websocket
        for connection in list(websocket.connections.values()):
            connection.abort()
        yield self.until(lambda: not websocket.connections)

    def counts(self, torrent: int = 1) -> tuple[int, int]:
        group = self.store.scrape([info_hash(torrent)])[info_hash(torrent)]
        ws = self.resource.stats.groups.torrents.get(info_hash(torrent))
        complete = group.complete + (ws.complete if ws is not None else 0)
        incomplete = group.incomplete + (ws.incomplete if ws is not None else 0)
        return complete, incomplete


class HandshakeTests(WebSocketTestCase):
    @inlineCallbacks
    def test_same_url_serves_both(self) -> Any:
        """A request with Upgrade: websocket on /announce becomes a WebSocket (101, the right
        Sec-WebSocket-Accept) and gets an announce reply; a plain GET of the same URL on the same
        port is an HTTP announce, answered in bencode."""

        def clients() -> tuple[dict[str, Any], Any]:
            client = self.client()
            client.send(announce(1))
            reply = client.receive()
            client.close()
            http = exchange(
                HOST,
                self.port,
                b"GET /announce?info_hash=%s&peer_id=%s&port=6881&left=5 HTTP/1.1\r\n"
                b"Host: t\r\nConnection: close\r\n\r\n" % (b"%41" * 20, b"%42" * 20),
            )
            return reply, bdecode(http.body)

        reply, http = yield self.in_thread(clients)
        self.assertEqual(
            reply,
            {
                "action": "announce",
                "interval": 120,
                "info_hash": ih(1),
                "complete": 0,
                "incomplete": 1,
            },
        )
        self.assertEqual(http[b"incomplete"], 1)
        self.assertIn(b"peers", http)

    @inlineCallbacks
    def test_other_version_refused(self) -> Any:
        """A handshake for another WebSocket version gets 426 naming version 13."""

        def client() -> HandshakeRefused:
            try:
                self.client(version=b"8")
            except HandshakeRefused as e:
                return e
            raise AssertionError("the handshake was accepted")

        refused = yield self.in_thread(client)
        self.assertEqual(refused.status, 426)
        self.assertIn(b"426 Upgrade Required", refused.head)
        self.assertEqual(refused.headers[b"sec-websocket-version"], b"13")

    @inlineCallbacks
    def test_bad_key_refused(self) -> Any:
        """A handshake whose Sec-WebSocket-Key is not 16 bytes in base64 gets 400, with the
        reason bencoded as every answer of the announce URL."""

        def client() -> Any:
            with connect(HOST, self.port) as sock:
                sock.sendall(
                    b"GET /announce HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade, close\r\nSec-WebSocket-Key: c2hvcnQ=\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"
                )
                return read_all(sock)

        raw = yield self.in_thread(client)
        self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw)
        self.assertEqual(
            bdecode(raw.partition(b"\r\n\r\n")[2]),
            {b"failure reason": b"Sec-WebSocket-Key must be 16 bytes in base64"},
        )

    @inlineCallbacks
    def test_message_in_the_handshake_packet(self) -> Any:
        """A first message sent in the same packet as the handshake is read and answered."""

        def client() -> dict[str, Any]:
            first = client_frame(TEXT, json.dumps(announce(1)).encode())
            client = self.client(first=first)
            reply = client.receive()
            client.close()
            return reply

        reply = yield self.in_thread(client)
        self.assertEqual((reply["action"], reply["incomplete"]), ("announce", 1))

    @inlineCallbacks
    def test_http_idle_timeout_off(self) -> Any:
        """The HTTP connection's idle timeout (here 1 second) no longer applies once it is a
        WebSocket: a client quiet for longer is still answered."""
        self.site.timeOut = 1

        def client() -> dict[str, Any]:
            client = self.client()
            time.sleep(1.5)
            client.send(announce(1))
            reply = client.receive()
            client.close()
            return reply

        reply = yield self.in_thread(client)
        self.assertEqual(reply["incomplete"], 1)


class WebSocketOffTests(WebSocketTestCase):
    config = TrackerConfig(websocket=False)

    def setUp(self) -> None:
        self.store = MemoryPeerStore()
        self.resource = TrackerResource(self.store, self.config, reactor)
        site = TrackerSite(self.resource, timeout=10)
        port = reactor.listenTCP(0, site, interface=HOST)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        self.port = int(port.getHost().port)

    @inlineCallbacks
    def test_upgrade_is_an_http_announce(self) -> Any:
        """With WebSocket off, an upgrade request is answered as the HTTP announce it is."""
        self.assertIsNone(self.resource.websocket)

        def client() -> HandshakeRefused:
            try:
                self.client()
            except HandshakeRefused as e:
                return e
            raise AssertionError("the handshake was accepted")

        refused = yield self.in_thread(client)
        self.assertEqual(refused.status, 200)
        self.assertIn(b"failure reason", bdecode(refused.body))


class AnnounceTests(WebSocketTestCase):
    @inlineCallbacks
    def test_binary_ids_echoed(self) -> Any:
        """Info hashes and peer ids of any code points 0-255 (NUL, controls, U+00FF) are taken
        and sent back as they came."""
        torrent = "\x00\x01\x1f\x7f\x80\xff" + "a" * 14

        def client() -> list[dict[str, Any]]:
            client = self.client()
            client.send(announce(1, info_hash=torrent, peer_id="\xff" * 20))
            client.send({"action": "scrape", "info_hash": torrent})
            replies = client.receive_all(2)
            client.close()
            return replies

        reply, scrape = yield self.in_thread(client)
        self.assertEqual(reply["info_hash"], torrent)
        self.assertEqual(
            scrape["files"], {torrent: {"complete": 0, "incomplete": 1, "downloaded": 0}}
        )
        self.assertEqual(scrape["flags"], {"min_request_interval": 120})

    @inlineCallbacks
    def test_left_null_is_a_leecher(self) -> Any:
        """left: null (a magnet link before its metadata) counts as a leecher, not a seeder;
        left 0 as a seeder."""

        def client() -> list[dict[str, Any]]:
            magnet, seeder = self.client(), self.client()
            magnet.send(announce(1, left=None))
            first = magnet.receive()
            seeder.send(announce(2, left=0))
            second = seeder.receive()
            magnet.close()
            seeder.close()
            return [first, second]

        first, second = yield self.in_thread(client)
        self.assertEqual((first["complete"], first["incomplete"]), (0, 1))
        self.assertEqual((second["complete"], second["incomplete"]), (1, 1))

    @inlineCallbacks
    def test_stopped_leaves(self) -> Any:
        """A stopped announce takes the peer out of its swarm."""

        def client() -> dict[str, Any]:
            client = self.client()
            client.send(announce(1))
            client.receive()
            client.send(announce(1, event="stopped"))
            reply = client.receive()
            client.close()
            return reply

        reply = yield self.in_thread(client)
        self.assertEqual((reply["complete"], reply["incomplete"]), (0, 0))
        self.assertEqual(self.counts(), (0, 0))
        self.assertEqual(self.resource.stats.groups.torrents, {})

    @inlineCallbacks
    def test_one_peer_id_per_torrent_per_connection(self) -> Any:
        """A connection announces one peer id per torrent: a second one for the same torrent is
        refused and not counted; another torrent may have another peer id."""

        def client() -> list[dict[str, Any]]:
            client = self.client()
            client.send(announce(1, torrent=1))
            client.send(announce(2, torrent=1))
            client.send(announce(2, torrent=2))
            return client.receive_all(3)

        first, refused, other = yield self.in_thread(client)
        self.assertEqual(first["incomplete"], 1)
        self.assertEqual(
            refused,
            {
                "action": "announce",
                "info_hash": ih(1),
                "failure reason": "only one peer id can be announced per torrent on a connection",
            },
        )
        self.assertEqual(other["incomplete"], 1)
        self.assertEqual(self.counts(1), (0, 1))

    @inlineCallbacks
    def test_peer_id_bound_to_its_connection(self) -> Any:
        """A peer id announced on one connection cannot be announced on another while the
        first is open (nobody takes over a peer by sending its id); once it is closed it can."""

        def clients() -> list[dict[str, Any]]:
            first, second = self.client(), self.client()
            first.send(announce(1))
            first.receive()
            second.send(announce(1, event="stopped"))
            refused = second.receive()
            return [refused, first, second]

        refused, first, second = yield self.in_thread(clients)
        self.assertEqual(
            refused["failure reason"], "this peer id is announced on another connection"
        )
        self.assertEqual(self.counts(), (0, 1))
        first.close()
        yield self.until(lambda: len(self.websocket.connections) == 1)

        def again() -> dict[str, Any]:
            second.send(announce(1))
            reply = second.receive()
            second.close()
            return reply

        reply = yield self.in_thread(again)
        self.assertEqual(reply["incomplete"], 1)

    @inlineCallbacks
    def test_close_removes_every_peer_at_once(self) -> Any:
        """A connection closing takes its peers out of every swarm at once."""

        def clients() -> tuple[WebSocketClient, WebSocketClient]:
            client = self.client()
            for torrent in (1, 2, 3):
                client.send(announce(7, torrent=torrent))
            client.receive_all(3)
            other = self.client()
            other.send(announce(8, torrent=2))
            other.receive()
            return client, other

        client, other = yield self.in_thread(clients)
        self.assertEqual([self.counts(t) for t in (1, 2, 3)], [(0, 1), (0, 2), (0, 1)])
        client.close()
        yield self.until(lambda: len(self.websocket.connections) == 1)
        self.assertEqual([self.counts(t) for t in (1, 2, 3)], [(0, 0), (0, 1), (0, 0)])
        self.assertEqual(list(self.resource.stats.groups.torrents), [info_hash(2)])
        other.close()

    @inlineCallbacks
    def test_idle_connection_closed(self) -> Any:
        """A connection that sends nothing for the idle timeout is closed, with code 1000, and
        its peers leave; one that keeps announcing stays."""
        self.websocket.idle_timeout = 1

        def clients() -> tuple[tuple[int, str], dict[str, Any]]:
            quiet, busy = self.client(), self.client()
            quiet.send(announce(1))
            quiet.receive()
            started = time.monotonic()
            while time.monotonic() - started < 1.6:
                busy.send(announce(2))
                busy.receive()
                time.sleep(0.2)
            closed = quiet.expect_close()
            busy.send(announce(2))
            reply = busy.receive()
            busy.close()
            return closed, reply

        closed, reply = yield self.in_thread(clients)
        self.assertEqual(closed, (1000, "idle for 1 seconds"))
        self.assertEqual(reply["incomplete"], 1)
        self.assertEqual(self.resource.stats.websocket.closes["idle"], 1)


class OfferTests(WebSocketTestCase):
    @inlineCallbacks
    def test_offer_relayed_to_one_other_peer(self) -> Any:
        """Each offer goes to one other WebSocket peer of the torrent, as the
        {action, info_hash, peer_id, offer_id, offer} message, never back to its maker;
        an offer with nobody to go to is not sent."""

        def clients() -> tuple[dict[str, Any], dict[str, Any]]:
            a, b = self.client(), self.client()
            a.send(announce(1, offers=2))
            alone = a.receive()
            b.send(announce(2, offers=3, first_offer=10))
            b.receive()
            relayed = a.receive()
            a.expect_silence()
            b.expect_silence()
            a.close()
            b.close()
            return alone, relayed

        alone, relayed = yield self.in_thread(clients)
        self.assertEqual(alone["incomplete"], 1)
        self.assertEqual(
            relayed,
            {
                "action": "announce",
                "info_hash": ih(1),
                "peer_id": pid(2),
                "offer_id": oid(10),
                "offer": {"type": "offer", "sdp": "v=0 offer 10"},
            },
        )
        self.assertEqual(self.resource.stats.websocket.relayed["offer"], 1)

    @inlineCallbacks
    def test_at_most_ten_offers_to_distinct_peers(self) -> Any:
        """An announce's offers go to distinct peers, at most 10 of them, whatever it sends."""

        def clients() -> list[int]:
            peers = [self.client() for _ in range(12)]
            for n, client in enumerate(peers):
                client.send(announce(n))
                client.receive()
            maker = self.client()
            maker.send(announce(99, offers=10) | {"offers": announce(99, offers=12)["offers"]})
            maker.receive()
            got = []
            for n, client in enumerate(peers):
                client.sock.settimeout(0.5)
                try:
                    message = client.receive()
                except OSError:
                    continue
                self.assertEqual(message["peer_id"], pid(99))
                got.append(n)
                client.expect_silence(0.1)
            for client in [*peers, maker]:
                client.close()
            return got

        got = yield self.in_thread(clients)
        self.assertEqual(len(got), 10)

    @inlineCallbacks
    def test_numwant_limits_offers(self) -> Any:
        """numwant caps the offers relayed: numwant 1 with 3 offers relays one."""

        def clients() -> int:
            peers = [self.client() for _ in range(3)]
            for n, client in enumerate(peers):
                client.send(announce(n))
                client.receive()
            maker = self.client()
            maker.send(announce(99, offers=3, numwant=1))
            maker.receive()
            received = 0
            for client in peers:
                client.sock.settimeout(0.3)
                try:
                    client.receive()
                    received += 1
                except OSError:
                    pass
            for client in [*peers, maker]:
                client.close()
            return received

        received = yield self.in_thread(clients)
        self.assertEqual(received, 1)

    @inlineCallbacks
    def test_seeder_offers_only_to_leechers(self) -> Any:
        """A seeder's offers go to leechers only: seeders have no use for each other."""

        def clients() -> tuple[dict[str, Any], None]:
            seeder, leecher = self.client(), self.client()
            seeder.send(announce(1, left=0))
            seeder.receive()
            leecher.send(announce(2))
            leecher.receive()
            offering = self.client()
            offering.send(announce(3, left=0, offers=5))
            offering.receive()
            relayed = leecher.receive()
            seeder.expect_silence()
            for client in (seeder, leecher, offering):
                client.close()
            return relayed, None

        relayed, _ = yield self.in_thread(clients)
        self.assertEqual(relayed["peer_id"], pid(3))

    @inlineCallbacks
    def test_answer_relayed_to_the_offer_maker(self) -> Any:
        """The peer an offer went to answers it; the maker gets {action, info_hash, peer_id
        (the answerer), offer_id, answer}; the answerer gets no reply."""

        def clients() -> dict[str, Any]:
            a, b = self.client(), self.client()
            a.send(announce(1))
            a.receive()
            b.send(announce(2, offers=1, first_offer=5))
            b.receive()
            offer = a.receive()
            a.send(answer(1, to=2, offer=5))
            relayed = b.receive()
            a.expect_silence()
            a.close()
            b.close()
            self.assertEqual(offer["offer_id"], oid(5))
            return relayed

        relayed = yield self.in_thread(clients)
        self.assertEqual(
            relayed,
            {
                "action": "announce",
                "info_hash": ih(1),
                "peer_id": pid(1),
                "offer_id": oid(5),
                "answer": {"type": "answer", "sdp": "v=0 answer to 5"},
            },
        )
        self.assertEqual(self.resource.stats.websocket.relayed["answer"], 1)

    @inlineCallbacks
    def test_answer_only_while_outstanding(self) -> Any:
        """An answer is relayed only for an offer outstanding to the answering peer: a second
        answer to the same offer, an answer from a peer the offer did not go to, from its
        peer id on another connection, to an offer never made, and to one older than the offer
        timeout are all refused, each with action and info_hash."""
        nobody = "could not find the offer this answer is for; it may have expired"

        def clients() -> list[dict[str, Any]]:
            a, b, c = self.client(), self.client(), self.client()
            a.send(announce(1))
            a.receive()
            b.send(announce(2, offers=1, first_offer=5))
            b.receive()
            a.receive()
            c.send(announce(3))
            c.receive()
            # c is not the peer the offer went to, even using its peer id.
            c.send(answer(3, to=2, offer=5))
            c.send(answer(1, to=2, offer=5))
            # a answers once, then again, then an offer never made.
            a.send(answer(1, to=2, offer=5))
            b.receive()
            a.send(answer(1, to=2, offer=5))
            a.send(answer(1, to=2, offer=6))
            refusals = c.receive_all(2) + a.receive_all(2)
            b.expect_silence()
            for client in (a, b, c):
                client.close()
            return refusals

        refusals = yield self.in_thread(clients)
        for refusal in refusals:
            self.assertEqual(
                refusal, {"action": "announce", "info_hash": ih(1), "failure reason": nobody}
            )

        def expired() -> dict[str, Any]:
            a, b = self.client(), self.client()
            a.send(announce(1))
            a.receive()
            b.send(announce(2, offers=1, first_offer=7))
            b.receive()
            a.receive()
            self.clock.shift += self.websocket.offer_timeout + 1
            a.send(answer(1, to=2, offer=7))
            refused = a.receive()
            b.expect_silence()
            a.close()
            b.close()
            return refused

        refused = yield self.in_thread(expired)
        self.assertEqual(refused["failure reason"], nobody)

    @inlineCallbacks
    def test_answer_changes_nothing(self) -> Any:
        """An answer is signalling only: a seeder that answers stays a seeder, and an answer
        from a connection with no peer of the torrent makes none."""

        def clients() -> list[dict[str, Any]]:
            seeder, leecher = self.client(), self.client()
            seeder.send(announce(1, left=0))
            seeder.receive()
            leecher.send(announce(2, offers=1, first_offer=3))
            leecher.receive()
            seeder.receive()
            seeder.send(answer(1, to=2, offer=3))
            leecher.receive()
            stranger = self.client()
            stranger.send(answer(9, to=2, offer=4))
            stranger.receive()
            stranger.send({"action": "scrape", "info_hash": ih(1)})
            scrape = stranger.receive()
            for client in (seeder, leecher, stranger):
                client.close()
            return [scrape]

        (scrape,) = yield self.in_thread(clients)
        self.assertEqual(scrape["files"][ih(1)], {"complete": 1, "incomplete": 1, "downloaded": 0})


class FailureTests(WebSocketTestCase):
    @inlineCallbacks
    def test_every_failure_has_action_and_info_hash(self) -> Any:
        """Whatever is wrong with a message, the failure sent back carries action and
        info_hash (as the message gave them, or empty), so that a WebTorrent client does not
        drop its socket; the connection stays open."""
        bad_id = "\u0100" + "a" * 19
        cases: list[tuple[bytes, str, Any]] = [
            (b"not json", "announce", ""),
            (b"[1, 2]", "announce", ""),
            (b'{"action": "announce", "info_hash": NaN}', "announce", ""),
            (json.dumps({"action": "hello", "info_hash": ih(1)}).encode(), "announce", ih(1)),
            (json.dumps(announce(1, info_hash="short")).encode(), "announce", "short"),
            (json.dumps(announce(1, info_hash=bad_id)).encode(), "announce", bad_id),
            (json.dumps(announce(1, peer_id=5)).encode(), "announce", ih(1)),
            (json.dumps(announce(1, left=-1)).encode(), "announce", ih(1)),
            (json.dumps(announce(1, uploaded=True)).encode(), "announce", ih(1)),
            (json.dumps(announce(1, offers={})).encode(), "announce", ih(1)),
            (
                json.dumps(
                    announce(1, offers=[{"offer": {"sdp": "x"}, "offer_id": oid(1)}])
                ).encode(),
                "announce",
                ih(1),
            ),
            (json.dumps(answer(1, to=2, offer=1) | {"answer": "x"}).encode(), "announce", ih(1)),
            (json.dumps({"action": "scrape"}).encode(), "scrape", ""),
            (
                json.dumps({"action": "scrape", "info_hash": [ih(1), 5]}).encode(),
                "scrape",
                [ih(1), 5],
            ),
            (
                json.dumps({"action": "scrape", "info_hash": [ih(n) for n in range(70)]}).encode(),
                "scrape",
                [ih(n) for n in range(70)],
            ),
            (b"[" * 16000, "announce", ""),
        ]

        def client() -> list[dict[str, Any]]:
            client = self.client()
            replies = []
            for payload, _, _ in cases:
                client.send_text(payload)
                replies.append(client.receive())
            client.send(announce(1))
            replies.append(client.receive())
            return replies

        replies = yield self.in_thread(client)
        for reply, (payload, action, given) in zip(replies, cases):
            self.assertEqual((reply["action"], reply["info_hash"]), (action, given), payload[:80])
            self.assertTrue(reply["failure reason"], payload[:80])
        self.assertEqual(replies[-1]["incomplete"], 1)
        self.assertEqual(self.counts(), (0, 1))


class FrameTests(WebSocketTestCase):
    def closed_by(self, data: bytes, *then: bytes) -> Deferred[tuple[int, str]]:
        def client() -> tuple[int, str]:
            client = self.client()
            client.send_raw(data)
            for more in then:
                client.send_raw(more)
            closed = client.expect_close()
            client.close()
            return closed

        return self.in_thread(client)

    @inlineCallbacks
    def test_frame_too_big_refused_from_its_header(self) -> Any:
        """A frame longer than 16 KiB is refused with 1009 as soon as its header arrives: the
        client has sent no byte of its payload."""
        code, reason = yield self.closed_by(frame_header(TEXT, 16 * 1024 + 1))
        self.assertEqual((code, reason), (1009, "frames are limited to 16384 bytes"))
        self.assertEqual(self.resource.stats.websocket.closes["too big"], 1)

    @inlineCallbacks
    def test_frame_of_the_limit_taken(self) -> Any:
        """A frame of exactly 16 KiB, sent a few bytes at a time, is read whole."""
        padding = " " * (16 * 1024 - len(json.dumps(announce(1))))
        payload = json.dumps(announce(1)).encode() + padding.encode()
        data = client_frame(TEXT, payload)

        def client() -> dict[str, Any]:
            client = self.client()
            for start in range(0, len(data), 1000):
                client.send_raw(data[start : start + 1000])
            reply = client.receive()
            client.close()
            return reply

        reply = yield self.in_thread(client)
        self.assertEqual(reply["incomplete"], 1)

    @inlineCallbacks
    def test_message_too_big_refused(self) -> Any:
        """Fragments adding up to more than 64 KiB are refused with 1009; fragments within it
        make one message."""
        whole = json.dumps(announce(1)).encode()
        pieces = [whole[:10], whole[10:20], whole[20:]]

        def client() -> dict[str, Any]:
            client = self.client()
            client.send_raw(client_frame(TEXT, pieces[0], final=False))
            client.send_raw(client_frame(PING, b"in between"))
            client.send_raw(client_frame(0, pieces[1], final=False))
            client.send_raw(client_frame(0, pieces[2]))
            pong = client.receive_frame()
            reply = client.receive()
            client.close()
            assert pong == (PONG, b"in between"), pong
            return reply

        reply = yield self.in_thread(client)
        self.assertEqual(reply["incomplete"], 1)
        chunk = b" " * (16 * 1024)
        frames = [client_frame(TEXT, chunk, final=False)]
        frames += [client_frame(0, chunk, final=False) for _ in range(4)]
        code, _ = yield self.closed_by(b"".join(frames))
        self.assertEqual(code, 1009)

    @inlineCallbacks
    def test_unmasked_frame_refused(self) -> Any:
        """A client's frame without a mask is a protocol error (1002)."""
        code, _ = yield self.closed_by(client_frame(TEXT, b"{}", masked=False))
        self.assertEqual(code, 1002)

    @inlineCallbacks
    def test_reserved_bits_refused(self) -> Any:
        """No extension is agreed (compression is declined): reserved bits are a protocol
        error."""
        code, _ = yield self.closed_by(client_frame(TEXT, b"{}", rsv=4))
        self.assertEqual(code, 1002)

    @inlineCallbacks
    def test_bad_fragments_refused(self) -> Any:
        """A continuation of no message, and a new message inside a fragmented one, are
        protocol errors; so is an unknown opcode and a control frame over 125 bytes."""
        for data in (
            client_frame(0, b"x"),
            client_frame(TEXT, b"x", final=False) + client_frame(TEXT, b"y"),
            client_frame(3, b"x"),
            client_frame(PING, b"x" * 126),
        ):
            code, _ = yield self.closed_by(data)
            self.assertEqual(code, 1002, data[:4])

    @inlineCallbacks
    def test_invalid_utf8_refused(self) -> Any:
        """A text message that is not UTF-8 is refused with 1007."""
        code, _ = yield self.closed_by(client_frame(TEXT, b'{"action": "\xff"}'))
        self.assertEqual(code, 1007)

    @inlineCallbacks
    def test_binary_refused(self) -> Any:
        """Messages are JSON text: a binary message is refused with 1003."""
        code, _ = yield self.closed_by(client_frame(BINARY, b"{}"))
        self.assertEqual(code, 1003)

    @inlineCallbacks
    def test_close_echoed(self) -> Any:
        """A client's close frame is answered with its code, and the connection closed; its
        peers leave."""

        def client() -> tuple[int, str]:
            client = self.client()
            client.send(announce(1))
            client.receive()
            client.send_raw(client_frame(CLOSE, (4001).to_bytes(2, "big") + b"bye"))
            closed = client.expect_close()
            client.close()
            return closed

        code, _ = yield self.in_thread(client)
        self.assertEqual(code, 4001)
        yield self.until(lambda: not self.websocket.connections)
        self.assertEqual(self.counts(), (0, 0))

    @inlineCallbacks
    def test_bad_close_code_refused(self) -> Any:
        """A close frame with a code that may not be sent is answered with 1002."""
        code, _ = yield self.closed_by(client_frame(CLOSE, (1005).to_bytes(2, "big")))
        self.assertEqual(code, 1002)


class SameSwarmTests(WebSocketTestCase):
    """WebSocket peers are peers of the same torrents as HTTP's and UDP's: every count
    includes them; only their addresses (they have none) are never handed out."""

    config = TrackerConfig(full_scrape=True)

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        directory = tempfile.mkdtemp(prefix="tracker-ws-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "tracker.sqlite3")
        self.sqlite = SQLitePeerStore(self.path)
        yield self.sqlite.start()
        super().setUp()
        udp = UDPTracker(self.store, self.config, reactor, stats=self.resource.stats)
        listening = reactor.listenUDP(0, udp, interface=HOST)  # type: ignore[attr-defined]
        self.addCleanup(listening.stopListening)
        self.udp_port = int(listening.getHost().port)

    def make_resource(self) -> TrackerResource:
        self.store = self.sqlite  # type: ignore[assignment]
        return TrackerResource(self.store, self.config, self.clock)  # type: ignore[arg-type]

    @inlineCallbacks
    def tearDown(self) -> Any:  # type: ignore[override]
        yield self.sqlite.stop()

    @inlineCallbacks
    def test_counted_over_every_protocol(self) -> Any:
        """A WebSocket seeder and leecher are counted in HTTP and UDP announce and scrape
        replies and in the full scrape, never listed as peers; WebSocket replies count the
        HTTP and UDP peers."""

        def clients() -> dict[str, Any]:
            seeder, leecher = self.client(), self.client()
            seeder.send(announce(1, left=0))
            seeder.receive()
            leecher.send(announce(2, left=None))
            leecher.receive()
            http = get(HOST, self.port, announce_target(3, 6883, left=0))
            http_scrape = get(
                HOST, self.port, b"/scrape?info_hash=" + quote_from_bytes(info_hash(1)).encode()
            )
            full = get(HOST, self.port, b"/scrape")
            udp = Client(HOST, self.udp_port)
            connection = udp.connect()
            udp_announce = udp.exchange(announce_packet(connection, 4, left=5))
            udp_scrape = udp.exchange(scrape_packet(connection, info_hash(1)))
            udp.close()
            leecher.send(announce(2, left=None, event="update"))
            ws = leecher.receive()
            leecher.send({"action": "scrape", "info_hash": [ih(1), ih(2)]})
            ws_scrape = leecher.receive()
            return {
                "http": http.decoded(),
                "http scrape": http_scrape.decoded(),
                "full": full.decoded(),
                "udp": parse_announce_reply(udp_announce),
                "udp scrape": struct.unpack_from("!iii", udp_scrape, 8),
                "ws": ws,
                "ws scrape": ws_scrape,
            }

        got = yield self.in_thread(clients)
        http = got["http"]
        # The HTTP seeder and the two WebSocket peers; none of them listed.
        self.assertEqual((http[b"complete"], http[b"incomplete"], http[b"peers"]), (2, 1, b""))
        files = got["http scrape"][b"files"][info_hash(1)]
        self.assertEqual((files[b"complete"], files[b"incomplete"]), (2, 1))
        full = got["full"][b"files"][info_hash(1)]
        self.assertEqual((full[b"complete"], full[b"incomplete"]), (2, 1))
        interval, leechers, seeders, peers = got["udp"]
        # The UDP leecher is given the HTTP seeder alone: WebSocket peers have no address.
        self.assertEqual((seeders, leechers, len(peers)), (2, 2, 1))
        self.assertEqual(got["udp scrape"], (2, 0, 2))
        self.assertEqual((got["ws"]["complete"], got["ws"]["incomplete"]), (2, 2))
        self.assertEqual(
            got["ws scrape"]["files"],
            {
                ih(1): {"complete": 2, "incomplete": 2, "downloaded": 0},
                ih(2): {"complete": 0, "incomplete": 0, "downloaded": 0},
            },
        )

    @inlineCallbacks
    def test_torrent_of_websocket_peers_only(self) -> Any:
        """A torrent only WebSocket peers know is in the full scrape and HTTP scrape too."""

        def clients() -> tuple[Any, Any]:
            client = self.client()
            client.send(announce(1, torrent=9))
            client.receive()
            scrape = get(
                HOST, self.port, b"/scrape?info_hash=" + quote_from_bytes(info_hash(9)).encode()
            )
            full = get(HOST, self.port, b"/scrape")
            return scrape.decoded(), full.decoded()

        scrape, full = yield self.in_thread(clients)
        expected = {b"complete": 0, b"incomplete": 1, b"downloaded": 0}
        self.assertEqual(scrape[b"files"][info_hash(9)], expected)
        self.assertEqual(full[b"files"][info_hash(9)], expected)

    @inlineCallbacks
    def test_completion_counted_once_and_kept(self) -> Any:
        """A WebSocket peer's completion (completed with left 0) is counted once, by the
        store, and is still there after the peer has gone and the store has been reopened."""

        def clients() -> list[dict[str, Any]]:
            client = self.client()
            client.send(announce(1, left=5))
            client.send(announce(1, left=0, event="completed"))
            client.send(announce(1, left=0, event="completed"))
            client.send(announce(2, torrent=2, left=None, event="completed"))
            replies = client.receive_all(4)
            client.close()
            return replies

        replies = yield self.in_thread(clients)
        self.assertEqual([r["complete"] for r in replies], [0, 1, 1, 0])
        yield self.until(lambda: not self.websocket.connections)
        yield self.sqlite.stop()
        self.sqlite = SQLitePeerStore(self.path)
        yield self.sqlite.start()
        counts = self.sqlite.scrape([info_hash(1), info_hash(2)])
        self.assertEqual(
            counts, {info_hash(1): SwarmCounts(0, 0, 1), info_hash(2): SwarmCounts(0, 0, 0)}
        )

    @inlineCallbacks
    def test_figures(self) -> Any:
        """/stats.json and /metrics count the WebSocket connections, peers (in the swarm
        totals too), messages by kind, relayed offers and answers, and WebSocket announces
        and scrapes beside HTTP's and UDP's."""

        def clients() -> list[WebSocketClient]:
            a, b = self.client(), self.client()
            a.send(announce(1, left=0))
            a.receive()
            b.send(announce(2, offers=2))
            b.receive()
            a.receive()
            a.send(answer(1, to=2, offer=0))
            b.receive()
            b.send({"action": "scrape", "info_hash": ih(1)})
            b.receive()
            b.send_text(b"nonsense")
            b.receive()
            get(HOST, self.port, announce_target(3, 6883))
            return [a, b]

        yield self.in_thread(clients)
        stats = self.resource.stats
        yield stats.count_swarms()
        snapshot = json.loads(
            (yield self.in_thread(lambda: get(HOST, self.port, b"/stats.json"))).body
        )
        self.assertEqual(
            snapshot["websocket"],
            {
                "connections": 2,
                "connections_opened": 2,
                "peers": 2,
                "messages": {"announce": 2, "answer": 1, "scrape": 1, "invalid": 1},
                "relayed": {"offer": 1, "answer": 1},
                "dropped": 0,
                "closed": {"idle": 0, "too big": 0, "protocol error": 0, "invalid data": 0},
            },
        )
        self.assertEqual((snapshot["peers"], snapshot["seeders"], snapshot["leechers"]), (3, 1, 2))
        self.assertEqual(snapshot["requests"]["websocket"]["announce"]["ok"], 2)
        self.assertEqual(snapshot["requests"]["websocket"]["scrape"]["ok"], 1)
        self.assertEqual(snapshot["announces"], 3)
        page = (yield self.in_thread(lambda: get(HOST, self.port, b"/stats"))).body.decode()
        self.assertIn('id="websocket-connections" data-value="2"', page)
        text = (yield self.in_thread(lambda: get(HOST, self.port, b"/metrics"))).body.decode()
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        self.assertEqual(samples[("tracker_websocket_connections", ())], 2)
        self.assertEqual(samples[("tracker_websocket_peers", ())], 2)
        self.assertEqual(samples[("tracker_websocket_messages_total", (("kind", "answer"),))], 1)
        self.assertEqual(samples[("tracker_websocket_relayed_total", (("kind", "offer"),))], 1)
        self.assertEqual(samples[("tracker_websocket_relayed_total", (("kind", "answer"),))], 1)
        self.assertEqual(samples[("tracker_peers", (("kind", "leecher"),))], 2)
        key = (("kind", "announce"), ("protocol", "websocket"), ("result", "ok"))
        self.assertEqual(samples[("tracker_requests_total", key)], 2)


class AccessListTests(WebSocketTestCase):
    """An access list covers WebSocket announces and scrapes as it does HTTP's."""

    def make_resource(self) -> TrackerResource:
        access = AccessList(WHITELIST, "list", frozenset({info_hash(1)}), MemoryAccessStore(), None)
        access.load_stored(frozenset())
        served = AccessControlledStore(self.store, access)
        return TrackerResource(served, self.config, self.clock)  # type: ignore[arg-type]

    @inlineCallbacks
    def test_unlisted_torrent_refused(self) -> Any:
        """A torrent the whitelist does not list is refused, with action and info_hash, and
        gets no peer; offers are not relayed into it; a listed one is served."""
        refusal = "unregistered torrent: this tracker serves only the torrents it lists"

        def clients() -> list[dict[str, Any]]:
            first, second = self.client(), self.client()
            first.send(announce(1, torrent=2))
            second.send(announce(2, torrent=2, offers=1))
            first.send(announce(1, torrent=1, left=0, event="completed"))
            second.send({"action": "scrape", "info_hash": [ih(1), ih(2)]})
            replies = first.receive_all(2) + second.receive_all(2)
            first.expect_silence()
            return replies

        refused, listed, refused_too, scrape = yield self.in_thread(clients)
        self.assertEqual((refused["action"], refused["info_hash"]), ("announce", ih(2)))
        self.assertIn(refusal, refused["failure reason"])
        self.assertIn(refusal, refused_too["failure reason"])
        self.assertEqual((listed["complete"], listed["incomplete"]), (1, 0))
        self.assertEqual((scrape["action"], scrape["info_hash"]), ("scrape", [ih(1), ih(2)]))
        self.assertIn(refusal, scrape["failure reason"])
        self.assertNotIn(info_hash(2), self.resource.stats.groups.torrents)
        self.assertEqual(self.store.scrape([info_hash(1)])[info_hash(1)].downloaded, 1)


class PrivateTests(WebSocketTestCase):
    """Private mode: a WebSocket opened on /<passkey>/announce announces with that passkey,
    which is credited with what its peers report moving, as over HTTP."""

    def make_resource(self) -> TrackerResource:
        self.passkeys = passkey_table(self.clock)
        self.addCleanup(self.passkeys.stop)
        return PrivateTrackerResource(
            self.store,
            self.passkeys,
            self.config,
            self.clock,  # type: ignore[arg-type]
        )

    def private(self, passkey: bytes = KEY) -> WebSocketClient:
        return self.client(path="/" + passkey.decode() + "/announce")

    @inlineCallbacks
    def test_passkey_credited_with_deltas(self) -> Any:
        """The passkey's totals grow by what each peer reports moving since its last report:
        a first or started report is a baseline, smaller totals (a restarted client) count
        from zero, a stopped one is credited, another peer is counted apart."""

        def client() -> list[dict[str, Any]]:
            client = self.private()
            for message in (
                announce(1, uploaded=100, downloaded=10),
                announce(1, uploaded=1000, downloaded=500, event="update"),
                announce(2, torrent=2, uploaded=70, downloaded=0),
                announce(1, uploaded=1500, downloaded=500, event="update"),
                announce(1, uploaded=9999, downloaded=9999, event="started"),
                announce(1, uploaded=200, downloaded=0, event="update"),
                announce(2, torrent=2, uploaded=100, downloaded=5, event="update"),
                announce(1, uploaded=300, downloaded=0, event="stopped"),
            ):
                client.send(message)
            client.send({"action": "scrape", "info_hash": ih(2)})
            return client.receive_all(9)

        replies = yield self.in_thread(client)
        self.assertNotIn("failure reason", str(replies))
        # 900+490, then 500, then 200 (from zero), 30+5, 100.
        self.assertEqual(totals(self.passkeys, KEY), [900 + 500 + 200 + 30 + 100, 490 + 5])
        self.assertEqual(replies[-1]["files"][ih(2)]["incomplete"], 1)

    @inlineCallbacks
    def test_unknown_passkey_and_bare_url_refused(self) -> Any:
        """On an unknown passkey's URL, and on the bare /announce of a private tracker, every
        announce and scrape is refused with the reason, carrying action and info_hash; no
        peer is made."""

        def clients() -> list[dict[str, Any]]:
            unknown, bare = self.private(b"y" * 32), self.client()
            replies = []
            for client in (unknown, bare):
                client.send(announce(1))
                client.send({"action": "scrape", "info_hash": ih(1)})
                replies += client.receive_all(2)
            return replies

        replies = yield self.in_thread(clients)
        reasons = ["unknown passkey"] * 2 + [PRIVATE.decode()] * 2
        for reply, reason, action in zip(replies, reasons, ["announce", "scrape"] * 2):
            self.assertEqual(
                reply, {"action": action, "info_hash": ih(1), "failure reason": reason}
            )
        self.assertEqual(self.counts(), (0, 0))

    @inlineCallbacks
    def test_removed_passkey_refused_from_then_on(self) -> Any:
        """A passkey removed while its WebSocket is open is refused from the next message on."""

        def first() -> WebSocketClient:
            client = self.private()
            client.send(announce(1))
            client.receive()
            return client

        client = yield self.in_thread(first)
        yield self.passkeys.remove(KEY)

        def second() -> dict[str, Any]:
            client.send(announce(1, event="update"))
            return client.receive()

        refused = yield self.in_thread(second)
        self.assertEqual(refused["failure reason"], "unknown passkey")

    @inlineCallbacks
    def test_waits_for_passkeys_to_load(self) -> Any:
        """A message that arrives while the passkeys are loading waits for them."""
        table = passkey_table(self.clock, loaded=False)
        self.websocket._passkeys = table

        def send() -> WebSocketClient:
            client = self.private()
            client.send(announce(1))
            client.expect_silence(0.2)
            return client

        client = yield self.in_thread(send)
        table.load_stored({KEY: Account("", 0, 0, 0)})
        reply = yield self.in_thread(client.receive)
        self.assertEqual(reply["incomplete"], 1)


class EmbeddedTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_plain_site_mounted_elsewhere(self) -> Any:
        """Mounted at /tracker in a plain twisted.web Site, as an application embeds it, the
        tracker's announce URL takes browsers too: ws://HOST/tracker/announce."""
        store = MemoryPeerStore()
        root = Resource()
        tracker = TrackerResource(store, TrackerConfig(), reactor)
        root.putChild(b"tracker", tracker)
        port = reactor.listenTCP(0, Site(root), interface=HOST)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)

        def client() -> dict[str, Any]:
            browser = WebSocketClient(HOST, port.getHost().port, path="/tracker/announce")
            browser.send(announce(1))
            reply = browser.receive()
            browser.close()
            return reply

        reply = yield deferToThread(client)
        self.assertEqual((reply["action"], reply["incomplete"]), ("announce", 1))
        websocket = tracker.websocket
        assert websocket is not None
        for _ in range(500):
            if not websocket.connections:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(websocket.connections, {})
        self.assertEqual(tracker.stats.groups.torrents, {})
