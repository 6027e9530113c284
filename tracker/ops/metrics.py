"""
C{/metrics}: the tracker's figures in Prometheus' text format.

The figures are read from L{TrackerStats} when Prometheus scrapes, by a collector of our own, so
a request costs the tracker a few integer increments and never prometheus_client's
C{Counter.inc()}, which takes a lock each time. Each tracker has its own registry, not
prometheus_client's global one, so two trackers in one process (tests, an application embedding
two) do not clash.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from twisted.web.server import Request

from tracker.core.meters import Histogram
from tracker.ops.stats import TrackerStats
from tracker.ops.statspage import FiguresResource


def registry(stats: TrackerStats) -> CollectorRegistry:
    """A registry of its own holding C{stats}' figures."""
    own = CollectorRegistry()
    own.register(StatsCollector(stats))
    return own


class StatsCollector:
    """Prometheus metric families made from a L{TrackerStats} when asked."""

    def __init__(self, stats: TrackerStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        meters = stats.meters()
        requests = CounterMetricFamily(
            "tracker_requests",
            "Announces and scrapes answered, by protocol, kind and result (ok; refused: a bad "
            "request, answered with a failure reason; error: the tracker failed).",
            labels=("protocol", "kind", "result"),
        )
        latency = HistogramMetricFamily(
            "tracker_request_duration_seconds",
            "Time from receiving an announce or scrape to having its answer, for one in 16 of "
            "those answered ok.",
            labels=("protocol", "kind"),
        )
        for (protocol, kind), meter in meters.items():
            requests.add_metric((protocol, kind, "ok"), meter.ok)
            requests.add_metric((protocol, kind, "refused"), meter.refused)
            requests.add_metric((protocol, kind, "error"), meter.errors)
            latency.add_metric((protocol, kind), _buckets(meter.latency), meter.latency.total)
        yield requests
        yield latency
        full = CounterMetricFamily(
            "tracker_full_scrapes", "Full scrapes (no info_hash) answered over HTTP."
        )
        full.add_metric((), stats.full_scrapes)
        yield full
        refusals = CounterMetricFamily(
            "tracker_refusals",
            "Refused requests and datagrams by protocol and reason (numbers and text the client "
            "sent replaced, rare reasons added up as 'other reasons').",
            labels=("protocol", "reason"),
        )
        for (protocol, reason), count in stats.refusals.counts.items():
            refusals.add_metric((protocol, reason), count)
        yield refusals
        yield from self._swarms()
        yield from self._websocket()
        yield from self._commits()
        yield from self._roundtrips()

    def _swarms(self) -> Iterator[Metric]:
        census = self._stats.census
        torrents = GaugeMetricFamily("tracker_torrents", "Torrents the tracker knows.")
        torrents.add_metric((), census.torrents)
        yield torrents
        peers = GaugeMetricFamily(
            "tracker_peers", "Peers in every swarm, seeders and leechers.", labels=("kind",)
        )
        peers.add_metric(("seeder",), census.seeders)
        peers.add_metric(("leecher",), census.leechers)
        yield peers
        downloads = CounterMetricFamily(
            "tracker_completed_downloads", "Completed downloads counted over every torrent."
        )
        downloads.add_metric((), census.downloaded)
        yield downloads
        counted = GaugeMetricFamily(
            "tracker_swarms_counted_timestamp_seconds",
            "When the swarm figures were counted (every 10 seconds; on Redis, about once a"
            " minute by one of the nodes).",
        )
        counted.add_metric((), census.taken_at)
        yield counted
        work = GaugeMetricFamily(
            "tracker_swarms_count_work_seconds",
            "Processor time the last count of every swarm took, spread over slices.",
        )
        work.add_metric((), census.work_seconds)
        yield work
        started = GaugeMetricFamily(
            "tracker_start_time_seconds", "When the tracker started, in Unix time."
        )
        started.add_metric((), self._stats.started)
        yield started

    def _websocket(self) -> Iterator[Metric]:
        meter = self._stats.websocket
        connections = GaugeMetricFamily(
            "tracker_websocket_connections", "Open WebSocket connections (browsers)."
        )
        connections.add_metric((), meter.connections)
        yield connections
        opened = CounterMetricFamily(
            "tracker_websocket_connections_opened", "WebSocket connections opened."
        )
        opened.add_metric((), meter.opened)
        yield opened
        peers = GaugeMetricFamily(
            "tracker_websocket_peers",
            "WebSocket peers in every swarm, counted in tracker_peers too.",
        )
        peers.add_metric((), self._stats.census.websocket_peers)
        yield peers
        messages = CounterMetricFamily(
            "tracker_websocket_messages",
            "WebSocket messages received, by kind (announce, answer, scrape; invalid: not a "
            "message the tracker reads).",
            labels=("kind",),
        )
        for kind, count in meter.messages.items():
            messages.add_metric((kind,), count)
        yield messages
        relayed = CounterMetricFamily(
            "tracker_websocket_relayed",
            "WebRTC offers and answers relayed from one WebSocket peer to another.",
            labels=("kind",),
        )
        for kind, count in meter.relayed.items():
            relayed.add_metric((kind,), count)
        yield relayed
        dropped = CounterMetricFamily(
            "tracker_websocket_dropped",
            "Offers and answers not relayed because their recipient was not reading.",
        )
        dropped.add_metric((), meter.dropped)
        yield dropped
        closed = CounterMetricFamily(
            "tracker_websocket_closed",
            "WebSocket connections the tracker closed, by reason (idle; too big: a frame or "
            "message over its limit; protocol error; invalid data).",
            labels=("reason",),
        )
        for reason, count in meter.closes.items():
            closed.add_metric((reason,), count)
        yield closed

    def _commits(self) -> Iterator[Metric]:
        commits = self._stats.commits
        if commits is None:
            return
        size = HistogramMetricFamily(
            "tracker_db_commit_bytes", "Changes written by each group commit, in journal bytes."
        )
        size.add_metric((), _buckets(commits.size), commits.size.total)
        yield size
        duration = HistogramMetricFamily(
            "tracker_db_commit_duration_seconds",
            "Time from handing a group commit to the database thread until it was committed.",
        )
        duration.add_metric((), _buckets(commits.latency), commits.latency.total)
        yield duration
        failures = CounterMetricFamily(
            "tracker_db_commit_failures",
            "Group commits that failed (their changes are kept and tried again).",
        )
        failures.add_metric((), commits.failures)
        yield failures
        healthy = GaugeMetricFamily(
            "tracker_db_healthy",
            "1 while group commits work; 0 while they fail (the disk full, or an I/O error)"
            " and the changes wait in memory.",
        )
        healthy.add_metric((), 1 if commits.healthy else 0)
        yield healthy
        unwritten = GaugeMetricFamily(
            "tracker_db_unwritten_bytes",
            "Changes not written yet, in journal bytes: kept while commits fail, or in the"
            " commit under way.",
        )
        unwritten.add_metric((), commits.unwritten)
        yield unwritten
        dropped = CounterMetricFamily(
            "tracker_db_unwritten_dropped_bytes",
            "Changes dropped unwritten once they passed the limit while commits failed (memory"
            " still holds them: the whole index is written again once commits work).",
        )
        dropped.add_metric((), commits.dropped)
        yield dropped
        rewrite = GaugeMetricFamily(
            "tracker_db_rewrite_pending",
            "1 from a drop of unwritten changes until the whole index is written again.",
        )
        rewrite.add_metric((), 1 if commits.rewrite_pending else 0)
        yield rewrite

    def _roundtrips(self) -> Iterator[Metric]:
        roundtrips = self._stats.roundtrips
        if roundtrips is None:
            return
        latency = HistogramMetricFamily(
            "tracker_redis_roundtrip_seconds",
            "Time from sending a pipeline of commands to Redis until every reply was read.",
        )
        latency.add_metric((), _buckets(roundtrips.latency), roundtrips.latency.total)
        yield latency
        errors = CounterMetricFamily(
            "tracker_redis_errors",
            "Round trips to Redis that failed (unreachable, or too slow), and error replies.",
        )
        errors.add_metric((), roundtrips.errors)
        yield errors


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    return [
        ("+Inf" if math.isinf(bound) else floatToGoString(bound), count)
        for bound, count in histogram.cumulative()
    ]


class MetricsResource(FiguresResource):
    """C{/metrics}, for Prometheus to scrape."""

    def __init__(self, stats: TrackerStats) -> None:
        super().__init__()
        self._registry = registry(stats)

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return generate_latest(self._registry)

    def render_HEAD(self, request: Request) -> bytes:
        body = self.render_GET(request)
        # Twisted sends no body for HEAD, and logs a warning for one returned.
        request.setHeader(b"content-length", b"%d" % len(body))
        return b""
