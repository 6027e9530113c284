"""
The secrets behind UDP connection IDs (L{tracker.udp.connection_ids}), kept so that an ID issued
before a restart is still accepted after it: in the SQLite store's file, or in memory.

Whoever can read them can make connection IDs for any address, which is all they protect: the
database file, which also holds the passkeys, should be readable by the tracker alone.
"""

from __future__ import annotations

import sqlite3

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from tracker.core.interfaces import IConnectionSecrets
from tracker.store.sqlite import SQLitePeerStore


def _thd_load(connection: sqlite3.Connection, first_window: int) -> dict[int, bytes]:
    rows = connection.execute(
        "SELECT window_number, secret FROM connection_secrets WHERE window_number >= ?",
        (first_window,),
    ).fetchall()
    return {window: bytes(secret) for window, secret in rows}


def _thd_keep(connection: sqlite3.Connection, window: int, secret: bytes) -> bytes:
    connection.execute(
        "INSERT OR IGNORE INTO connection_secrets (window_number, secret) VALUES (?, ?)",
        (window, secret),
    ).close()
    connection.execute(
        "DELETE FROM connection_secrets WHERE window_number < ?", (window - 1,)
    ).close()
    rows = connection.execute(
        "SELECT secret FROM connection_secrets WHERE window_number = ?", (window,)
    ).fetchall()
    return bytes(rows[0][0])


@implementer(IConnectionSecrets)
class SQLiteConnectionSecrets:
    """
    Kept in the peer store's own file, by its own database thread: a secret written joins the
    next group transaction of the swarms' journal.
    """

    def __init__(self, peers: SQLitePeerStore) -> None:
        self._peers = peers

    def load_secrets(self, first_window: int) -> Deferred[dict[int, bytes]]:
        return self._peers.run(lambda c: _thd_load(c, first_window))

    def keep_secret(self, window: int, secret: bytes) -> Deferred[bytes]:
        return self._peers.run(lambda c: _thd_keep(c, window, secret))


@implementer(IConnectionSecrets)
class MemoryConnectionSecrets:
    """In the process's memory alone: for tests, and for trackers that share a process."""

    def __init__(self) -> None:
        self.secrets: dict[int, bytes] = {}

    def load_secrets(self, first_window: int) -> Deferred[dict[int, bytes]]:
        return succeed({w: s for w, s in self.secrets.items() if w >= first_window})

    def keep_secret(self, window: int, secret: bytes) -> Deferred[bytes]:
        kept = self.secrets.setdefault(window, secret)
        for old in [w for w in self.secrets if w < window - 1]:
            del self.secrets[old]
        return succeed(kept)
