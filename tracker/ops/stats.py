"""
The tracker's figures: requests counted as they are answered, a history of request rates, and
totals over the swarms counted periodically. L{TrackerStats.snapshot} is the one dict that
C{/stats}, C{/stats.json} and anything else reporting on the tracker are made from.

Nothing here runs per request but the meters' increments: L{TrackerStats.tick}, run by
L{tracker.daemon.service.TrackerService} every L{SAMPLE_EVERY} seconds, samples the counters into
the history and counts the swarms (L{tracker.ops.census}), so a page view or a metrics scrape
only reads what is there.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import SchedulerStopped
from twisted.logger import Logger
from twisted.python.failure import Failure

from tracker.core.groups import PeerGroups
from tracker.core.interfaces import (
    IIndexedStore,
    IPeerStore,
    ISharedStore,
    StoreUnavailable,
    SwarmTotals,
)
from tracker.core.meters import (
    CommitMeter,
    Refusals,
    RequestMeter,
    RoundTripMeter,
    WebSocketMeter,
)
from tracker.core.slices import cooperator, fire_all
from tracker.ops.census import EMPTY, Census, Torrent, walk

log = Logger()

#: Seconds between samples of the request counters, and between counts of the swarms.
SAMPLE_EVERY = 10
#: Samples kept: one hour.
HISTORY = 3600 // SAMPLE_EVERY
#: Torrents listed as the largest.
TOP = 20

HTTP = "http"
UDP = "udp"
WEBSOCKET = "websocket"
ANNOUNCE = "announce"
SCRAPE = "scrape"


class Sample:
    """Requests answered between two ticks."""

    __slots__ = ("time", "seconds", "announces", "scrapes")

    def __init__(self, time: float, seconds: float, announces: int, scrapes: int) -> None:
        #: When the period ended, and how long it was.
        self.time = time
        self.seconds = seconds
        self.announces = announces
        self.scrapes = scrapes


class TrackerStats:
    """
    The counters every request path shares (HTTP, UDP and WebSocket feed the same ones), and
    what is derived from them. C{store}'s swarms are counted if it provides L{IIndexedStore},
    with the peers of L{groups} (WebSocket peers) added in.
    """

    def __init__(
        self, store: IPeerStore, clock: IReactorTime | None = None, top: int = TOP
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as default_reactor

            clock = default_reactor
        assert clock is not None
        self._store = store
        self._clock = clock
        self._top = top
        self.http_announce = RequestMeter()
        self.http_scrape = RequestMeter()
        self.udp_announce = RequestMeter()
        self.udp_scrape = RequestMeter()
        self.websocket_announce = RequestMeter()
        self.websocket_scrape = RequestMeter()
        #: The WebSocket front end's connections and messages.
        self.websocket = WebSocketMeter()
        #: Peers the store does not hold (WebSocket peers), which every front end adds to the
        #: counts it reports.
        self.groups = PeerGroups()
        #: Full scrapes answered over HTTP (also counted as scrapes).
        self.full_scrapes = 0
        self.refusals = Refusals()
        self.history: deque[Sample] = deque(maxlen=HISTORY)
        self.census: Census = EMPTY
        #: The last totals read from a store shared by many nodes.
        self._shared_totals: SwarmTotals | None = None
        self.started = clock.seconds()
        self._last_time = self.started
        self._last_announces = self._last_scrapes = 0
        self._cooperator = cooperator(clock)
        #: Waiting for the count under way; None when none is.
        self._waiting: list[Deferred[Census]] | None = None
        self._version = _version()

    def meters(self) -> dict[tuple[str, str], RequestMeter]:
        """Every request meter by (protocol, kind)."""
        return {
            (HTTP, ANNOUNCE): self.http_announce,
            (HTTP, SCRAPE): self.http_scrape,
            (UDP, ANNOUNCE): self.udp_announce,
            (UDP, SCRAPE): self.udp_scrape,
            (WEBSOCKET, ANNOUNCE): self.websocket_announce,
            (WEBSOCKET, SCRAPE): self.websocket_scrape,
        }

    def announces(self) -> int:
        return self.http_announce.total + self.udp_announce.total + self.websocket_announce.total

    def scrapes(self) -> int:
        return self.http_scrape.total + self.udp_scrape.total + self.websocket_scrape.total

    @property
    def commits(self) -> CommitMeter | None:
        """The store's group commits, if it counts them."""
        if IIndexedStore.providedBy(self._store):
            commits: CommitMeter | None = self._store.commits
            return commits
        return None

    @property
    def roundtrips(self) -> RoundTripMeter | None:
        """The round trips to a store kept elsewhere (Redis), if the store is one."""
        if ISharedStore.providedBy(self._store):
            roundtrips: RoundTripMeter = self._store.roundtrips
            return roundtrips
        return None

    # Periodic work.

    def tick(self) -> Deferred[None]:
        """Sample the counters and count the swarms; never fails, so that a timer running it
        cannot stop."""
        try:
            self.sample()
        except Exception:
            log.failure("could not sample the request counters")
        return self.count_swarms().addCallbacks(lambda _: None, self._count_failed)

    def sample(self) -> None:
        """Add the requests answered since the last sample to the history."""
        now = self._clock.seconds()
        announces, scrapes = self.announces(), self.scrapes()
        self.history.append(
            Sample(
                now,
                now - self._last_time,
                announces - self._last_announces,
                scrapes - self._last_scrapes,
            )
        )
        self._last_time, self._last_announces, self._last_scrapes = now, announces, scrapes

    def count_swarms(self) -> Deferred[Census]:
        """Count every swarm, a slice at a time; fires with the new L{census}. While a count is
        under way, another call waits for it rather than starting a second."""
        if self._waiting is not None:
            waiter: Deferred[Census] = Deferred()
            self._waiting.append(waiter)
            return waiter
        if ISharedStore.providedBy(self._store):
            # Counted by whichever node swept the shared store last: read, not walked.
            return self._store.swarm_totals().addCallback(self._shared_census)
        index = self._store.index if IIndexedStore.providedBy(self._store) else None
        if index is None:
            return succeed(self.census)
        self._waiting = []
        into: list[Census] = []
        work = [0.0]

        def timed() -> Iterator[None]:
            # Work alone, not the turns of the reactor between slices.
            steps = walk(index, self._top, into, self.groups)
            while True:
                began = time.perf_counter()
                try:
                    next(steps)
                except StopIteration:
                    work[0] += time.perf_counter() - began
                    return
                work[0] += time.perf_counter() - began
                yield None

        def done(_: object) -> Census:
            census = into[0]._replace(taken_at=self._clock.seconds(), work_seconds=work[0])
            self.census = census
            return census

        def tell(result: Census | Failure) -> Census | Failure:
            waiting, self._waiting = self._waiting, None
            fire_all(waiting, result)
            return result

        return self._cooperator.coiterate(timed()).addCallback(done).addBoth(tell)

    def _shared_census(self, totals: SwarmTotals | None) -> Census:
        if totals is not None:
            self._shared_totals = totals
        totals = self._shared_totals
        # The store's totals count every node's HTTP and UDP peers; WebSocket peers live in
        # each node's memory, and this node can add its own alone. A node's browsers are
        # bounded by its connections: one pass over their torrents is short.
        seeders = leechers = 0
        for group in self.groups.torrents.values():
            seeders += group.complete
            leechers += group.incomplete
        if totals is None:
            self.census = EMPTY._replace(
                seeders=seeders, leechers=leechers, websocket_peers=seeders + leechers
            )
            return self.census
        self.census = Census(
            totals.torrents,
            totals.seeders + seeders,
            totals.leechers + leechers,
            totals.downloaded,
            tuple(Torrent(*torrent) for torrent in totals.top[: self._top]),
            totals.counted_at,
            totals.work_seconds,
            seeders + leechers,
        )
        return self.census

    def _count_failed(self, failure: Failure) -> None:
        if failure.check(SchedulerStopped, StoreUnavailable):
            return  # the daemon is stopping, or the store has logged its outage
        log.failure("could not count the swarms; will try again", failure)

    def stop(self) -> None:
        """Abandon a count under way (the daemon is stopping)."""
        self._cooperator.stop()
        self._cooperator = cooperator(self._clock)

    # Reporting.

    def snapshot(self) -> dict[str, Any]:
        """
        Every figure, as plain JSON-ready values: C{/stats.json} is exactly this. Swarm figures
        are as of C{swarms_counted_at} (at most L{SAMPLE_EVERY} seconds old while the tracker
        runs); request counts are live.
        """
        now = self._clock.seconds()
        census = self.census
        requests: dict[str, dict[str, dict[str, int]]] = {}
        for (protocol, kind), meter in self.meters().items():
            requests.setdefault(protocol, {})[kind] = {
                "ok": meter.ok,
                "refused": meter.refused,
                "errors": meter.errors,
            }
        return {
            "tracker": {
                "version": self._version,
                "interpreter": f"{platform.python_implementation()} {platform.python_version()}",
                "started": self.started,
                "uptime_seconds": now - self.started,
            },
            "time": now,
            "torrents": census.torrents,
            "peers": census.peers,
            "seeders": census.seeders,
            "leechers": census.leechers,
            "downloaded": census.downloaded,
            "websocket": {
                "connections": self.websocket.connections,
                "connections_opened": self.websocket.opened,
                "peers": census.websocket_peers,
                "messages": dict(self.websocket.messages),
                "relayed": dict(self.websocket.relayed),
                "dropped": self.websocket.dropped,
                "closed": dict(self.websocket.closes),
            },
            "swarms_counted_at": census.taken_at or None,
            "announces": self.announces(),
            "scrapes": self.scrapes(),
            "full_scrapes": self.full_scrapes,
            "requests": requests,
            "refusals": [
                {"protocol": protocol, "reason": reason, "count": count}
                for (protocol, reason), count in sorted(
                    self.refusals.counts.items(), key=lambda item: -item[1]
                )
            ],
            "history": {
                "every_seconds": SAMPLE_EVERY,
                "samples": [
                    {
                        "time": sample.time,
                        "announces_per_second": _rate(sample.announces, sample.seconds),
                        "scrapes_per_second": _rate(sample.scrapes, sample.seconds),
                    }
                    for sample in self.history
                ],
            },
            "database": self._database(),
            "top_torrents": [
                {
                    "info_hash": torrent.info_hash.hex(),
                    "peers": torrent.peers,
                    "seeders": torrent.seeders,
                    "leechers": torrent.leechers,
                    "downloaded": torrent.downloaded,
                }
                for torrent in census.top
            ],
        }

    def _database(self) -> dict[str, Any] | None:
        """Whether the store's writes work, and what waits; None for a store without any."""
        commits = self.commits
        if commits is None:
            return None
        return {
            "healthy": commits.healthy,
            "failing_since": commits.failing_since,
            "error": commits.error or None,
            "commit_failures": commits.failures,
            "unwritten_bytes": commits.unwritten,
            "unwritten_limit_bytes": commits.unwritten_limit,
            "dropped_bytes": commits.dropped,
            "rewrite_pending": commits.rewrite_pending,
        }


def _rate(count: int, seconds: float) -> float:
    # A period cut short (the first, at start) is counted as a second at least, so that it
    # does not show as a spike.
    return round(count / max(seconds, 1.0), 3)


@functools.lru_cache(maxsize=1)
def _version() -> str:
    # Read once: reading a distribution's metadata parses a file, a few milliseconds, and each
    # tracker resource or UDP port built without a shared TrackerStats makes one.
    try:
        return importlib.metadata.version("tracker")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"
