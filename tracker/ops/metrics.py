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
        yield CounterMetricFamily(
            "tracker_full_scrapes",
            "Full scrapes (no info_hash) answered over HTTP.",
            value=stats.full_scrapes,
        )
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
        yield GaugeMetricFamily(
            "tracker_torrents", "Torrents the tracker knows.", value=census.torrents
        )
        peers = GaugeMetricFamily(
            "tracker_peers", "Peers in every swarm, seeders and leechers.", labels=("kind",)
        )
        peers.add_metric(("seeder",), census.seeders)
        peers.add_metric(("leecher",), census.leechers)
        yield peers
        yield CounterMetricFamily(
            "tracker_completed_downloads",
            "Completed downloads counted over every torrent.",
            value=census.downloaded,
        )
        yield GaugeMetricFamily(
            "tracker_swarms_counted_timestamp_seconds",
            "When the swarm figures were counted (every 10 seconds; on Redis, about once a"
            " minute by one of the nodes).",
            value=census.taken_at,
        )
        yield GaugeMetricFamily(
            "tracker_swarms_count_work_seconds",
            "Processor time the last count of every swarm took, spread over slices.",
            value=census.work_seconds,
        )
        yield GaugeMetricFamily(
            "tracker_start_time_seconds",
            "When the tracker started, in Unix time.",
            value=self._stats.started,
        )

    def _websocket(self) -> Iterator[Metric]:
        meter = self._stats.websocket
        yield GaugeMetricFamily(
            "tracker_websocket_connections",
            "Open WebSocket connections (browsers).",
            value=meter.connections,
        )
        yield CounterMetricFamily(
            "tracker_websocket_connections_opened",
            "WebSocket connections opened.",
            value=meter.opened,
        )
        yield GaugeMetricFamily(
            "tracker_websocket_peers",
            "WebSocket peers in every swarm, counted in tracker_peers too.",
            value=self._stats.census.websocket_peers,
        )
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
        yield CounterMetricFamily(
            "tracker_websocket_dropped",
            "Offers and answers not relayed because their recipient was not reading.",
            value=meter.dropped,
        )
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
        yield HistogramMetricFamily(
            "tracker_db_commit_bytes",
            "Changes written by each group commit, in journal bytes.",
            buckets=_buckets(commits.size),
            sum_value=commits.size.total,
        )
        yield HistogramMetricFamily(
            "tracker_db_commit_duration_seconds",
            "Time from handing a group commit to the database thread until it was committed.",
            buckets=_buckets(commits.latency),
            sum_value=commits.latency.total,
        )
        yield CounterMetricFamily(
            "tracker_db_commit_failures",
            "Group commits that failed (their changes are kept and tried again).",
            value=commits.failures,
        )
        yield GaugeMetricFamily(
            "tracker_db_healthy",
            "1 while group commits work; 0 while they fail (the disk full, or an I/O error)"
            " and the changes wait in memory.",
            value=1 if commits.healthy else 0,
        )
        yield GaugeMetricFamily(
            "tracker_db_unwritten_bytes",
            "Changes not written yet, in journal bytes: kept while commits fail, or in the"
            " commit under way.",
            value=commits.unwritten,
        )
        yield CounterMetricFamily(
            "tracker_db_unwritten_dropped_bytes",
            "Changes dropped unwritten once they passed the limit while commits failed (memory"
            " still holds them: the whole index is written again once commits work).",
            value=commits.dropped,
        )
        yield GaugeMetricFamily(
            "tracker_db_rewrite_pending",
            "1 from a drop of unwritten changes until the whole index is written again.",
            value=1 if commits.rewrite_pending else 0,
        )

    def _roundtrips(self) -> Iterator[Metric]:
        roundtrips = self._stats.roundtrips
        if roundtrips is None:
            return
        yield HistogramMetricFamily(
            "tracker_redis_roundtrip_seconds",
            "Time from sending a pipeline of commands to Redis until every reply was read.",
            buckets=_buckets(roundtrips.latency),
            sum_value=roundtrips.latency.total,
        )
        yield CounterMetricFamily(
            "tracker_redis_errors",
            "Round trips to Redis that failed (unreachable, or too slow), and error replies.",
            value=roundtrips.errors,
        )


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
