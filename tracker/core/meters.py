"""
Counters the request paths bump as they go: plain integers on plain objects.

The hot path pays an attribute increment and, for latency, one C{bisect}; everything else
(rates, Prometheus families, JSON) is derived from these when someone asks. prometheus_client's
own C{Counter.inc()} takes a lock on every call, which costs an announce more than all of this.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Sequence

#: Request latency buckets, seconds: an announce answered from memory takes tens of
#: microseconds; a request that waited for a store still loading, seconds.
LATENCY_BOUNDS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.1,
    1.0,
)

#: The request paths time one answer in 16 (those whose ok count is a multiple of 16): reading
#: the clock and filing the time cost a UDP announce 5 %, a sixteenth of that 0.3 %.
TIMED = 15

#: Distinct refusal reasons kept apart; the rest are added up under OTHER_REASONS. Reasons
#: quote what the client sent (a parameter's name, a datagram's length), so without a cap a
#: client could make every metrics scrape longer.
MAX_REASONS = 48
OTHER_REASONS = "other reasons"
_NUMBER = re.compile(r"\d+")
_QUOTED = re.compile(r"'[^']*'")
#: Parameter names the tracker itself quotes in its reasons; any other quoted text came from
#: the client.
_OWN_NAMES = frozenset(
    (
        "'info_hash'",
        "'peer_id'",
        "'port'",
        "'uploaded'",
        "'downloaded'",
        "'left'",
        "'numwant'",
        "'compact'",
        "'no_peer_id'",
        "'ip'",
        "'event'",
    )
)


class Histogram:
    """Observations counted into buckets by their upper bounds (the last bucket: above all)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        #: The sum of every value observed.
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (Prometheus' le).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[float, int]]:
        """Prometheus' form: (upper bound, observations at or below it), ending with infinity."""
        running = 0
        buckets = []
        for bound, count in zip((*self.bounds, math.inf), self.counts):
            running += count
            buckets.append((bound, running))
        return buckets

    @property
    def count(self) -> int:
        return sum(self.counts)


class RequestMeter:
    """One kind of request over one protocol: how each ended, and how long a sample of the
    answered ones took (one in 16: see L{TIMED})."""

    __slots__ = ("ok", "refused", "errors", "latency")

    def __init__(self) -> None:
        self.ok = 0
        #: Bad requests, answered with a failure reason.
        self.refused = 0
        #: Requests the tracker itself failed (an unexpected error, a store stopping).
        self.errors = 0
        self.latency = Histogram(LATENCY_BOUNDS)

    @property
    def total(self) -> int:
        return self.ok + self.refused + self.errors


class Refusals:
    """Refused requests by protocol and reason, with the client's own words taken out."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        #: What each raw reason was filed under, so a flood of one refusal costs a dict lookup.
        self._filed: dict[str, str] = {}

    def add(self, protocol: str, reason: str) -> None:
        label = self._filed.get(reason)
        if label is None:
            label = self._file(reason)
        key = (protocol, label)
        counts = self.counts
        if key in counts:
            counts[key] += 1
        elif len(counts) < MAX_REASONS:
            counts[key] = 1
        else:
            other = (protocol, OTHER_REASONS)
            counts[other] = counts.get(other, 0) + 1

    def _file(self, reason: str) -> str:
        label = _QUOTED.sub(lambda m: m[0] if m[0] in _OWN_NAMES else "'...'", reason)
        label = _NUMBER.sub("N", label)
        if len(self._filed) < 4 * MAX_REASONS:
            self._filed[reason] = label
        return label


#: Group commit sizes, bytes of journal: a re-announce is about 56 bytes.
COMMIT_BYTES_BOUNDS = (1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
#: Group commit durations, seconds, from handing the changes to the database thread until it
#: has committed them.
COMMIT_SECONDS_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class CommitMeter:
    """The store's group commits: how much each wrote and how long it took, and whether they
    are failing (the disk full, or an I/O error) with how much is waiting to be written."""

    __slots__ = (
        "size",
        "latency",
        "failures",
        "failing_since",
        "error",
        "unwritten",
        "unwritten_limit",
        "dropped",
        "rewrite_pending",
    )

    def __init__(self, unwritten_limit: int = 0) -> None:
        self.size = Histogram(COMMIT_BYTES_BOUNDS)
        self.latency = Histogram(COMMIT_SECONDS_BOUNDS)
        self.failures = 0
        #: When the first of the commits failing now failed (Unix time); None while they work.
        self.failing_since: float | None = None
        #: Why the last commit failed, in SQLite's words; "" while commits work.
        self.error = ""
        #: Bytes of changes taken from memory and not known to be written: waiting for a commit
        #: to work, or in the one under way.
        self.unwritten = 0
        #: The most bytes of changes kept while commits fail; past it they are dropped.
        self.unwritten_limit = unwritten_limit
        #: Bytes of changes dropped past the limit (the index in memory still holds them).
        self.dropped = 0
        #: Changes were dropped: the whole index is to be written again once commits work.
        self.rewrite_pending = False

    @property
    def healthy(self) -> bool:
        return self.failing_since is None


#: Round trips to a store kept elsewhere (Redis), seconds: a pipeline on loopback takes a
#: tenth of a millisecond; one to a node that has gone, up to the client's timeout.
ROUNDTRIP_SECONDS_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)


class RoundTripMeter:
    """Round trips to a store kept elsewhere: how long each took, and how many failed."""

    __slots__ = ("latency", "errors")

    def __init__(self) -> None:
        self.latency = Histogram(ROUNDTRIP_SECONDS_BOUNDS)
        #: Round trips that failed (the store unreachable or too slow), and error replies.
        self.errors = 0


class WebSocketMeter:
    """The WebSocket front end's connections and messages (its announces and scrapes are
    also counted by request meters, as HTTP's and UDP's are)."""

    __slots__ = ("connections", "opened", "messages", "relayed", "dropped", "closes")

    def __init__(self) -> None:
        #: Open now, and opened since the start.
        self.connections = 0
        self.opened = 0
        #: Messages received, by kind: announce, answer, scrape, invalid.
        self.messages = dict.fromkeys(("announce", "answer", "scrape", "invalid"), 0)
        #: Offers and answers relayed to another peer.
        self.relayed = dict.fromkeys(("offer", "answer"), 0)
        #: Offers and answers not relayed because their recipient was not reading what it
        #: was sent.
        self.dropped = 0
        #: Connections the tracker closed, by reason: idle, too big (a frame or message over
        #: its limit), protocol error (RFC 6455 broken), invalid data (text that is not UTF-8,
        #: or a binary message).
        self.closes = dict.fromkeys(("idle", "too big", "protocol error", "invalid data"), 0)
