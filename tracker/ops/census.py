"""
Totals over every swarm, and the largest swarms, counted a slice at a time.

A walk over a big index takes tens of milliseconds (100,000 swarms: see bench/census.py), too
long to hold up announces, so it runs as a generator that the caller steps between turns of
the reactor; swarms added or removed meanwhile are counted or not, as they happen to fall.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from typing import NamedTuple

from tracker.core.groups import PeerGroups
from tracker.core.interfaces import NO_COUNTS, SwarmCounts
from tracker.core.swarms import SwarmIndex

#: Swarms looked at between two checks of the time spent.
STEP = 500


class Torrent(NamedTuple):
    info_hash: bytes
    seeders: int
    leechers: int
    downloaded: int

    @property
    def peers(self) -> int:
        return self.seeders + self.leechers


class Census(NamedTuple):
    torrents: int
    seeders: int
    leechers: int
    #: Completed downloads ever counted, over every torrent.
    downloaded: int
    #: The torrents with the most peers, most first.
    top: tuple[Torrent, ...]
    #: When the walk finished (the caller's clock), and how much of it was work.
    taken_at: float
    work_seconds: float
    #: Of the seeders and leechers, those held outside the store (WebSocket peers).
    websocket_peers: int = 0

    @property
    def peers(self) -> int:
        return self.seeders + self.leechers


EMPTY = Census(0, 0, 0, 0, (), 0.0, 0.0)


def walk(
    index: SwarmIndex, top: int, into: list[Census], groups: PeerGroups | None = None
) -> Iterator[None]:
    """
    Count every swarm of C{index}, with the peers of C{groups} added to their torrents,
    yielding every L{STEP} swarms; the result (with C{taken_at} and C{work_seconds} left 0) is
    appended to C{into} at the end.
    """
    swarms = index.swarms
    outside = groups.torrents if groups is not None else {}
    seeders = leechers = downloaded = torrents = grouped = 0
    # (peers, info hash, seeders, leechers, downloaded), the smallest of the kept first.
    largest: list[tuple[int, bytes, int, int, int]] = []
    budget = STEP
    # The keys now: the dicts may change size between slices. The torrents with peers outside
    # the store only come after the store's.
    in_index = list(swarms)
    for info_hash in itertools.chain(in_index, [h for h in outside if h not in swarms]):
        swarm = swarms.get(info_hash)
        budget -= 1
        if budget <= 0:
            budget = STEP
            yield None
        group = outside.get(info_hash)
        if group is not None:
            counts = NO_COUNTS if swarm is None else swarm.counts()
            counts = SwarmCounts(
                counts.complete + group.complete,
                counts.incomplete + group.incomplete,
                counts.downloaded,
            )
            grouped += group.complete + group.incomplete
        elif swarm is None:
            continue
        else:
            counts = swarm.counts()
        torrents += 1
        seeders += counts.complete
        leechers += counts.incomplete
        downloaded += counts.downloaded
        peers = counts.complete + counts.incomplete
        if not peers:
            continue
        if len(largest) < top:
            heapq.heappush(
                largest, (peers, info_hash, counts.complete, counts.incomplete, counts.downloaded)
            )
        elif peers > largest[0][0]:
            heapq.heapreplace(
                largest, (peers, info_hash, counts.complete, counts.incomplete, counts.downloaded)
            )
    ranked = sorted(largest, key=lambda entry: (-entry[0], entry[1]))
    into.append(
        Census(
            torrents,
            seeders,
            leechers,
            downloaded,
            tuple(Torrent(h, s, le, d) for _, h, s, le, d in ranked),
            0.0,
            0.0,
            grouped,
        )
    )
