"""
Opening the database and bringing its schema up to date. Runs on the database thread only.

The schema version is SQLite's C{user_version}. A new database is created from the newest
C{schema/vN.sql}; an older one gets each upgrade C{schema/upgrade-vN.sql} (from N-1 to N) in
turn, after a backup copy is written beside it. Each step is one transaction, so a crash mid-way
leaves the previous version intact.
"""

from __future__ import annotations

import os
import sqlite3
from importlib import resources
from urllib.parse import quote

from tracker.store.lock import holder

SCHEMA_VERSION = 7
#: Pages of a new database. The journal's rows are whole commits, kilobytes each: on 4 KiB
#: pages each row spans a chain of overflow pages, and the database thread spent twice the time
#: writing them (`bench/run.py udp`, the thread's own processor time). Set before the file has any
#: content; an existing file keeps the size it was made with.
PAGE_SIZE = 65536
#: The write-ahead log is copied into the file once it holds this many bytes (SQLite's own
#: default, 1000 pages of 4 KiB), whatever the page size.
WAL_CHECKPOINT_BYTES = 4_096_000


class SchemaError(Exception):
    """The database cannot be used by this version of the tracker."""


def _schema_text(name: str) -> str:
    return resources.files("tracker.store").joinpath("schema").joinpath(name).read_text("utf-8")


def connect(path: str) -> sqlite3.Connection:
    """Open C{path}, in WAL mode, with its schema current."""
    # isolation_level=None: transactions are begun and committed explicitly, one per batch.
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        # Fetch every PRAGMA result: PyPy's sqlite3 keeps an unfetched statement open.
        connection.execute(f"PRAGMA page_size={PAGE_SIZE}").fetchall()
        connection.execute("PRAGMA journal_mode=WAL").fetchall()
        page_size = connection.execute("PRAGMA page_size").fetchall()[0][0]
        pages = max(1, WAL_CHECKPOINT_BYTES // page_size)
        connection.execute(f"PRAGMA wal_autocheckpoint={pages}").fetchall()
        # FULL: each commit waits for the write-ahead log's fsync, so that a failed fsync fails
        # the commit it belongs to, whose changes the store still holds and writes again
        # (batching.BatchingConnection._thd_abandon). With NORMAL, SQLite syncs only when it
        # copies the log into the file, in an automatic checkpoint whose failure it ignores: a
        # disk failing under it went unnoticed (a log of 22 MB, never copied, no error). The
        # cost is one fsync per group commit, on the database thread, every 0.1 s at most.
        connection.execute("PRAGMA synchronous=FULL").fetchall()
        connection.execute("PRAGMA busy_timeout=5000").fetchall()
        _upgrade(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection


def check_usable(path: str) -> str | None:
    """
    Why C{path} cannot be the tracker's database, or None if it can: run before anything
    listens, so that a daemon given a bad file, or one another tracker is using, refuses to
    start instead of serving nothing. Reads an existing file without changing it and creates
    nothing.
    """
    if path == ":memory:":
        return None
    if os.path.isdir(path):
        return "it is a directory"
    in_use = holder(path)
    if in_use is not None:
        return in_use.reason
    if not os.path.exists(path):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            return f"the folder {folder!r} does not exist"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"the folder {folder!r} is not writable"
        return None
    if not os.access(path, os.R_OK | os.W_OK):
        return "it is not readable and writable"
    try:
        # immutable: read without locking, so that a WAL file gets no -wal and -shm files beside
        # it from a start that is then refused.
        uri = f"file:{quote(os.path.abspath(path))}?mode=ro&immutable=1"
        connection = sqlite3.connect(uri, uri=True)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
            version = schema_version(connection)
        finally:
            connection.close()
    except sqlite3.Error as e:
        return f"it is not an SQLite database ({e})"
    if version > SCHEMA_VERSION:
        return (
            f"it has schema version {version} and this tracker knows up to {SCHEMA_VERSION}:"
            " upgrade the tracker"
        )
    return None


def schema_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchall()[0][0])


def _upgrade(connection: sqlite3.Connection, path: str) -> None:
    version = schema_version(connection)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"database {path!r} has schema version {version}; this tracker knows up to "
            f"{SCHEMA_VERSION}: upgrade the tracker"
        )
    if version == SCHEMA_VERSION:
        return
    if version == 0:
        _apply(connection, _schema_text(f"v{SCHEMA_VERSION}.sql"), SCHEMA_VERSION)
        return
    _backup(connection, f"{path}.v{version}.bak")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        _apply(connection, _schema_text(f"upgrade-v{target}.sql"), target)


def _apply(connection: sqlite3.Connection, script: str, version: int) -> None:
    # executescript would commit on its own; splitting keeps creation atomic in one transaction.
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in _statements(script):
            connection.execute(statement).fetchall()
        connection.execute(f"PRAGMA user_version = {int(version)}").fetchall()
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """
    Split a script into statements at lines ending in C{;}. A trigger's body holds statements of
    its own, so a C{CREATE TRIGGER} runs on to its C{END;}. (PyPy's sqlite3 has no
    C{complete_statement} to do this.)
    """
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line)
        in_trigger = current[0].lstrip().upper().startswith("CREATE TRIGGER")
        if stripped.endswith(";") and (not in_trigger or stripped.upper() == "END;"):
            statements.append("\n".join(current))
            current = []
    if current:
        raise SchemaError("schema script ends in an incomplete statement")
    return statements


def _backup(connection: sqlite3.Connection, backup_path: str) -> None:
    target = sqlite3.connect(backup_path)
    try:
        connection.backup(target)
    finally:
        target.close()
