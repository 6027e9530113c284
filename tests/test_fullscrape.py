"""The full scrape: /scrape without info_hash, every torrent, off unless asked for."""

from __future__ import annotations

import gzip
import random
from urllib.parse import quote_from_bytes

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.helpers import announce, info_hash
from tests.test_resource import ResourceTestCase
from tracker.core.config import TrackerConfig
from tracker.http.fullscrape import MAX_AGE, STEP, FullScrape, accepts_gzip
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


def _quoted(value: bytes) -> bytes:
    return quote_from_bytes(value).encode()
