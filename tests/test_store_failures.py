"""
The SQLite store when its commits fail (the disk full, or an I/O error): it answers from
memory, keeps what it could not write within a bound, retries with a backoff, says so in the
log sparingly, and loses nothing once the disk works again.

Failures here are made by replacing the function that writes a commit; tests/test_disk.py
fails a real file system and real system calls under a running daemon.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
import time
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import LogEvent, LogLevel, globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.helpers import info_hash, peer_id
from tests.store_contract import announce
from tracker.core.announce import COMPLETED
from tracker.core.journal import replay
from tracker.core.swarms import SwarmIndex
from tracker.store import sqlite as sqlite_store
from tracker.store.sqlite import SQLitePeerStore

FULL = "database or disk is full"


class Disk:
    """Stands in for the function that writes a commit: fails while told to, and notes the
    time of every try. Runs on the database thread; the test tells it what to do from the
    reactor's."""

    def __init__(self, test: TestCase) -> None:
        self._real = sqlite_store._thd_save
        self._lock = threading.Lock()
        self.failing = False
        #: Commits to let through before failing again (None: as many as come).
        self.allowed: int | None = None
        self.tries: list[float] = []
        self.error = FULL
        test.patch(sqlite_store, "_thd_save", self._save)

    def _save(self, *args: Any) -> Any:
        with self._lock:
            self.tries.append(time.monotonic())
            if self.failing:
                if self.allowed is None or self.allowed <= 0:
                    raise sqlite3.OperationalError(self.error)
                self.allowed -= 1
        return self._real(*args)


class StoreFailureTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="tracker-failures-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "tracker.sqlite3")
        self.disk = Disk(self)
        self.patch(sqlite_store, "RETRY_FIRST", 0.02)
        self.patch(sqlite_store, "RETRY_MAX", 0.1)
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self._observe)
        self.addCleanup(globalLogPublisher.removeObserver, self._observe)

    def _observe(self, event: LogEvent) -> None:
        if event.get("log_namespace") == sqlite_store.log.namespace:
            self.events.append(event)

    def lines(self, *levels: LogLevel) -> list[LogEvent]:
        return [event for event in self.events if event["log_level"] in levels]

    @inlineCallbacks
    def started(self, **kwargs: Any) -> Any:
        store = self.store = SQLitePeerStore(self.path, reactor, commit_every=0.02, **kwargs)
        yield store.start()
        self.addCleanup(store.stop)
        return store

    @inlineCallbacks
    def until(self, predicate: Callable[[], bool], seconds: float = 10.0) -> Any:
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                self.fail(f"not true after {seconds} s: {self.state()}")
            yield deferLater(reactor, 0.01, lambda: None)

    def state(self) -> object:
        """The last store started, inside and out: for a failure's message."""
        store = getattr(self, "store", None)
        if store is None:
            return None
        return vars(store), {name: getattr(store.commits, name) for name in store.commits.__slots__}

    def stored_index(self) -> SwarmIndex:
        """The index the file holds, read by a connection of the test's own."""
        connection = sqlite3.connect(self.path)
        index = SwarmIndex()
        try:
            for (records,) in connection.execute("SELECT records FROM journal ORDER BY seq"):
                replay(records, index)
        finally:
            connection.close()
        return index

    def assert_file_holds(self, store: SQLitePeerStore, hashes: list[bytes]) -> None:
        """The file replays to the index in memory: the same peers, the same counts."""
        stored = self.stored_index()
        self.assertEqual(stored.scrape(hashes), store.scrape(hashes))
        self.assertEqual(_peers(stored), _peers(store.index))

    @inlineCallbacks
    def test_changes_are_kept_and_written_when_the_disk_works_again(self) -> Any:
        """While commits fail the store answers from memory, keeps the changes and says how
        many bytes wait; once the disk works, every change is in the file, completions too."""
        store = yield self.started()
        self.disk.failing = True
        result = store.announce(announce(1, left=0, event=COMPLETED), 1000)
        store.announce(announce(2), 1000)
        result = store.announce(announce(3), 1000)
        self.assertEqual({p.peer_id for p in result.peers()}, {peer_id(1), peer_id(2)})
        yield self.until(lambda: store.commits.failures >= 2)
        commits = store.commits
        self.assertFalse(commits.healthy)
        self.assertIn(FULL, commits.error)
        self.assertGreater(commits.unwritten, 0)
        self.assertEqual(_peers(self.stored_index()), set())
        self.disk.failing = False
        yield self.until(lambda: store.commits.healthy)
        self.assertEqual(store.commits.unwritten, 0)
        self.assertEqual(store.commits.error, "")
        self.assert_file_holds(store, [info_hash(1)])
        self.assertEqual(store.scrape([info_hash(1)])[info_hash(1)].downloaded, 1)

    @inlineCallbacks
    def test_retries_back_off(self) -> Any:
        """Failed commits are tried again after 0.1 s, then twice as long each time, up to a
        cap (here 0.02 s doubling to 0.1 s), not at every commit."""
        store = yield self.started()
        self.disk.failing = True
        store.announce(announce(1), 1000)
        yield self.until(lambda: len(self.disk.tries) >= 7)
        tries = self.disk.tries[:7]
        gaps = [later - earlier for earlier, later in zip(tries, tries[1:])]
        waits = [0.02, 0.04, 0.08, 0.1, 0.1, 0.1]
        for gap, wait in zip(gaps, waits):
            # A timer never fires early; a busy machine may make it late.
            self.assertGreaterEqual(gap, wait - 0.005, (gaps, waits))
        self.disk.failing = False
        yield self.until(lambda: store.commits.healthy)

    @inlineCallbacks
    def test_log_says_it_once_a_minute_and_when_it_works_again(self) -> Any:
        """A disk error is one line (no traceback) when commits start failing, one line per
        REPORT_EVERY seconds at most while they fail, and one when they work again."""
        self.patch(sqlite_store, "REPORT_EVERY", 0.3)
        self.patch(sqlite_store, "RETRY_MAX", 0.02)
        store = yield self.started()
        self.disk.failing = True
        store.announce(announce(1), 1000)
        began = time.monotonic()
        yield self.until(lambda: time.monotonic() - began > 1.0 and len(self.disk.tries) > 20)
        self.disk.failing = False
        yield self.until(lambda: store.commits.healthy)
        failing = time.monotonic() - began
        errors = self.lines(LogLevel.error)
        self.assertGreaterEqual(len(errors), 2)
        self.assertLessEqual(len(errors), 1 + failing / 0.3 + 1, len(self.disk.tries))
        self.assertFalse([e for e in self.events if "log_failure" in e])
        infos = self.lines(LogLevel.info)
        self.assertEqual(len(infos), 1)
        self.assertIn("work again", infos[0]["log_format"])

    @inlineCallbacks
    def test_kept_changes_are_bounded_and_the_index_written_again(self) -> Any:
        """Past the limit the kept changes are dropped, in one log line, and memory stops
        growing (the limit, and at most the changes of one commit being tried); once the disk
        works the whole index is written, so the file holds every change after all: every peer
        and every completion."""
        limit = 4000
        # A round's announces are about 1.6 kB of changes.
        slack = 2000
        store = yield self.started(unwritten_limit=limit)
        self.disk.failing = True
        hashes = [info_hash(t) for t in range(10)]
        for round_ in range(12):
            for n in range(25):
                store.announce(announce(n, torrent=n % 10, left=n % 3), 1000 + round_)
            store.announce(announce(round_, torrent=round_ % 10, event=COMPLETED, left=0), 1000)
            yield deferLater(reactor, 0.03, lambda: None)
            self.assertLessEqual(store.commits.unwritten, limit + slack)
        commits = store.commits
        self.assertTrue(commits.rewrite_pending)
        self.assertGreater(commits.dropped, 0)
        warnings = self.lines(LogLevel.warn)
        self.assertEqual(len(warnings), 1)
        self.assertIn("dropped", warnings[0]["log_format"])
        self.disk.failing = False
        yield self.until(lambda: not store.commits.rewrite_pending and store.commits.healthy)
        yield self.until(lambda: not store.index.has_changes() and not store.commits.unwritten)
        self.assert_file_holds(store, hashes)
        self.assertEqual(sum(c.downloaded for c in store.scrape(hashes).values()), 12)

    @inlineCallbacks
    def test_checkpoint_cut_short_by_a_drop_deletes_nothing(self) -> Any:
        """A checkpoint whose records were dropped unwritten does not delete the rows before
        it: when a later commit works, the file still holds what it held."""
        self.patch(sqlite_store, "CHECKPOINT_MIN_BYTES", 1 << 30)
        first = yield self.started()
        old = [info_hash(t) for t in range(10)]
        for round_ in range(8):
            for t in range(10):
                first.announce(announce(t, torrent=t, left=0, event=COMPLETED), 1000 + round_)
            yield deferLater(reactor, 0.03, lambda: None)
        counts = first.scrape(old)
        yield first.stop()
        self.assertEqual(self.stored_index().scrape(old), counts)
        # The journal has grown past the limit: the store checkpoints as soon as it has read it.
        sqlite_store.CHECKPOINT_MIN_BYTES = 2000
        self.disk.failing = True
        store = yield self.started(unwritten_limit=1500)
        yield self.until(lambda: store.commits.failures >= 1)
        # New peers until the kept changes pass the limit and are dropped, checkpoint and all;
        # then a few more, kept.
        n = 0
        while not store.commits.rewrite_pending:
            self.assertLess(n, 1000)
            store.announce(announce(n, torrent=100 + n), 1001)
            n += 1
            yield deferLater(reactor, 0.005, lambda: None)
        for m in range(n, n + 2):
            store.announce(announce(m, torrent=100 + m), 1001)
        yield deferLater(reactor, 0.05, lambda: None)
        # One commit gets through, then the disk fails again.
        saved = store.commits.size.count
        self.disk.allowed = 1
        yield self.until(lambda: store.commits.size.count > saved)
        self.assertEqual(self.stored_index().scrape(old), counts)
        self.disk.failing = False
        yield self.until(lambda: not store.commits.rewrite_pending)

    @inlineCallbacks
    def test_stop_after_a_drop_writes_the_whole_index(self) -> Any:
        """A store stopped after it dropped kept changes, once the disk works, writes the whole
        index as it stops: the file holds every change."""
        store = SQLitePeerStore(self.path, reactor, commit_every=0.02, unwritten_limit=500)
        yield store.start()
        self.disk.failing = True
        for n in range(40):
            store.announce(announce(n, torrent=n % 4, left=0, event=COMPLETED), 1000)
            yield deferLater(reactor, 0.005, lambda: None)
        yield self.until(lambda: store.commits.rewrite_pending)
        self.disk.failing = False
        expected = store.scrape([info_hash(t) for t in range(4)])
        peers = _peers(store.index)
        yield store.stop()
        stored = self.stored_index()
        self.assertEqual(stored.scrape([info_hash(t) for t in range(4)]), expected)
        self.assertEqual(_peers(stored), peers)

    @inlineCallbacks
    def test_stop_while_failing_says_what_is_lost(self) -> Any:
        """A store stopped while the disk still fails tries once more, and says in one line
        how much it could not write."""
        store = SQLitePeerStore(self.path, reactor, commit_every=0.02)
        yield store.start()
        self.disk.failing = True
        store.announce(announce(1), 1000)
        yield self.until(lambda: store.commits.failures >= 1)
        yield store.stop()
        last = self.lines(LogLevel.error)[-1]
        self.assertIn("before stopping", last["log_format"])
        self.assertGreater(last["size"], 0)


def _peers(index: SwarmIndex | None) -> set[tuple[bytes, bytes]]:
    assert index is not None
    return {
        (info_hash, peer_id)
        for info_hash, swarm in index.swarms.items()
        for group in swarm.groups
        if group is not None
        for peer_id in group.ids
    }
