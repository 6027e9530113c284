"""
The SQLite peer store: the tracker's embedded default.

Announces and scrapes are answered at once from the swarm index in memory
(L{tracker.core.swarms.SwarmIndex}); the SQLite file is its journal (L{tracker.core.journal}).
The index writes down every change as it makes it; every C{commit_every} seconds the changes so
far go to the database thread and into one row, in one transaction (a group commit), so the reactor
never waits for the disk and saving a change costs a few bytes, not a B-tree update. When the
journal has grown to a few times what the index holds, a checkpoint writes the index out whole,
a slice at a time between announces, and the rows before it are deleted. At start the rows are
replayed into a new index, on the database thread.

What a crash can lose: the changes of the last C{commit_every} seconds plus those of a commit
still being written (in WAL mode with C{synchronous=FULL}, a committed transaction has reached the
disk, and survives a process crash and a power cut alike).

When the disk fails (full, or an I/O error) the store keeps answering from memory, keeps the
changes it could not write and tries again, with a backoff, until writing works: see
L{SQLitePeerStore}.

A file has one store: the store locks it (L{tracker.store.lock}) from start to stop, and a
second store on the same file, here or in another process, fails to start with
L{tracker.store.lock.DatabaseInUse}.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from itertools import count
from typing import Any, NamedTuple, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import CooperativeTask
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tracker.core.announce import AnnounceRequest
from tracker.core.interfaces import (
    AnnounceResult,
    Answer,
    IIndexedStore,
    IPeerStore,
    StoreStopped,
    SwarmCounts,
)
from tracker.core.journal import PEER, replay
from tracker.core.meters import CommitMeter
from tracker.core.slices import cooperator
from tracker.core.swarms import SwarmIndex
from tracker.store.batching import BatchingConnection, disk_error
from tracker.store.lock import DatabaseLock
from tracker.store.schema import connect

log = Logger()

#: Seconds between group commits: the most a crash can lose, besides a commit in flight.
COMMIT_EVERY = 0.1
#: Peers looked at per step of expiry or checkpoint; steps run for slices.SLICE_SECONDS a turn.
SLICE = 500
#: A checkpoint starts when the journal is this many times the size of the last one...
CHECKPOINT_GROWTH = 2
#: ... and at least this many bytes.
CHECKPOINT_MIN_BYTES = 16 * 1024 * 1024
#: Seconds before the first retry of a failed commit; each next waits twice as long, up to
#: RETRY_MAX.
RETRY_FIRST = 0.1
RETRY_MAX = 30.0
#: While commits fail, the log says so at most once in this many seconds.
REPORT_EVERY = 60.0
#: Bytes of changes kept in memory while commits fail, unless told otherwise.
UNWRITTEN_LIMIT = 64 * 1024 * 1024

_V1_TABLES = ("v1_peers", "v1_torrents")

T = TypeVar("T")


#: The modes a tracker runs in, as the database records them (the run_mode table).
PUBLIC = "public"
PRIVATE = "private"


class _Loaded(NamedTuple):
    swarms: SwarmIndex
    next_seq: int
    journal_bytes: int
    has_v1_tables: bool
    #: The mode the file was last used in, when it was another: its peers were forgotten.
    other_mode: str | None
    forgotten: int


def _thd_load(connection: sqlite3.Connection, rng: random.Random | None, mode: str) -> _Loaded:
    """A new index holding everything the file holds, less its peers if they were announced
    in another mode than C{mode} (see L{_thd_switch_mode})."""
    index = SwarmIndex(rng, journal=True)
    has_v1 = bool(
        connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_V1_TABLES[0],)
        ).fetchall()
    )
    if has_v1:
        _thd_load_v1(connection, index)
    next_seq, size = 1, 0
    # Row by row: a journal can be far larger than the index it rebuilds.
    rows = connection.execute("SELECT seq, records FROM journal ORDER BY seq")
    try:
        for seq, records in rows:
            replay(records, index)
            next_seq, size = seq + 1, size + len(records)
    finally:
        # PyPy's sqlite3 keeps an unfinished statement open until it is closed.
        rows.close()
    index.take_changes()
    other_mode, forgotten, written = _thd_switch_mode(connection, index, mode, next_seq)
    next_seq += len(written)
    size += sum(map(len, written))
    return _Loaded(index, next_seq, size, has_v1, other_mode, forgotten)


def _thd_switch_mode(
    connection: sqlite3.Connection, index: SwarmIndex, mode: str, next_seq: int
) -> tuple[str | None, int, list[bytes]]:
    """
    Record C{mode} as the file's. When the file was last used in the other mode, forget the
    peers loaded into C{index} (not the completion counts) and journal that from C{next_seq}
    on, in the same transaction: peers a public tracker stored must not reach a private one's
    users, nor a private tracker's peers the public. Peers are soft state: they come back with
    their next announce. The mode the file had, if another, the peers forgotten and the
    journal rows written.
    """
    rows = connection.execute("SELECT mode FROM run_mode").fetchall()
    recorded = rows[0][0] if rows else None
    if recorded == mode:
        return None, 0, []
    connection.execute("DELETE FROM run_mode")
    connection.execute("INSERT INTO run_mode (mode) VALUES (?)", (mode,))
    if recorded is None:
        # A new file: nothing was stored in any mode.
        return None, 0, []
    forgotten = index.forget_peers()
    written = index.take_changes()
    connection.executemany(
        "INSERT INTO journal (seq, records) VALUES (?, ?)", zip(count(next_seq), written)
    )
    return recorded, forgotten, written


def _thd_load_v1(connection: sqlite3.Connection, index: SwarmIndex) -> None:
    for info_hash, downloaded in connection.execute(
        "SELECT info_hash, downloaded FROM v1_torrents"
    ).fetchall():
        index.load_count(bytes(info_hash), downloaded)
    rows = connection.execute(
        "SELECT t.info_hash, p.peer_id, p.address, p.seeder, p.last_seen, p.completed"
        " FROM v1_peers AS p JOIN v1_torrents AS t ON t.id = p.torrent_id"
    )
    try:
        for info_hash, peer_id, address, seeder, seen, completed in rows:
            index.load_peer(
                bytes(info_hash), bytes(peer_id), bytes(address), seeder, seen, completed
            )
    finally:
        rows.close()


def _thd_save(
    connection: sqlite3.Connection, seq: int, records: list[bytes], obsolete_before: int | None
) -> int | None:
    """Append one commit's records, a row a piece from C{seq} on; after a checkpoint, delete
    what it superseded and return the size of the journal left."""
    if records:
        connection.executemany(
            "INSERT INTO journal (seq, records) VALUES (?, ?)", zip(count(seq), records)
        )
    if obsolete_before is None:
        return None
    connection.execute("DELETE FROM journal WHERE seq < ?", (obsolete_before,))
    for table in _V1_TABLES:
        connection.execute(f"DROP TABLE IF EXISTS {table}")
    rows = connection.execute("SELECT coalesce(sum(length(records)), 0) FROM journal").fetchall()
    return int(rows[0][0])


@implementer(IPeerStore, IIndexedStore)
class SQLitePeerStore:
    """
    Swarms in memory, kept in one SQLite file by one dedicated thread. C{path} may be
    C{":memory:"} for a store that lasts as long as the process. C{private}: the store serves a
    private tracker (passkeys); the file remembers the mode, and a store started in the other
    mode than the file's last forgets the peers it holds (see L{_thd_switch_mode}).

    When a commit fails (the disk full, or an I/O error), the store goes on answering from
    memory and keeps the changes it could not write, in order, with those made since; it tries
    again after L{RETRY_FIRST} seconds, then twice as long each time up to L{RETRY_MAX}, and the
    first try that works writes them all. L{commits} tells how it is going (for C{/metrics} and
    C{/stats}); the log says it once when commits start failing, at most once every
    L{REPORT_EVERY} seconds while they fail, and once when they work again.

    Kept changes are bounded by C{unwritten_limit} bytes. Past it they are all dropped, not
    some of them: they are a copy of what the index in memory holds, completion counts
    included, so once commits work again the store writes the whole index (a checkpoint) and
    the file holds every change again, dropped or not. Keeping completion counts alone would buy
    nothing: a tracker that stops while it cannot write loses what it had not written, kept or
    not. Access lists and passkeys' totals are not among these changes: an admin change that
    cannot be written fails with an error, and passkeys keep their unwritten totals (two
    numbers each) until a write works.
    """

    def __init__(
        self,
        path: str,
        reactor: Any = None,
        rng: random.Random | None = None,
        commit_every: float = COMMIT_EVERY,
        private: bool = False,
        unwritten_limit: int = UNWRITTEN_LIMIT,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.path = path
        self._reactor = reactor
        self._random = rng
        self._commit_every = commit_every
        self._mode = PRIVATE if private else PUBLIC
        self._db = BatchingConnection(reactor)
        self._lock = None if path == ":memory:" else DatabaseLock(path)
        self._opened = False
        self._index: SwarmIndex | None = None
        #: Announces and scrapes that arrived while the file was being read.
        self._waiting: list[Deferred[None]] = []
        self._stopping = False
        #: The last commit, as the store stops, is under way.
        self._last = False
        #: While the first call of stop is under way: later calls, waiting for it.
        self._stop_waiters: list[Deferred[None]] | None = None
        #: A commit is scheduled or being written; the next is scheduled when it is done.
        self._commit_pending = False
        self._commit_call: IDelayedCall | None = None
        self._cooperator = cooperator(reactor)
        self._next_seq = 1
        #: Changes taken from the index and not written yet, in order, and their bytes.
        self._unwritten: list[bytes] = []
        self._kept_bytes = 0
        #: A commit is on the database thread; these wait for it to end.
        self._saving = False
        self._save_waiters: list[Deferred[None]] = []
        #: While commits fail: the next try, the wait before it, when the log last said so.
        self._retry_call: IDelayedCall | None = None
        self._retry_delay = 0.0
        self._reported = 0.0
        #: One more each time kept changes are dropped: a commit taken before cannot put back
        #: what it held, nor end a rewrite of the index.
        self._generation = 0
        #: Bytes in the journal on disk, and in its last checkpoint.
        self._journal_bytes = 0
        self._checkpoint_bytes = 0
        self._checkpointing = False
        self._checkpoint_task: CooperativeTask[Any] | None = None
        #: Set when a checkpoint is written: the next commit deletes the rows before this seq.
        self._obsolete_before: int | None = None
        #: Every group commit's size and duration, and whether commits fail, for the metrics.
        self.commits = CommitMeter(unwritten_limit)

    @property
    def index(self) -> SwarmIndex | None:
        """The swarms in memory; None until the file has been read."""
        return self._index

    def lock(self) -> None:
        """
        Take the file for this store alone now, or raise L{tracker.store.lock.DatabaseInUse}
        (C{OSError} if the lock file cannot be made): for a daemon, which must refuse to start
        before it listens. Returns at once (see L{DatabaseLock.acquire}). L{start} takes the
        lock if this did not; L{stop} lets go of it.
        """
        if self._lock is not None:
            self._lock.acquire()

    def start(self) -> Deferred[None]:
        self._opened = True
        opened = self._db.open(self._thd_connect)
        opened.addCallback(lambda _: self._db.run(lambda c: _thd_load(c, self._random, self._mode)))
        opened.addCallbacks(self._loaded, self._load_failed)
        return opened

    def _thd_connect(self) -> sqlite3.Connection:
        # On the database thread, as all of the file's work is: the lock never waits for
        # another tracker, but making its file is a write to the disk like any other. A
        # reconnection after a disk error keeps the lock it holds, whatever becomes of it.
        lock = self._lock
        taken = lock is not None and not lock.held
        if lock is not None and taken:
            lock.acquire()
        try:
            return connect(self.path)
        except BaseException:
            if taken:
                self._thd_unlock()
            raise

    def _thd_unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def _loaded(self, loaded: _Loaded) -> None:
        self._index = loaded.swarms
        self._next_seq = loaded.next_seq
        self._journal_bytes = loaded.journal_bytes
        self._checkpoint_bytes = loaded.swarms.peer_count() * (PEER.size + 6)
        if loaded.forgotten:
            log.info(
                "{path} was last used by a {other} tracker: its stored peers ({peers}) are"
                " forgotten, completion counts kept; they come back as they announce to this"
                " {mode} one",
                path=self.path,
                other=loaded.other_mode,
                peers=loaded.forgotten,
                mode=self._mode,
            )
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)
        if loaded.has_v1_tables or self._journal_grown():
            self._start_checkpoint()

    def _load_failed(self, failure: Failure) -> Deferred[None]:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(failure)
        # Nothing can use a store that did not load: release its thread and file now.
        self._stopping = True
        return self._db.close(self._thd_unlock).addBoth(lambda _: failure)

    def _ready(self) -> SwarmIndex | None:
        """The index, or None while it is loading; refuses work once the store is stopping."""
        if self._stopping:
            raise StoreStopped("the tracker store is stopping")
        return self._index

    def run(self, job: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """
        Run C{job} (a C{_thd_*} function of the connection) on the database thread, in the next
        group transaction: the tracker's other durable state (access lists, passkeys) lives in
        this file too, and a file has one writer.
        """
        return self._db.run(job)

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

    def count_completion(self, info_hash: bytes, now: int) -> Answer[None]:
        index = self._ready()
        if index is None:
            return self._when_loaded().addCallback(lambda _: self.count_completion(info_hash, now))
        index.count_completion(info_hash, now)
        if not self._commit_pending:
            self._schedule_commit()
        return None

    def expire(self, cutoff: int) -> Deferred[int]:
        if self._stopping:
            return fail(StoreStopped("the tracker store is stopping"))
        index = self._index
        if index is None:
            return self._when_loaded().addCallback(lambda _: self.expire(cutoff))
        removed = [0]
        done = self._cooperator.coiterate(index.expire(cutoff, removed, SLICE))

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
        """Take the index's changes and write every change not written yet; unless a commit is
        being written (the next follows it) or commits fail (the next try writes them)."""
        self._commit_call = None
        self._take_changes()
        if self._saving:
            self._bound_unwritten()
            return succeed(None)
        if self._retry_call is not None:
            self._bound_unwritten()
            # Announces schedule the next commit, which takes their changes in turn; a
            # checkpoint under way has its records taken as it goes.
            self._commit_pending = False
            if self._checkpointing:
                self._schedule_commit()
            return succeed(None)
        return self._save()

    def _take_changes(self) -> None:
        index = self._index
        assert index is not None
        if index.has_changes():
            records = index.take_changes()
            size = sum(map(len, records))
            self._unwritten.extend(records)
            self._kept_bytes += size
            self.commits.unwritten += size

    def _bound_unwritten(self) -> None:
        """While commits fail, drop the kept changes once they pass the limit. Only changes
        that must wait: those about to be written are tried first, so that a rewrite of an
        index larger than the limit can still be written once the disk works."""
        meter = self.commits
        if meter.failing_since is not None and meter.unwritten > meter.unwritten_limit:
            self._drop_unwritten()

    def _save(self) -> Deferred[None]:
        obsolete_before, self._obsolete_before = self._obsolete_before, None
        if not self._unwritten and obsolete_before is None:
            self._commit_pending = False
            if self.commits.failing_since is not None and self._retry_call is None:
                # Nothing to try the disk with yet: try again later all the same.
                self._schedule_retry()
            return succeed(None)
        records, self._unwritten = self._unwritten, []
        size, self._kept_bytes = self._kept_bytes, 0
        seq = self._next_seq
        self._next_seq += len(records)
        self._saving = True
        started = time.perf_counter()
        saved = self._db.run(lambda c: _thd_save(c, seq, records, obsolete_before))
        return saved.addCallbacks(
            self._saved,
            self._save_failed,
            callbackArgs=(size, started, self._generation),
            errbackArgs=(records, size, obsolete_before, self._generation),
        )

    def _saved(self, journal_left: int | None, size: int, started: float, generation: int) -> None:
        self._saving = False
        self._commit_pending = False
        meter = self.commits
        meter.unwritten -= size
        meter.size.observe(size)
        meter.latency.observe(time.perf_counter() - started)
        if journal_left is None:
            self._journal_bytes += size
        else:
            self._journal_bytes = journal_left
            self._checkpointing = False
            # A checkpoint begun since the last drop holds everything that was dropped.
            if meter.rewrite_pending and generation == self._generation:
                meter.rewrite_pending = False
                log.info(
                    "the database {path} holds every change again: the whole index is written",
                    path=self.path,
                )
        if meter.failing_since is not None:
            self._recovered(size)
        self._fire_save_waiters()
        assert self._index is not None
        if self._stopping:
            return
        if not self._checkpointing and (meter.rewrite_pending or self._journal_grown()):
            self._start_checkpoint()
        if self._unwritten or self._index.has_changes() or self._obsolete_before is not None:
            self._schedule_commit()

    def _save_failed(
        self,
        failure: Failure,
        records: list[bytes],
        size: int,
        obsolete_before: int | None,
        generation: int,
    ) -> None:
        self._saving = False
        self._commit_pending = False
        meter = self.commits
        meter.failures += 1
        meter.error = _describe(failure)
        if generation == self._generation:
            # Before the changes taken since: a journal is replayed in order.
            self._unwritten[:0] = records
            self._kept_bytes += size
            if obsolete_before is not None and self._obsolete_before is None:
                self._obsolete_before = obsolete_before
        else:
            # Dropped while they were being written: the rewrite of the index holds them.
            meter.unwritten -= size
            meter.dropped += size
        self._fire_save_waiters()
        if self._stopping:
            if not self._last:
                return  # the last commit tries them again
            log.error(
                "could not write {size} bytes of changes to {path} before stopping: {error};"
                " the file holds the tracker's state as it was when its last commit worked",
                size=meter.unwritten,
                path=self.path,
                error=meter.error,
            )
            return
        now = self._reactor.seconds()
        if meter.failing_since is None:
            meter.failing_since = now
            self._retry_delay = RETRY_FIRST
            self._reported = now
            if disk_error(failure.value) is None:
                log.failure(
                    "could not write to the database {path}; keeping the changes and retrying",
                    failure,
                    path=self.path,
                )
            else:
                log.error(
                    "cannot write to the database {path}: {error}; answering from memory,"
                    " keeping the changes not written ({size} bytes, at most {limit}) and"
                    " retrying",
                    path=self.path,
                    error=meter.error,
                    size=meter.unwritten,
                    limit=meter.unwritten_limit,
                )
        else:
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
            if now - self._reported >= REPORT_EVERY:
                self._reported = now
                log.error(
                    "database writes to {path} failing since {since}: {error};"
                    " {size} bytes of changes waiting, {failures} commits failed so far",
                    path=self.path,
                    since=_clock(meter.failing_since),
                    error=meter.error,
                    size=meter.unwritten,
                    failures=meter.failures,
                )
        self._bound_unwritten()
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if not self._stopping:
            self._retry_call = self._reactor.callLater(self._retry_delay, self._retry)

    def _retry(self) -> None:
        self._retry_call = None
        if self._commit_call is not None and self._commit_call.active():
            self._commit_call.cancel()
        self._commit_call = None
        self._commit_pending = False
        assert self._index is not None
        if (
            self.commits.rewrite_pending
            and not self._checkpointing
            and not self._unwritten
            and not self._index.has_changes()
        ):
            # Nothing left to try the disk with: the rewrite of the index is the next write
            # (it schedules the commits that take its records).
            self._start_checkpoint()
            return
        self._commit_pending = True
        self._commit()

    def _recovered(self, written: int) -> None:
        meter = self.commits
        since = meter.failing_since
        assert since is not None
        meter.failing_since = None
        meter.error = ""
        log.info(
            "database writes to {path} work again after {seconds:.0f} s ({failures} commits"
            " failed so far){rewrite}",
            path=self.path,
            seconds=self._reactor.seconds() - since,
            failures=meter.failures,
            rewrite="; writing the whole index again" if meter.rewrite_pending else "",
        )

    def _drop_unwritten(self) -> None:
        """Past the limit: forget the kept changes; the whole index is to be written again."""
        meter = self.commits
        dropped = self._kept_bytes
        if not dropped:
            return
        self._unwritten = []
        self._kept_bytes = 0
        meter.unwritten -= dropped
        meter.dropped += dropped
        self._generation += 1
        # A checkpoint under way, or walked and not yet written, had records among them: it
        # must not delete the rows before it. The rewrite starts a new one.
        self._obsolete_before = None
        self._checkpointing = False
        if self._checkpoint_task is not None:
            self._checkpoint_task.stop()
        if not meter.rewrite_pending:
            meter.rewrite_pending = True
            log.warn(
                "{size} bytes of changes not written to {path} passed the limit of {limit}:"
                " dropped them (peers and completion counts alike); memory still holds them,"
                " and the whole index will be written once the database can be written",
                size=dropped,
                path=self.path,
                limit=meter.unwritten_limit,
            )

    def _idle(self) -> Deferred[None]:
        """Fires once no commit is being written."""
        if not self._saving:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._save_waiters.append(waiter)
        return waiter

    def _fire_save_waiters(self) -> None:
        waiters, self._save_waiters = self._save_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    # Checkpoints.

    def _journal_grown(self) -> bool:
        limit = max(CHECKPOINT_MIN_BYTES, CHECKPOINT_GROWTH * self._checkpoint_bytes)
        return self._journal_bytes > limit

    def _start_checkpoint(self) -> None:
        """Write the whole index into the journal, a slice at a time; once that is saved,
        every row before it is superseded."""
        assert self._index is not None
        self._checkpointing = True
        # Every row from the next commit on holds what was recorded after this moment.
        first_seq = self._next_seq
        written = [0]
        task = self._cooperator.cooperate(self._index.checkpoint(written, SLICE))
        self._checkpoint_task = task

        def walked(_: object) -> None:
            self._checkpoint_task = None
            self._checkpoint_bytes = written[0]
            self._obsolete_before = first_seq
            if not self._commit_pending:
                self._schedule_commit()

        def stopped(failure: Failure) -> None:
            # The store stopped, or the changes were dropped, mid-way: the rows written so far
            # are still a valid journal, and nothing is deleted.
            self._checkpoint_task = None
            self._checkpointing = False

        task.whenDone().addCallbacks(walked, stopped)
        if not self._commit_pending:
            # Its records are taken as it goes, not all at its end.
            self._schedule_commit()

    def stop(self) -> Deferred[None]:
        """Write what is not saved yet, then close the file and let go of its lock on its
        thread."""
        if not self._opened:
            # Locked, perhaps, but never started: there is no thread to do it on.
            self._stopping = True
            self._thd_unlock()
            return succeed(None)
        if self._stop_waiters is not None:
            waiter: Deferred[None] = Deferred()
            self._stop_waiters.append(waiter)
            return waiter
        if self._stopping:
            return self._db.close(self._thd_unlock)
        self._stopping = True
        self._stop_waiters = []
        self._cooperator.stop()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(StoreStopped("the tracker store stopped before it finished loading"))
        for call in (self._commit_call, self._retry_call):
            if call is not None and call.active():
                call.cancel()
        self._commit_call = self._retry_call = None
        stopped = self._idle()
        if self._index is not None:
            stopped.addCallback(lambda _: self._last_commit())
        stopped.addCallback(lambda _: self._db.close(self._thd_unlock))
        return stopped.addBoth(self._stopped)

    def _last_commit(self) -> Deferred[None]:
        """Everything not written, after any commit under way; and the whole index if kept
        changes were dropped, so that the file holds them after all."""
        index = self._index
        assert index is not None
        self._last = True
        self._take_changes()
        if self.commits.rewrite_pending:
            # At once, not a slice at a time: nothing is served any more.
            first_seq = self._next_seq
            for _ in index.checkpoint([0], SLICE):
                pass
            self._take_changes()
            self._obsolete_before = first_seq
        return self._save()

    def _stopped(self, result: object) -> object:
        waiters, self._stop_waiters = self._stop_waiters or [], None
        for waiter in waiters:
            waiter.callback(None)
        return result


def _describe(failure: Failure) -> str:
    """Why a commit failed, in a few words: SQLite's message, and its error name if known."""
    error = failure.value
    name = getattr(error, "sqlite_errorname", None)
    text = str(error) or type(error).__name__
    return f"{text} ({name})" if name else text


def _clock(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))
