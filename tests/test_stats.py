"""The tracker's figures: request counters, swarm counts, history, /stats, /stats.json, /metrics."""

from __future__ import annotations

import json
import random
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.helpers import announce, info_hash
from tests.test_resource import ResourceTestCase, announce_query, scrape_query
from tests.test_udp import announce_packet, connect_packet, scrape_packet
from tracker.core.config import TrackerConfig
from tracker.core.interfaces import IPeerStore, ISharedStore, SwarmCounts, SwarmTotals
from tracker.core.meters import MAX_REASONS, OTHER_REASONS, CommitMeter, Histogram, Refusals
from tracker.core.swarms import SwarmIndex
from tracker.daemon.service import TrackerService
from tracker.http.resource import TrackerResource
from tracker.ops.census import STEP, Census, walk
from tracker.ops.metrics import registry
from tracker.ops.stats import HISTORY, SAMPLE_EVERY, TrackerStats
from tracker.ops.statspage import render_chart, render_page
from tracker.store.memory import MemoryPeerStore
from tracker.udp.protocol import UDPTracker

START = 1_000_000


class _Datagrams:
    """A UDP transport that keeps what is sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes, addr: Any) -> None:
        self.sent.append(data)


def fill(store: MemoryPeerStore, torrents: int, peers_of: Any) -> None:
    """Announce peers_of(t) leechers and every third one a seeder into each torrent t."""
    for t in range(torrents):
        for p in range(peers_of(t)):
            store.announce(
                announce(1000 * t + p, t, port=10000 + p, left=0 if p % 3 == 0 else 10), START
            )


def metrics(stats: TrackerStats) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the tracker's registry, by name and labels."""
    from prometheus_client import generate_latest

    text = generate_latest(registry(stats)).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class HistogramTests(TestCase):
    def test_buckets_are_cumulative_with_bounds_inclusive(self) -> None:
        """A value equal to a bound is counted in that bound's bucket; cumulative counts end
        with infinity holding every observation; the sum adds up every value."""
        histogram = Histogram((1.0, 2.0))
        for value in (0.5, 1.0, 1.5, 3.0):
            histogram.observe(value)
        self.assertEqual(histogram.counts, [2, 1, 1])
        self.assertEqual(histogram.cumulative(), [(1.0, 2), (2.0, 3), (float("inf"), 4)])
        self.assertEqual((histogram.count, histogram.total), (4, 6.0))


class RefusalsTests(TestCase):
    def test_client_text_and_numbers_taken_out(self) -> None:
        """Reasons are filed without the client's own words and numbers, so a client cannot
        make one label per request; the tracker's own parameter names stay."""
        refusals = Refusals()
        refusals.add("http", "parameter 'x1' given more than once")
        refusals.add("http", "parameter 'x2' given more than once")
        refusals.add("udp", "an announce is 98 bytes, not 40")
        refusals.add("udp", "an announce is 98 bytes, not 41")
        refusals.add("http", "'info_hash' must be 20 bytes, not 3")
        self.assertEqual(
            refusals.counts,
            {
                ("http", "parameter '...' given more than once"): 2,
                ("udp", "an announce is N bytes, not N"): 2,
                ("http", "'info_hash' must be N bytes, not N"): 1,
            },
        )

    def test_reasons_capped(self) -> None:
        """Past MAX_REASONS distinct reasons, the rest are added up as 'other reasons'."""
        refusals = Refusals()
        for n in range(MAX_REASONS + 10):
            refusals.add("udp", f"reason {chr(65 + n % 26)}{chr(65 + n // 26)}")
        self.assertEqual(len(refusals.counts), MAX_REASONS + 1)
        self.assertEqual(refusals.counts[("udp", OTHER_REASONS)], 10)
        self.assertEqual(sum(refusals.counts.values()), MAX_REASONS + 10)


