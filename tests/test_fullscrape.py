"""The full scrape: /scrape without info_hash, every torrent, off unless asked for."""

from __future__ import annotations

import gzip
import random
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import quote_from_bytes

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.helpers import announce, info_hash
from tests.test_resource import ResourceTestCase
from tracker.core.bencode import bdecode
from tracker.core.config import TrackerConfig
from tracker.core.groups import GroupCountingStore, PeerGroups
from tracker.core.interfaces import IPeerStore, ISharedStore, SwarmCounts
from tracker.http.fullscrape import MAX_AGE, STEP, FullScrape, accepts_gzip, build_counts
from tracker.http.resource import TrackerResource
from tracker.store.memory import MemoryPeerStore
from tracker.store.sqlite import SQLitePeerStore

NOW = 1_000_000


class AcceptEncodingTests(TestCase):
    def test_gzip_accepted(self) -> None:
        """gzip is used when the client lists it, without q=0, in any case and position."""
        for header in (b"gzip", b"deflate, gzip", b"GZIP;q=0.5", b"br, x-gzip", b"gzip ; q=1"):
            self.assertTrue(accepts_gzip(header), header)
        for header in (None, b"", b"deflate", b"gzip;q=0", b"gzip;q=0.0", b"gzip;q=x", b"*"):
            self.assertFalse(accepts_gzip(header), header)


