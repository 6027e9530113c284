"""
The kept secrets of UDP connection IDs against each store, the schema's version 6, and the IDs
that outlive a restart with them.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from tests.helpers import announce, info_hash
from tracker.core.interfaces import IConnectionSecrets
from tracker.core.swarms import SwarmIndex
from tracker.store.access import SQLiteAccessStore
from tracker.store.schema import SCHEMA_VERSION
from tracker.store.secrets import MemoryConnectionSecrets, SQLiteConnectionSecrets
from tracker.store.sqlite import SQLitePeerStore
from tracker.udp.connection_ids import WINDOW, ConnectionIds

A, B, C = b"a" * 16, b"b" * 16, b"c" * 16


class SecretsContract:
    """Mixin for a trial C{TestCase}; C{started()} gives a store of secrets, ready."""

    def started(self) -> Any:
        raise NotImplementedError

    @inlineCallbacks
    def test_provides_interface(self) -> Any:
        """The store provides the contract."""
        secrets = yield self.started()
        self.assertTrue(verifyObject(IConnectionSecrets, secrets))  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_keep_and_load(self) -> Any:
        """A secret kept for a window is loaded from it on; loading starts at the window
        asked for."""
        secrets = yield self.started()
        self.assertEqual((yield secrets.load_secrets(0)), {})
        self.assertEqual((yield secrets.keep_secret(100, A)), A)
        self.assertEqual((yield secrets.keep_secret(101, B)), B)
        self.assertEqual((yield secrets.load_secrets(100)), {100: A, 101: B})
        self.assertEqual((yield secrets.load_secrets(101)), {101: B})

    @inlineCallbacks
    def test_first_kept_wins(self) -> Any:
        """Keeping a second secret for a window keeps the first, and answers with it: trackers
        sharing a store agree on each window's."""
        secrets = yield self.started()
        yield secrets.keep_secret(100, A)
        self.assertEqual((yield secrets.keep_secret(100, B)), A)
        self.assertEqual((yield secrets.load_secrets(0)), {100: A})

    @inlineCallbacks
    def test_old_windows_forgotten(self) -> Any:
        """Keeping a window's secret forgets those of the windows before the one before it:
        the store holds a few rows, however long the tracker runs."""
        secrets = yield self.started()
        for window, secret in ((100, A), (101, B), (102, C)):
            yield secrets.keep_secret(window, secret)
        self.assertEqual((yield secrets.load_secrets(0)), {101: B, 102: C})
        yield secrets.keep_secret(110, A)
        self.assertEqual((yield secrets.load_secrets(0)), {110: A})


class MemorySecretsTests(SecretsContract, TestCase):
    def started(self) -> Any:
        return MemoryConnectionSecrets()


class SQLiteSecretsTests(SecretsContract, TestCase):
    timeout = 20

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="tracker-secrets-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "tracker.sqlite3")

    @inlineCallbacks
    def started_store(self, private: bool = False) -> Any:
        peers = SQLitePeerStore(self.path, reactor, private=private)
        yield peers.start()
        self.addCleanup(peers.stop)
        return peers

    @inlineCallbacks
    def started(self) -> Any:
        peers = yield self.started_store()
        return SQLiteConnectionSecrets(peers)

    @inlineCallbacks
    def test_survive_restart(self) -> Any:
        """Secrets kept are there after the store is stopped and started again."""
        peers = SQLitePeerStore(self.path, reactor)
        yield peers.start()
        yield SQLiteConnectionSecrets(peers).keep_secret(100, A)
        yield peers.stop()
        again = yield self.started()
        self.assertEqual((yield again.load_secrets(99)), {100: A})

    @inlineCallbacks
    def test_version_5_database_upgraded_with_its_data(self) -> Any:
        """A database of schema version 5 is upgraded to the newest: its swarms, stored torrents and
        passkeys are kept, a backup is written first, and the secrets' table is empty and
        usable."""
        index = SwarmIndex(journal=True)
        index.announce(announce(1, 1), 1000)
        with open(os.path.join(os.path.dirname(__file__), "schema_v5.sql")) as f:
            schema = f.read()
        connection = sqlite3.connect(self.path)
        connection.executescript(schema)
        connection.execute("INSERT INTO journal VALUES (1, ?)", (b"".join(index.take_changes()),))
        connection.execute("INSERT INTO listed_torrents VALUES ('whitelist', ?)", (info_hash(2),))
        connection.execute(
            "INSERT INTO passkeys (passkey, label, created, uploaded) VALUES ('k', 'x', 5, 7)"
        )
        connection.execute("PRAGMA user_version = 5")
        connection.commit()
        connection.close()
        # Private: a version-5 file with passkeys ran in private mode, and keeps its peers so.
        peers = yield self.started_store(private=True)
        self.assertTrue(os.path.exists(self.path + ".v5.bak"))
        self.assertEqual(peers.scrape([info_hash(1)])[info_hash(1)].incomplete, 1)
        stored = yield SQLiteAccessStore(peers).load()
        self.assertEqual(stored.listed["whitelist"], frozenset({info_hash(2)}))
        self.assertEqual(stored.passkeys[b"k"].uploaded, 7)
        secrets = SQLiteConnectionSecrets(peers)
        self.assertEqual((yield secrets.load_secrets(0)), {})
        self.assertEqual((yield secrets.keep_secret(100, A)), A)
        connection = sqlite3.connect(self.path)
        version = connection.execute("PRAGMA user_version").fetchall()[0][0]
        connection.close()
        self.assertEqual(version, SCHEMA_VERSION)
        self.assertEqual(SCHEMA_VERSION, 7)