class CensusTests(TestCase):
    def test_totals_and_largest(self) -> None:
        """The census adds up every swarm and lists the largest by peers, most first, leaving
        out torrents without peers."""
        store = MemoryPeerStore(random.Random(1))
        fill(store, 30, lambda t: t % 7)
        store.announce(announce(99_999, 6, port=9999, left=0, event="completed"), START)
        into: list[Census] = []
        for _ in walk(store.index, 5, into):
            pass
        census = into[0]
        swarms = [s.counts() for s in store.index.swarms.values()]
        self.assertEqual(census.torrents, len(store.index.swarms))
        self.assertEqual(census.seeders, sum(c.complete for c in swarms))
        self.assertEqual(census.leechers, sum(c.incomplete for c in swarms))
        self.assertEqual(census.peers, store.index.peer_count())
        self.assertEqual(census.downloaded, 1)
        self.assertEqual([t.peers for t in census.top], [7, 6, 6, 6, 5])
        self.assertEqual(census.top[0].info_hash, info_hash(6))
        self.assertEqual(census.top[0].downloaded, 1)

    def test_walks_in_steps_while_swarms_change(self) -> None:
        """A big index is counted over several steps; swarms that go away between steps are
        skipped without error."""
        index = SwarmIndex(random.Random(1))
        for t in range(3 * STEP):
            index.announce(announce(1, t), START)
        into: list[Census] = []
        steps = walk(index, 3, into)
        next(steps)
        for t in range(STEP, 3 * STEP):
            del index.swarms[info_hash(t)]
        taken = 1 + sum(1 for _ in steps)
        self.assertGreaterEqual(taken, 2)
        self.assertLessEqual(into[0].torrents, 2 * STEP)
        self.assertGreaterEqual(into[0].torrents, STEP)


class TrackerStatsTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryPeerStore(random.Random(1))
        self.stats = TrackerStats(self.store, self.clock)

    def test_history_rates(self) -> None:
        """Each sample holds the requests of its period as rates per second; the history keeps
        an hour."""
        self.stats.http_announce.ok += 30
        self.stats.udp_scrape.ok += 5
        self.clock.advance(SAMPLE_EVERY)
        self.stats.sample()
        self.stats.udp_announce.refused += 10
        self.clock.advance(SAMPLE_EVERY)
        self.stats.sample()
        samples = self.stats.snapshot()["history"]["samples"]
        self.assertEqual(
            [(s["announces_per_second"], s["scrapes_per_second"]) for s in samples],
            [(3.0, 0.5), (1.0, 0.0)],
        )
        for _ in range(HISTORY + 5):
            self.stats.sample()
        self.assertEqual(len(self.stats.history), HISTORY)

    def test_count_swarms_in_slices(self) -> None:
        """Counting the swarms runs a slice per turn of the reactor and updates the census;
        a second call meanwhile waits for the same count."""
        fill(self.store, 3 * STEP, lambda t: 1)
        first = self.stats.count_swarms()
        second = self.stats.count_swarms()
        self.assertNoResult(first)
        turns = 0
        while not first.called:
            self.clock.advance(0)
            turns += 1
        census = self.successResultOf(first)
        self.assertIs(self.successResultOf(second), census)
        self.assertEqual(census.torrents, 3 * STEP)
        self.assertEqual(self.stats.census, census)
        self.assertEqual(census.taken_at, self.clock.seconds())

    def test_shared_store_with_this_node_browsers(self) -> None:
        """On a store shared by many nodes, the figures are the store's last totals with this
        node's WebSocket peers added to the seeders and leechers and counted as WebSocket
        peers; before the store has any totals, the browsers alone; totals gone from the
        store leave the last ones in place."""
        totals: list[SwarmTotals | None] = [None]
        shared = _SharedTotals(totals)
        stats = TrackerStats(shared, self.clock)  # type: ignore[arg-type]
        stats.groups.add(info_hash(1), SwarmCounts(1, 2, 0))
        stats.groups.add(info_hash(2), SwarmCounts(0, 1, 0))
        census = self.successResultOf(stats.count_swarms())
        self.assertEqual((census.torrents, census.seeders, census.leechers), (0, 1, 3))
        self.assertEqual(census.websocket_peers, 4)
        totals[0] = SwarmTotals(5, 10, 20, 7, ((info_hash(3), 4, 4, 1),), 1234.0, 0.5)
        census = self.successResultOf(stats.count_swarms())
        self.assertEqual(
            (census.torrents, census.seeders, census.leechers, census.downloaded), (5, 11, 23, 7)
        )
        self.assertEqual((census.websocket_peers, census.peers), (4, 34))
        self.assertEqual(census.top[0].info_hash, info_hash(3))
        stats.groups.remove(info_hash(1))
        totals[0] = None
        census = self.successResultOf(stats.count_swarms())
        self.assertEqual((census.torrents, census.seeders, census.leechers), (5, 10, 21))
        self.assertEqual(stats.snapshot()["websocket"]["peers"], 1)

    def test_tick_survives_failures(self) -> None:
        """A failed count is logged, and the tick's Deferred still succeeds, so that the timer
        running it goes on."""
        broken = TrackerStats(self.store, self.clock)
        broken.count_swarms = lambda: fail(RuntimeError("boom"))  # type: ignore[method-assign]
        self.successResultOf(broken.tick())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_service_samples_every_period(self) -> None:
        """The tracker service samples its stats at start and every SAMPLE_EVERY seconds, and
        the swarm figures follow the store."""
        service = TrackerService(self.store, TrackerConfig(), self.clock)
        service.startService()
        self.addCleanup(service.stopService)
        # The first sample and count, at start, end in the next turn of the reactor.
        self.clock.advance(0)
        fill(self.store, 4, lambda t: 3)
        service.stats.http_announce.ok += 12
        self.clock.advance(SAMPLE_EVERY)
        self.clock.advance(0)
        snapshot = service.stats.snapshot()
        self.assertEqual(len(snapshot["history"]["samples"]), 2)
        self.assertEqual((snapshot["torrents"], snapshot["peers"]), (4, 12))
        self.assertEqual(snapshot["announces"], 12)

    def test_snapshot_is_json(self) -> None:
        """The snapshot survives a JSON round trip unchanged (plain values only)."""
        fill(self.store, 3, lambda t: 2)
        self.stats.refusals.add("udp", "unknown action")
        self.stats.sample()
        self.stats.count_swarms()
        self.clock.advance(0)
        snapshot = self.stats.snapshot()
        self.assertEqual(json.loads(json.dumps(snapshot)), snapshot)
        self.assertEqual(snapshot["top_torrents"][0]["info_hash"], info_hash(0).hex())


