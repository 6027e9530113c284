"""
Access lists and passkeys that several tracker nodes share through one store (Redis,
L{tracker.store.redis_access}). Each node answers from its own memory, as a single tracker
does; every few seconds it looks whether another node has changed the lists or the passkeys
(the store's version has moved) and reads them again if so, and now and then reads every
passkey's totals, to which every node adds its own transfers.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from tracker.core.interfaces import StoreStopped, StoreUnavailable
from tracker.ops.access import AccessList
from tracker.ops.passkeys import Passkeys
from tracker.store.access import StoredAccess

#: Seconds between two looks at the store's version: how long another node's change takes
#: to reach this one.
FOLLOW_EVERY = 2.0
#: Seconds between two reads of the passkeys' totals.
TOTALS_EVERY = 10.0


class SharedAccess(Service):
    """
    Follows, for this node, the changes other nodes make to C{store}'s lists and passkeys.
    Parent it beside the L{tracker.ops.control.AccessService} that reads them at start.
    """

    def __init__(
        self,
        store: Any,
        access_list: AccessList | None,
        passkeys: Passkeys | None,
        clock: IReactorTime,
        follow_every: float = FOLLOW_EVERY,
        totals_every: float = TOTALS_EVERY,
    ) -> None:
        self._store = store
        self._access = access_list
        self._passkeys = passkeys
        self._clock = clock
        self._version: int | None = None
        self._totals_at = 0.0
        self._totals_every = totals_every
        self._follow_every = follow_every
        self._looking = LoopingCall(self.look)
        self._looking.clock = clock
        self._busy = False

    def startService(self) -> None:
        super().startService()
        self._looking.start(self._follow_every, now=False)

    def stopService(self) -> Any:
        if self._looking.running:
            self._looking.stop()
        return super().stopService()

    def look(self) -> None:
        """Read the lists and passkeys again if another node changed them."""
        parts = [part for part in (self._access, self._passkeys) if part is not None]
        if self._busy or not all(part.loaded for part in parts):
            # Still loading at start (AccessService does that), or the last look under way.
            return
        self._busy = True
        looked = self._store.version().addCallback(self._looked)
        looked.addErrback(self._failed).addBoth(self._done)

    def _looked(self, version: int) -> Any:
        if version != self._version:
            return self._store.load_versioned().addCallback(self._apply)
        now = self._clock.seconds()
        if self._passkeys is not None and now - self._totals_at >= self._totals_every:
            self._totals_at = now
            return self._store.totals().addCallback(self._passkeys.refresh_totals)
        return None

    def _apply(self, loaded: tuple[StoredAccess, int]) -> None:
        stored, version = loaded
        if version < self._store.latest:
            # Read before a change this node made: the next look reads again.
            return
        self._version = version
        if self._access is not None:
            self._access.replace_stored(stored.listed[self._access.list_name])
        if self._passkeys is not None:
            self._passkeys.refresh(dict(stored.passkeys))
            self._totals_at = self._clock.seconds()

    def _failed(self, failure: Failure) -> None:
        # Redis away: the connection has logged it; the next look tries again.
        failure.trap(StoreUnavailable, StoreStopped)

    def _done(self, _: object) -> None:
        self._busy = False
