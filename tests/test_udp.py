"""The UDP tracker (BEP 15, BEP 41) on real sockets: every action, every refusal, IPv4 and IPv6."""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.helpers import announce, info_hash, peer_id
from tests.test_network import announce_target, get
from tracker.core.config import TrackerConfig
from tracker.core.errors import KeyMismatch, TrackerError
from tracker.core.interfaces import StoreStopped
from tracker.http.resource import TrackerResource
from tracker.http.site import TrackerSite
from tracker.store.memory import MemoryPeerStore
from tracker.store.sqlite import SQLitePeerStore
from tracker.udp.connection_ids import WINDOW, ConnectionIds
from tracker.udp.port import BatchingPort, listen_udp
from tracker.udp.protocol import PROTOCOL_ID, UDPTracker

CLIENT_TIMEOUT = 2.0
#: How long a test waits before deciding that no reply is coming.
SILENCE = 0.3
NO_REPLY = b""


def announce_packet(
    connection_id: bytes,
    peer: int,
    *,
    port: int | None = None,
    torrent: int = 1,
    left: int = 100,
    event: int = 0,
    numwant: int = -1,
    ip: bytes = b"\x00" * 4,
    options: bytes = b"",
    transaction: bytes = b"TXID",
    key: int = 0,
) -> bytes:
    return (
        connection_id
        + b"\x00\x00\x00\x01"
        + transaction
        + struct.pack(
            "!20s20sqqqi4sIiH",
            info_hash(torrent),
            peer_id(peer),
            0,
            left,
            0,
            event,
            ip,
            key,
            numwant,
            port if port is not None else 10000 + peer,
        )
        + options
    )


def scrape_packet(connection_id: bytes, *hashes: bytes) -> bytes:
    return connection_id + b"\x00\x00\x00\x02" + b"SCRP" + b"".join(hashes)


def connect_packet(transaction: bytes = b"CONN") -> bytes:
    return PROTOCOL_ID + b"\x00\x00\x00\x00" + transaction


