"""The database thread's shared transactions when the disk fails."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.trial.unittest import TestCase

from tracker.store.batching import FULL, IO_ERROR, BatchingConnection, disk_error


def _insert(value: int) -> Any:
    def job(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO t (x) VALUES (?)", (value,)).close()

    return job


class BatchTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="tracker-batching-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "db.sqlite3")
        setup = sqlite3.connect(self.path)
        setup.execute("CREATE TABLE t (x INTEGER)")
        setup.commit()
        setup.close()
        self.connections = 0

    def connect(self) -> sqlite3.Connection:
        self.connections += 1
        return sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)

    @inlineCallbacks
    def started(self) -> Any:
        db = BatchingConnection(reactor)
        yield db.open(self.connect)
        self.addCleanup(db.close)
        return db

    def stored(self) -> list[int]:
        connection = sqlite3.connect(self.path)
        try:
            return [row[0] for row in connection.execute("SELECT x FROM t ORDER BY x")]
        finally:
            connection.close()

    @inlineCallbacks
    def test_disk_error_fails_the_whole_batch(self) -> Any:
        """When one job of a batch finds the disk full, every job of the batch fails and none
        of their changes is kept: SQLite has rolled the transaction back, and a job run after
        that must not be committed on its own while its caller is told it failed."""
        db = yield self.started()

        def full_after_rollback(connection: sqlite3.Connection) -> None:
            # What SQLITE_FULL in the middle of a transaction does: SQLite rolls it back.
            connection.execute("INSERT INTO t (x) VALUES (1)").close()
            connection.execute("ROLLBACK").close()
            raise sqlite3.OperationalError("database or disk is full")

        # Queued while the first batch runs, so that the three share the second.
        first = db.run(_insert(0))
        batch = [db.run(_insert(2)), db.run(full_after_rollback), db.run(_insert(3))]
        yield first
        results = yield DeferredList(batch, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [False, False, False])
        self.assertEqual(self.stored(), [0])

    @inlineCallbacks
    def test_job_error_fails_that_job_alone(self) -> Any:
        """A job's own mistake (not the disk's) fails that job only; the rest of its batch is
        committed."""
        db = yield self.started()

        def bad(connection: sqlite3.Connection) -> None:
            connection.execute("INSERT INTO nowhere VALUES (1)")

        first = db.run(_insert(0))
        batch = [db.run(_insert(1)), db.run(bad), db.run(_insert(2))]
        yield first
        results = yield DeferredList(batch, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, False, True])
        self.assertEqual(self.stored(), [0, 1, 2])

    @inlineCallbacks
    def test_io_error_reopens_the_connection(self) -> Any:
        """After an I/O error (a failed fsync among them) the connection is closed and the next
        batch runs on a new one, which writes."""
        db = yield self.started()

        def failing(connection: sqlite3.Connection) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        with self.assertRaises(sqlite3.OperationalError):
            yield db.run(failing)
        self.assertEqual(self.connections, 1)
        yield db.run(_insert(7))
        self.assertEqual(self.connections, 2)
        self.assertEqual(self.stored(), [7])

    @inlineCallbacks
    def test_full_disk_keeps_the_connection(self) -> Any:
        """A full disk is no reason to doubt the connection: SQLite rolled back cleanly, and
        the next batch uses the same one."""
        db = yield self.started()

        def full(connection: sqlite3.Connection) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        with self.assertRaises(sqlite3.OperationalError):
            yield db.run(full)
        yield db.run(_insert(1))
        self.assertEqual(self.connections, 1)

    def test_disk_errors_are_told_apart(self) -> None:
        """SQLite's full disk and I/O errors are recognised, by name or by message (PyPy's
        sqlite3 gives no name); other errors are not the disk's."""
        self.assertEqual(disk_error(sqlite3.OperationalError("database or disk is full")), FULL)
        self.assertEqual(disk_error(sqlite3.OperationalError("disk I/O error")), IO_ERROR)
        self.assertIsNone(disk_error(sqlite3.OperationalError("no such table: t")))
        self.assertIsNone(disk_error(ValueError("disk I/O error")))
        named = sqlite3.OperationalError("disk I/O error")
        named.sqlite_errorname = "SQLITE_IOERR_FSYNC"  # type: ignore[attr-defined]
        self.assertEqual(disk_error(named), IO_ERROR)
