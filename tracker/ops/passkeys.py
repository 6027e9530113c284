"""
Private mode's passkeys, and what each has uploaded and downloaded.

Each passkey in force has a ledger (L{tracker.core.ledger.Ledger}) that its announces carry, and
that the swarm index credits with what each peer moved since its previous announce (a delta
against the peer's last report, never the reported totals themselves; see
L{tracker.core.swarms.SwarmIndex}).

Totals are kept in memory, where the admin API reads them, and written to the database every
C{flush_every} seconds in one job of the store's group transactions, never one transaction per
announce. A write that fails is tried again with the next; the log says so once, at most once
a minute while writes fail, and once when they work again.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Callable, NamedTuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tracker.core.errors import TrackerError
from tracker.core.ledger import Ledger
from tracker.store.access import Account, IAccessStore, StoredState
from tracker.store.batching import disk_error
from tracker.store.sqlite import REPORT_EVERY

log = Logger()

#: Seconds between writes of the totals: what a crash can lose of them.
FLUSH_EVERY = 1.0
#: Letters, digits, C{-} and C{_}, as URL paths carry them unescaped; long enough to guess at
#: no better than by chance.
_PASSKEY = re.compile(rb"[0-9A-Za-z_-]{16,64}")


class PasskeyError(ValueError):
    """A passkey the tracker cannot use."""


def check_passkey(passkey: bytes) -> bytes:
    if not _PASSKEY.fullmatch(passkey):
        raise PasskeyError(
            "a passkey is 16 to 64 letters, digits, '-' or '_'"
            f" (not {passkey[:80].decode('ascii', 'replace')!r})"
        )
    return passkey


def new_passkey() -> bytes:
    """32 hex digits from the system's secure random source."""
    return secrets.token_hex(16).encode("ascii")


class PasskeyTotals(NamedTuple):
    passkey: bytes
    label: str
    created: int
    uploaded: int
    downloaded: int


