"""
Access lists: the torrents a C{--whitelist} serves, or a C{--blacklist} refuses.

A list is the list file's info hashes plus those added through the admin API (kept in the
database). Announces and scrapes read it as one C{frozenset}, replaced whole on the reactor
whenever it changes, so checking a torrent is one membership test and no request ever sees a
list half built. The file is read again on SIGHUP and through the admin API, off the reactor; a
file with a mistake is refused whole and the list in force stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tracker.core.announce import AnnounceRequest
from tracker.core.errors import TrackerError
from tracker.core.interfaces import AnnounceResult, Answer, IPeerStore, SwarmCounts
from tracker.store.access import BLACKLIST, WHITELIST, IAccessStore, StoredState

log = Logger()

LIST_NAMES = (WHITELIST, BLACKLIST)


class AccessListError(ValueError):
    """A list file with a line that is not an info hash."""

    def __init__(self, line: int, text: str) -> None:
        super().__init__(f"line {line}: not a 40-digit hex info hash: {text!r}")
        self.line = line


def parse_info_hash(text: str) -> bytes | None:
    """The 20 bytes of a 40-digit hex info hash, in either case; None if C{text} is not one."""
    if len(text) != 40:
        return None
    try:
        value = bytes.fromhex(text)
    except ValueError:
        return None
    # fromhex skips spaces between pairs of digits: 40 characters with spaces are not a hash.
    return value if len(value) == 20 else None


def parse_hash_list(text: str) -> frozenset[bytes]:
    """
    A list file's info hashes: one 40-digit hex hash a line, upper or lower case; blank lines
    and everything after a C{#} are ignored. The first other line raises L{AccessListError}.
    """
    hashes = set()
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.partition("#")[0].strip()
        if not entry:
            continue
        info_hash = parse_info_hash(entry)
        if info_hash is None:
            raise AccessListError(number, entry[:60])
        hashes.add(info_hash)
    return frozenset(hashes)


def read_hash_list(path: str) -> frozenset[bytes]:
    """The info hashes of the list file at C{path}. Blocks: call it off the reactor."""
    with open(path, "rb") as f:
        data = f.read()
    return parse_hash_list(data.decode("utf-8", "replace"))


class AccessList(StoredState):
    """
    One access list in force: the file's hashes and the stored ones, as one C{frozenset} in
    L{hashes}. A torrent is served when C{(info_hash in hashes) is serves_listed}.

    Until the stored hashes are loaded (see L{load_stored}), it poses as an empty whitelist, so that
    every request takes the slow branch, which waits for them: a torrent added through the
    admin API is never refused because the tracker has just restarted.
    """

    def __init__(
        self,
        list_name: str,
        path: str,
        file_hashes: frozenset[bytes],
        store: IAccessStore,
        reactor: Any,
    ) -> None:
        super().__init__()
        if list_name not in LIST_NAMES:
            raise ValueError(f"an access list is a whitelist or a blacklist, not {list_name!r}")
        self.list_name = list_name
        self.path = path
        self._file = file_hashes
        self._stored: frozenset[bytes] = frozenset()
        self._store = store
        self._reactor = reactor
        self._reading = DeferredLock()
        self.hashes: frozenset[bytes] = frozenset()
        self.serves_listed = True
        if list_name == WHITELIST:
            self.refusal = "unregistered torrent: this tracker serves only the torrents it lists"
        else:
            self.refusal = "this torrent is not allowed on this tracker"

    @property
    def file_hashes(self) -> frozenset[bytes]:
        return self._file

    @property
    def stored_hashes(self) -> frozenset[bytes]:
        return self._stored

    def allows(self, info_hash: bytes) -> bool:
        return (info_hash in self.hashes) is self.serves_listed

    def _combine(self) -> None:
        # One assignment: a request sees the old list or the new one, never a mix.
        self.hashes = self._file | self._stored

    # Start.

    def load_stored(self, stored: frozenset[bytes]) -> None:
        """The stored hashes, read at start: from now on the list is complete."""
        self._stored = stored
        self._combine()
        self.serves_listed = self.list_name == WHITELIST
        self._now_loaded()

    def replace_stored(self, stored: frozenset[bytes]) -> None:
        """The stored hashes as they are now, another tracker node sharing the store having
        changed them."""
        self._stored = stored
        self._combine()

    # Changes.

    def reload(self) -> Deferred[int]:
        """
        Read the list file again, off the reactor, and put it in force; fires with the number
        of torrents it holds. A file that cannot be read or has a mistake changes nothing: the
        failure is logged and passed on.
        """
        return self._reading.run(self._read)

    def _read(self) -> Deferred[int]:
        pool = self._reactor.getThreadPool()
        read: Deferred[frozenset[bytes]] = deferToThreadPool(
            self._reactor, pool, read_hash_list, self.path
        )
        return read.addCallbacks(self._replace_file, self._reload_failed)

    def _replace_file(self, hashes: frozenset[bytes]) -> int:
        self._file = hashes
        self._combine()
        log.info(
            "{list} {path} reloaded: {count} torrents",
            list=self.list_name,
            path=self.path,
            count=len(hashes),
        )
        return len(hashes)

    def _reload_failed(self, failure: Failure) -> Failure:
        error = failure.value
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        log.error(
            "could not reload the {list} {path}: {reason}; the list in force is kept",
            list=self.list_name,
            path=self.path,
            reason=reason,
        )
        return failure

    def add(self, info_hash: bytes) -> Deferred[bool]:
        """Store a torrent in the list, then put it in force; fires with whether it was new."""
        added = self._store.list_torrent(self.list_name, info_hash)
        return added.addCallback(self._added, info_hash)

    def _added(self, new: bool, info_hash: bytes) -> bool:
        self._stored = self._stored | {info_hash}
        self._combine()
        return new

    def remove(self, info_hash: bytes) -> Deferred[bool]:
        """Forget a stored torrent; fires with whether it was stored. One listed in the file
        stays listed until it leaves the file."""
        removed = self._store.unlist_torrent(self.list_name, info_hash)
        return removed.addCallback(self._removed, info_hash)

    def _removed(self, there: bool, info_hash: bytes) -> bool:
        self._stored = self._stored - {info_hash}
        self._combine()
        return there


@implementer(IPeerStore)
class AccessControlledStore:
    """
    A peer store that refuses, with a L{TrackerError}, announces and scrapes of torrents its
    access list does not serve, and passes everything else to C{store}. Used only when there is
    a list, so that a tracker without one pays nothing.
    """

    def __init__(self, store: IPeerStore, access: AccessList) -> None:
        self._store = store
        self._access = access
        self._announce = store.announce

    @property
    def guarded(self) -> IPeerStore:
        """The store behind the list."""
        return self._store

    def serves(self, info_hash: bytes) -> bool:
        """Whether the list lets the torrent C{info_hash} be served."""
        return self._access.allows(info_hash)

    def start(self) -> Deferred[None]:
        return self._store.start()

    def stop(self) -> Deferred[None]:
        return self._store.stop()

    def expire(self, cutoff: int) -> Deferred[int]:
        return self._store.expire(cutoff)

    def announce(self, request: AnnounceRequest, now: int) -> Answer[AnnounceResult]:
        access = self._access
        if (request.info_hash in access.hashes) is not access.serves_listed:
            if access.loaded:
                raise TrackerError(access.refusal)
            return access.when_loaded().addCallback(lambda _: self.announce(request, now))
        return self._announce(request, now)

    def count_completion(self, info_hash: bytes, now: int) -> Answer[None]:
        access = self._access
        if (info_hash in access.hashes) is not access.serves_listed:
            if access.loaded:
                raise TrackerError(access.refusal)
            return access.when_loaded().addCallback(lambda _: self.count_completion(info_hash, now))
        return self._store.count_completion(info_hash, now)

    def scrape(self, info_hashes: Sequence[bytes]) -> Answer[dict[bytes, SwarmCounts]]:
        access = self._access
        hashes, listed = access.hashes, access.serves_listed
        for info_hash in info_hashes:
            if (info_hash in hashes) is not listed:
                if access.loaded:
                    raise TrackerError(f"{access.refusal} ({info_hash.hex()})")
                return access.when_loaded().addCallback(lambda _: self.scrape(info_hashes))
        return self._store.scrape(info_hashes)