class Client:
    """A BEP 15 client on a blocking socket; every method runs in a thread."""

    def __init__(self, host: str, port: int, source: str | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((source or host, 0))
        self.sock.connect((host, port))

    def close(self) -> None:
        self.sock.close()

    def exchange(self, datagram: bytes, wait: float = CLIENT_TIMEOUT) -> bytes:
        """Send one datagram and return the reply, or b"" if none came within C{wait}."""
        self.sock.settimeout(wait)
        self.sock.send(datagram)
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            return NO_REPLY

    def connect(self) -> bytes:
        reply = self.exchange(connect_packet())
        assert reply[:8] == b"\x00\x00\x00\x00CONN" and len(reply) == 16, reply
        return reply[8:]


def parse_announce_reply(reply: bytes, width: int = 6) -> tuple[int, int, int, list[bytes]]:
    """Interval, leechers, seeders, and the peers (each C{width} bytes)."""
    action, _txid, interval, leechers, seeders = struct.unpack_from("!4s4siii", reply)
    assert action == b"\x00\x00\x00\x01", reply
    peers = reply[20:]
    assert len(peers) % width == 0, reply
    return interval, leechers, seeders, [peers[k : k + width] for k in range(0, len(peers), width)]


def error_message(reply: bytes) -> bytes:
    assert reply[:4] == b"\x00\x00\x00\x03", reply
    return reply[8:]


def loopback_peer(port: int) -> bytes:
    return socket.inet_aton("127.0.0.1") + port.to_bytes(2, "big")


class UDPTestCase(TestCase):
    timeout = 30
    #: The daemon's batching port when True; Twisted's own (an embedder's listenUDP) when not.
    batching = True

    def setUp(self) -> None:
        self.store = MemoryPeerStore(random.Random(1))
        self.config = TrackerConfig(interval=1000, min_interval=500)
        self.clock = Clock()
        self.clock.advance(1_000_000)

    def listen(
        self, interface: str = "127.0.0.1", store: Any = None, ids: ConnectionIds | None = None
    ) -> int:
        self.protocol = UDPTracker(
            store or self.store, self.config, self.clock, random.Random(2), connection_ids=ids
        )
        if self.batching:
            port = listen_udp(reactor, 0, self.protocol, interface)
            self.assertIsInstance(port, BatchingPort)
        else:
            port = reactor.listenUDP(0, self.protocol, interface=interface)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    def client(self, port: int, host: str = "127.0.0.1") -> Client:
        client = Client(host, port)
        self.addCleanup(client.close)
        return client

    def exchange(self, client: Client, datagram: bytes, wait: float = CLIENT_TIMEOUT) -> Any:
        return deferToThread(client.exchange, datagram, wait)


class ConnectTests(UDPTestCase):
    @inlineCallbacks
    def test_connect(self) -> Any:
        """A connect is answered with the transaction ID and an 8-byte connection ID."""
        client = self.client(self.listen())
        reply = yield self.exchange(client, connect_packet(b"abcd"))
        self.assertEqual(len(reply), 16)
        self.assertEqual(reply[:8], b"\x00\x00\x00\x00abcd")

    @inlineCallbacks
    def test_connect_without_protocol_id_gets_nothing(self) -> Any:
        client = self.client(self.listen())
        reply = yield self.exchange(client, b"\x00" * 8 + connect_packet()[8:], SILENCE)
        self.assertEqual(reply, NO_REPLY)

    @inlineCallbacks
    def test_connection_id_lifetime(self) -> Any:
        """An ID works for two minutes at least, and stops working after four."""
        client = self.client(self.listen())
        connection = yield deferToThread(client.connect)
        self.clock.advance(WINDOW)
        reply = yield self.exchange(client, announce_packet(connection, 1))
        self.assertEqual(len(parse_announce_reply(reply)), 4)
        self.clock.advance(WINDOW)
        reply = yield self.exchange(client, announce_packet(connection, 1))
        self.assertEqual(error_message(reply), b"connection ID expired or unknown; connect again")
        fresh = yield deferToThread(client.connect)
        reply = yield self.exchange(client, announce_packet(fresh, 1))
        self.assertEqual(reply[:8], b"\x00\x00\x00\x01TXID")

    @inlineCallbacks
    def test_connection_id_is_bound_to_the_address(self) -> Any:
        """An ID obtained from one address is refused from another (127.0.0.2 here)."""
        port = self.listen()
        connection = yield deferToThread(self.client(port).connect)
        other = Client("127.0.0.1", port, source="127.0.0.2")
        self.addCleanup(other.close)
        reply = yield self.exchange(other, announce_packet(connection, 1))
        self.assertEqual(error_message(reply), b"connection ID expired or unknown; connect again")

    @inlineCallbacks
    def test_listeners_sharing_ids_accept_each_others(self) -> Any:
        """An ID from one port works on another of the same tracker: libtorrent keeps one ID
        per tracker IP address, whichever port it came from."""
        ids = ConnectionIds(self.clock)
        first, second = self.listen(ids=ids), self.listen(ids=ids)
        connection = yield deferToThread(self.client(first).connect)
        reply = yield self.exchange(self.client(second), announce_packet(connection, 1))
        self.assertEqual(len(parse_announce_reply(reply)), 4)


class AnnounceTests(UDPTestCase):
    @inlineCallbacks
    def announce(self, client: Client, peer: int, **fields: Any) -> Any:
        connection = yield deferToThread(client.connect)
        reply = yield self.exchange(client, announce_packet(connection, peer, **fields))
        return reply

    @inlineCallbacks
    def test_two_peers_see_each_other(self) -> Any:
        client = self.client(self.listen())
        first = yield self.announce(client, 1)
        second = yield self.announce(client, 2, left=0)
        interval, leechers, seeders, peers = parse_announce_reply(second)
        self.assertEqual(parse_announce_reply(first)[3], [])
        self.assertEqual((leechers, seeders, peers), (1, 1, [loopback_peer(10001)]))
        # The HTTP interval with its +-5 % jitter.
        self.assertTrue(950 <= interval <= 1050, interval)
        self.assertEqual(second[4:8], b"TXID")

    @inlineCallbacks
    def test_numwant_of_the_clients_own_family(self) -> Any:
        """An IPv4 client in a swarm of mostly IPv6 peers gets numwant IPv4 peers: its reply
        can carry no others, so none are drawn for it."""
        v4, v6 = socket.inet_aton("10.0.0.1"), socket.inet_pton(socket.AF_INET6, "2001:db8::1")
        for peer in range(1, 41):
            self.store.index.announce(announce(peer, ip=v4 if peer <= 10 else v6), 1_000_000)
        client = self.client(self.listen())
        for _ in range(5):
            reply = yield self.announce(client, 50, numwant=8)
            _, leechers, _, peers = parse_announce_reply(reply)
            self.assertEqual(leechers, 41)
            self.assertEqual(len(set(peers)), 8)
            self.assertTrue(all(p[:4] == v4 for p in peers), peers)

    @inlineCallbacks
    def test_seeder_gets_only_leechers(self) -> Any:
        client = self.client(self.listen())
        yield self.announce(client, 1, left=0)
        yield self.announce(client, 2, left=5)
        reply = yield self.announce(client, 3, left=0)
        self.assertEqual(parse_announce_reply(reply)[1:], (1, 2, [loopback_peer(10002)]))

    @inlineCallbacks
    def test_numwant_default_and_cap(self) -> Any:
        self.config = TrackerConfig(numwant_default=3, numwant_max=5)
        client = self.client(self.listen())
        for peer in range(1, 11):
            yield self.announce(client, peer)
        default = yield self.announce(client, 20, numwant=-1)
        capped = yield self.announce(client, 21, numwant=1000)
        none = yield self.announce(client, 22, numwant=0)
        self.assertEqual(len(parse_announce_reply(default)[3]), 3)
        self.assertEqual(len(parse_announce_reply(capped)[3]), 5)
        self.assertEqual(parse_announce_reply(none)[3], [])

    @inlineCallbacks
    def test_stopped_leaves_and_completed_counts_once(self) -> Any:
        client = self.client(self.listen())
        yield self.announce(client, 1, event=2)
        yield self.announce(client, 2, left=0, event=1)
        yield self.announce(client, 2, left=0, event=1)
        yield self.announce(client, 1, event=3)
        connection = yield deferToThread(client.connect)
        reply = yield self.exchange(client, scrape_packet(connection, info_hash(1)))
        self.assertEqual(reply[8:], struct.pack("!iii", 1, 1, 0))

    @inlineCallbacks
    def test_claimed_ip_ignored_unless_allowed(self) -> Any:
        client = self.client(self.listen())
        yield self.announce(client, 1, ip=socket.inet_aton("10.1.2.3"))
        reply = yield self.announce(client, 2)
        self.assertEqual(parse_announce_reply(reply)[3], [loopback_peer(10001)])

    @inlineCallbacks
    def test_claimed_ip_honoured_when_allowed(self) -> Any:
        self.config = TrackerConfig(allow_ip_param=True)
        client = self.client(self.listen())
        yield self.announce(client, 1, ip=socket.inet_aton("10.1.2.3"))
        reply = yield self.announce(client, 2)
        expected = socket.inet_aton("10.1.2.3") + (10001).to_bytes(2, "big")
        self.assertEqual(parse_announce_reply(reply)[3], [expected])

    @inlineCallbacks
    def test_ipv6_peers_are_18_bytes(self) -> Any:
        """An IPv6 client gets IPv6 peers only, 18 bytes each (BEP 15's IPv6 form)."""
        port = self.listen("::1")
        client = self.client(port, "::1")
        yield self.announce(client, 1)
        reply = yield self.announce(client, 2)
        expected = socket.inet_pton(socket.AF_INET6, "::1") + (10001).to_bytes(2, "big")
        self.assertEqual(parse_announce_reply(reply, 18)[3], [expected])

    @inlineCallbacks
    def test_dual_stack_socket_keeps_families_apart(self) -> Any:
        """On one socket bound to ::, an IPv4 client is an IPv4 peer and gets 6-byte peers."""
        port = self.listen("::")
        v4 = self.client(port, "127.0.0.1")
        v6 = self.client(port, "::1")
        yield self.announce(v6, 1)
        yield self.announce(v4, 2)
        to_v4 = yield self.announce(v4, 3)
        to_v6 = yield self.announce(v6, 4)
        self.assertEqual(parse_announce_reply(to_v4)[3], [loopback_peer(10002)])
        v6_peer = socket.inet_pton(socket.AF_INET6, "::1") + (10001).to_bytes(2, "big")
        self.assertEqual(parse_announce_reply(to_v6, 18)[3], [v6_peer])

    @inlineCallbacks
    def test_url_data_path(self) -> Any:
        """BEP 41: /announce is served, other paths refused; NOPs and unknown options skipped."""
        client = self.client(self.listen())
        served = yield self.announce(client, 1, options=b"\x01\x02\x05/anno\x02\x04unce\x00junk")
        with_query = yield self.announce(client, 2, options=b"\x07\x01x\x02\x0d/announce?a=b")
        refused = yield self.announce(client, 3, options=b"\x02\x06/other")
        truncated = yield self.announce(client, 4, options=b"\x02\x30/announce")
        self.assertEqual(served[:4], b"\x00\x00\x00\x01")
        self.assertEqual(with_query[:4], b"\x00\x00\x00\x01")
        self.assertEqual(error_message(refused), b"not a tracker endpoint: announce to /announce")
        self.assertEqual(error_message(truncated), b"truncated BEP 41 option")

    @inlineCallbacks
    def test_port_zero_refused(self) -> Any:
        client = self.client(self.listen())
        reply = yield self.announce(client, 1, port=0)
        self.assertEqual(error_message(reply), b"'port' must be between 1 and 65535")

    @inlineCallbacks
    def test_one_swarm_over_http_and_udp(self) -> Any:
        """A peer that announced over HTTP is handed to a UDP client, and the other way."""
        directory = tempfile.mkdtemp(prefix="tracker-udp-")
        self.addCleanup(shutil.rmtree, directory, True)
        store = SQLitePeerStore(os.path.join(directory, "tracker.sqlite3"))
        yield store.start()
        self.addCleanup(store.stop)
        site = TrackerSite(TrackerResource(store, self.config, reactor))
        http = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(http.stopListening)
        http_port = http.getHost().port
        client = self.client(self.listen(store=store))
        yield deferToThread(get, "127.0.0.1", http_port, announce_target(1, 6001))
        reply = yield self.announce(client, 2, port=6002)
        over_http = yield deferToThread(get, "127.0.0.1", http_port, announce_target(3, 6003))
        self.assertEqual(parse_announce_reply(reply)[3], [loopback_peer(6001)])
        peers = over_http.decoded()[b"peers"]
        self.assertEqual(sorted([peers[:6], peers[6:]]), [loopback_peer(6001), loopback_peer(6002)])

    @inlineCallbacks
    def test_another_key_refused_peer_kept(self) -> Any:
        """Over a real socket, a stopped or an update for another port with another key than
        the peer's gets an error reply naming the reason, and the peer stays where it was."""
        client = self.client(self.listen())
        yield self.announce(client, 1, key=0xABCD)
        stopped = yield self.announce(client, 1, key=0x1234, event=3, port=7777)
        moved = yield self.announce(client, 1, key=0, port=7777)
        for reply in (stopped, moved):
            self.assertEqual(error_message(reply), KeyMismatch().reason.encode())
        other = yield self.announce(client, 2)
        self.assertEqual(parse_announce_reply(other)[3], [loopback_peer(10001)])

    @inlineCallbacks
    def test_http_hex_key_is_the_udp_number(self) -> Any:
        """A peer that started over HTTP with key=0000ABCD is the same peer, with the same key,
        when it announces over UDP with key 0xABCD: accepted from another port, where another
        key is refused."""
        site = TrackerSite(TrackerResource(self.store, self.config, reactor))
        http = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(http.stopListening)
        client = self.client(self.listen())
        started = announce_target(1, 10001) + b"&key=0000ABCD&event=started"
        yield deferToThread(get, "127.0.0.1", http.getHost().port, started)
        refused = yield self.announce(client, 1, key=0xABCE, event=3, port=6000)
        self.assertEqual(error_message(refused), KeyMismatch().reason.encode())
        accepted = yield self.announce(client, 1, key=0xABCD, event=3, port=6000)
        self.assertEqual(parse_announce_reply(accepted)[1:3], (0, 0))

    @inlineCallbacks
    def test_new_key_every_announce_from_the_same_address(self) -> Any:
        """aria2 sends a new random key with every UDP announce: from the address the peer is
        listed at, each is accepted, and its stopped removes it."""
        client = self.client(self.listen())
        for event, key in ((2, 0x11111111), (0, 0x22222222), (1, 0x33333333)):
            reply = yield self.announce(client, 1, key=key, event=event, left=0)
            self.assertEqual(reply[:4], b"\x00\x00\x00\x01")
        stopped = yield self.announce(client, 1, key=0x44444444, event=3, left=0)
        self.assertEqual(parse_announce_reply(stopped)[1:3], (0, 0))


class ScrapeTests(UDPTestCase):
    @inlineCallbacks
    def test_scrape_in_order_with_repeats(self) -> Any:
        client = self.client(self.listen())
        connection = yield deferToThread(client.connect)
        yield self.exchange(client, announce_packet(connection, 1, torrent=1, left=0))
        yield self.exchange(client, announce_packet(connection, 2, torrent=2))
        reply = yield self.exchange(
            client,
            scrape_packet(connection, info_hash(2), info_hash(9), info_hash(1), info_hash(2)),
        )
        self.assertEqual(reply[:8], b"\x00\x00\x00\x02SCRP")
        counts = [struct.unpack_from("!iii", reply, 8 + 12 * k) for k in range(4)]
        self.assertEqual(counts, [(0, 0, 1), (0, 0, 0), (1, 0, 0), (0, 0, 1)])
        self.assertEqual(len(reply), 8 + 12 * 4)

    @inlineCallbacks
    def test_scrape_limits(self) -> Any:
        self.config = TrackerConfig(max_scrape_hashes=3)
        client = self.client(self.listen())
        connection = yield deferToThread(client.connect)
        empty = yield self.exchange(client, scrape_packet(connection))
        ragged = yield self.exchange(
            client, scrape_packet(connection, info_hash(1), info_hash(2), b"short")
        )
        many = yield self.exchange(client, scrape_packet(connection, *map(info_hash, range(4))))
        # 16 bytes asked, so 16 answered: the reason is cut to its first 8 bytes.
        self.assertEqual(empty, b"\x00\x00\x00\x03SCRPa scrape")
        self.assertEqual(error_message(ragged), b"a scrape carries one or more 20-byte info hashes")
        self.assertEqual(error_message(many), b"at most 3 info hashes per scrape")


class AbuseTests(UDPTestCase):
    @inlineCallbacks
    def test_short_datagrams_get_nothing(self) -> Any:
        client = self.client(self.listen())
        for size in (0, 1, 8, 15):
            reply = yield self.exchange(client, b"\x00" * size, SILENCE)
            self.assertEqual(reply, NO_REPLY, size)

    @inlineCallbacks
    def test_errors_never_exceed_the_request(self) -> Any:
        """No refusal is larger than what it answers: a spoofed source gains nothing."""
        client = self.client(self.listen())
        connection = yield deferToThread(client.connect)
        requests = [
            b"\x01" * 8 + b"\x00\x00\x00\x01TXID",  # wrong connection ID, 16 bytes
            announce_packet(b"\x02" * 8, 1),  # wrong connection ID
            connection + b"\x00\x00\x00\x09TXID",  # unknown action
            announce_packet(connection, 1)[:40],  # truncated announce
            scrape_packet(connection),  # scrape of nothing
        ]
        for request in requests:
            reply = yield self.exchange(client, request)
            self.assertEqual(reply[:4], b"\x00\x00\x00\x03", request)
            self.assertEqual(reply[4:8], request[12:16])
            self.assertLessEqual(len(reply), len(request), request)
        self.assertEqual(error_message((yield self.exchange(client, requests[2]))), b"unknown ")

    @inlineCallbacks
    def test_garbage_then_still_serving(self) -> Any:
        """Random datagrams of every size up to 9000 bytes: no reply exceeds its datagram, and
        the tracker answers a real client afterwards."""
        port = self.listen()
        noise = self.client(port)
        rng = random.Random(7)

        def storm() -> list[tuple[int, int]]:
            sizes = []
            for _ in range(300):
                size = rng.choice((rng.randrange(0, 120), rng.randrange(0, 9000)))
                payload = bytes(rng.getrandbits(8) for _ in range(size))
                if rng.random() < 0.3 and size >= 16:
                    payload = PROTOCOL_ID + payload[8:]
                reply = noise.exchange(payload, 0.02)
                sizes.append((size, len(reply)))
            return sizes

        sizes = yield deferToThread(storm)
        for sent, received in sizes:
            self.assertLessEqual(received, max(sent, 16))
        client = self.client(port)
        connection = yield deferToThread(client.connect)
        reply = yield self.exchange(client, announce_packet(connection, 1))
        self.assertEqual(reply[:4], b"\x00\x00\x00\x01")

    @inlineCallbacks
    def test_refusals_logged_as_a_summary(self) -> Any:
        """A flood of bad datagrams logs one line a minute, with counts by reason."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        client = self.client(self.listen())
        for _ in range(20):
            yield self.exchange(client, b"short", SILENCE / 10)
        yield self.exchange(client, announce_packet(b"\x01" * 8, 1))
        self.clock.advance(61)
        yield self.exchange(client, announce_packet(b"\x01" * 8, 1))
        summaries = [e for e in events if e.get("log_format", "").startswith("UDP: refused")]
        self.assertEqual([e["total"] for e in summaries], [1, 21])
        self.assertEqual(
            summaries[1]["reasons"],
            "19 shorter than 16 bytes; 2 connection ID expired or unknown; connect again",
        )


class _StoppedStore(MemoryPeerStore):
    def announce(self, request: Any, now: int) -> Any:
        raise StoreStopped()


class _LateStore(MemoryPeerStore):
    """Answers as a store still loading its database does: later."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[tuple[Deferred[Any], Any]] = []

    def announce(self, request: Any, now: int) -> Any:
        answer: Deferred[Any] = Deferred()
        try:
            result = super().announce(request, now)
        except TrackerError:
            result = Failure()
        self.waiting.append((answer, result))
        reactor.callLater(0.05, self.release)  # type: ignore[attr-defined]
        return answer

    def release(self) -> None:
        waiting, self.waiting = self.waiting, []
        for answer, result in waiting:
            answer.callback(result)


class StoreTests(UDPTestCase):
    @inlineCallbacks
    def test_stopping_store(self) -> Any:
        client = self.client(self.listen(store=_StoppedStore()))
        connection = yield deferToThread(client.connect)
        reply = yield self.exchange(client, announce_packet(connection, 1))
        self.assertEqual(error_message(reply), b"the tracker is restarting; try again shortly")

    @inlineCallbacks
    def test_key_refusal_that_comes_later(self) -> Any:
        """A store that refuses a key after it had to wait gets the client an error reply
        with that reason."""
        client = self.client(self.listen(store=_LateStore()))
        connection = yield deferToThread(client.connect)
        yield self.exchange(client, announce_packet(connection, 1, key=7))
        reply = yield self.exchange(client, announce_packet(connection, 1, key=8, port=2))
        self.assertEqual(error_message(reply), KeyMismatch().reason.encode())

    @inlineCallbacks
    def test_answer_that_comes_later(self) -> Any:
        client = self.client(self.listen(store=_LateStore()))
        connection = yield deferToThread(client.connect)
        yield self.exchange(client, announce_packet(connection, 1))
        reply = yield self.exchange(client, announce_packet(connection, 2))
        self.assertEqual(parse_announce_reply(reply)[3], [loopback_peer(10001)])


class PlainPortConnectTests(ConnectTests):
    batching = False


class PlainPortAnnounceTests(AnnounceTests):
    batching = False


class PlainPortScrapeTests(ScrapeTests):
    batching = False


class PlainPortAbuseTests(AbuseTests):
    batching = False


class PlainPortStoreTests(StoreTests):
    batching = False


class ConnectionIdTests(TestCase):
    def test_ids_differ_by_address_and_secret(self) -> None:
        clock = Clock()
        ids = ConnectionIds(clock)
        self.assertEqual(len(ids.issue("1.2.3.4")), 8)
        self.assertNotEqual(ids.issue("1.2.3.4"), ids.issue("1.2.3.5"))
        self.assertNotEqual(ids.issue("1.2.3.4"), ConnectionIds(clock).issue("1.2.3.4"))

    def test_secret_rotates(self) -> None:
        """After two windows an ID is refused, and a new one is not the old one again."""
        clock = Clock()
        ids = ConnectionIds(clock)
        first = ids.issue("h")
        clock.advance(WINDOW)
        self.assertTrue(ids.valid(first, "h"))
        second = ids.issue("h")
        self.assertNotEqual(first, second)
        clock.advance(WINDOW)
        self.assertFalse(ids.valid(first, "h"))
        self.assertTrue(ids.valid(second, "h"))
        clock.advance(10 * WINDOW)
        self.assertFalse(ids.valid(second, "h"))

    def test_remembered_ids_are_bounded(self) -> None:
        """IDs are remembered for at most so many clients a window; past that the memory
        starts again and every ID issued is still accepted, a forged one still refused."""
        ids = ConnectionIds(Clock(), remembered=8)
        issued = {f"10.0.0.{n}": ids.issue(f"10.0.0.{n}") for n in range(20)}
        self.assertLessEqual(len(ids._issued), 8)
        for host, connection_id in issued.items():
            self.assertTrue(ids.valid(connection_id, host))
            self.assertFalse(ids.valid(connection_id, "10.0.1.1"))
        self.assertLessEqual(len(ids._issued), 8)
        self.assertEqual(ids.issue("10.0.0.3"), issued["10.0.0.3"])
