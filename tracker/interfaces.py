"""The storage contract: what the resource needs from a peer store, whatever keeps the data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from twisted.internet.defer import Deferred
from zope.interface import Interface

from tracker.announce import AnnounceRequest


class SwarmCounts(NamedTuple):
    """Scrape figures for one torrent (BEP 48)."""

    complete: int
    incomplete: int
    #: Completed downloads ever reported; survives expiry and restarts.
    downloaded: int


#: The counts of a torrent the tracker has never seen.
NO_COUNTS = SwarmCounts(0, 0, 0)


class Peer(NamedTuple):
    peer_id: bytes
    #: Compact form: packed IP then big-endian port (6 bytes for IPv4, 18 for IPv6).
    address: bytes


class AnnounceResult(NamedTuple):
    counts: SwarmCounts
    peers: Sequence[Peer]


class IPeerStore(Interface):
    """
    Swarm state. Every method returns a L{Deferred}; callers never wait on storage. Times are
    whole seconds on the caller's clock, passed in so that tests can drive time.
    """

    def start() -> Deferred[None]:
        """Open the store, creating or upgrading its schema. Called once, before other calls."""

    def stop() -> Deferred[None]:
        """Finish outstanding work and release the store. Called once, last."""

    def announce(request: AnnounceRequest, now: int) -> Deferred[AnnounceResult]:
        """
        Record the announce (a C{stopped} one removes the peer) and answer with the swarm's
        counts after it and up to C{request.numwant} other peers, chosen at random. A seeder is
        given only leechers. A completion is counted once per peer and only when C{left} is 0.
        """

    def scrape(info_hashes: Sequence[bytes]) -> Deferred[dict[bytes, SwarmCounts]]:
        """Counts for each hash; an unknown torrent has all counts 0."""

    def expire(cutoff: int) -> Deferred[int]:
        """Forget peers last seen before C{cutoff}; fires with how many were removed."""
