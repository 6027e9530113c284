"""The storage contract against each backend, plus what only the SQLite store promises."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.helpers import info_hash, peer_id
from tests.store_contract import StoreContract, announce
from tracker.core.announce import COMPLETED, STOPPED
from tracker.core.errors import KeyMismatch
from tracker.core.groups import GroupCountingStore, PeerGroups
from tracker.core.interfaces import StoreStopped, SwarmCounts
from tracker.core.journal import KEYLESS_PEER, JournalError, replay
from tracker.core.swarms import SwarmIndex
from tracker.store import schema
from tracker.store import sqlite as sqlite_store
from tracker.store.lock import DatabaseInUse
from tracker.store.memory import MemoryPeerStore
from tracker.store.schema import SCHEMA_VERSION, SchemaError
from tracker.store.sqlite import SQLitePeerStore


class MemoryStoreTests(StoreContract, TestCase):
    timeout = 20

    def make_store(self) -> Any:
        return MemoryPeerStore()


class GroupCountingStoreTests(StoreContract, TestCase):
    """The store the front ends answer from, with no WebSocket peers to add: the contract as
    the store it wraps keeps it."""

    timeout = 20

    def make_store(self) -> Any:
        return GroupCountingStore(MemoryPeerStore(), PeerGroups())


class _Group:
    complete = 2
    incomplete = 3


class GroupCountingTests(TestCase):
    def test_groups_added_only_while_there_are_some(self) -> None:
        """With no peer outside the store, announces and scrapes go straight to the store's
        own methods; while a group is there, its peers are added to its torrent's counts."""
        inner = MemoryPeerStore()
        groups = PeerGroups()
        counting = GroupCountingStore(inner, groups)
        self.assertEqual(counting.announce, inner.announce)
        self.assertEqual(counting.scrape, inner.scrape)
        groups.add(info_hash(1), _Group())
        result = counting.announce(announce(1), 1000)
        self.assertEqual(result.counts, SwarmCounts(2, 4, 0))
        self.assertEqual(
            counting.scrape([info_hash(1), info_hash(2)]),
            {info_hash(1): SwarmCounts(2, 4, 0), info_hash(2): SwarmCounts(0, 0, 0)},
        )
        groups.remove(info_hash(1))
        self.assertEqual(counting.announce, inner.announce)
        self.assertEqual(counting.announce(announce(2), 1000).counts, SwarmCounts(0, 2, 0))


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
    def test_completion_held_elsewhere_survives_restart(self) -> Any:
        """A completion counted for a peer the store does not hold (a WebSocket peer) is in
        the file: a store reopened on it has it."""
        first = self.make_store_at(self._path)
        yield first.start()
        yield first.count_completion(info_hash(5), 1000)
        yield first.count_completion(info_hash(5), 1001)
        yield first.stop()
        second = yield self.started_store()
        counts = yield second.scrape([info_hash(5)])
        self.assertEqual(counts[info_hash(5)], SwarmCounts(0, 0, 2))

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

    @inlineCallbacks
    def test_peers_stay_in_the_mode_that_stored_them(self) -> Any:
        """A store started private on a file a public tracker used forgets its peers, keeping
        the completion counts, with one log line saying so; the forgetting is in the file, so
        a restart brings them back neither; and the way back from private to public is the
        same. A restart in the same mode keeps every peer."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def forgotten_lines() -> list[str]:
            lines = [formatEvent(e) for e in events if "forgotten" in (e.get("log_format") or "")]
            del events[:]
            return lines

        public = SQLitePeerStore(self._path, reactor)
        yield public.start()
        public.announce(announce(1, left=0, event=COMPLETED), 1000)
        public.announce(announce(2), 1000)
        public.announce(announce(3, torrent=2), 1000)
        yield public.stop()

        private = SQLitePeerStore(self._path, reactor, private=True)
        yield private.start()
        self.assertEqual(
            forgotten_lines(),
            [
                f"{self._path} was last used by a public tracker: its stored peers (3) are"
                " forgotten, completion counts kept; they come back as they announce to this"
                " private one"
            ],
        )
        self.assertEqual(
            private.scrape([info_hash(1), info_hash(2)]),
            {info_hash(1): SwarmCounts(0, 0, 1), info_hash(2): SwarmCounts(0, 0, 0)},
        )
        result = private.announce(announce(4), 1001)
        self.assertEqual(result.peers(), [])
        yield private.stop()

        again = SQLitePeerStore(self._path, reactor, private=True)
        yield again.start()
        self.assertEqual(forgotten_lines(), [])
        result = again.announce(announce(5), 1002)
        self.assertEqual([p.peer_id for p in result.peers()], [peer_id(4)])
        self.assertEqual(result.counts, SwarmCounts(0, 2, 1))
        yield again.stop()

        back = SQLitePeerStore(self._path, reactor)
        yield back.start()
        self.addCleanup(back.stop)
        self.assertEqual(len(forgotten_lines()), 1)
        self.assertEqual(back.scrape([info_hash(1)])[info_hash(1)], SwarmCounts(0, 0, 1))
        self.assertEqual(self.stored_peers(), set())

    @inlineCallbacks
    def test_older_database_takes_its_mode_from_its_passkeys(self) -> Any:
        """A database of schema version 5 or 6, which did not record the mode, counts as private
        if it holds passkeys (only private mode adds them) and as public if not: a start in that
        mode keeps its peers, a start in the other forgets them."""
        for version in (5, 6):
            for passkeys, kept_by in ((True, True), (False, False)):
                path = f"{self._path}.{version}.{passkeys}"
                for private in (True, False):
                    store = SQLitePeerStore(path, reactor)
                    yield store.start()
                    store.announce(announce(1), 1000)
                    yield store.stop()
                    # Back to that version: the mode unrecorded (and in 5, no kept secrets).
                    connection = sqlite3.connect(path)
                    connection.execute("DROP TABLE run_mode")
                    if version == 5:
                        connection.execute("DROP TABLE connection_secrets")
                    connection.execute("DELETE FROM passkeys")
                    if passkeys:
                        connection.execute(
                            "INSERT INTO passkeys (passkey, created) VALUES ('k', 1)"
                        )
                    connection.execute(f"PRAGMA user_version = {version}")
                    connection.commit()
                    connection.close()
                    upgraded = SQLitePeerStore(path, reactor, private=private)
                    yield upgraded.start()
                    self.assertTrue(os.path.exists(f"{path}.v{version}.bak"))
                    peers = upgraded.scrape([info_hash(1)])[info_hash(1)].incomplete
                    yield upgraded.stop()
                    os.remove(f"{path}.v{version}.bak")
                    expected = 1 if private == kept_by else 0
                    self.assertEqual(peers, expected, (version, passkeys, private))

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
        # The file as a crash would leave it, copied: the running store keeps it to itself.
        copy = self._path + ".copy"
        source, target = sqlite3.connect(self._path), sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        reopened = SQLitePeerStore(copy, reactor)
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
        self.assertEqual(
            tables, {"journal", "listed_torrents", "passkeys", "connection_secrets", "run_mode"}
        )
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


class DatabaseLockTests(TestCase):
    """One file, one store: the lock beside the database."""

    timeout = 20

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="tracker-lock-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "tracker.sqlite3")

    @inlineCallbacks
    def started(self) -> Any:
        store = SQLitePeerStore(self.path, reactor)
        yield store.start()
        self.addCleanup(store.stop)
        return store

    @inlineCallbacks
    def test_second_store_on_the_same_file_refused(self) -> Any:
        """A second store on a file that a store has open fails to start, with an error naming
        the file and the holder's pid, and touches nothing; the first keeps working, and once
        it has stopped the file is free again and its lock file gone."""
        first = yield self.started()
        first.announce(announce(1), 1000)
        with self.assertRaises(DatabaseInUse) as caught:
            yield SQLitePeerStore(self.path, reactor).start()
        self.assertEqual(
            str(caught.exception),
            f"cannot use the database {self.path!r}: another tracker (pid {os.getpid()})"
            " is using it",
        )
        self.assertEqual(caught.exception.pid, os.getpid())
        result = yield first.announce(announce(2), 1001)
        self.assertEqual([p.peer_id for p in result.peers()], [peer_id(1)])
        yield first.stop()
        self.assertFalse(os.path.exists(self.path + ".lock"))
        third = yield self.started()
        result = yield third.announce(announce(3), 1002)
        self.assertEqual({p.peer_id for p in result.peers()}, {peer_id(1), peer_id(2)})

    @inlineCallbacks
    def test_lock_taken_before_start(self) -> Any:
        """lock() takes the file at once, for a daemon that must refuse before it listens:
        another store is refused from then on; start() keeps that lock and stop() lets go of
        it, as it does of a lock never followed by a start."""
        first = SQLitePeerStore(self.path, reactor)
        first.lock()
        self.assertTrue(os.path.exists(self.path + ".lock"))
        with self.assertRaises(DatabaseInUse):
            SQLitePeerStore(self.path, reactor).lock()
        yield first.start()
        first.lock()
        yield first.stop()
        self.assertFalse(os.path.exists(self.path + ".lock"))
        unused = SQLitePeerStore(self.path, reactor)
        unused.lock()
        yield unused.stop()
        self.assertFalse(os.path.exists(self.path + ".lock"))
        yield self.started()

    @inlineCallbacks
    def test_store_that_cannot_load_lets_go(self) -> Any:
        """A store whose file cannot be loaded lets go of it, so that the next start (after a
        repair) is not refused as well."""
        store = yield self.started()
        store.announce(announce(1), 1000)
        yield store.stop()
        connection = sqlite3.connect(self.path)
        connection.execute("INSERT INTO journal (seq, records) VALUES (999, x'50ff')")
        connection.commit()
        with self.assertRaises(JournalError):
            yield SQLitePeerStore(self.path, reactor).start()
        self.assertFalse(os.path.exists(self.path + ".lock"))
        connection.execute("DELETE FROM journal WHERE seq = 999")
        connection.commit()
        connection.close()
        yield self.started()

    @inlineCallbacks
    def test_lock_dies_with_its_process(self) -> Any:
        """A file locked by another process is refused with that process's pid; once that
        process is killed with SIGKILL, cleaning nothing up, a store starts on it at once."""
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys; from tracker.store.lock import DatabaseLock;"
             " DatabaseLock(sys.argv[1]).acquire(); print('locked', flush=True);"
             " sys.stdin.read()", self.path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        self.addCleanup(holder.communicate)
        self.addCleanup(holder.kill)
        assert holder.stdout is not None
        self.assertEqual(holder.stdout.readline(), b"locked\n")
        with self.assertRaises(DatabaseInUse) as caught:
            yield SQLitePeerStore(self.path, reactor).start()
        self.assertEqual(caught.exception.pid, holder.pid)
        holder.kill()
        holder.wait()
        # Its file is still there, with its pid in it; the lock is not.
        self.assertTrue(os.path.exists(self.path + ".lock"))
        store = yield self.started()
        with open(self.path + ".lock") as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")
        self.assertEqual(store.scrape([info_hash(1)])[info_hash(1)], SwarmCounts(0, 0, 0))
