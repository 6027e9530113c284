"""The SQLite peer store: the tracker's embedded default."""

from __future__ import annotations

import functools
import random
import sqlite3
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from zope.interface import implementer

from tracker.addresses import pack_peer
from tracker.announce import STOPPED, AnnounceRequest
from tracker.interfaces import NO_COUNTS, AnnounceResult, IPeerStore, Peer, SwarmCounts
from tracker.store.batching import BatchingConnection
from tracker.store.schema import connect

#: Peers removed per expiry transaction, so announces interleave with a large expiry.
EXPIRE_CHUNK = 2000
#: Slots are 23-bit so each fits SQLite's 3-byte integer encoding.
_SLOT_BITS = 23
#: Forget cached torrent ids past this many, so a flood of made-up hashes cannot grow memory.
_TORRENT_CACHE_LIMIT = 100_000

_SAMPLE_FROM = (
    "SELECT peer_id, address FROM peers INDEXED BY peers_by_slot"
    " WHERE torrent_id = ? AND seeder = ? AND slot >= ? AND peer_id != ? LIMIT ?"
)
_SAMPLE_BEFORE = (
    "SELECT peer_id, address FROM peers INDEXED BY peers_by_slot"
    " WHERE torrent_id = ? AND seeder = ? AND slot < ? AND peer_id != ? LIMIT ?"
)

_WHOLE_GROUP = (
    "SELECT peer_id, address FROM peers INDEXED BY peers_by_slot"
    " WHERE torrent_id = ? AND seeder = ? AND peer_id != ?"
)
_WHOLE_SWARM = "SELECT peer_id, address FROM peers WHERE torrent_id = ? AND peer_id != ?"
#: A new peer gets a random slot; a known one keeps its slot, and its completion flag once set.
_RECORD = (
    "INSERT INTO peers (torrent_id, peer_id, address, seeder, slot, last_seen, completed)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (torrent_id, peer_id) DO UPDATE SET"
    " address = excluded.address, seeder = excluded.seeder, last_seen = excluded.last_seen,"
    " completed = max(completed, excluded.completed)"
)
#: Builds a L{Peer} from a (peer_id, address) row without running Python code per row.
_as_peer = functools.partial(tuple.__new__, Peer)


#: Peer ids are always this long (the request parser insists).
_PEER_ID_BYTES = 20


def _packed_query(rows: str) -> str:
    # Two aggregates over the same rows, so the nth id and the nth address are one peer's.
    return (
        "SELECT CAST(group_concat(peer_id, x'') AS BLOB),"
        f" CAST(group_concat(address, x'') AS BLOB), count(*) FROM ({rows})"
    )


def _thd_packed(connection: sqlite3.Connection, rows: str, args: tuple[Any, ...]) -> list[Peer]:
    """
    The peers C{rows} selects, fetched as two blobs in one row rather than a row per peer:
    each row and column read costs a call into SQLite, and that dominates on PyPy.
    """
    ids, addresses, count = connection.execute(_packed_query(rows), args).fetchall()[0]
    if not count:
        return []
    width, mixed = divmod(len(addresses), count)
    if mixed or width not in (6, 18):
        # IPv4 and IPv6 peers together: the blob cannot be split by a fixed width.
        return list(map(_as_peer, connection.execute(rows, args).fetchall()))
    step = _PEER_ID_BYTES
    id_list = [ids[k : k + step] for k in range(0, len(ids), step)]
    address_list = [addresses[k : k + width] for k in range(0, len(addresses), width)]
    return list(map(_as_peer, zip(id_list, address_list)))


def _rotated(rows: list[Peer], rng: random.Random) -> list[Peer]:
    """The rows from a random one on, so peers listed first are not always the same ones."""
    if len(rows) < 2:
        return rows
    cut = rng.randrange(len(rows))
    return rows[cut:] + rows[:cut]


