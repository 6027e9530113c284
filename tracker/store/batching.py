"""
One database thread that runs queued work in shared transactions.

A transaction per job would cost a commit each. Work submitted while a batch is running waits on
the reactor and goes into the next batch as a whole, in one transaction; when the thread is
idle, a job runs at once with no added delay.

When the disk fails (full, or an I/O error) the whole batch fails: SQLite rolls the
transaction back by itself, and a job run after that would be committed on its own, outside the
batch. After an I/O error the connection is closed and the next batch opens a new one (see
L{BatchingConnection._thd_abandon}).
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from tracker.core.interfaces import StoreStopped

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
Outcome = tuple[bool, Any]

#: What L{disk_error} calls SQLite's SQLITE_FULL, and its SQLITE_IOERR family.
FULL = "disk full"
IO_ERROR = "I/O error"


def disk_error(error: BaseException | None) -> str | None:
    """L{FULL} or L{IO_ERROR} if C{error} is SQLite saying the disk failed it; None otherwise."""
    if not isinstance(error, sqlite3.Error):
        return None
    name = getattr(error, "sqlite_errorname", None)
    if name is not None:
        if name == "SQLITE_FULL":
            return FULL
        return IO_ERROR if name.startswith("SQLITE_IOERR") else None
    # PyPy's sqlite3 (and an error made by hand) has no name: SQLite's own message says it.
    text = str(error)
    if "database or disk is full" in text:
        return FULL
    if "disk I/O error" in text:
        return IO_ERROR
    return None


class BatchingConnection:
    """
    Owns one SQLite connection on one dedicated thread. Every job is a function of the
    connection, named C{_thd_*} by convention, that returns plain values.
    """

    def __init__(self, reactor: IReactorFromThreads, name: str = "tracker-db") -> None:
        self._reactor = reactor
        self._pool = ThreadPool(1, 1, name=name)
        self._connection: sqlite3.Connection | None = None
        self._connect: Callable[[], sqlite3.Connection] | None = None
        self._pending: list[tuple[Job, Deferred[Any]]] = []
        self._running = False
        self._stopping = False
        self._drained: list[Deferred[None]] = []
        self._closed_waiters: list[Deferred[None]] = []
        self._closed = False

    def open(self, connect: Callable[[], sqlite3.Connection]) -> Deferred[None]:
        """Start the thread and open the connection inside it."""
        self._pool.start()
        opened = deferToThreadPool(self._reactor, self._pool, self._thd_open, connect)
        opened.addErrback(self._open_failed)
        return opened

    def _open_failed(self, failure: Failure) -> Failure:
        # Nothing can use a store that did not open; release its thread now.
        self._stopping = True
        self._stop_pool(None)
        return failure

    def _thd_open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._connection = connect()

    def run(self, job: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        """Run C{job} in the next transaction on the database thread."""
        if self._stopping:
            return fail(StoreStopped("the tracker store is stopping"))
        d: Deferred[T] = Deferred()
        self._pending.append((job, d))
        if not self._running:
            self._start_batch()
        return d

    def _start_batch(self) -> None:
        batch, self._pending = self._pending, []
        self._running = True
        jobs = [job for job, _ in batch]
        outcome = deferToThreadPool(self._reactor, self._pool, self._thd_run_batch, jobs)
        outcome.addBoth(self._batch_done, [d for _, d in batch])

    def _thd_run_batch(self, jobs: list[Job]) -> list[Outcome]:
        connection = self._connection
        if connection is None:
            # The last batch hit an I/O error: a new connection (this raises if it cannot).
            assert self._connect is not None, "database used before it was opened"
            connection = self._connection = self._connect()
        outcomes: list[Outcome] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for job in jobs:
                try:
                    outcomes.append((True, job(connection)))
                except Exception as e:
                    # A job's own error fails that job alone; the disk failing fails them all,
                    # and so does a transaction SQLite has already rolled back (with
                    # SQLITE_FULL it does), lest the jobs after it be committed one by one.
                    if disk_error(e) is not None or not connection.in_transaction:
                        raise
                    outcomes.append((False, Failure()))
            connection.execute("COMMIT")
        except BaseException as e:
            self._thd_abandon(connection, e)
            raise
        return outcomes

    def _thd_abandon(self, connection: sqlite3.Connection, error: BaseException) -> None:
        """Roll back a batch that failed; after an I/O error, close the connection too."""
        with contextlib.suppress(sqlite3.Error):
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        if disk_error(error) != IO_ERROR:
            return
        # Never trust a connection an I/O error went through, least of all a failed fsync
        # (SQLITE_IOERR_FSYNC): after one, the kernel may have dropped the dirty pages it could
        # not write and report the next fsync of the same file as a success (PostgreSQL's
        # "fsyncgate", 2018), and SQLite's pager keeps its own idea of the file. With
        # synchronous=FULL (schema.connect) a failed fsync fails the commit it belongs to,
        # which SQLite rolls back, so the changes are still in the caller's memory: they are
        # written again through a new connection, opened by the next batch on a fresh view of
        # the file. Exiting instead would lose those changes and gain nothing, since a restart
        # reads the same file. The failed transaction may still turn up in the write-ahead log
        # when it is next read (its frames are there, unsynced): whatever is written again must
        # be safe to apply twice, as the journal's records (each sets a state) and passkeys'
        # totals (not increments) are.
        self._connection = None
        with contextlib.suppress(sqlite3.Error):
            connection.close()

    def _batch_done(self, result: Any, waiting: list[Deferred[Any]]) -> None:
        self._running = False
        # Queue the next batch before delivering results, so the database thread is never idle
        # while callbacks render responses on the reactor.
        if self._pending:
            self._start_batch()
        elif self._drained:
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)
        if isinstance(result, Failure):
            for d in waiting:
                d.errback(result)
            return
        for (ok, value), d in zip(result, waiting):
            if ok:
                d.callback(value)
            else:
                d.errback(value)

    def close(self, then: Callable[[], None] | None = None) -> Deferred[None]:
        """Refuse new work, finish what is queued, close the connection in its thread, and
        there run C{then} after it. Closing again waits for the first close."""
        if self._closed:
            return succeed(None)
        if self._stopping:
            closed: Deferred[None] = Deferred()
            self._closed_waiters.append(closed)
            return closed
        self._stopping = True
        drained = succeed(None)
        if self._running:
            drained = Deferred()
            self._drained.append(drained)
        drained.addCallback(
            lambda _: deferToThreadPool(self._reactor, self._pool, self._thd_close, then)
        )
        drained.addBoth(self._stop_pool)
        return drained

    def _stop_pool(self, result: Any) -> Any:
        # The pool's only thread is idle now, so joining it returns at once.
        self._pool.stop()
        self._closed = True
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        return result

    def _thd_close(self, then: Callable[[], None] | None) -> None:
        try:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
        finally:
            if then is not None:
                then()