class _FailingSecrets(MemoryConnectionSecrets):
    def __init__(self, load: bool, keep: bool) -> None:
        super().__init__()
        self._load, self._keep = load, keep

    def load_secrets(self, first_window: int) -> Deferred[dict[int, bytes]]:
        if self._load:
            return fail(sqlite3.OperationalError("disk I/O error"))
        return super().load_secrets(first_window)

    def keep_secret(self, window: int, secret: bytes) -> Deferred[bytes]:
        if self._keep:
            return fail(sqlite3.OperationalError("disk I/O error"))
        return super().keep_secret(window, secret)


class _SlowSecrets(MemoryConnectionSecrets):
    """Keeps a secret only when told to, as a store across the network answers later."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[tuple[Deferred[bytes], int, bytes]] = []
        self.slow = False

    def keep_secret(self, window: int, secret: bytes) -> Deferred[bytes]:
        if not self.slow:
            return super().keep_secret(window, secret)
        d: Deferred[bytes] = Deferred()
        self.held.append((d, window, secret))
        return d

    def answer(self) -> None:
        held, self.held = self.held, []
        for d, window, secret in held:
            super().keep_secret(window, secret).chainDeferred(d)


class KeptConnectionIdTests(SynchronousTestCase):
    """Connection IDs whose secrets are kept in a store."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000 * WINDOW + 10)
        self.secrets = MemoryConnectionSecrets()

    def started(self, secrets: Any = None) -> ConnectionIds:
        ids = ConnectionIds(self.clock, secrets=secrets or self.secrets)
        self.assertFalse(ids.loaded)
        waiting = ids.when_loaded()
        self.assertNoResult(waiting)
        self.assertIsNone(self.successResultOf(ids.load()))
        self.assertTrue(ids.loaded)
        self.successResultOf(waiting)
        return ids

    def test_id_outlives_a_restart(self) -> None:
        """An ID issued before a restart is accepted after it, in its own window and the next,
        and no longer than that; a new start does not accept it before it has loaded."""
        issued = self.started().issue("10.0.0.1")
        restarted = ConnectionIds(self.clock, secrets=self.secrets)
        self.assertFalse(restarted.valid(issued, "10.0.0.1"))
        restarted.load()
        self.assertTrue(restarted.valid(issued, "10.0.0.1"))
        self.assertFalse(restarted.valid(issued, "10.0.0.2"))
        self.clock.advance(WINDOW)
        self.assertTrue(self.started().valid(issued, "10.0.0.1"))
        self.clock.advance(WINDOW)
        self.assertFalse(self.started().valid(issued, "10.0.0.1"))

    def test_each_new_secret_is_kept(self) -> None:
        """The secret of each new window is kept as the window starts, and the store holds
        those of two windows at most."""
        ids = self.started()
        first_window = int(self.clock.seconds()) // WINDOW
        self.assertEqual(list(self.secrets.secrets), [first_window])
        for n in range(1, 4):
            self.clock.advance(WINDOW)
            ids.issue("10.0.0.1")
            self.assertEqual(sorted(self.secrets.secrets), [first_window + n - 1, first_window + n])
        issued = ids.issue("10.0.0.1")
        self.assertTrue(self.started().valid(issued, "10.0.0.1"))

    def test_trackers_sharing_a_store_agree(self) -> None:
        """Two trackers on one store of secrets accept each other's IDs, also after the window
        turns: the second to keep a window's secret uses the first's."""
        one, two = self.started(), self.started()
        self.assertTrue(two.valid(one.issue("10.0.0.1"), "10.0.0.1"))
        self.clock.advance(WINDOW)
        from_one = one.issue("10.0.0.1")
        from_two = two.issue("10.0.0.1")
        self.assertEqual(from_one, from_two)
        self.assertTrue(one.valid(from_two, "10.0.0.1"))

    def test_ids_issued_before_the_store_answers_are_good_everywhere(self) -> None:
        """As a window turns, a tracker issues IDs under the last window's secret until the
        store says which secret the new window has (another tracker's, perhaps): those IDs are
        good at every tracker sharing the store, to the end of the window."""
        secrets = _SlowSecrets()
        one, two = self.started(secrets), self.started(secrets)
        secrets.slow = True
        self.clock.advance(WINDOW)
        early = two.issue("10.0.0.1")
        one.issue("10.0.0.2")
        secrets.answer()
        self.assertTrue(one.valid(early, "10.0.0.1"))
        self.assertTrue(two.valid(early, "10.0.0.1"))
        self.assertEqual(one.issue("10.0.0.1"), two.issue("10.0.0.1"))
        self.assertNotEqual(one.issue("10.0.0.1"), early)
        # The clock is 10 s into the window (setUp): to its last second, then the next.
        self.clock.advance(WINDOW - 11)
        self.assertTrue(two.valid(early, "10.0.0.1"))
        secrets.slow = False
        self.clock.advance(1)
        self.assertFalse(two.valid(early, "10.0.0.1"))

    def test_store_that_fails(self) -> None:
        """A store that cannot be read or written is logged, and IDs go on working with the
        process's own secrets."""
        for load, keep in [(True, False), (False, True)]:
            ids = self.started(_FailingSecrets(load, keep))
            self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
            self.assertTrue(ids.valid(ids.issue("10.0.0.1"), "10.0.0.1"))

    def test_without_a_store(self) -> None:
        """Without a store of secrets the IDs are ready at once, and every start has new
        secrets, as before."""
        ids = ConnectionIds(self.clock)
        self.assertTrue(ids.loaded)
        self.successResultOf(ids.when_loaded())
        self.successResultOf(ids.load())
        self.assertFalse(ConnectionIds(self.clock).valid(ids.issue("10.0.0.1"), "10.0.0.1"))