class HTTPCountingTests(ResourceTestCase):
    def root(self) -> TrackerResource:
        if not hasattr(self, "_root"):
            self._root = TrackerResource(self.store, self.config, self.clock, self.rng)
        return self._root

    def test_results_counted(self) -> None:
        """Announces and scrapes are counted by result: ok, refused (bad request, wrong
        method) and error (the store failed); refusals are filed by reason."""
        for peer in range(1, 17):
            self.announce(peer)
        self.get(b"/announce?info_hash=short")
        self.get(b"/announce?" + announce_query(20), method=b"POST")
        self.get(b"/scrape?" + scrape_query(1))
        stats = self.root().stats
        self.assertEqual(
            (stats.http_announce.ok, stats.http_announce.refused, stats.http_announce.errors),
            (16, 2, 0),
        )
        self.assertEqual(stats.http_scrape.ok, 1)
        # One answer in 16 is timed.
        self.assertEqual(stats.http_announce.latency.count, 1)
        self.assertEqual(stats.refusals.counts, {("http", "'info_hash' must be N bytes, not N"): 1})
        # What the resource answers from: the store (through GroupCountingStore, which hands
        # announces straight to it while no browser is connected).
        self.root().store.announce = lambda *a: fail(RuntimeError("disk"))  # type: ignore[method-assign]
        self.announce(21)
        self.assertEqual(stats.http_announce.errors, 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_waiting_answers_counted_when_sent(self) -> None:
        """An answer that waits for the store is counted ok once it is written."""
        waiting: Deferred[Any] = Deferred()
        real = self.store.announce
        self.store.announce = lambda request, now: waiting.addCallback(  # type: ignore[method-assign]
            lambda _: real(request, now)
        )
        rendered = self.announce(1)
        stats = self.root().stats
        self.assertEqual(stats.http_announce.ok, 0)
        waiting.callback(None)
        self.assertEqual(stats.http_announce.ok, 1)
        self.assertIn(b"interval", rendered.request.written[0])


@implementer(IPeerStore, ISharedStore)
class _SharedTotals:
    """A store shared by many nodes, reduced to its totals: C{totals[0]}, as last counted."""

    roundtrips = None

    def __init__(self, totals: list[SwarmTotals | None]) -> None:
        self._totals = totals

    def swarm_totals(self) -> Deferred[SwarmTotals | None]:
        return succeed(self._totals[0])


class UDPCountingTests(TestCase):
    def test_udp_counts_into_shared_stats(self) -> None:
        """UDP announces, scrapes and refusals are counted into the stats it is given, beside
        HTTP's."""
        clock = Clock()
        clock.advance(START)
        store = MemoryPeerStore(random.Random(1))
        stats = TrackerStats(store, clock)
        udp = UDPTracker(store, TrackerConfig(), clock, stats=stats)
        transport = _Datagrams()
        udp.makeConnection(transport)  # type: ignore[arg-type]
        addr = ("10.0.0.1", 6881)
        udp.datagramReceived(connect_packet(), addr)
        connection = transport.sent[-1][8:16]
        for peer in range(1, 17):
            udp.datagramReceived(announce_packet(connection, peer), addr)
        udp.datagramReceived(announce_packet(b"\x00" * 8, 20), addr)
        udp.datagramReceived(scrape_packet(connection, info_hash(1)), addr)
        udp.datagramReceived(b"short", addr)
        self.assertEqual((stats.udp_announce.ok, stats.udp_announce.refused), (16, 1))
        self.assertEqual(stats.udp_scrape.ok, 1)
        self.assertEqual(stats.udp_announce.latency.count, 1)
        self.assertEqual(
            stats.refusals.counts,
            {
                ("udp", "connection ID expired or unknown; connect again"): 1,
                ("udp", "shorter than N bytes"): 1,
            },
        )
        self.assertEqual(stats.announces(), 17)


class PagesTests(ResourceTestCase):
    def root(self) -> TrackerResource:
        if not hasattr(self, "_root"):
            self._root = TrackerResource(self.store, self.config, self.clock, self.rng)
        return self._root

    def counted(self) -> TrackerStats:
        """The resource's stats after some announces, a sample and a count of the swarms."""
        for peer in range(1, 6):
            self.announce(peer, left=0 if peer == 1 else 5)
        self.get(b"/scrape?" + scrape_query(1))
        stats = self.root().stats
        self.clock.advance(SAMPLE_EVERY)
        stats.tick()
        self.clock.advance(0)
        return stats

    def test_stats_json(self) -> None:
        """/stats.json is the snapshot as JSON."""
        stats = self.counted()
        rendered = self.get(b"/stats.json")
        self.assertEqual(rendered.request.responseHeaders.getRawHeaders(b"content-type"),
                         [b"application/json"])  # fmt: skip
        figures = json.loads(b"".join(rendered.request.written))
        self.assertEqual(figures, json.loads(json.dumps(stats.snapshot())))
        self.assertEqual((figures["peers"], figures["seeders"], figures["leechers"]), (5, 1, 4))
        self.assertEqual(figures["requests"]["http"]["announce"]["ok"], 5)

    def test_stats_page(self) -> None:
        """/stats is an HTML page with the figures, a chart drawn in SVG and the largest
        torrents, and nothing to fetch from elsewhere."""
        self.counted()
        rendered = self.get(b"/stats")
        page = b"".join(rendered.request.written).decode()
        self.assertEqual(rendered.request.responseHeaders.getRawHeaders(b"content-type"),
                         [b"text/html; charset=utf-8"])  # fmt: skip
        self.assertIn('id="peers" data-value="5"', page)
        self.assertIn('id="seeders" data-value="1"', page)
        self.assertIn('<circle class="announces"', page)
        self.assertIn(info_hash(1).hex(), page)
        self.assertNotIn("<script", page)
        self.assertNotIn("http://", page.replace('xmlns="http://www.w3.org/2000/svg"', ""))

    def test_head(self) -> None:
        """HEAD on the pages gets their headers and length, no body."""
        for path in (b"/stats", b"/stats.json", b"/metrics"):
            rendered = self.get(path, method=b"HEAD")
            self.assertEqual(rendered.body, b"")
            length = rendered.request.responseHeaders.getRawHeaders(b"content-length")
            self.assertTrue(length and int(length[0]) > 0)

    def test_nothing_below(self) -> None:
        """Paths below the pages are not found (a relative link from stats/ would otherwise
        get the page again)."""
        for path in (b"/stats/", b"/stats/x", b"/stats.json/", b"/metrics/x"):
            self.assertEqual(self.get(path).code, 404, path)

    def test_off(self) -> None:
        """With stats off, the three paths are not tracker endpoints."""
        root = TrackerResource(self.store, TrackerConfig(stats=False), self.clock)
        for path in (b"/stats", b"/stats.json", b"/metrics"):
            self.assertTrackerFailure(self.get(path, root=root), code=404)

    def test_chart_with_no_samples(self) -> None:
        """Before the first sample the chart says so instead of drawing lines."""
        chart = render_chart([], START)
        self.assertIn("No samples yet", chart)
        self.assertNotIn("<polyline", chart)


class MetricsTests(TestCase):
    def test_figures(self) -> None:
        """The collector reports requests by protocol, kind and result, latency histograms,
        swarm figures and refusals, as counted."""
        clock = Clock()
        clock.advance(START)
        store = MemoryPeerStore(random.Random(1))
        stats = TrackerStats(store, clock)
        fill(store, 2, lambda t: 3)
        stats.http_announce.ok = 7
        stats.http_announce.latency.observe(0.0002)
        stats.udp_scrape.refused = 2
        stats.refusals.add("udp", "unknown action")
        stats.count_swarms()
        clock.advance(0)
        found = metrics(stats)
        ok = (("kind", "announce"), ("protocol", "http"), ("result", "ok"))
        self.assertEqual(found[("tracker_requests_total", ok)], 7)
        refused = (("kind", "scrape"), ("protocol", "udp"), ("result", "refused"))
        self.assertEqual(found[("tracker_requests_total", refused)], 2)
        latency = (("kind", "announce"), ("le", "0.00025"), ("protocol", "http"))
        self.assertEqual(found[("tracker_request_duration_seconds_bucket", latency)], 1)
        self.assertEqual(found[("tracker_torrents", ())], 2)
        self.assertEqual(found[("tracker_peers", (("kind", "seeder"),))], 2)
        self.assertEqual(found[("tracker_peers", (("kind", "leecher"),))], 4)
        reason = (("protocol", "udp"), ("reason", "unknown action"))
        self.assertEqual(found[("tracker_refusals_total", reason)], 1)
        # The memory store makes no commits.
        self.assertFalse(any(name.startswith("tracker_db_") for name, _ in found))

    def test_two_trackers_do_not_clash(self) -> None:
        """Each tracker has a registry of its own: two in one process report apart."""
        first = TrackerStats(MemoryPeerStore(), Clock())
        second = TrackerStats(MemoryPeerStore(), Clock())
        first.http_scrape.ok = 1
        second.http_scrape.ok = 2
        key = (
            "tracker_requests_total",
            (("kind", "scrape"), ("protocol", "http"), ("result", "ok")),
        )
        self.assertEqual((metrics(first)[key], metrics(second)[key]), (1, 2))


class _CommittingStore(MemoryPeerStore):
    """A store that makes group commits, with their meter for a test to set."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = CommitMeter(unwritten_limit=64 * 1024 * 1024)  # type: ignore[assignment]


class DatabaseHealthTests(TestCase):
    """Whether the store's writes work, in /metrics, /stats.json and /stats."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = _CommittingStore()
        self.stats = TrackerStats(self.store, self.clock)

    def failing(self) -> None:
        commits = self.store.commits
        commits.failing_since = START - 90
        commits.error = "database or disk is full (SQLITE_FULL)"
        commits.failures = 4
        commits.unwritten = 123_456

    def test_healthy(self) -> None:
        """While commits work, /metrics says healthy with nothing waiting, and /stats shows no
        warning."""
        found = metrics(self.stats)
        self.assertEqual(found[("tracker_db_healthy", ())], 1)
        self.assertEqual(found[("tracker_db_unwritten_bytes", ())], 0)
        self.assertEqual(found[("tracker_db_rewrite_pending", ())], 0)
        database = self.stats.snapshot()["database"]
        self.assertEqual((database["healthy"], database["failing_since"]), (True, None))
        self.assertNotIn('id="database"', render_page(self.stats.snapshot()))

    def test_failing(self) -> None:
        """While commits fail, /metrics says unhealthy with the bytes waiting beside the
        failures; /stats.json says since when and why; /stats shows it in a line that
        stands out."""
        self.failing()
        found = metrics(self.stats)
        self.assertEqual(found[("tracker_db_healthy", ())], 0)
        self.assertEqual(found[("tracker_db_unwritten_bytes", ())], 123_456)
        self.assertEqual(found[("tracker_db_commit_failures_total", ())], 4)
        snapshot = json.loads(json.dumps(self.stats.snapshot()))
        database = snapshot["database"]
        self.assertEqual(database["healthy"], False)
        self.assertEqual(database["failing_since"], START - 90)
        self.assertEqual(database["unwritten_bytes"], 123_456)
        self.assertEqual(database["error"], "database or disk is full (SQLITE_FULL)")
        page = render_page(snapshot)
        line = page[page.index('<p class="alert" id="database"') :]
        line = line[: line.index("</p>")]
        self.assertIn("Database writes failing since 13:45:10 UTC", line)
        self.assertIn("123,456 bytes of changes waiting", line)
        self.assertIn("database or disk is full", line)
        self.assertNotIn("dropped", line)

    def test_dropped(self) -> None:
        """Once kept changes were dropped past the limit, every report says the whole index
        is to be written again, until it is."""
        self.failing()
        commits = self.store.commits
        commits.rewrite_pending = True
        commits.dropped = 70_000_000
        found = metrics(self.stats)
        self.assertEqual(found[("tracker_db_rewrite_pending", ())], 1)
        self.assertEqual(found[("tracker_db_unwritten_dropped_bytes_total", ())], 70_000_000)
        self.assertIn("the whole index will be written again", render_page(self.stats.snapshot()))
        commits.failing_since = None
        page = render_page(self.stats.snapshot())
        self.assertIn("Database writes work again: the whole index is being written", page)
        commits.rewrite_pending = False
        self.assertNotIn('id="database"', render_page(self.stats.snapshot()))
