"""
The full scrape: C{/scrape} with no C{info_hash} answers for every torrent (off unless
C{--full-scrape}).

Its body is large (about 80 bytes a torrent: 8 MB for 100,000), so it is built a slice at a
time between announces, gzipped as it is built, and kept for L{MAX_AGE} seconds: a burst of
full scrapes costs one build, and every request during a build waits for that one. Bencode wants
the torrents sorted, and sorting them all at once would hold up the reactor as long as the rest
of the build; each slice sorts its own share and the shares are merged, a slice at a time too.
"""

from __future__ import annotations

import heapq
import itertools
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from tracker.core.errors import TrackerError
from tracker.core.groups import GroupCountingStore, PeerGroups
from tracker.core.interfaces import (
    NO_COUNTS,
    IIndexedStore,
    IPeerStore,
    ISharedStore,
    SwarmCounts,
)
from tracker.core.slices import cooperator, fire_all
from tracker.core.swarms import SwarmIndex
from tracker.ops.access import AccessControlledStore

#: Seconds a full scrape is answered from the last one built.
MAX_AGE = 10
#: Torrents encoded, or merged, per step.
STEP = 500
#: Torrents merged and compressed per step.
MERGE_STEP = 250
#: zlib's default: level 1 made a body a third larger for a quarter less time.
GZIP_LEVEL = 6
_ENTRY = b"20:%sd8:completei%de10:downloadedi%de10:incompletei%dee"


class Bodies(NamedTuple):
    """The body, plain and gzipped, each in pieces: joining 8 MB into one string would hold
    the reactor for several milliseconds, and the pieces are written out one after another."""

    plain: tuple[bytes, ...]
    gzipped: tuple[bytes, ...]
    #: When it was built, on the clock's time.
    built_at: float


class FullScrape:
    """Full scrape bodies of C{store}'s swarms, built when asked and kept L{MAX_AGE} seconds."""

    def __init__(
        self,
        store: IPeerStore,
        clock: IReactorTime,
        groups: PeerGroups | None = None,
        max_age: float = MAX_AGE,
    ) -> None:
        #: The torrents an access list lets the scrape show (None: every one).
        self._serves: Callable[[bytes], bool] | None = None
        if isinstance(store, GroupCountingStore):
            # The groups are added in here, as the scrape is encoded.
            store = store.store
        if isinstance(store, AccessControlledStore):
            # Built from the store behind the list, which holds the swarms, less the torrents
            # the list no longer serves (their swarms are kept until they expire).
            self._serves = store.serves
            store = store.guarded
        self._store = store
        self._groups = groups
        self._clock = clock
        self._max_age = max_age
        self._cooperator = cooperator(clock)
        self._bodies: Bodies | None = None
        self._waiting: list[Deferred[Bodies]] | None = None

    def bodies(self) -> Bodies | Deferred[Bodies]:
        """The bodies, at once if the last ones are fresh enough; otherwise when built."""
        bodies = self._bodies
        if bodies is not None and self._clock.seconds() - bodies.built_at < self._max_age:
            return bodies
        waiter: Deferred[Bodies] = Deferred()
        if self._waiting is not None:
            self._waiting.append(waiter)
            return waiter
        plain: list[bytes] = []
        gzipped: list[bytes] = []
        if ISharedStore.providedBy(self._store):
            # Read from the shared store a slice at a time, then encoded here as an index is.
            self._waiting = [waiter]
            read: Deferred[dict[bytes, SwarmCounts]] = self._store.every_count()
            read.addCallback(
                lambda counts: self._cooperator.coiterate(
                    build_counts(counts, plain, gzipped, self._groups, self._serves)
                )
            )
            read.addCallback(lambda _: self._built(plain, gzipped)).addBoth(self._tell)
            return waiter
        index = self._store.index if IIndexedStore.providedBy(self._store) else None
        if index is None:
            raise TrackerError("the tracker is starting; try the full scrape again shortly")
        self._waiting = [waiter]
        built = self._cooperator.coiterate(build(index, plain, gzipped, self._groups, self._serves))
        built.addCallback(lambda _: self._built(plain, gzipped)).addBoth(self._tell)
        return waiter

    def _built(self, plain: list[bytes], gzipped: list[bytes]) -> Bodies:
        bodies = Bodies(tuple(plain), tuple(gzipped), self._clock.seconds())
        self._bodies = bodies
        return bodies

    def _tell(self, result: Bodies | Failure) -> None:
        waiting, self._waiting = self._waiting, None
        fire_all(waiting, result)


