"""The storage contract against each backend, plus what only the SQLite store promises."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.helpers import announce, info_hash, peer_id
from tests.store_contract import StoreContract
from tracker.announce import COMPLETED
from tracker.interfaces import SwarmCounts
from tracker.store import sqlite as sqlite_store
from tracker.store.batching import StoreStopped
from tracker.store.memory import MemoryPeerStore
from tracker.store.schema import SCHEMA_VERSION, SchemaError
from tracker.store.sqlite import SQLitePeerStore


class MemoryStoreTests(StoreContract, TestCase):
    timeout = 20

    def make_store(self) -> Any:
        return MemoryPeerStore()


class SQLiteStoreTests(StoreContract, TestCase):
    timeout = 20

    def database_path(self) -> str:
        return os.path.join(self.mktemp() + "-dir", "tracker.sqlite3")

    def setUp(self) -> None:
        self._path = self.database_path()
        os.makedirs(os.path.dirname(self._path))

    def make_store_at(self, path: str) -> SQLitePeerStore:
        return SQLitePeerStore(path, reactor)

    def make_store(self) -> Any:
        return self.make_store_at(self._path)

    @inlineCallbacks
    def test_swarm_survives_restart(self) -> Any:
        """A store reopened on the same file answers with the peers and counts it had."""
        first = self.make_store_at(self._path)
        yield first.start()
        yield first.announce(announce(1, left=0, event=COMPLETED), 1000)
        yield first.announce(announce(2), 1000)
        yield first.stop()
        second = yield self.started_store()
        result = yield second.announce(announce(3), 1010)
        self.assertEqual({p.peer_id for p in result.peers}, {peer_id(1), peer_id(2)})
        self.assertEqual(result.counts, SwarmCounts(1, 2, 1))

    @inlineCallbacks
    def test_database_in_wal_mode_with_schema_version(self) -> Any:
        """The file is in WAL mode and carries the schema version."""
        store = yield self.started_store()
        yield store.announce(announce(1), 1000)
        yield store.stop()
        connection = sqlite3.connect(self._path)
        try:
            mode = connection.execute("PRAGMA journal_mode").fetchall()[0][0]
            version = connection.execute("PRAGMA user_version").fetchall()[0][0]
        finally:
            connection.close()
        self.assertEqual((mode, version), ("wal", SCHEMA_VERSION))

    @inlineCallbacks
    def test_newer_schema_refused(self) -> Any:
        """A database written by a newer tracker is refused with a clear error, not damaged."""
        connection = sqlite3.connect(self._path)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        connection.close()
        store = self.make_store()
        with self.assertRaises(SchemaError):
            yield store.start()
        yield store.stop()

    @inlineCallbacks
    def test_concurrent_announces_share_transactions(self) -> Any:
        """Announces made at once are all answered correctly, batched on the database thread."""
        store = yield self.started_store()
        results = yield gatherResults(
            [store.announce(announce(n, left=n % 2), 1000) for n in range(200)]
        )
        self.assertEqual(len(results), 200)
        final = yield store.scrape([info_hash(1)])
        self.assertEqual(final[info_hash(1)], SwarmCounts(100, 100, 0))

    @inlineCallbacks
    def test_large_expiry_runs_in_chunks(self) -> Any:
        """Expiry of more peers than one chunk removes them all and keeps counts exact."""
        self.patch(sqlite_store, "EXPIRE_CHUNK", 7)
        store = yield self.started_store()
        yield gatherResults([store.announce(announce(n), 1000) for n in range(30)])
        yield store.announce(announce(99), 2000)
        removed = yield store.expire(1500)
        self.assertEqual(removed, 30)
        counts = yield store.scrape([info_hash(1)])
        self.assertEqual(counts[info_hash(1)], SwarmCounts(0, 1, 0))

    @inlineCallbacks
    def test_store_refuses_work_after_stop(self) -> Any:
        """Work submitted after stop fails cleanly instead of hanging."""
        store = self.make_store()
        yield store.start()
        pending = store.announce(announce(1), 1000)
        yield store.stop()
        yield pending
        with self.assertRaises(StoreStopped):
            yield store.announce(announce(2), 1000)
