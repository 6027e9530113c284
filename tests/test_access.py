"""Access lists: the file format, reloading, the stored torrents, and refusals over HTTP and UDP."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.helpers import announce, info_hash
from tests.test_network import announce_target, get
from tests.test_resource import LogCapture, ResourceTestCase, scrape_query
from tests.test_udp import Client, announce_packet, error_message, scrape_packet
from tracker.core.config import TrackerConfig
from tracker.core.errors import TrackerError
from tracker.http.resource import TrackerResource
from tracker.http.site import TrackerSite
from tracker.ops.access import (
    AccessControlledStore,
    AccessList,
    AccessListError,
    parse_hash_list,
    read_hash_list,
)
from tracker.store.access import BLACKLIST, WHITELIST, MemoryAccessStore
from tracker.store.memory import MemoryPeerStore
from tracker.udp.protocol import UDPTracker

HEX1 = info_hash(1).hex()
HEX2 = info_hash(2).hex()
UNREGISTERED = b"unregistered torrent: this tracker serves only the torrents it lists"
NOT_ALLOWED = b"this torrent is not allowed on this tracker"


def loaded_list(
    list_name: str, hashes: frozenset[bytes], store: MemoryAccessStore | None = None
) -> AccessList:
    access = AccessList(list_name, "list.txt", hashes, store or MemoryAccessStore(), reactor)
    access.load_stored(frozenset())
    return access


class ListFileTests(SynchronousTestCase):
    def test_hashes_comments_and_blank_lines(self) -> None:
        """A list file holds one hex hash a line in either case; comments, blank lines and
        surrounding spaces are ignored."""
        text = f"# torrents we serve\n\n{HEX1.upper()}\n  {HEX2}  # the second\n\t\n"
        self.assertEqual(parse_hash_list(text), frozenset({info_hash(1), info_hash(2)}))

    def test_empty_file(self) -> None:
        """An empty file is an empty list."""
        self.assertEqual(parse_hash_list(""), frozenset())

    def test_bad_line_named_by_number(self) -> None:
        """The first line that is not a 40-digit hex hash is reported with its line number."""
        for bad in ["xyz", HEX1[:39], HEX1 + "0", "g" * 40, HEX1[:20] + " " + HEX1[21:]]:
            with self.assertRaises(AccessListError) as raised:
                parse_hash_list(f"{HEX1}\n# fine\n{bad}\n{HEX2}\n")
            self.assertEqual(raised.exception.line, 3)
            self.assertIn("line 3: not a 40-digit hex info hash", str(raised.exception))

    def test_read_file(self) -> None:
        """A file is read as bytes; a stray non-UTF-8 byte is a bad line, not a crash."""
        directory = tempfile.mkdtemp(prefix="tracker-list-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "list.txt")
        with open(path, "wb") as f:
            f.write(HEX1.encode() + b"\n")
        self.assertEqual(read_hash_list(path), frozenset({info_hash(1)}))
        with open(path, "wb") as f:
            f.write(HEX1.encode() + b"\n\xff\xfe\n")
        with self.assertRaises(AccessListError) as raised:
            read_hash_list(path)
        self.assertEqual(raised.exception.line, 2)


class AccessListTests(SynchronousTestCase):
    def test_whitelist_and_blacklist(self) -> None:
        """A whitelist serves only what it lists, a blacklist everything but."""
        white = loaded_list(WHITELIST, frozenset({info_hash(1)}))
        black = loaded_list(BLACKLIST, frozenset({info_hash(1)}))
        self.assertEqual([white.allows(info_hash(n)) for n in (1, 2)], [True, False])
        self.assertEqual([black.allows(info_hash(n)) for n in (1, 2)], [False, True])

    def test_stored_torrents_join_the_file(self) -> None:
        """Torrents added through the list are stored and in force at once, beside the file's;
        removing one stored leaves the file's alone."""
        store = MemoryAccessStore()
        access = loaded_list(WHITELIST, frozenset({info_hash(1)}), store)
        self.assertTrue(self.successResultOf(access.add(info_hash(2))))
        self.assertFalse(self.successResultOf(access.add(info_hash(2))))
        self.assertEqual(store.listed[WHITELIST], {info_hash(2)})
        self.assertTrue(access.allows(info_hash(2)))
        self.assertFalse(self.successResultOf(access.remove(info_hash(1))))
        self.assertTrue(access.allows(info_hash(1)))
        self.assertTrue(self.successResultOf(access.remove(info_hash(2))))
        self.assertFalse(access.allows(info_hash(2)))
        self.assertEqual(store.listed[WHITELIST], set())

    def test_lists_are_stored_apart(self) -> None:
        """A torrent stored on the blacklist is not on the whitelist: switching from one to the
        other never serves what was refused."""
        store = MemoryAccessStore()
        black = loaded_list(BLACKLIST, frozenset(), store)
        self.successResultOf(black.add(info_hash(1)))
        self.assertEqual(store.listed, {BLACKLIST: {info_hash(1)}, WHITELIST: set()})


