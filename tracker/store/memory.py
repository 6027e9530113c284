"""
A peer store in the process's memory: no file, nothing survives a restart.

For tests and for embedding where persistence is not wanted. Everything runs on the reactor
thread, which is fine only because nothing here blocks; sampling copies a swarm, so it suits
small swarms, not production load.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from tracker.addresses import pack_peer
from tracker.announce import STOPPED, AnnounceRequest
from tracker.interfaces import NO_COUNTS, AnnounceResult, IPeerStore, Peer, SwarmCounts


class _PeerState(NamedTuple):
    address: bytes
    seeder: bool
    last_seen: int
    completed: bool


class _Swarm:
    def __init__(self) -> None:
        self.peers: dict[bytes, _PeerState] = {}
        self.downloaded = 0

    def counts(self) -> SwarmCounts:
        seeders = sum(1 for p in self.peers.values() if p.seeder)
        return SwarmCounts(seeders, len(self.peers) - seeders, self.downloaded)


@implementer(IPeerStore)
class MemoryPeerStore:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._swarms: dict[bytes, _Swarm] = {}
        self._random = rng or random.Random()

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def announce(self, request: AnnounceRequest, now: int) -> Deferred[AnnounceResult]:
        if request.event == STOPPED:
            swarm = self._swarms.get(request.info_hash)
            if swarm is None:
                return succeed(AnnounceResult(NO_COUNTS, ()))
            swarm.peers.pop(request.peer_id, None)
            return succeed(AnnounceResult(swarm.counts(), ()))
        swarm = self._swarms.setdefault(request.info_hash, _Swarm())
        previous = swarm.peers.get(request.peer_id)
        already_completed = previous is not None and previous.completed
        completes = request.completes and not already_completed
        if completes:
            swarm.downloaded += 1
        swarm.peers[request.peer_id] = _PeerState(
            pack_peer(request.ip, request.port),
            request.is_seeder,
            now,
            already_completed or completes,
        )
        only_leechers = request.wants_only_leechers
        candidates = [
            Peer(peer_id, state.address)
            for peer_id, state in swarm.peers.items()
            if peer_id != request.peer_id and not (only_leechers and state.seeder)
        ]
        chosen = self._random.sample(candidates, min(request.numwant, len(candidates)))
        return succeed(AnnounceResult(swarm.counts(), chosen))

    def scrape(self, info_hashes: Sequence[bytes]) -> Deferred[dict[bytes, SwarmCounts]]:
        counts = {}
        for info_hash in info_hashes:
            swarm = self._swarms.get(info_hash)
            counts[info_hash] = swarm.counts() if swarm else NO_COUNTS
        return succeed(counts)

    def expire(self, cutoff: int) -> Deferred[int]:
        removed = 0
        for info_hash, swarm in list(self._swarms.items()):
            stale = [pid for pid, state in swarm.peers.items() if state.last_seen < cutoff]
            for peer_id in stale:
                del swarm.peers[peer_id]
            removed += len(stale)
            if not swarm.peers and not swarm.downloaded:
                del self._swarms[info_hash]
        return succeed(removed)
