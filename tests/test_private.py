"""Private mode: announces and scrapes under a passkey, over HTTP and UDP (BEP 41)."""

from __future__ import annotations

import random
import struct
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from tests.helpers import info_hash, totals
from tests.test_network import get
from tests.test_resource import LogCapture, ResourceTestCase, announce_query, scrape_query
from tests.test_udp import Client, announce_packet, error_message, scrape_packet
from tracker.core.config import TrackerConfig
from tracker.http.private import PrivateTrackerResource
from tracker.http.site import TrackerSite
from tracker.ops.access import AccessControlledStore, AccessList
from tracker.ops.passkeys import Passkeys
from tracker.store.access import BLACKLIST, Account, MemoryAccessStore
from tracker.store.memory import MemoryPeerStore
from tracker.udp.private import PrivateUDPTracker

KEY = b"0123456789abcdef0123456789abcdef"
PRIVATE = b"this tracker is private: announce to /<your passkey>/announce"


def passkey_table(clock: Any, loaded: bool = True) -> Passkeys:
    store = MemoryAccessStore()
    store.passkeys[KEY] = Account("alice", 1, 0, 0)
    passkeys = Passkeys(store, clock)
    if loaded:
        passkeys.load_stored(dict(store.passkeys))
    return passkeys


class PrivateResourceTests(ResourceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.passkeys = passkey_table(self.clock)

    def root(self) -> Any:
        return PrivateTrackerResource(self.store, self.passkeys, self.config, self.clock, self.rng)

    def private_announce(self, passkey: bytes, peer: int, **kwargs: Any) -> Any:
        return self.get(b"/" + passkey + b"/announce?" + announce_query(peer, **kwargs))

    def test_announce_and_scrape_with_passkey(self) -> None:
        """/<passkey>/announce and /<passkey>/scrape serve the same swarms as a public tracker."""
        self.private_announce(KEY, 1, port=6881)
        second = self.private_announce(KEY, 2, port=6882).decoded()
        self.assertEqual(second[b"peers"], b"\x0a\x00\x00\x01" + (6881).to_bytes(2, "big"))
        files = self.get(b"/" + KEY + b"/scrape?" + scrape_query(1)).decoded()[b"files"]
        self.assertEqual(files[info_hash(1)][b"incomplete"], 2)

    def test_refusals(self) -> None:
        """An unknown passkey, the bare endpoints and other paths get bencoded failures that
        say what to do."""
        unknown = self.private_announce(b"x" * 32, 1)
        self.assertEqual(self.assertTrackerFailure(unknown), b"unknown passkey")
        scrape = self.get(b"/" + b"x" * 32 + b"/scrape?" + scrape_query(1))
        self.assertEqual(self.assertTrackerFailure(scrape), b"unknown passkey")
        bare = self.get(b"/announce?" + announce_query(1))
        self.assertEqual(self.assertTrackerFailure(bare), PRIVATE)
        self.assertEqual(
            self.assertTrackerFailure(self.get(b"/scrape?" + scrape_query(1))), PRIVATE
        )
        for path in [b"/" + KEY, b"/" + KEY + b"/other", b"/" + KEY + b"/"]:
            self.assertIn(PRIVATE, self.assertTrackerFailure(self.get(path), 404))
        self.assertEqual(self.store.scrape([info_hash(1)])[info_hash(1)].incomplete, 0)

    def test_passkey_never_logged(self) -> None:
        """A refused request is logged with the path to its endpoint, C{<passkey>} in place of
        the passkey, known or not, and nothing after: never a passkey (as good as a password),
        even one a client set up for another tracker's scheme puts in the query or past the
        endpoint."""
        captured = LogCapture(self)
        self.assertTrackerFailure(self.private_announce(KEY, 1, port=0))
        self.assertTrackerFailure(self.get(b"/" + KEY + b"/scrape?info_hash=short"))
        self.assertTrackerFailure(self.private_announce(b"y" * 32, 1))
        self.assertTrackerFailure(self.get(b"/announce?passkey=" + KEY))
        self.assertTrackerFailure(self.get(b"/announce/" + KEY + b"?" + announce_query(1)))
        # Mounted below another resource, as an embedding application does.
        host = Resource()
        host.putChild(b"tracker", self.root())
        mounted = self.get(b"/tracker/" + KEY + b"/announce?port=0", root=host)
        self.assertTrackerFailure(mounted)
        logged = [formatEvent(event) for event in captured.events]
        for text in logged:
            self.assertNotIn(KEY.decode(), text)
            self.assertNotIn("y" * 32, text)
        self.assertEqual(
            [text.partition(":")[0] for text in logged],
            [
                "refused b'/<passkey>/announce'",
                "refused b'/<passkey>/scrape'",
                "refused b'/<passkey>/announce'",
                "refused b'/announce'",
                "refused b'/announce'",
                "refused b'/tracker/<passkey>/announce'",
            ],
        )
        self.assertIn("'port' must be between 1 and 65535", logged[0])

    def test_transfers_credited(self) -> None:
        """Announces credit their passkey with what they report moving, as deltas."""
        self.private_announce(KEY, 1, uploaded=1000, downloaded=10)
        self.private_announce(KEY, 1, uploaded=1500, downloaded=70)
        self.assertEqual(totals(self.passkeys, KEY), [500, 60])

    def test_refused_torrent_credits_nothing(self) -> None:
        """An announce the access list refuses is not credited."""
        access = AccessList(BLACKLIST, "list", frozenset({info_hash(1)}), MemoryAccessStore(), None)
        access.load_stored(frozenset())
        self.store = AccessControlledStore(self.store, access)
        self.private_announce(KEY, 1, uploaded=1000)
        refused = self.private_announce(KEY, 1, uploaded=1500)
        self.assertTrackerFailure(refused)
        self.assertEqual(totals(self.passkeys, KEY), [0, 0])

    def test_waits_for_passkeys_to_load(self) -> None:
        """Announces that arrive while the passkeys load wait, then are answered or refused."""
        self.passkeys = passkey_table(self.clock, loaded=False)
        log = LogCapture(self)
        known = self.private_announce(KEY, 1)
        unknown = self.private_announce(b"y" * 32, 2)
        self.assertEqual(known.body, b"")
        self.passkeys.load_stored({KEY: Account("", 0, 0, 0)})
        self.assertIn(b"interval", known.decoded())
        self.assertEqual(unknown.decoded(), {b"failure reason": b"unknown passkey"})
        self.assertEqual(log.failures(), [])

    def test_mounted_elsewhere(self) -> None:
        """Mounted below a path of the host's, the passkey is still the segment before."""
        from twisted.web.resource import Resource

        host = Resource()
        host.putChild(b"tracker", self.root())
        rendered = self.get(b"/tracker/" + KEY + b"/announce?" + announce_query(1), root=host)
        self.assertIn(b"interval", rendered.decoded())


class PrivateNetworkTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryPeerStore(random.Random(1))
        self.passkeys = passkey_table(self.clock)
        self.config = TrackerConfig()

    @inlineCallbacks
    def test_http_on_a_real_socket(self) -> Any:
        """Over a real socket: the passkey's announce is served, an unknown one refused."""
        site = TrackerSite(PrivateTrackerResource(self.store, self.passkeys, self.config, reactor))
        tcp = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(tcp.stopListening)
        port = tcp.getHost().port
        query = announce_query(1, uploaded=5)
        served = yield deferToThread(get, "127.0.0.1", port, b"/" + KEY + b"/announce?" + query)
        refused = yield deferToThread(get, "127.0.0.1", port, b"/" + b"z" * 20 + b"/announce")
        bare = yield deferToThread(get, "127.0.0.1", port, b"/announce?" + query)
        self.assertIn(b"interval", served.decoded())
        self.assertEqual(refused.decoded(), {b"failure reason": b"unknown passkey"})
        self.assertEqual(bare.decoded(), {b"failure reason": PRIVATE})

    @inlineCallbacks
    def test_udp_url_data(self) -> Any:
        """Over UDP the passkey is the BEP 41 path /<passkey>/announce; no path, the bare
        /announce or an unknown passkey get an error reply; scrapes are refused; deltas are
        credited as over HTTP."""
        udp = PrivateUDPTracker(self.store, self.passkeys, self.config, self.clock)
        listening = reactor.listenUDP(0, udp, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(listening.stopListening)
        client = Client("127.0.0.1", listening.getHost().port)
        self.addCleanup(client.close)
        connection = yield deferToThread(client.connect)

        def url(path: bytes) -> bytes:
            return b"".join(
                b"\x02" + bytes([len(path[k : k + 255])]) + path[k : k + 255]
                for k in range(0, len(path), 255)
            )

        def send(peer: int, options: bytes, uploaded: int = 0) -> Any:
            packet = announce_packet(connection, peer, options=options)
            # BEP 15: uploaded is the 8 bytes at offset 72.
            packet = packet[:72] + struct.pack("!q", uploaded) + packet[80:]
            return deferToThread(client.exchange, packet)

        yield send(1, url(b"/" + KEY + b"/announce"), uploaded=100)
        served = yield send(1, url(b"/" + KEY + b"/announce?x=1"), uploaded=350)
        split = yield send(2, url(b"/" + KEY[:10]) + url(KEY[10:] + b"/announce"))
        unknown = yield send(3, url(b"/" + b"u" * 32 + b"/announce"))
        bare = yield send(4, url(b"/announce"))
        nothing = yield send(5, b"")
        scrape = yield deferToThread(
            client.exchange, scrape_packet(connection, info_hash(1), info_hash(2))
        )
        self.assertEqual(served[:4], b"\x00\x00\x00\x01")
        self.assertEqual(split[:4], b"\x00\x00\x00\x01")
        self.assertEqual(error_message(unknown), b"unknown passkey")
        self.assertTrue(error_message(bare).startswith(b"this tracker is private"))
        self.assertTrue(error_message(nothing).startswith(b"this tracker is private"))
        self.assertTrue(error_message(scrape).startswith(b"this tracker is private"))
        self.assertEqual(self.store.scrape([info_hash(1)])[info_hash(1)].incomplete, 2)
        self.assertEqual(totals(self.passkeys, KEY), [250, 0])
