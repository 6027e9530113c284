"""
Private mode's passkeys, and what each has uploaded and downloaded.

A client reports its session's running totals with every announce. What a passkey is credited
is the growth since the same peer's previous announce (a delta against a baseline), never the
reported totals themselves, so re-announcing credits nothing twice. A peer's first announce, a
C{started} one, or the first after a tracker restart only sets its baseline; a client that
restarted without saying so reports smaller totals, which count from zero again, never as a
negative delta.

Totals are kept in memory, where the admin API reads them, and written to the database every
C{flush_every} seconds in one job of the store's group transactions, never one transaction per
announce.
"""

from __future__ import annotations

import re
import secrets
from typing import NamedTuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tracker.announce import STARTED, STOPPED, AnnounceRequest
from tracker.store.access import Account, IAccessStore, StoredState

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
    The passkeys in force, each with its running totals (in L{totals}: passkey to
    C{[uploaded, downloaded]}); L{record} credits them from announces.

    Until the stored passkeys are loaded (L{load_stored}) the table is empty and L{loaded} is
    false: a caller that does not find a passkey waits for L{when_loaded} before refusing it.
    """

    def __init__(
        self,
        store: IAccessStore,
        clock: IReactorTime,
        baseline_lifetime: int = 2700,
        flush_every: float = FLUSH_EVERY,
    ) -> None:
        super().__init__()
        self._store = store
        self._clock = clock
        self._flush_every = flush_every
        self._baseline_lifetime = baseline_lifetime
        self.totals: dict[bytes, list[int]] = {}
        self._about: dict[bytes, tuple[str, int]] = {}
        #: A number per passkey in force, never reused, that a baseline names it by.
        self._numbers: dict[bytes, int] = {}
        self._numbered = 0
        #: Per swarm (info hash), per peer (peer id): [passkey's number, uploaded, downloaded]
        #: last reported. Two small lookups, where one keyed by info hash and peer id together
        #: would be a miss in a dict of every peer and a new 40-byte key per announce; and
        #: integers alone, which PyPy keeps unboxed in the list, so that updating it allocates
        #: nothing (a list holding the passkey cost PyPy a tenth of an announce).
        self._baselines: dict[bytes, dict[bytes, list[int]]] = {}
        #: The previous generation, forgotten at the next turn: a peer silent for longer than
        #: the baseline lifetime has left its swarm and starts again from a new baseline.
        self._older: dict[bytes, dict[bytes, list[int]]] = {}
        self._pending: dict[bytes, list[int]] = {}
        self._flush_call: IDelayedCall | None = None
        self._turn_call: IDelayedCall | None = None
        self._stopped = False

    # Start and stop.

    def load_stored(self, accounts: dict[bytes, Account]) -> None:
        for passkey, account in accounts.items():
            self._put_in_force(passkey, [account.uploaded, account.downloaded])
            self._about[passkey] = (account.label, account.created)
        self._turn_call = self._clock.callLater(self._baseline_lifetime, self._turn)
        self._now_loaded()

    def stop(self) -> Deferred[None]:
        """Write the totals not written yet; nothing is written after this."""
        self._stopped = True
        if self._turn_call is not None and self._turn_call.active():
            self._turn_call.cancel()
        return self.flush()

    # Crediting.

    def record(self, passkey: bytes, request: AnnounceRequest) -> None:
        """Credit C{passkey} with what the peer moved since its previous announce."""
        number = self._numbers.get(passkey)
        if number is None:
            # Removed since the announce was admitted.
            return
        info_hash = request.info_hash
        peer_id = request.peer_id
        uploaded = request.uploaded
        downloaded = request.downloaded
        event = request.event
        peers = self._baselines.get(info_hash)
        if peers is None:
            peers = self._baselines[info_hash] = {}
        baseline = peers.get(peer_id)
        if baseline is None:
            older = self._older.get(info_hash)
            baseline = older.pop(peer_id, None) if older is not None else None
            if baseline is None:
                # First seen (or first since a restart, or silent for long): a baseline only.
                if event != STOPPED:
                    peers[peer_id] = [number, uploaded, downloaded]
                return
            peers[peer_id] = baseline
        up = uploaded - baseline[1]
        down = downloaded - baseline[2]
        # Updated in place: no new object for the most common announce.
        baseline[1] = uploaded
        baseline[2] = downloaded
        if event:
            if event == STOPPED:
                del peers[peer_id]
            elif event == STARTED:
                return
        if baseline[0] != number:
            baseline[0] = number
            return
        if up < 0:
            # The client restarted and counts from zero again: all it reports is new.
            up = uploaded
        if down < 0:
            down = downloaded
        if not (up or down):
            return
        totals = self.totals[passkey]
        totals[0] += up
        totals[1] += down
        pending = self._pending.get(passkey)
        if pending is None:
            self._pending[passkey] = [up, down]
        else:
            pending[0] += up
            pending[1] += down
        if self._flush_call is None and not self._stopped:
            self._flush_call = self._clock.callLater(self._flush_every, self.flush)

    def _put_in_force(self, passkey: bytes, totals: list[int]) -> None:
        self.totals[passkey] = totals
        self._numbered += 1
        self._numbers[passkey] = self._numbered

    def _turn(self) -> None:
        self._older = self._baselines
        self._baselines = {}
        self._turn_call = self._clock.callLater(self._baseline_lifetime, self._turn)

    def flush(self) -> Deferred[None]:
        """Write the totals credited since the last write, in one job."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        pending, self._pending = self._pending, {}
        if not pending:
            return succeed(None)
        transfers = {passkey: (up, down) for passkey, (up, down) in pending.items()}
        written = self._store.add_transfers(transfers)
        return written.addErrback(self._flush_failed, transfers)

    def _flush_failed(self, failure: Failure, transfers: dict[bytes, tuple[int, int]]) -> None:
        log.failure(
            "could not write the transfer totals of {count} passkeys{outcome}",
            failure,
            count=len(transfers),
            outcome=": they are lost" if self._stopped else "; will retry",
        )
        if self._stopped:
            return
        for passkey, (up, down) in transfers.items():
            pending = self._pending.setdefault(passkey, [0, 0])
            pending[0] += up
            pending[1] += down
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(self._flush_every, self.flush)

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
        self._put_in_force(passkey, [0, 0])
        self._about[passkey] = (label, now)
        return passkey

    def remove(self, passkey: bytes) -> Deferred[bool]:
        """Forget a passkey and its totals; fires with whether it existed."""
        removed = self._store.remove_passkey(passkey)
        return removed.addCallback(self._removed, passkey)

    def _removed(self, there: bool, passkey: bytes) -> bool:
        self.totals.pop(passkey, None)
        self._numbers.pop(passkey, None)
        self._about.pop(passkey, None)
        self._pending.pop(passkey, None)
        return there

    def listing(self) -> list[PasskeyTotals]:
        """Every passkey with its totals, credited ones not yet written included."""
        rows = []
        for passkey, (uploaded, downloaded) in self.totals.items():
            label, created = self._about.get(passkey, ("", 0))
            rows.append(PasskeyTotals(passkey, label, created, uploaded, downloaded))
        rows.sort(key=lambda row: (row.created, row.passkey))
        return rows

    def __len__(self) -> int:
        return len(self.totals)
