"""The access store's contract against each implementation, and the schema's version 4."""

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
from tracker.core.swarms import SwarmIndex
from tracker.store.access import (
    BLACKLIST,
    WHITELIST,
    Account,
    IAccessStore,
    MemoryAccessStore,
    SQLiteAccessStore,
)
from tracker.store.schema import SCHEMA_VERSION
from tracker.store.sqlite import SQLitePeerStore

KEY = b"a" * 32
OTHER = b"b" * 32


class AccessStoreContract:
    #: The store sets totals (a write repeated does no harm); a shared one adds what was
    #: credited, and is written to once per credit.
    totals_set = True
    """Mixin for a trial C{TestCase}; C{started()} gives a started store."""

    def started(self) -> Any:
        raise NotImplementedError

    @inlineCallbacks
    def test_provides_interface(self) -> Any:
        """The store provides every method of the contract."""
        store = yield self.started()
        self.assertTrue(verifyObject(IAccessStore, store))  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_empty(self) -> Any:
        """A new store holds empty lists and no passkeys."""
        store = yield self.started()
        stored = yield store.load()
        self.assertEqual(dict(stored.listed), {WHITELIST: frozenset(), BLACKLIST: frozenset()})
        self.assertEqual(dict(stored.passkeys), {})  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_torrents(self) -> Any:
        """Torrents are listed and unlisted per list, each change saying whether it changed
        anything."""
        store = yield self.started()
        results = []
        results.append((yield store.list_torrent(WHITELIST, info_hash(1))))
        results.append((yield store.list_torrent(WHITELIST, info_hash(1))))
        results.append((yield store.list_torrent(BLACKLIST, info_hash(2))))
        results.append((yield store.unlist_torrent(WHITELIST, info_hash(3))))
        results.append((yield store.list_torrent(WHITELIST, info_hash(3))))
        results.append((yield store.unlist_torrent(WHITELIST, info_hash(3))))
        self.assertEqual(results, [True, False, True, False, True, True])  # type: ignore[attr-defined]
        stored = yield store.load()
        self.assertEqual(  # type: ignore[attr-defined]
            dict(stored.listed),
            {WHITELIST: frozenset({info_hash(1)}), BLACKLIST: frozenset({info_hash(2)})},
        )

    @inlineCallbacks
    def test_passkeys_and_transfers(self) -> Any:
        """Passkeys are added once, their totals are written as given (twice the same is the
        same: a write reported failed may have reached the disk), a removed one is skipped."""
        store = yield self.started()
        self.assertTrue((yield store.add_passkey(KEY, "alice", 10)))  # type: ignore[attr-defined]
        self.assertFalse((yield store.add_passkey(KEY, "eve", 11)))  # type: ignore[attr-defined]
        yield store.add_passkey(OTHER, "", 12)
        yield store.write_totals({KEY: (100, 5), OTHER: (1, 2)}, {KEY: (100, 5), OTHER: (1, 2)})
        yield store.write_totals({KEY: (150, 5)}, {KEY: (50, 0)})
        if self.totals_set:
            yield store.write_totals({KEY: (150, 5)}, {KEY: (50, 0)})
        self.assertTrue((yield store.remove_passkey(OTHER)))  # type: ignore[attr-defined]
        self.assertFalse((yield store.remove_passkey(OTHER)))  # type: ignore[attr-defined]
        yield store.write_totals({OTHER: (7, 7)}, {OTHER: (6, 5)})
        stored = yield store.load()
        self.assertEqual(  # type: ignore[attr-defined]
            dict(stored.passkeys), {KEY: Account("alice", 10, 150, 5)}
        )


class MemoryAccessStoreTests(AccessStoreContract, TestCase):
    def started(self) -> Any:
        from twisted.internet.defer import succeed

        return succeed(MemoryAccessStore())


class SQLiteAccessStoreTests(AccessStoreContract, TestCase):
    timeout = 20

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="tracker-access-store-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "tracker.sqlite3")

    @inlineCallbacks
    def started(self) -> Any:
        peers = SQLitePeerStore(self.path, reactor)
        yield peers.start()
        self.addCleanup(peers.stop)
        return SQLiteAccessStore(peers)

    @inlineCallbacks
    def test_survives_restart(self) -> Any:
        """What is stored is there after the store is stopped and started again."""
        peers = SQLitePeerStore(self.path, reactor)
        yield peers.start()
        store = SQLiteAccessStore(peers)
        yield store.add_passkey(KEY, "alice", 10)
        yield store.write_totals({KEY: (3, 4)}, {KEY: (3, 4)})
        yield store.list_torrent(BLACKLIST, info_hash(1))
        yield peers.stop()
        again = yield self.started()
        stored = yield again.load()
        self.assertEqual(dict(stored.passkeys), {KEY: Account("alice", 10, 3, 4)})
        self.assertEqual(stored.listed[BLACKLIST], frozenset({info_hash(1)}))

    @inlineCallbacks
    def test_version_3_database_upgraded_with_its_data(self) -> Any:
        """A database of schema version 3 is upgraded to 4: its swarms are kept, a backup is
        written, and the new tables are empty and usable."""
        # A version 3 file: its schema, and one journal row holding one peer.
        index = SwarmIndex(journal=True)
        index.announce(announce(1, 1), 1000)
        with open(os.path.join(os.path.dirname(__file__), "schema_v3.sql")) as f:
            schema = f.read()
        connection = sqlite3.connect(self.path)
        connection.executescript(schema)
        connection.execute("INSERT INTO journal VALUES (1, ?)", (b"".join(index.take_changes()),))
        connection.execute("PRAGMA user_version = 3")
        connection.commit()
        connection.close()
        peers = SQLitePeerStore(self.path, reactor)
        yield peers.start()
        self.addCleanup(peers.stop)
        self.assertTrue(os.path.exists(self.path + ".v3.bak"))
        self.assertEqual(peers.scrape([info_hash(1)])[info_hash(1)].incomplete, 1)
        store = SQLiteAccessStore(peers)
        self.assertTrue((yield store.add_passkey(KEY, "", 1)))
        connection = sqlite3.connect(self.path)
        version = connection.execute("PRAGMA user_version").fetchall()[0][0]
        connection.close()
        self.assertEqual(version, SCHEMA_VERSION)
        self.assertEqual(SCHEMA_VERSION, 7)