def build(
    index: SwarmIndex,
    plain: list[bytes],
    gzipped: list[bytes],
    groups: PeerGroups | None = None,
    serves: Callable[[bytes], bool] | None = None,
) -> Iterator[None]:
    """
    Encode every swarm of C{index} (that C{serves}, if given), with the peers of C{groups}
    added in, as a scrape's C{files} into the pieces of C{plain}, and the same gzipped into
    C{gzipped}, yielding between steps.
    """
    swarms = index.swarms

    def counts_of(info_hash: bytes) -> SwarmCounts | None:
        swarm = swarms.get(info_hash)
        return None if swarm is None else swarm.counts()

    return _encode(swarms, counts_of, plain, gzipped, groups, serves)


def build_counts(
    counts: dict[bytes, SwarmCounts],
    plain: list[bytes],
    gzipped: list[bytes],
    groups: PeerGroups | None = None,
    serves: Callable[[bytes], bool] | None = None,
) -> Iterator[None]:
    """
    L{build}, from every torrent's counts as a store shared by many nodes read them, with the
    peers of C{groups} (this node's: no other node's are known here) added in.
    """
    return _encode(counts, counts.get, plain, gzipped, groups, serves)


def _encode(
    known: Mapping[bytes, object],
    counts_of: Callable[[bytes], SwarmCounts | None],
    plain: list[bytes],
    gzipped: list[bytes],
    groups: PeerGroups | None,
    serves: Callable[[bytes], bool] | None,
) -> Iterator[None]:
    """L{build}'s steps: the torrents of C{known}, each counted by C{counts_of}."""
    outside = groups.torrents if groups is not None else {}
    hashes = list(known)
    # Torrents with peers outside the store only; the groups may change between slices.
    hashes += [info_hash for info_hash in outside if info_hash not in known]
    runs: list[list[bytes]] = []
    for start in range(0, len(hashes), STEP):
        run = []
        for info_hash in hashes[start : start + STEP]:
            if serves is not None and not serves(info_hash):
                continue
            c = counts_of(info_hash)
            group = outside.get(info_hash)
            if group is not None:
                if c is None:
                    c = NO_COUNTS
                c = SwarmCounts(
                    c.complete + group.complete, c.incomplete + group.incomplete, c.downloaded
                )
            elif c is None:
                continue
            run.append(_ENTRY % (info_hash, c.complete, c.downloaded, c.incomplete))
        # Entries start with "20:" and the hash, so in byte order they are in hash order.
        run.sort()
        runs.append(run)
        yield None
    yield from _merge(runs, plain, gzipped)


def _merge(runs: list[list[bytes]], plain: list[bytes], gzipped: list[bytes]) -> Iterator[None]:
    """The sorted runs merged into one body, plain and gzipped, a step at a time."""
    # gzip's framing (wbits 16 + 15), for Content-Encoding: gzip.
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    merged = heapq.merge(*runs)
    piece = b"d5:filesd"
    while piece:
        plain.append(piece)
        packed = compressor.compress(piece)
        if packed:
            gzipped.append(packed)
        yield None
        # Small pieces: compressing one takes a millisecond or so.
        piece = b"".join(itertools.islice(merged, MERGE_STEP))
    plain.append(b"ee")
    gzipped.append(compressor.compress(b"ee") + compressor.flush())


def accepts_gzip(header: bytes | None) -> bool:
    """Whether an C{Accept-Encoding} header value accepts gzip (and does not give it q=0)."""
    if not header:
        return False
    for item in header.split(b","):
        name, _, params = item.partition(b";")
        if name.strip().lower() not in (b"gzip", b"x-gzip"):
            continue
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    return float(value.strip()) > 0
                except ValueError:
                    return False
        return True
    return False
