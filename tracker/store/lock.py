"""
One database, one tracker: an exclusive lock on a file beside the database, held for as long as
a store has the database open.

Two trackers on one file would both write group commits into its journal, and each checkpoint
would delete rows the other still needs: data lost. SQLite's own locks do not prevent that, as
they last one transaction only.

The lock is C{flock(2)} on C{DATABASE.lock}, not a lock on the database itself. SQLite takes
POSIX (C{fcntl}) byte-range locks on the database, and a process that closes any descriptor of a
file loses every POSIX lock it holds on it; a C{flock} lock belongs to its own open file, apart
from SQLite's, and conflicts with another open file's even in the same process. The kernel drops
it when its holder dies, however it dies, so a restart after C{kill -9} finds the database free
at once. The holder writes its pid into the file, for the message of the tracker it refuses.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os

#: The lock file is the database's path with this added.
SUFFIX = ".lock"


class DatabaseInUse(Exception):
    """The database is held by another tracker: another process, or another store here."""

    def __init__(self, path: str, pid: int | None) -> None:
        super().__init__(path, pid)
        self.path = path
        #: The holder's process, when its lock file says.
        self.pid = pid

    @property
    def reason(self) -> str:
        holder = "another tracker" if self.pid is None else f"another tracker (pid {self.pid})"
        return f"{holder} is using it"

    def __str__(self) -> str:
        return f"cannot use the database {self.path!r}: {self.reason}"


def holder(path: str) -> DatabaseInUse | None:
    """
    Whether a tracker holds the database at C{path} now (as L{DatabaseInUse}), or None: a look
    that creates nothing and changes nothing, for refusing a start before anything else happens.
    It takes a shared lock for an instant, so the holder's own start, at that same instant,
    could be refused in its place; of two starts at once, one still runs.
    """
    try:
        fd = os.open(path + SUFFIX, os.O_RDONLY)
    except OSError:
        # No lock file, no holder; one that cannot be read is reported when it is taken.
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            return DatabaseInUse(path, _read_pid(fd))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class DatabaseLock:
    """The lock on one database's lock file. Neither method ever waits for another tracker."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock_path = path + SUFFIX
        self._fd: int | None = None
        #: The process that took the lock: a child forked from it shares the lock (an open
        #: file's) but must not remove its file when it exits.
        self._owner: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """
        Take the lock, or raise L{DatabaseInUse} at once: C{LOCK_NB} never waits for the other
        tracker, which may hold it for weeks. Taking it again while held does nothing. Other
        failures to open or lock the file raise C{OSError}.
        """
        if self._fd is not None:
            return
        while True:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                in_use = e.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
                pid = _read_pid(fd) if in_use else None
                os.close(fd)
                if in_use:
                    raise DatabaseInUse(self.path, pid) from None
                raise
            # The holder before us removes the file before it lets go of it: if it did so
            # between our open and our lock, what we locked is no longer the lock file.
            if _same_file(fd, self._lock_path):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        self._owner = os.getpid()
        # A start that ends before the store opens (a port refused after the lock was taken)
        # never stops the store: the file goes at exit all the same.
        atexit.register(self.release)

    def release(self) -> None:
        """Remove the lock file and let go of the lock; nothing if not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        atexit.unregister(self.release)
        try:
            # Removed while still held, so that no one else holds a lock on it; and only if it
            # is still ours (someone may have deleted it by hand and another tracker made one).
            if self._owner == os.getpid() and _same_file(fd, self._lock_path):
                os.unlink(self._lock_path)
        except OSError:
            pass
        finally:
            os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    ours = os.fstat(fd)
    return (ours.st_dev, ours.st_ino) == (there.st_dev, there.st_ino)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0)
    except OSError:
        return None
    try:
        pid = int(text.decode("ascii").strip())
    except ValueError:
        return None
    return pid if pid > 0 else None
