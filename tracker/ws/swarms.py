"""
The WebSocket peers of each torrent, with the offers each has outstanding.

A peer here is a (torrent, peer id) announced on one open connection: it has no address, so
it is never handed to an HTTP or UDP client, and it goes when its connection goes. Each
torrent's peers are a L{tracker.core.groups.PeerGroup}, so that every count the tracker
reports includes them; nothing of them is written down, except a completion, which the store
counts (L{tracker.core.interfaces.IPeerStore.count_completion}).

A swarm keeps its seeders and its leechers in two lists, so that adding and removing a peer is
O(1) (the last of its list takes its place) and choosing peers for offers is O(offers)
whatever the size of the swarm.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from tracker.core.groups import PeerGroups

if TYPE_CHECKING:
    from tracker.ws.protocol import WebSocketConnection

#: Offers a peer may have outstanding; past this the oldest are forgotten. WebTorrent sends
#: at most 5 an announce and Trystero 10, and both give up on an offer after 50 seconds.
MAX_OUTSTANDING = 40


class Peer:
    """One peer of one torrent, on one connection."""

    __slots__ = (
        "peer_id",
        "connection",
        "swarm",
        "seeder",
        "position",
        "completed",
        "seen",
        "offers",
        "report",
    )

    def __init__(self, peer_id: str, connection: WebSocketConnection, swarm: Swarm) -> None:
        self.peer_id = peer_id
        self.connection = connection
        self.swarm = swarm
        self.seeder = False
        #: Its place in its swarm's list of seeders or of leechers.
        self.position = -1
        #: Whether its completion has been counted.
        self.completed = False
        #: When it last announced.
        self.seen = 0
        #: Offers it made that may still be answered: offer id -> (the peer id and connection
        #: number it was sent to, when it expires). None while there are none.
        self.offers: dict[str, tuple[str, int, int]] | None = None
        #: Private mode: (account number, uploaded, downloaded) it last reported.
        self.report: tuple[int, int, int] | None = None


class Swarm:
    """The WebSocket peers of one torrent."""

    __slots__ = ("info_hash", "peers", "seeders", "leechers")

    def __init__(self, info_hash: str) -> None:
        self.info_hash = info_hash
        #: Every peer by peer id: a peer id belongs to one connection at a time.
        self.peers: dict[str, Peer] = {}
        self.seeders: list[Peer] = []
        self.leechers: list[Peer] = []

    @property
    def complete(self) -> int:
        return len(self.seeders)

    @property
    def incomplete(self) -> int:
        return len(self.leechers)

    def place(self, peer: Peer, seeder: bool) -> None:
        """Put C{peer}, which is in neither list, in the seeders' or the leechers'."""
        kind = self.seeders if seeder else self.leechers
        peer.seeder = seeder
        peer.position = len(kind)
        kind.append(peer)

    def unplace(self, peer: Peer) -> None:
        """Take C{peer} out of its list."""
        kind = self.seeders if peer.seeder else self.leechers
        last = kind.pop()
        if last is not peer:
            kind[peer.position] = last
            last.position = peer.position
        peer.position = -1

    def choose(self, count: int, peer: Peer, rng: random.Random) -> list[Peer]:
        """
        Up to C{count} peers other than C{peer}, distinct, chosen at random: only leechers
        for a seeder, which has no use for other seeders.
        """
        leechers = self.leechers
        pool = len(leechers) if peer.seeder else len(leechers) + len(self.seeders)
        # A leecher is among the candidates itself; a seeder is not.
        itself = 0 if peer.seeder or peer.position < 0 else 1
        others = pool - itself
        if others <= 0 or count <= 0:
            return []
        # Of a sample, one more than wanted when the peer could be drawn, to leave it out.
        numbers = range(pool) if count >= others else rng.sample(range(pool), count + itself)
        in_leechers = len(leechers)
        seeders = self.seeders
        chosen = []
        for number in numbers:
            other = leechers[number] if number < in_leechers else seeders[number - in_leechers]
            if other is not peer:
                chosen.append(other)
        return chosen[:count]


class WebSocketSwarms:
    """Every torrent's WebSocket peers, counted into C{groups}."""

    def __init__(self, groups: PeerGroups, rng: random.Random | None = None) -> None:
        self.swarms: dict[str, Swarm] = {}
        self._groups = groups
        self.random = rng or random.Random()

    def find(self, info_hash: str, peer_id: str) -> Peer | None:
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return None
        return swarm.peers.get(peer_id)

    def join(
        self, info_hash: str, peer_id: str, connection: WebSocketConnection, seeder: bool
    ) -> Peer:
        """A new peer in the torrent's swarm, which must not have C{peer_id} yet."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            swarm = self.swarms[info_hash] = Swarm(info_hash)
            self._groups.add(info_hash.encode("latin-1"), swarm)
        peer = Peer(peer_id, connection, swarm)
        swarm.peers[peer_id] = peer
        swarm.place(peer, seeder)
        return peer

    def leave(self, peer: Peer) -> None:
        """Take C{peer} out of its swarm; a swarm left empty is forgotten."""
        swarm = peer.swarm
        if swarm.peers.get(peer.peer_id) is not peer:
            return
        del swarm.peers[peer.peer_id]
        swarm.unplace(peer)
        peer.offers = None
        if not swarm.peers:
            del self.swarms[swarm.info_hash]
            self._groups.remove(swarm.info_hash.encode("latin-1"))


def remember_offer(peer: Peer, offer_id: str, to: Peer, expires: int) -> None:
    """Keep the offer C{peer} sent to C{to} until C{expires}, so that its answer can be
    relayed. The recipient is kept by its peer id and its connection's number, not itself:
    an offer outstanding must not keep a closed connection in memory."""
    offers = peer.offers
    if offers is None:
        offers = peer.offers = {}
    elif len(offers) >= MAX_OUTSTANDING:
        # The oldest: dicts keep the order offers were made in.
        del offers[next(iter(offers))]
    offers[offer_id] = (to.peer_id, to.connection.number, expires)


def take_offer(peer: Peer, offer_id: str, by: str, on: int, now: int) -> bool:
    """
    Whether C{peer} has the offer C{offer_id} outstanding to the peer C{by} on the
    connection numbered C{on}; an offer found is taken, so that it is answered once.
    """
    offers = peer.offers
    if offers is None:
        return False
    outstanding = offers.get(offer_id)
    if outstanding is None or outstanding[0] != by or outstanding[1] != on:
        return False
    del offers[offer_id]
    return outstanding[2] >= now


def forget_expired_offers(peer: Peer, now: int) -> None:
    offers = peer.offers
    if offers is None:
        return
    for offer_id in [o for o, (_, _, expires) in offers.items() if expires < now]:
        del offers[offer_id]
    if not offers:
        peer.offers = None
