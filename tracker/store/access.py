"""
What access control keeps for good: torrents added to an access list through the admin API, and
private mode's passkeys with their transfer totals. The contract, and its SQLite and in-memory
implementations.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import NamedTuple

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from tracker.store.sqlite import SQLitePeerStore

WHITELIST = "whitelist"
BLACKLIST = "blacklist"


class Account(NamedTuple):
    """One passkey's record."""

    label: str
    #: When it was added, in seconds since the epoch.
    created: int
    uploaded: int
    downloaded: int


class StoredAccess(NamedTuple):
    """Everything stored, as read at start."""

    #: Each list's stored torrents (raw 20-byte info hashes), by list name.
    listed: Mapping[str, frozenset[bytes]]
    passkeys: Mapping[bytes, Account]


class StoredState:
    """
    Something read from the store at start. Until it is, a request that does not find what it
    looks for waits (L{when_loaded}) rather than be refused too early.
    """

    def __init__(self) -> None:
        self.loaded = False
        self._waiting: list[Deferred[None]] = []

    def when_loaded(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def _now_loaded(self) -> None:
        self.loaded = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def load_failed(self, failure: Failure) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(failure)


#: Per passkey, its totals: bytes (uploaded, downloaded).
Totals = Mapping[bytes, "tuple[int, int]"]


class IAccessStore(Interface):
    """
    Durable access-control state. Every method returns a L{Deferred}; none is on the path of an
    announce, which is answered from memory (L{tracker.ops.access}, L{tracker.ops.passkeys}).
    """

    def load() -> Deferred[StoredAccess]:
        """Everything stored."""

    def list_torrent(list_name: str, info_hash: bytes) -> Deferred[bool]:
        """Add a torrent to a list; fires with whether it was not there yet."""

    def unlist_torrent(list_name: str, info_hash: bytes) -> Deferred[bool]:
        """Remove a torrent from a list; fires with whether it was there."""

    def add_passkey(passkey: bytes, label: str, created: int) -> Deferred[bool]:
        """Add a passkey with zero totals; fires with whether it was new (an existing one is
        left as it was)."""

    def remove_passkey(passkey: bytes) -> Deferred[bool]:
        """Remove a passkey and its totals; fires with whether it was there."""

    def write_totals(totals: Totals, credited: Totals) -> Deferred[None]:
        """Set each passkey's totals, all in one transaction; a passkey removed meanwhile is
        skipped. Totals, not increments: writing the same twice does no harm, as it must not
        when a write reported failed may have reached the disk all the same (SQLite after a
        failed fsync: see L{tracker.store.batching}). A store that several trackers share
        (Redis) adds C{credited} instead, what this tracker credited since its last write:
        its totals miss what the others credited meanwhile."""


def _thd_load(connection: sqlite3.Connection) -> StoredAccess:
    listed: dict[str, set[bytes]] = {WHITELIST: set(), BLACKLIST: set()}
    for list_name, info_hash in connection.execute(
        "SELECT list, info_hash FROM listed_torrents"
    ).fetchall():
        listed[list_name].add(bytes(info_hash))
    passkeys = {
        passkey.encode("ascii"): Account(label, created, uploaded, downloaded)
        for passkey, label, created, uploaded, downloaded in connection.execute(
            "SELECT passkey, label, created, uploaded, downloaded FROM passkeys"
        ).fetchall()
    }
    return StoredAccess({name: frozenset(hashes) for name, hashes in listed.items()}, passkeys)


def _thd_changed(connection: sqlite3.Connection, statement: str, args: tuple[object, ...]) -> bool:
    cursor = connection.execute(statement, args)
    try:
        return cursor.rowcount > 0
    finally:
        cursor.close()


def _thd_write_totals(connection: sqlite3.Connection, rows: list[tuple[int, int, str]]) -> None:
    connection.executemany(
        "UPDATE passkeys SET uploaded = ?, downloaded = ? WHERE passkey = ?", rows
    ).close()


@implementer(IAccessStore)
class SQLiteAccessStore:
    """
    Kept in the peer store's own file, by its own database thread: the work joins the group
    transactions of the swarms' journal.
    """

    def __init__(self, peers: SQLitePeerStore) -> None:
        self._peers = peers

    def load(self) -> Deferred[StoredAccess]:
        return self._peers.run(_thd_load)

    def list_torrent(self, list_name: str, info_hash: bytes) -> Deferred[bool]:
        return self._changed(
            "INSERT OR IGNORE INTO listed_torrents (list, info_hash) VALUES (?, ?)",
            (list_name, info_hash),
        )

    def unlist_torrent(self, list_name: str, info_hash: bytes) -> Deferred[bool]:
        return self._changed(
            "DELETE FROM listed_torrents WHERE list = ? AND info_hash = ?", (list_name, info_hash)
        )

    def add_passkey(self, passkey: bytes, label: str, created: int) -> Deferred[bool]:
        return self._changed(
            "INSERT OR IGNORE INTO passkeys (passkey, label, created) VALUES (?, ?, ?)",
            (passkey.decode("ascii"), label, created),
        )

    def remove_passkey(self, passkey: bytes) -> Deferred[bool]:
        return self._changed("DELETE FROM passkeys WHERE passkey = ?", (passkey.decode("ascii"),))

    def write_totals(self, totals: Totals, credited: Totals) -> Deferred[None]:
        rows = [(up, down, passkey.decode("ascii")) for passkey, (up, down) in totals.items()]
        return self._peers.run(lambda c: _thd_write_totals(c, rows))

    def _changed(self, statement: str, args: tuple[object, ...]) -> Deferred[bool]:
        return self._peers.run(lambda c: _thd_changed(c, statement, args))


@implementer(IAccessStore)
class MemoryAccessStore:
    """In the process's memory alone: for tests, and for embedding without persistence."""

    def __init__(self) -> None:
        self.listed: dict[str, set[bytes]] = {WHITELIST: set(), BLACKLIST: set()}
        self.passkeys: dict[bytes, Account] = {}

    def load(self) -> Deferred[StoredAccess]:
        listed = {name: frozenset(hashes) for name, hashes in self.listed.items()}
        return succeed(StoredAccess(listed, dict(self.passkeys)))

    def list_torrent(self, list_name: str, info_hash: bytes) -> Deferred[bool]:
        hashes = self.listed[list_name]
        new = info_hash not in hashes
        hashes.add(info_hash)
        return succeed(new)

    def unlist_torrent(self, list_name: str, info_hash: bytes) -> Deferred[bool]:
        hashes = self.listed[list_name]
        there = info_hash in hashes
        hashes.discard(info_hash)
        return succeed(there)

    def add_passkey(self, passkey: bytes, label: str, created: int) -> Deferred[bool]:
        if passkey in self.passkeys:
            return succeed(False)
        self.passkeys[passkey] = Account(label, created, 0, 0)
        return succeed(True)

    def remove_passkey(self, passkey: bytes) -> Deferred[bool]:
        return succeed(self.passkeys.pop(passkey, None) is not None)

    def write_totals(self, totals: Totals, credited: Totals) -> Deferred[None]:
        for passkey, (up, down) in totals.items():
            account = self.passkeys.get(passkey)
            if account is not None:
                self.passkeys[passkey] = account._replace(uploaded=up, downloaded=down)
        return succeed(None)