class RefusalTests(SynchronousTestCase):
    def test_refused_announce_and_scrape(self) -> None:
        """The store refuses announces and scrapes of torrents the list does not serve, naming
        the torrent in a scrape, and passes the others on."""
        inner = MemoryPeerStore()
        store = AccessControlledStore(inner, loaded_list(WHITELIST, frozenset({info_hash(1)})))
        self.assertEqual(store.announce(announce(1, 1), 1000).counts.incomplete, 1)
        with self.assertRaises(TrackerError) as raised:
            store.announce(announce(1, 2), 1000)
        self.assertEqual(raised.exception.reason.encode(), UNREGISTERED)
        self.assertEqual(inner.scrape([info_hash(2)])[info_hash(2)].incomplete, 0)
        self.assertEqual(store.scrape([info_hash(1)])[info_hash(1)].incomplete, 1)
        with self.assertRaises(TrackerError) as raised:
            store.scrape([info_hash(1), info_hash(2)])
        self.assertIn(HEX2, raised.exception.reason)

    def test_requests_wait_for_the_stored_torrents(self) -> None:
        """Until the stored torrents are loaded, a torrent not in the file waits, then is
        served if stored and refused if not; a torrent in the file is served at once."""
        access = AccessList(
            WHITELIST, "list.txt", frozenset({info_hash(3)}), MemoryAccessStore(), reactor
        )
        store = AccessControlledStore(MemoryPeerStore(), access)
        stored = store.announce(announce(1, 1), 1000)
        refused = store.announce(announce(1, 2), 1000)
        scraped = store.scrape([info_hash(1)])
        assert isinstance(stored, Deferred) and isinstance(refused, Deferred)
        self.assertNoResult(stored)
        access.load_stored(frozenset({info_hash(1)}))
        self.assertEqual(self.successResultOf(stored).counts.incomplete, 1)
        self.failureResultOf(refused, TrackerError)
        self.assertEqual(self.successResultOf(scraped)[info_hash(1)].incomplete, 1)
        self.assertEqual(store.announce(announce(2, 1), 1000).counts.incomplete, 2)

    def test_blacklist_waits_too(self) -> None:
        """A blacklist still loading lets nothing through: a stored refusal holds from the
        first request after a restart."""
        access = AccessList(BLACKLIST, "list.txt", frozenset(), MemoryAccessStore(), reactor)
        store = AccessControlledStore(MemoryPeerStore(), access)
        early = store.announce(announce(1, 1), 1000)
        assert isinstance(early, Deferred)
        access.load_stored(frozenset({info_hash(1)}))
        self.failureResultOf(early, TrackerError)


