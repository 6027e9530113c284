"""
One database thread that runs queued work in shared transactions.

A transaction per job would cost a commit each. Work submitted while a batch is running waits on
the reactor and goes into the next batch as a whole, in one transaction; when the thread is
idle, a job runs at once with no added delay.
"""

from __future__ import annotations

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


class BatchingConnection:
    """
    Owns one SQLite connection on one dedicated thread. Every job is a function of the
    connection, named C{_thd_*} by convention, that returns plain values.
    """

    def __init__(self, reactor: IReactorFromThreads, name: str = "tracker-db") -> None:
        self._reactor = reactor
        self._pool = ThreadPool(1, 1, name=name)
        self._connection: sqlite3.Connection | None = None
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
        assert connection is not None, "database used before it was opened"
        outcomes: list[Outcome] = []
        connection.execute("BEGIN IMMEDIATE")
        try:
            for job in jobs:
                try:
                    outcomes.append((True, job(connection)))
                except Exception:
                    outcomes.append((False, Failure()))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return outcomes

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
