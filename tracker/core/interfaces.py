"""The storage contract: what the resource needs from a peer store, whatever keeps the data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, TypeVar, Union

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from tracker.core.announce import AnnounceRequest


class StoreStopped(Exception):
    """Work asked of a store that is stopping, as the tracker shuts down."""


class StoreUnavailable(Exception):
    """
    A store kept elsewhere (Redis) that cannot be reached, or not soon enough. The request is
    answered with a failure reason telling the client to come back later, and the tracker goes
    on serving: the store logs the outage once, not every request it fails.
    """


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


_IPV4_PEER = 6
_IPV6_PEER = 18


class AnnounceResult(NamedTuple):
    """The swarm's counts and the peers chosen for the requester, already in compact form."""

    counts: SwarmCounts
    #: BEP 23: 6 bytes per IPv4 peer.
    peers4: bytes = b""
    #: BEP 7: 18 bytes per IPv6 peer.
    peers6: bytes = b""
    #: The peers' ids, those of C{peers4} then of C{peers6}. Only needed, and only given, for
    #: a request that is not compact.
    peer_ids: Sequence[bytes] = ()

    @classmethod
    def of(cls, counts: SwarmCounts, peers: Sequence[Peer]) -> AnnounceResult:
        v4 = [p for p in peers if len(p.address) == _IPV4_PEER]
        v6 = [p for p in peers if len(p.address) == _IPV6_PEER]
        return cls(
            counts,
            b"".join(p.address for p in v4),
            b"".join(p.address for p in v6),
            [p.peer_id for p in v4 + v6],
        )

    def peers(self) -> list[Peer]:
        """The chosen peers as (peer id, address) pairs; the ids are empty if not given."""
        addresses = [
            self.peers4[k : k + _IPV4_PEER] for k in range(0, len(self.peers4), _IPV4_PEER)
        ]
        addresses += [
            self.peers6[k : k + _IPV6_PEER] for k in range(0, len(self.peers6), _IPV6_PEER)
        ]
        ids = list(self.peer_ids) or [b""] * len(addresses)
        return [Peer(peer_id, address) for peer_id, address in zip(ids, addresses)]


T = TypeVar("T")
#: A store answers at once when it can, or with a Deferred when it must wait.
Answer = Union[T, Deferred[T]]


class IPeerStore(Interface):
    """
    Swarm state. C{announce} and C{scrape} answer at once when the store has the answer in
    memory, or return a L{Deferred} when it has to wait (for instance while it is still
    loading); the other methods always return a L{Deferred}. Callers never wait on storage.
    Times are whole seconds on the caller's clock, passed in so that tests can drive time.
    """

    def start() -> Deferred[None]:
        """Open the store, creating or upgrading its schema. Called once, before other calls."""

    def stop() -> Deferred[None]:
        """Finish outstanding work and release the store. Called once, last."""

    def announce(request: AnnounceRequest, now: int) -> Answer[AnnounceResult]:
        """
        Record the announce (a C{stopped} one removes the peer) and answer with the swarm's
        counts after it and up to C{request.numwant} other peers, chosen at random (of the
        announcing peer's own address family if C{request.own_family}). A seeder is given only
        leechers. A completion is counted once per peer and only when C{left} is 0.

        A peer keeps the key it registered with. An announce for it with another key (or
        none) from another address of the same family is refused with
        L{tracker.core.errors.KeyMismatch} (raised, or the Deferred fails with it) and changes
        nothing; from the other family it is answered but changes nothing; from the peer's own
        address (IP and port) it is accepted and its key, if any, becomes the peer's. A peer
        registered without a key (0) accepts any announce and keeps no key.

        In private mode an announce carries its passkey's ledger (C{request.account}): the
        store credits it with what the peer moved since its previous announce, by the rule of
        L{tracker.core.swarms.SwarmIndex._credit}, and only when it records the announce.
        """

    def scrape(info_hashes: Sequence[bytes]) -> Answer[dict[bytes, SwarmCounts]]:
        """Counts for each hash; an unknown torrent has all counts 0."""

    def count_completion(info_hash: bytes, now: int) -> Answer[None]:
        """
        Count one completed download of C{info_hash} by a peer the store does not hold (a
        WebSocket peer: L{tracker.core.groups}): the torrent's C{downloaded} grows by one and
        is kept as durably as a completion announced to the store. The caller has decided
        that it counts (once per peer, and only when it has nothing left).
        """

    def expire(cutoff: int) -> Deferred[int]:
        """Forget peers last seen before C{cutoff}; fires with how many were removed."""


class IIndexedStore(Interface):
    """
    A store that answers from a L{tracker.core.swarms.SwarmIndex} in this process, which the
    tracker's statistics and full scrapes read directly, a slice at a time.
    """

    index = Attribute("The SwarmIndex, or None while the store is still loading.")
    commits = Attribute(
        "A tracker.core.meters.CommitMeter counting the store's group commits,"
        " or None if it has none."
    )


class IConnectionSecrets(Interface):
    """
    Where the secrets behind UDP connection IDs (L{tracker.udp.connection_ids}) are kept, each under
    the number of the time window it serves (seconds since the epoch, divided by the window's
    length), so that an ID outlives a restart of the tracker and, in a store that several
    trackers share, is good at each of them. Both methods return a L{Deferred}; neither is on
    the path of a datagram.
    """

    def load_secrets(first_window: int) -> Deferred[dict[int, bytes]]:
        """The secrets kept for C{first_window} and the windows after it, by window number."""

    def keep_secret(window: int, secret: bytes) -> Deferred[bytes]:
        """
        Keep C{secret} as C{window}'s, unless one is kept for it already, and forget those of
        the windows before C{window - 1}; fires with C{window}'s secret as kept. Of trackers
        sharing a store, the first to keep one for a window sets it for all.
        """


class SwarmTotals(NamedTuple):
    """Totals over every swarm of a store shared by many tracker nodes, as it last counted them."""

    torrents: int
    seeders: int
    leechers: int
    downloaded: int
    #: The torrents with the most peers, most first: (info hash, seeders, leechers, downloaded).
    top: tuple[tuple[bytes, int, int, int], ...]
    #: When the count finished, in Unix time, and the processor time it took.
    counted_at: float
    work_seconds: float


class ISharedStore(Interface):
    """
    A store that several tracker nodes share (Redis). No node holds the swarms, so none can
    walk them between two announces: the store counts them itself, slowly, and reports the
    cost of reaching it.
    """

    roundtrips = Attribute("A tracker.core.meters.RoundTripMeter of the store's round trips.")

    def swarm_totals() -> Deferred[SwarmTotals | None]:
        """The last totals counted by any node sharing the store; None before the first."""

    def every_count() -> Deferred[dict[bytes, SwarmCounts]]:
        """Every torrent's counts (for a full scrape), read a slice at a time."""