class Passkeys(StoredState):
    """
    The passkeys in force, each with its ledger (in L{ledgers}), which announces carry to the
    store to be credited.

    Until the stored passkeys are loaded (L{load_stored}) the table is empty and L{loaded} is
    false: a caller that does not find a passkey waits for L{when_loaded} before refusing it.
    """

    def __init__(
        self, store: IAccessStore, clock: IReactorTime, flush_every: float = FLUSH_EVERY
    ) -> None:
        super().__init__()
        self._store = store
        self._clock = clock
        self._flush_every = flush_every
        self.ledgers: dict[bytes, Ledger] = {}
        self._about: dict[bytes, tuple[str, int]] = {}
        self._numbered = 0
        #: Ledgers credited since the last write.
        self._owing: list[Ledger] = []
        self._flush_call: IDelayedCall | None = None
        self._stopped = False
        #: While writes fail: since when, and when the log last said so.
        self._failing_since: float | None = None
        self._reported = 0.0

    # Start and stop.

    def load_stored(self, accounts: dict[bytes, Account]) -> None:
        for passkey, account in accounts.items():
            self._put_in_force(passkey, account.uploaded, account.downloaded)
            self._about[passkey] = (account.label, account.created)
        self._now_loaded()

    def refresh(self, accounts: dict[bytes, Account]) -> None:
        """
        The passkeys as stored now, another tracker node sharing the store having changed
        them: new ones are put in force, removed ones dropped, and each total is the stored
        one (every node's transfers) plus what this node has credited and not written yet.
        """
        for passkey in list(self.ledgers):
            if passkey not in accounts:
                self._removed(True, passkey)
        for passkey, account in accounts.items():
            ledger = self.ledgers.get(passkey)
            if ledger is None:
                self._put_in_force(passkey, account.uploaded, account.downloaded)
                self._about[passkey] = (account.label, account.created)
            else:
                ledger.uploaded = account.uploaded + ledger.unwritten_up
                ledger.downloaded = account.downloaded + ledger.unwritten_down

    def refresh_totals(self, totals: dict[bytes, tuple[int, int]]) -> None:
        """Every passkey's stored totals (all nodes' transfers), plus this node's unwritten."""
        for passkey, (uploaded, downloaded) in totals.items():
            ledger = self.ledgers.get(passkey)
            if ledger is not None:
                ledger.uploaded = uploaded + ledger.unwritten_up
                ledger.downloaded = downloaded + ledger.unwritten_down

    def stop(self) -> Deferred[None]:
        """Write the totals not written yet; nothing is written after this."""
        self._stopped = True
        return self.flush()

    # Crediting.

    def _put_in_force(self, passkey: bytes, uploaded: int, downloaded: int) -> None:
        self._numbered += 1
        self.ledgers[passkey] = Ledger(passkey, self._numbered, uploaded, downloaded, self._owe)

    def _owe(self, ledger: Ledger) -> None:
        self._owing.append(ledger)
        if self._flush_call is None and not self._stopped:
            self._flush_call = self._clock.callLater(self._flush_every, self.flush)

    def flush(self) -> Deferred[None]:
        """Write the totals credited since the last write, in one job."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        owing, self._owing = self._owing, []
        ledgers = self.ledgers
        totals = {}
        owed = {}
        for ledger in owing:
            unwritten = ledger.take_unwritten()
            # Credited by an announce admitted before its passkey was removed: not written.
            if ledgers.get(ledger.passkey) is ledger:
                totals[ledger.passkey] = (ledger.uploaded, ledger.downloaded)
                owed[ledger.passkey] = unwritten
        if not totals:
            return succeed(None)
        written = self._store.write_totals(totals, owed)
        return written.addCallbacks(self._flushed, self._flush_failed, errbackArgs=(owed,))

    def _flushed(self, _: None) -> None:
        if self._failing_since is not None:
            self._failing_since = None
            log.info("the passkeys' transfer totals are written again")

    def _flush_failed(self, failure: Failure, owed: dict[bytes, tuple[int, int]]) -> None:
        now = self._clock.seconds()
        if self._stopped:
            log.failure(
                "could not write the transfer totals of {count} passkeys: they are lost",
                failure,
                count=len(owed),
            )
            return
        if self._failing_since is None:
            self._failing_since = self._reported = now
            if disk_error(failure.value) is None:
                log.failure(
                    "could not write the transfer totals of {count} passkeys; will retry",
                    failure,
                    count=len(owed),
                )
            else:
                log.error(
                    "cannot write the transfer totals of {count} passkeys ({error}); will retry",
                    count=len(owed),
                    error=str(failure.value),
                )
        elif now - self._reported >= REPORT_EVERY:
            self._reported = now
            log.error(
                "the passkeys' transfer totals cannot be written since {seconds:.0f} s"
                " ({error}); will retry",
                seconds=now - self._failing_since,
                error=str(failure.value),
            )
        for passkey, (up, down) in owed.items():
            ledger = self.ledgers.get(passkey)
            if ledger is not None:
                ledger.owe(up, down)

    # Administration.

    def add(self, passkey: bytes | None, label: str = "", now: int = 0) -> Deferred[bytes | None]:
        """
        Store a new passkey (a random one if C{passkey} is None), then put it in force. Fires
        with the passkey, or None if it already existed; raises L{PasskeyError} at once for a
        passkey that is not well formed.
        """
        if passkey is None:
            passkey = new_passkey()
        check_passkey(passkey)
        added = self._store.add_passkey(passkey, label, now)
        return added.addCallback(self._added, passkey, label, now)

    def _added(self, new: bool, passkey: bytes, label: str, now: int) -> bytes | None:
        if not new:
            return None
        self._put_in_force(passkey, 0, 0)
        self._about[passkey] = (label, now)
        return passkey

    def remove(self, passkey: bytes) -> Deferred[bool]:
        """Forget a passkey and its totals; fires with whether it existed."""
        removed = self._store.remove_passkey(passkey)
        return removed.addCallback(self._removed, passkey)

    def _removed(self, there: bool, passkey: bytes) -> bool:
        self.ledgers.pop(passkey, None)
        self._about.pop(passkey, None)
        return there

    def listing(self) -> list[PasskeyTotals]:
        """Every passkey with its totals, credited ones not yet written included."""
        rows = []
        for passkey, ledger in self.ledgers.items():
            label, created = self._about.get(passkey, ("", 0))
            rows.append(PasskeyTotals(passkey, label, created, ledger.uploaded, ledger.downloaded))
        rows.sort(key=lambda row: (row.created, row.passkey))
        return rows

    def __len__(self) -> int:
        return len(self.ledgers)


UNKNOWN_PASSKEY = "unknown passkey"


def wait_or_refuse(passkeys: Passkeys, retry: Callable[[], Any]) -> Deferred[Any]:
    """Refuse a passkey not found, unless the passkeys are still loading: then wait and retry."""
    if passkeys.loaded:
        raise TrackerError(UNKNOWN_PASSKEY)
    return passkeys.when_loaded().addCallback(lambda _: retry())