class FullScrapeTests(ResourceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.config = TrackerConfig(full_scrape=True)

    def fill(self, torrents: int) -> None:
        for t in range(torrents):
            self.store.announce(announce(1, t, left=0 if t % 2 else 5), NOW)
        self.store.announce(announce(2, 0, left=0, event="completed"), NOW)

    def _root(self) -> TrackerResource:
        if not hasattr(self, "root_"):
            self.root_ = TrackerResource(self.store, self.config, self.clock, self.rng)
        return self.root_

    def test_off_by_default(self) -> None:
        """Without the switch, a scrape with no info_hash is refused as before."""
        root = TrackerResource(self.store, TrackerConfig(), self.clock)
        reason = self.assertTrackerFailure(self.get(b"/scrape", root=root))
        self.assertIn(b"full scrapes are not served", reason)

    def test_every_torrent(self) -> None:
        """Every torrent is in the full scrape with the counts a scrape of it gives, in the
        byte order bencode wants, over several build steps."""
        self.fill(STEP * 2 + 7)
        rendered = self.get(b"/scrape", root=self._root())
        self.assertEqual(rendered.request.written, [])  # built over several turns
        while not rendered.request.finished:
            self.clock.advance(0)
        files = rendered.decoded()[b"files"]
        self.assertEqual(len(files), STEP * 2 + 7)
        self.assertEqual(list(files), sorted(files))
        one = self.get(b"/scrape?info_hash=" + _quoted(info_hash(0)), root=self._root())
        self.assertEqual(files[info_hash(0)], one.decoded()[b"files"][info_hash(0)])
        self.assertEqual(files[info_hash(0)], {b"complete": 1, b"incomplete": 1, b"downloaded": 1})
        self.assertEqual(self._root().stats.full_scrapes, 1)
        self.assertEqual(self._root().stats.http_scrape.ok, 2)

    def test_gzip(self) -> None:
        """A client that accepts gzip gets the same body gzipped, said in Content-Encoding."""
        self.fill(50)
        plain = self.get(b"/scrape", root=self._root())
        self.clock.advance(0)
        zipped = self.get(b"/scrape", headers={b"accept-encoding": [b"gzip"]}, root=self._root())
        self.assertEqual(zipped.header(b"content-encoding"), b"gzip")
        self.assertEqual(plain.header(b"content-encoding"), None)
        self.assertEqual(zipped.header(b"vary"), b"Accept-Encoding")
        self.assertEqual(gzip.decompress(zipped.body), plain.body)
        self.assertEqual(int(zipped.header(b"content-length") or 0), len(zipped.body))

    def test_cached_then_rebuilt(self) -> None:
        """Full scrapes within MAX_AGE seconds get the same build; one after it sees changes;
        requests during a build wait for that one build."""
        self.fill(3)
        first = self.get(b"/scrape", root=self._root())
        second = self.get(b"/scrape", root=self._root())
        self.clock.advance(0)
        self.assertEqual(first.body, second.body)
        self.store.announce(announce(1, 99), NOW)
        self.clock.advance(MAX_AGE - 1)
        self.assertNotIn(info_hash(99), self.get(b"/scrape", root=self._root()).decoded()[b"files"])
        self.clock.advance(1)
        later = self.get(b"/scrape", root=self._root())
        self.clock.advance(0)
        self.assertIn(info_hash(99), later.decoded()[b"files"])

    def test_store_loading(self) -> None:
        """A store still loading gets a failure reason, not a hang."""
        # Not started: it has no index yet.
        loading = SQLitePeerStore(":memory:", self.clock)
        root = TrackerResource(loading, self.config, self.clock)
        reason = self.assertTrackerFailure(self.get(b"/scrape", root=root))
        self.assertIn(b"try the full scrape again", reason)

    def test_builder_on_its_own(self) -> None:
        """FullScrape builds once for callers waiting together."""
        store = MemoryPeerStore(random.Random(1))
        clock = Clock()
        store.announce(announce(1, 1), NOW)
        full = FullScrape(store, clock)
        first, second = full.bodies(), full.bodies()
        clock.advance(0)
        self.assertIs(self.successResultOf(first), self.successResultOf(second))  # type: ignore[arg-type]


class _Group(NamedTuple):
    complete: int
    incomplete: int


@implementer(IPeerStore, ISharedStore)
class _SharedStore:
    """
    A store shared by many nodes, as the full scrape sees one: every torrent's counts, read
    when asked and given when the test says (L{read}).
    """

    roundtrips = None

    def __init__(self, counts: dict[bytes, SwarmCounts]) -> None:
        self.counts = counts
        self.reads: list[Deferred[dict[bytes, SwarmCounts]]] = []

    def every_count(self) -> Deferred[dict[bytes, SwarmCounts]]:
        read: Deferred[dict[bytes, SwarmCounts]] = Deferred()
        self.reads.append(read)
        return read

    def read(self) -> None:
        self.reads.pop(0).callback(dict(self.counts))

    def scrape(self, info_hashes: Sequence[bytes]) -> dict[bytes, SwarmCounts]:
        return {h: self.counts.get(h, SwarmCounts(0, 0, 0)) for h in info_hashes}


class SharedStoreTests(TestCase):
    """The full scrape of a store shared by many nodes (Redis) counts this node's WebSocket
    peers as the full scrape of a swarm index does."""

    def files(self, full: FullScrape, store: _SharedStore, clock: Clock) -> dict[bytes, Any]:
        bodies = full.bodies()
        store.read()
        while not isinstance(bodies, tuple) and not bodies.called:
            clock.advance(0)
        plain = b"".join(self.successResultOf(bodies).plain)  # type: ignore[arg-type]
        decoded = bdecode(plain)
        assert isinstance(decoded, dict)
        files: dict[bytes, Any] = decoded[b"files"]
        self.assertEqual(list(files), sorted(files))
        return {h: (e[b"complete"], e[b"incomplete"], e[b"downloaded"]) for h, e in files.items()}

    def test_groups_added(self) -> None:
        """A torrent in the store and in a group has both counted (downloaded is the store's);
        torrents in the store alone, or in a group alone, are there with their own counts, over
        several build steps."""
        store = _SharedStore(
            {info_hash(1): SwarmCounts(1, 1, 2), info_hash(2): SwarmCounts(0, 1, 0)}
        )
        groups = PeerGroups()
        groups.add(info_hash(2), _Group(1, 2))
        browsers_only = range(100, 100 + STEP + 3)
        for t in browsers_only:
            groups.add(info_hash(t), _Group(t % 2, 1))
        clock = Clock()
        full = FullScrape(GroupCountingStore(store, groups), clock, groups)
        expected = {info_hash(1): (1, 1, 2), info_hash(2): (1, 3, 0)}
        expected.update({info_hash(t): (t % 2, 1, 0) for t in browsers_only})
        self.assertEqual(self.files(full, store, clock), expected)

    def test_group_gone_before_its_step(self) -> None:
        """A group that leaves while the body is built (its browser closed) before its
        torrent's step leaves that torrent with the store's counts alone, or out if the store
        has none."""
        late, browsers_only = info_hash(STEP + 1), info_hash(STEP + 2)
        counts = {info_hash(t): SwarmCounts(0, 1, 1) for t in range(1, STEP + 2)}
        groups = PeerGroups()
        groups.add(late, _Group(1, 0))
        groups.add(browsers_only, _Group(1, 0))
        plain: list[bytes] = []
        steps = build_counts(counts, plain, [], groups)
        next(steps)
        groups.remove(late)
        groups.remove(browsers_only)
        for _ in steps:
            pass
        decoded = bdecode(b"".join(plain))
        assert isinstance(decoded, dict)
        files = decoded[b"files"]
        self.assertEqual(len(files), STEP + 1)
        self.assertEqual(files[late], {b"complete": 0, b"incomplete": 1, b"downloaded": 1})
        self.assertNotIn(browsers_only, files)


def _quoted(value: bytes) -> bytes:
    return quote_from_bytes(value).encode()


class AccessListTests(ResourceTestCase):
    """The full scrape of a tracker with an access list shows the torrents the list serves."""

    def setUp(self) -> None:
        super().setUp()
        self.config = TrackerConfig(full_scrape=True)

    def full_scrape(self, list_name: str, listed: set[int]) -> set[bytes]:
        from tests.test_access import loaded_list
        from tracker.ops.access import AccessControlledStore

        access = loaded_list(list_name, frozenset(info_hash(t) for t in listed))
        # Swarms of torrents 0 to 3, as the store may hold them after the list changed.
        for t in range(4):
            self.store.announce(announce(1, t), NOW)
        served = AccessControlledStore(self.store, access)
        root = TrackerResource(served, self.config, self.clock, self.rng)
        rendered = self.get(b"/scrape", root=root)
        while not rendered.request.finished:
            self.clock.advance(0)
        return set(rendered.decoded()[b"files"])

    def test_whitelist(self) -> None:
        """With a whitelist, the listed torrents, each with its counts, and no other."""
        from tracker.store.access import WHITELIST

        self.assertEqual(self.full_scrape(WHITELIST, {1, 2}), {info_hash(1), info_hash(2)})

    def test_blacklist(self) -> None:
        """With a blacklist, every torrent but the listed ones."""
        from tracker.store.access import BLACKLIST

        self.assertEqual(
            self.full_scrape(BLACKLIST, {1}), {info_hash(0), info_hash(2), info_hash(3)}
        )

    def test_shared_store_counts(self) -> None:
        """From a shared store's counts, the same rule."""
        plain: list[bytes] = []
        counts = {info_hash(t): SwarmCounts(1, t, 0) for t in range(4)}
        for _ in build_counts(counts, plain, [], None, lambda h: h != info_hash(2)):
            pass
        files = bdecode(b"".join(plain))[b"files"]  # type: ignore[index]
        self.assertEqual(set(files), {info_hash(0), info_hash(1), info_hash(3)})
