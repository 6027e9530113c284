"""
The SQLite peer store: the tracker's embedded default.

Announces and scrapes are answered at once from the swarm index in memory
(L{tracker.swarms.SwarmIndex}); the SQLite file is its durable copy. Every change the index
records is written behind, on the database's own thread, in one transaction every
C{commit_every} seconds (a group commit), so the reactor never waits for the disk and a commit
costs one thread hop however many announces it carries. At start the file is read back into a
new index, on the database thread.

What a crash can lose: the changes of the last C{commit_every} seconds plus those of a commit
still being written (in WAL mode with C{synchronous=NORMAL}, a committed transaction survives a
process crash; only a power cut can take back the last few).
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tracker.announce import AnnounceRequest
from tracker.interfaces import AnnounceResult, Answer, IPeerStore, SwarmCounts
from tracker.store.batching import BatchingConnection, StoreStopped
from tracker.store.schema import connect
from tracker.swarms import PeerRow, SwarmIndex

log = Logger()

#: Seconds between group commits: the most a crash can lose, besides a commit in flight.
COMMIT_EVERY = 0.1
#: Peers looked at per slice of expiry, between which announces are answered.
EXPIRE_CHUNK = 5000

_SAVE = (
    "INSERT INTO peers (info_hash, peer_id, address, seeder, last_seen, completed)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (info_hash, peer_id) DO UPDATE SET"
    " address = excluded.address, seeder = excluded.seeder, last_seen = excluded.last_seen,"
    " completed = excluded.completed"
)
_FORGET = "DELETE FROM peers WHERE info_hash = ? AND peer_id = ?"
_COUNT = (
    "INSERT INTO torrents (info_hash, downloaded) VALUES (?, ?) ON CONFLICT (info_hash)"
    " DO UPDATE SET downloaded = max(downloaded, excluded.downloaded)"
)

PeerChanges = dict[tuple[bytes, bytes], PeerRow]


def _thd_load(connection: sqlite3.Connection, rng: random.Random | None) -> SwarmIndex:
    """A new index holding everything the file holds."""
    index = SwarmIndex(rng, journal=True)
    completions = connection.execute("SELECT info_hash, downloaded FROM torrents")
    peers = connection.execute(
        "SELECT info_hash, peer_id, address, seeder, last_seen, completed FROM peers"
    )
    try:
        index.load(completions, peers)
    finally:
        # PyPy's sqlite3 keeps an unfinished statement open until it is closed.
        completions.close()
        peers.close()
    return index


def _thd_save(
    connection: sqlite3.Connection, peers: PeerChanges, completions: dict[bytes, int]
) -> None:
    gone = [key for key, row in peers.items() if row is None]
    if gone:
        connection.executemany(_FORGET, gone)
    saved = [(*key, *row) for key, row in peers.items() if row is not None]
    if saved:
        connection.executemany(_SAVE, saved)
    if completions:
        connection.executemany(_COUNT, completions.items())


@implementer(IPeerStore)
class SQLitePeerStore:
    """
    Swarms in memory, kept in one SQLite file by one dedicated thread. C{path} may be
    C{":memory:"} for a store that lasts as long as the process.
    """

    def __init__(
        self,
        path: str,
        reactor: Any = None,
        rng: random.Random | None = None,
        commit_every: float = COMMIT_EVERY,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.path = path
        self._reactor = reactor
        self._random = rng
        self._commit_every = commit_every
        self._db = BatchingConnection(reactor)
        self._index: SwarmIndex | None = None
        #: Announces and scrapes that arrived while the file was being read.
        self._waiting: list[Deferred[None]] = []
        self._stopping = False
        #: A commit is scheduled or being written; the next is scheduled when it is done.
        self._commit_pending = False
        self._commit_call: IDelayedCall | None = None
        self._cooperator = Cooperator(scheduler=lambda work: reactor.callLater(0, work))

    def start(self) -> Deferred[None]:
        opened = self._db.open(lambda: connect(self.path))
        opened.addCallback(lambda _: self._db.run(lambda c: _thd_load(c, self._random)))
        opened.addCallbacks(self._loaded, self._load_failed)
        return opened

    def _loaded(self, index: SwarmIndex) -> None:
        self._index = index
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def _load_failed(self, failure: Failure) -> Failure:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(failure)
        return failure

    def _ready(self) -> SwarmIndex | None:
        """The index, or None while it is loading; refuses work once the store is stopping."""
        if self._stopping:
            raise StoreStopped("the tracker store is stopping")
        return self._index

    def _when_loaded(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def announce(self, request: AnnounceRequest, now: int) -> Answer[AnnounceResult]:
        index = self._ready()
        if index is None:
            return self._when_loaded().addCallback(lambda _: self.announce(request, now))
        result = index.announce(request, now)
        if not self._commit_pending:
            self._schedule_commit()
        return result

    def scrape(self, info_hashes: Sequence[bytes]) -> Answer[dict[bytes, SwarmCounts]]:
        index = self._ready()
        if index is None:
            return self._when_loaded().addCallback(lambda _: self.scrape(info_hashes))
        return index.scrape(info_hashes)

    def expire(self, cutoff: int) -> Deferred[int]:
        index = self._ready()
        if index is None:
            return self._when_loaded().addCallback(lambda _: self.expire(cutoff))
        removed = [0]
        done = self._cooperator.coiterate(index.expire(cutoff, removed, EXPIRE_CHUNK))

        def finished(_: object) -> int:
            if removed[0] and not self._commit_pending:
                self._schedule_commit()
            return removed[0]

        return done.addCallback(finished)

    # Writing behind.

    def _schedule_commit(self) -> None:
        if self._stopping:
            return
        self._commit_pending = True
        self._commit_call = self._reactor.callLater(self._commit_every, self._commit)

    def _commit(self) -> Deferred[None]:
        self._commit_call = None
        index = self._index
        assert index is not None
        peers, completions = index.take_changes()
        if not peers and not completions:
            self._commit_pending = False
            return succeed(None)
        saved = self._db.run(lambda c: _thd_save(c, peers, completions))
        return saved.addCallbacks(
            self._committed, self._commit_failed, errbackArgs=(peers, completions)
        )

    def _committed(self, _: None) -> None:
        self._commit_pending = False
        assert self._index is not None
        if self._index.has_changes():
            self._schedule_commit()

    def _commit_failed(
        self, failure: Failure, peers: PeerChanges, completions: dict[bytes, int]
    ) -> None:
        # Memory still has everything: keep the changes and try again with the next commit.
        log.failure(
            "could not save {count} peer changes to {path}; will retry",
            failure,
            count=len(peers),
            path=self.path,
        )
        assert self._index is not None
        self._index.restore_changes(peers, completions)
        self._commit_pending = False
        self._schedule_commit()

    def stop(self) -> Deferred[None]:
        """Write what is not saved yet, then close the file on its thread."""
        if self._stopping:
            return self._db.close()
        self._stopping = True
        self._cooperator.stop()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(StoreStopped("the tracker store stopped before it finished loading"))
        if self._commit_call is not None and self._commit_call.active():
            self._commit_call.cancel()
        self._commit_call = None
        if self._index is not None and self._index.has_changes():
            # Queued behind any commit being written, so the last state wins.
            peers, completions = self._index.take_changes()
            self._db.run(lambda c: _thd_save(c, peers, completions)).addErrback(
                lambda f: log.failure(
                    "could not save the last {count} peer changes to {path}",
                    f,
                    count=len(peers),
                    path=self.path,
                )
            )
        return self._db.close()