class ResourceRefusalTests(ResourceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = AccessControlledStore(
            MemoryPeerStore(), loaded_list(BLACKLIST, frozenset({info_hash(2)}))
        )

    def test_http_failure_reasons(self) -> None:
        """Over HTTP a refused announce or scrape is a 200 with a bencoded failure reason."""
        self.assertEqual(self.announce(1, torrent=2).decoded(), {b"failure reason": NOT_ALLOWED})
        reason = self.assertTrackerFailure(self.get(b"/scrape?" + scrape_query(1, 2)))
        self.assertIn(NOT_ALLOWED, reason)
        self.assertIn(b"interval", self.announce(1, torrent=1).decoded())

    def test_refusal_after_waiting(self) -> None:
        """A request that waited for the list and is then refused gets its failure reason,
        not an internal error."""
        access = AccessList(BLACKLIST, "list.txt", frozenset(), MemoryAccessStore(), reactor)
        self.store = AccessControlledStore(MemoryPeerStore(), access)
        log = LogCapture(self)
        rendered = self.announce(1, torrent=1)
        self.assertEqual(rendered.body, b"")
        access.load_stored(frozenset({info_hash(1)}))
        self.assertEqual(rendered.decoded(), {b"failure reason": NOT_ALLOWED})
        self.assertEqual(log.failures(), [])


class ReloadTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="tracker-reload-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "whitelist.txt")
        self.write(HEX1)
        self.access = AccessList(
            WHITELIST, self.path, read_hash_list(self.path), MemoryAccessStore(), reactor
        )
        self.access.load_stored(frozenset({info_hash(9)}))

    def write(self, text: str) -> None:
        with open(self.path, "w") as f:
            f.write(text + "\n")

    @inlineCallbacks
    def test_reload_replaces_the_file_hashes(self) -> Any:
        """A reload puts the file's new contents in force, keeps the stored torrents, and
        fires with how many the file holds."""
        self.write(f"{HEX2}\n{info_hash(3).hex()}")
        count = yield self.access.reload()
        self.assertEqual(count, 2)
        self.assertEqual(self.access.hashes, {info_hash(n) for n in (2, 3, 9)})

    @inlineCallbacks
    def test_bad_reload_keeps_the_list(self) -> Any:
        """A file with a mistake, or gone, is refused whole: the list in force stays, and the
        error is logged once with the line number."""
        log = LogCapture(self)
        before = self.access.hashes
        self.write(f"{HEX2}\nnot a hash")
        yield self.assertFailure(self.access.reload(), AccessListError)
        self.assertIs(self.access.hashes, before)
        os.remove(self.path)
        yield self.assertFailure(self.access.reload(), OSError)
        self.assertIs(self.access.hashes, before)
        messages = [e.get("reason") for e in log.events if e.get("log_level") is not None]
        self.assertIn("line 2: not a 40-digit hex info hash: 'not a hash'", messages)
        self.assertIn("No such file or directory", messages)

    @inlineCallbacks
    def test_reload_while_serving(self) -> Any:
        """Announces keep being answered while the file is read; the set is swapped whole."""
        self.write("\n".join(info_hash(n).hex() for n in range(1, 20001)))
        store = AccessControlledStore(MemoryPeerStore(), self.access)
        reloading = self.access.reload()
        self.assertEqual(store.announce(announce(1, 1), 1000).counts.incomplete, 1)
        yield reloading
        self.assertEqual(len(self.access.hashes), 20000)
        self.assertIn(info_hash(20000), self.access.hashes)


class NetworkRefusalTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_over_real_sockets(self) -> Any:
        """On real sockets, an unlisted torrent gets a bencoded failure over HTTP and an error
        reply over UDP, for announce and scrape; a listed one is served by both."""
        access = loaded_list(WHITELIST, frozenset({info_hash(1)}))
        store = AccessControlledStore(MemoryPeerStore(random.Random(1)), access)
        config = TrackerConfig()
        site = TrackerSite(TrackerResource(store, config, reactor))
        tcp = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(tcp.stopListening)
        port = tcp.getHost().port
        udp_port = reactor.listenUDP(  # type: ignore[attr-defined]
            0, UDPTracker(store, config, Clock()), interface="127.0.0.1"
        )
        self.addCleanup(udp_port.stopListening)
        refused = yield deferToThread(get, "127.0.0.1", port, announce_target(1, 6881, 2))
        served = yield deferToThread(get, "127.0.0.1", port, announce_target(1, 6881, 1))
        scraped = yield deferToThread(get, "127.0.0.1", port, b"/scrape?" + scrape_query(2))
        self.assertEqual(refused.status, 200)
        self.assertEqual(refused.decoded(), {b"failure reason": UNREGISTERED})
        self.assertIn(b"interval", served.decoded())
        self.assertIn(UNREGISTERED, scraped.decoded()[b"failure reason"])
        client = Client("127.0.0.1", udp_port.getHost().port)
        self.addCleanup(client.close)
        connection = yield deferToThread(client.connect)
        udp_refused = yield deferToThread(
            client.exchange, announce_packet(connection, 2, torrent=2)
        )
        udp_served = yield deferToThread(client.exchange, announce_packet(connection, 2))
        udp_scrape = yield deferToThread(client.exchange, scrape_packet(connection, info_hash(2)))
        # An error reply is cut to the size of the request it answers.
        self.assertTrue(UNREGISTERED.startswith(error_message(udp_refused)))
        self.assertEqual(udp_served[:4], b"\x00\x00\x00\x01")
        self.assertTrue(error_message(udp_scrape))
