"""The kept secrets of UDP connection IDs against each store, and the schema's version 6."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from tests.helpers import announce, info_hash
from tracker.interfaces import IConnectionSecrets
from tracker.store.access import SQLiteAccessStore
from tracker.store.schema import SCHEMA_VERSION
from tracker.store.secrets import MemoryConnectionSecrets, SQLiteConnectionSecrets
from tracker.store.sqlite import SQLitePeerStore
from tracker.swarms import SwarmIndex

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
    def started_store(self) -> Any:
        peers = SQLitePeerStore(self.path, reactor)
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
        """A database of schema version 5 is upgraded to 6: its swarms, stored torrents and
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
        peers = yield self.started_store()
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
        self.assertEqual(SCHEMA_VERSION, 6)