@implementer(IPeerStore)
class SQLitePeerStore:
    """
    Peers and counters in one SQLite file, worked on by one dedicated thread. C{path} may be
    C{":memory:"} for a store that lasts as long as the process.
    """

    def __init__(
        self,
        path: str,
        reactor: IReactorFromThreads | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor  # type: ignore[assignment]
        assert reactor is not None
        self.path = path
        self._db = BatchingConnection(reactor, on_rollback=self._thd_forget_torrent_ids)
        self._random = rng or random.Random()
        # info_hash -> torrents.id, touched only on the database thread.
        self._torrent_ids: dict[bytes, int] = {}

    def start(self) -> Deferred[None]:
        return self._db.open(lambda: connect(self.path))

    def stop(self) -> Deferred[None]:
        return self._db.close()

    def announce(self, request: AnnounceRequest, now: int) -> Deferred[AnnounceResult]:
        return self._db.run(lambda connection: self._thd_announce(connection, request, now))

    def scrape(self, info_hashes: Sequence[bytes]) -> Deferred[dict[bytes, SwarmCounts]]:
        return self._db.run(lambda connection: self._thd_scrape(connection, info_hashes))

    def expire(self, cutoff: int) -> Deferred[int]:
        removed = 0

        def chunk_done(count: int) -> Any:
            nonlocal removed
            removed += count
            if count < EXPIRE_CHUNK:
                return self._db.run(self._thd_forget_empty_torrents).addCallback(lambda _: removed)
            return self._db.run(expire_chunk).addCallback(chunk_done)

        def expire_chunk(connection: sqlite3.Connection) -> int:
            return self._thd_expire_chunk(connection, cutoff)

        return self._db.run(expire_chunk).addCallback(chunk_done)

    # Everything below runs on the database thread.

    def _thd_torrent_id(
        self, connection: sqlite3.Connection, info_hash: bytes, create: bool
    ) -> int | None:
        torrent_id = self._torrent_ids.get(info_hash)
        if torrent_id is not None:
            return torrent_id
        rows = connection.execute(
            "SELECT id FROM torrents WHERE info_hash = ?", (info_hash,)
        ).fetchall()
        if rows:
            torrent_id = int(rows[0][0])
        elif create:
            torrent_id = connection.execute(
                "INSERT INTO torrents (info_hash) VALUES (?)", (info_hash,)
            ).lastrowid
        else:
            return None
        if len(self._torrent_ids) >= _TORRENT_CACHE_LIMIT:
            self._torrent_ids.clear()
        assert torrent_id is not None
        self._torrent_ids[info_hash] = torrent_id
        return torrent_id

    def _thd_announce(
        self, connection: sqlite3.Connection, request: AnnounceRequest, now: int
    ) -> AnnounceResult:
        stopping = request.event == STOPPED
        torrent_id = self._thd_torrent_id(connection, request.info_hash, create=not stopping)
        if torrent_id is None:
            return AnnounceResult(NO_COUNTS, ())
        if stopping:
            connection.execute(
                "DELETE FROM peers WHERE torrent_id = ? AND peer_id = ?",
                (torrent_id, request.peer_id),
            )
            return AnnounceResult(self._thd_counts(connection, torrent_id), ())
        self._thd_record(connection, torrent_id, request, now)
        counts = self._thd_counts(connection, torrent_id)
        peers: list[Peer] = []
        if request.numwant:
            peers = self._thd_sample(connection, torrent_id, request, counts)
        return AnnounceResult(counts, peers)

    def _thd_record(
        self, connection: sqlite3.Connection, torrent_id: int, request: AnnounceRequest, now: int
    ) -> None:
        # One statement: the triggers keep the counts and count a completion once per peer.
        connection.execute(
            _RECORD,
            (
                torrent_id,
                request.peer_id,
                pack_peer(request.ip, request.port),
                int(request.is_seeder),
                self._random.getrandbits(_SLOT_BITS),
                now,
                int(request.completes),
            ),
        )

    def _thd_sample(
        self,
        connection: sqlite3.Connection,
        torrent_id: int,
        request: AnnounceRequest,
        counts: SwarmCounts,
    ) -> list[Peer]:
        wanted = request.numwant
        only_leechers = request.wants_only_leechers
        if not only_leechers and counts.complete + counts.incomplete <= wanted:
            # Everyone fits: one read of the swarm instead of a sample of each kind.
            peers = _thd_packed(connection, _WHOLE_SWARM, (torrent_id, request.peer_id))
            return _rotated(peers, self._random)
        groups = (
            ((0, counts.incomplete),)
            if only_leechers
            else ((0, counts.incomplete), (1, counts.complete))
        )
        found: list[Peer] = []
        for seeder, size in groups:
            found.extend(
                self._thd_sample_group(
                    connection, torrent_id, seeder, size, request.peer_id, wanted
                )
            )
        if len(found) > wanted:
            found = self._random.sample(found, wanted)
        return found

    def _thd_sample_group(
        self,
        connection: sqlite3.Connection,
        torrent_id: int,
        seeder: int,
        size: int,
        peer_id: bytes,
        wanted: int,
    ) -> list[Peer]:
        """Up to C{wanted} peers of one kind, read in slot order from a random starting slot."""
        if size <= wanted:
            # The whole group is wanted anyway, so where reading starts only changes the order.
            peers = _thd_packed(connection, _WHOLE_GROUP, (torrent_id, seeder, peer_id))
            return _rotated(peers, self._random)
        start = self._random.getrandbits(_SLOT_BITS)
        peers = _thd_packed(connection, _SAMPLE_FROM, (torrent_id, seeder, start, peer_id, wanted))
        if len(peers) < wanted:
            peers += _thd_packed(
                connection,
                _SAMPLE_BEFORE,
                (torrent_id, seeder, start, peer_id, wanted - len(peers)),
            )
        return peers

    def _thd_counts(self, connection: sqlite3.Connection, torrent_id: int) -> SwarmCounts:
        rows = connection.execute(
            "SELECT seeders, leechers, downloaded FROM torrents WHERE id = ?", (torrent_id,)
        ).fetchall()
        return SwarmCounts(*rows[0]) if rows else NO_COUNTS

    def _thd_scrape(
        self, connection: sqlite3.Connection, info_hashes: Sequence[bytes]
    ) -> dict[bytes, SwarmCounts]:
        counts = {}
        for info_hash in info_hashes:
            rows = connection.execute(
                "SELECT seeders, leechers, downloaded FROM torrents WHERE info_hash = ?",
                (info_hash,),
            ).fetchall()
            counts[info_hash] = SwarmCounts(*rows[0]) if rows else NO_COUNTS
        return counts

    def _thd_expire_chunk(self, connection: sqlite3.Connection, cutoff: int) -> int:
        rows = connection.execute(
            "DELETE FROM peers WHERE (torrent_id, peer_id) IN ("
            " SELECT torrent_id, peer_id FROM peers INDEXED BY peers_by_age"
            " WHERE last_seen < ? LIMIT ?) RETURNING 1",
            (cutoff, EXPIRE_CHUNK),
        ).fetchall()
        return len(rows)

    def _thd_forget_empty_torrents(self, connection: sqlite3.Connection) -> None:
        # A torrent with no peers and no completions carries nothing worth keeping.
        removed = connection.execute(
            "DELETE FROM torrents WHERE seeders = 0 AND leechers = 0 AND downloaded = 0 RETURNING 1"
        ).fetchall()
        if removed:
            self._thd_forget_torrent_ids()

    def _thd_forget_torrent_ids(self) -> None:
        self._torrent_ids.clear()
