"""
A peer store in the process's memory alone: no file, nothing survives a restart.

For tests and for embedding where persistence is not wanted. It is the SQLite store's own index
without the database behind it, so it answers exactly as the SQLite store does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from tracker.core.announce import AnnounceRequest
from tracker.core.interfaces import AnnounceResult, IIndexedStore, IPeerStore, SwarmCounts
from tracker.core.swarms import SwarmIndex


@implementer(IPeerStore, IIndexedStore)
class MemoryPeerStore:
    #: Nothing is written anywhere.
    commits = None

    def __init__(self, rng: random.Random | None = None) -> None:
        self.index = SwarmIndex(rng)

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def announce(self, request: AnnounceRequest, now: int) -> AnnounceResult:
        return self.index.announce(request, now)

    def scrape(self, info_hashes: Sequence[bytes]) -> dict[bytes, SwarmCounts]:
        return self.index.scrape(info_hashes)

    def count_completion(self, info_hash: bytes, now: int) -> None:
        self.index.count_completion(info_hash, now)

    def expire(self, cutoff: int) -> Deferred[int]:
        removed = [0]
        for _ in self.index.expire(cutoff, removed):
            pass
        return succeed(removed[0])
