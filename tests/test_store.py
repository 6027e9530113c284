"""The storage contract against each backend, plus what only the SQLite store promises."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.helpers import info_hash, peer_id
from tests.store_contract import StoreContract, announce
from tracker.core.announce import COMPLETED, STOPPED
from tracker.core.errors import KeyMismatch
from tracker.core.interfaces import StoreStopped, SwarmCounts
from tracker.core.journal import KEYLESS_PEER, JournalError, replay
from tracker.core.swarms import SwarmIndex
from tracker.store import schema
from tracker.store import sqlite as sqlite_store
from tracker.store.memory import MemoryPeerStore
from tracker.store.schema import SCHEMA_VERSION, SchemaError
from tracker.store.sqlite import SQLitePeerStore


class MemoryStoreTests(StoreContract, TestCase):
    timeout = 20

    def make_store(self) -> Any:
        return MemoryPeerStore()


class SQLiteStoreTests(StoreContract, TestCase):
    timeout = 20

    def setUp(self) -> None:
        # A folder of the system's, not trial's mktemp(), which writes below the current one.
        directory = tempfile.mkdtemp(prefix="tracker-store-")
        self.addCleanup(shutil.rmtree, directory, True)
        self._path = os.path.join(directory, "tracker.sqlite3")

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
        self.assertEqual({p.peer_id for p in result.peers()}, {peer_id(1), peer_id(2)})
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
    def test_commits_wait_for_fsync(self) -> Any:
        """Each commit waits for its fsync (synchronous=FULL), so that a failed fsync fails the
        commit whose changes the store still holds, rather than a later checkpoint of SQLite's
        that ignores the failure."""
        store = yield self.started_store()
        synchronous = yield store.run(lambda c: c.execute("PRAGMA synchronous").fetchall()[0][0])
        self.assertEqual(synchronous, 2)

    @inlineCallbacks
    def test_new_database_has_large_pages(self) -> Any:
        """A new file is made of PAGE_SIZE pages, so that a commit's row fits in one."""
        store = yield self.started_store()
        yield store.announce(announce(1), 1000)
        yield store.stop()
        connection = sqlite3.connect(self._path)
        try:
            page_size = connection.execute("PRAGMA page_size").fetchall()[0][0]
        finally:
            connection.close()
        self.assertEqual(page_size, schema.PAGE_SIZE)

    @inlineCallbacks
    def test_database_of_small_pages_is_kept(self) -> Any:
        """A file made with SQLite's default 4 KiB pages, as earlier versions made them, is
        used as it is: its peers load and it keeps its page size."""
        self.patch(schema, "PAGE_SIZE", 4096)
        first = yield self.started_store()
        yield first.announce(announce(1), 1000)
        yield first.stop()
        self.patch(schema, "PAGE_SIZE", 65536)
        second = yield self.started_store()
        result = yield second.announce(announce(2), 1001)
        self.assertEqual({p.peer_id for p in result.peers()}, {peer_id(1)})
        yield second.stop()
        connection = sqlite3.connect(self._path)
        try:
            page_size = connection.execute("PRAGMA page_size").fetchall()[0][0]
        finally:
            connection.close()
        self.assertEqual(page_size, 4096)

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
    def test_announces_are_answered_at_once(self) -> Any:
        """Once loaded, the store answers announces and scrapes without waiting for the disk."""
        store = yield self.started_store()
        results = [store.announce(announce(n, left=n % 2), 1000) for n in range(200)]
        self.assertFalse(any(isinstance(r, Deferred) for r in results))
        self.assertEqual(results[-1].counts, SwarmCounts(100, 100, 0))
        self.assertEqual(store.scrape([info_hash(1)])[info_hash(1)], SwarmCounts(100, 100, 0))

    @inlineCallbacks
    def test_large_expiry_runs_in_chunks(self) -> Any:
        """Expiry of more peers than one chunk removes them all and keeps counts exact."""
        self.patch(sqlite_store, "SLICE", 7)
        store = yield self.started_store()
        for n in range(30):
            store.announce(announce(n), 1000)
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

    def stored_index(self) -> SwarmIndex:
        """The index the file holds, read by a connection of the test's own."""
        connection = sqlite3.connect(self._path)
        index = SwarmIndex()
        try:
            for (records,) in connection.execute("SELECT records FROM journal ORDER BY seq"):
                replay(records, index)
        finally:
            connection.close()
        return index

    def journal_rows(self) -> int:
        connection = sqlite3.connect(self._path)
        try:
            return int(connection.execute("SELECT count(*) FROM journal").fetchall()[0][0])
        finally:
            connection.close()

    def stored_peers(self) -> set[tuple[bytes, bytes]]:
        """The (info_hash, peer_id) of every peer the file holds."""
        swarms = self.stored_index().swarms
        return {
            (info_hash, peer_id)
            for info_hash, swarm in swarms.items()
            for group in swarm.groups
            if group is not None
            for peer_id in group.ids
        }

    @inlineCallbacks
    def test_changes_reach_the_file_without_a_stop(self) -> Any:
        """Announces are in the file within a group commit, while the store keeps running: a
        crash after that loses none of them."""
        store = SQLitePeerStore(self._path, reactor, commit_every=0.05)
        yield store.start()
        self.addCleanup(store.stop)
        store.announce(announce(1), 1000)
        store.announce(announce(2, left=0, event=COMPLETED), 1000)
        store.announce(announce(3), 1000)
        store.announce(announce(3, event="stopped"), 1000)
        yield deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(self.stored_peers(), {(info_hash(1), peer_id(n)) for n in (1, 2)})
        reopened = SQLitePeerStore(self._path, reactor)
        yield reopened.start()
        self.addCleanup(reopened.stop)
        self.assertEqual(reopened.scrape([info_hash(1)])[info_hash(1)], SwarmCounts(1, 1, 1))

    @inlineCallbacks
    def test_announce_while_loading_waits_for_the_file(self) -> Any:
        """An announce that arrives while the file is still being read is answered, with the
        peers from the file, once it is read."""
        first = self.make_store()
        yield first.start()
        first.announce(announce(1), 1000)
        yield first.stop()
        second = self.make_store()
        starting = second.start()
        early = second.announce(announce(2), 1001)
        self.assertIsInstance(early, Deferred)
        yield starting
        self.addCleanup(second.stop)
        result = yield early
        self.assertEqual([p.peer_id for p in result.peers()], [peer_id(1)])

    @inlineCallbacks
    def test_version_1_database_is_upgraded_with_its_data(self) -> Any:
        """A database written by schema version 1 keeps its peers and completion counts, and a
        backup of it is written first."""
        with open(os.path.join(os.path.dirname(__file__), "schema_v1.sql")) as f:
            script = f.read()
        connection = sqlite3.connect(self._path)
        connection.executescript(script)
        connection.execute("INSERT INTO torrents (id, info_hash) VALUES (1, ?)", (info_hash(1),))
        connection.execute("INSERT INTO torrents (id, info_hash) VALUES (2, ?)", (info_hash(2),))
        rows = [
            (1, peer_id(1), b"\x7f\x00\x00\x01\x1a\xe1", 1, 5, 1000, 1),
            (1, peer_id(2), b"\x7f\x00\x00\x01\x1a\xe2", 0, 6, 1000, 0),
        ]
        connection.executemany("INSERT INTO peers VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        connection.execute("PRAGMA user_version = 1")
        connection.commit()
        connection.close()
        store = SQLitePeerStore(self._path, reactor, commit_every=0.01)
        yield store.start()
        self.addCleanup(store.stop)
        self.assertTrue(os.path.exists(self._path + ".v1.bak"))
        counts = store.scrape([info_hash(1), info_hash(2)])
        self.assertEqual(counts[info_hash(1)], SwarmCounts(1, 1, 1))
        self.assertEqual(counts[info_hash(2)], SwarmCounts(0, 0, 0))
        result = store.announce(announce(3), 1001)
        self.assertEqual({p.peer_id for p in result.peers()}, {peer_id(1), peer_id(2)})
        # The peer counted as completed in version 1 is not counted again.
        store.announce(announce(1, left=0, event=COMPLETED), 1002)
        self.assertEqual(store.scrape([info_hash(1)])[info_hash(1)].downloaded, 1)
        # The first checkpoint has moved the version 1 tables into the journal.
        yield deferLater(reactor, 0.3, lambda: None)
        connection = sqlite3.connect(self._path)
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {row[0] for row in rows}
        connection.close()
        self.assertEqual(tables, {"journal", "listed_torrents", "passkeys"})
        self.assertEqual(self.stored_peers(), {(info_hash(1), peer_id(n)) for n in (1, 2, 3)})

    @inlineCallbacks
    def test_checkpoint_bounds_the_journal(self) -> Any:
        """Once the journal outgrows the index, a checkpoint writes the index whole and deletes
        the rows before it; the file still holds exactly what memory holds."""
        self.patch(sqlite_store, "CHECKPOINT_MIN_BYTES", 20_000)
        self.patch(sqlite_store, "SLICE", 50)
        store = SQLitePeerStore(self._path, reactor, commit_every=0.01)
        yield store.start()
        self.addCleanup(store.stop)
        for round_ in range(30):
            for n in range(40):
                store.announce(announce(n, torrent=n % 7, left=n % 2), 1000 + round_)
            store.announce(announce(round_, torrent=round_ % 7, event="stopped"), 1000 + round_)
            yield deferLater(reactor, 0.02, lambda: None)
        yield deferLater(reactor, 0.5, lambda: None)
        # 30 rounds of 40 announces wrote far more rows than a few commits since a checkpoint.
        self.assertLess(self.journal_rows(), 30)
        stored = self.stored_index()
        hashes = [info_hash(t) for t in range(7)]
        self.assertEqual(stored.scrape(hashes), store.scrape(hashes))
        # The last round announced all 40 and then stopped one.
        self.assertEqual(stored.peer_count(), 39)

    @inlineCallbacks
    def test_damaged_journal_refuses_to_start(self) -> Any:
        """A journal row that is not whole records stops the store from starting, with the
        reason, rather than serving half of it."""
        store = yield self.started_store()
        store.announce(announce(1), 1000)
        yield store.stop()
        connection = sqlite3.connect(self._path)
        connection.execute("INSERT INTO journal (seq, records) VALUES (999, x'50ff')")
        connection.commit()
        connection.close()
        with self.assertRaises(JournalError):
            yield self.make_store().start()

    @inlineCallbacks
    def test_keys_survive_restart(self) -> Any:
        """A store reopened on the same file still refuses a peer's wrong key, and accepts its
        right one."""
        first = self.make_store_at(self._path)
        yield first.start()
        yield first.announce(announce(1, key=0xCAFE), 1000)
        yield first.stop()
        second = yield self.started_store()
        with self.assertRaises(KeyMismatch):
            yield second.announce(announce(1, key=0xBEEF, port=1, event=STOPPED), 1001)
        result = yield second.announce(announce(1, key=0xCAFE, event=STOPPED), 1002)
        self.assertEqual(result.counts, SwarmCounts(0, 0, 0))

    @inlineCallbacks
    def test_version_2_database_is_upgraded_with_its_peers(self) -> Any:
        """A database written by schema version 2, whose journal holds peers without keys,
        keeps them: they load as peers without a key, a backup is written first, and the
        file is at the current version after."""
        records = b""
        for n, port in ((1, 1111), (2, 2222)):
            address = b"\x7f\x00\x00\x01" + port.to_bytes(2, "big")
            records += KEYLESS_PEER.pack(b"P", info_hash(1), peer_id(n), 1000, 0, 6) + address
        connection = sqlite3.connect(self._path)
        connection.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, records BLOB NOT NULL)")
        connection.execute("INSERT INTO journal (seq, records) VALUES (1, ?)", (records,))
        connection.execute("PRAGMA user_version = 2")
        connection.commit()
        connection.close()
        store = yield self.started_store()
        self.assertTrue(os.path.exists(self._path + ".v2.bak"))
        result = store.announce(announce(3, key=0xCAFE), 1001)
        self.assertEqual({p.peer_id for p in result.peers()}, {peer_id(1), peer_id(2)})
        # Registered without a key, peer 1 accepts any.
        store.announce(announce(1, key=0xBEEF, port=1234), 1002)
        yield store.stop()
        connection = sqlite3.connect(self._path)
        version = connection.execute("PRAGMA user_version").fetchall()[0][0]
        connection.close()
        self.assertEqual(version, SCHEMA_VERSION)
        reopened = yield self.started_store()
        with self.assertRaises(KeyMismatch):
            yield reopened.announce(announce(3, key=0xBEEF, port=3), 1003)
        yield reopened.announce(announce(1, key=0xF00D, event=STOPPED), 1003)
        self.assertEqual(reopened.scrape([info_hash(1)])[info_hash(1)], SwarmCounts(0, 2, 0))
