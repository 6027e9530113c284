"""
The service behind access control: it reads the stored access list and passkeys when the
tracker starts, reloads the list file on SIGHUP, and writes the passkeys' last totals when the
tracker stops.
"""

from __future__ import annotations

import contextlib
import signal
from types import FrameType
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python.failure import Failure

from tracker.core.interfaces import StoreStopped
from tracker.ops.access import AccessList
from tracker.ops.passkeys import Passkeys
from tracker.store.access import IAccessStore, StoredAccess

log = Logger()


class AccessService(Service):
    """
    Parent it after the L{tracker.daemon.service.TrackerService} of the same store: its work then
    queues behind the store's opening, and at shutdown its last write goes before the store
    closes.
    """

    def __init__(
        self,
        store: IAccessStore,
        access_list: AccessList | None,
        passkeys: Passkeys | None,
        reactor: Any,
        reload_on_hangup: bool = True,
    ) -> None:
        self._store = store
        self._access = access_list
        self._passkeys = passkeys
        self._reactor = reactor
        self._reload_on_hangup = reload_on_hangup and access_list is not None
        self._previous_handler: Any = None
        self._installed = False

    def startService(self) -> None:
        super().startService()
        self._store.load().addCallbacks(self._loaded, self._load_failed)
        if self._reload_on_hangup:
            self._install_hangup()

    def _loaded(self, stored: StoredAccess) -> None:
        if self._access is not None:
            self._access.load_stored(stored.listed[self._access.list_name])
        if self._passkeys is not None:
            self._passkeys.load_stored(dict(stored.passkeys))

    def _load_failed(self, failure: Failure) -> None:
        for part in (self._access, self._passkeys):
            if part is not None:
                part.load_failed(failure)
        if failure.check(StoreStopped):
            # The database did not open: the tracker service says so and stops the daemon.
            return
        # Without its lists the tracker cannot tell whom to serve: better stopped than open.
        log.failure("could not read the stored access lists and passkeys; stopping", failure)
        with contextlib.suppress(ReactorNotRunning):
            self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._installed:
            signal.signal(signal.SIGHUP, self._previous_handler)
            self._installed = False
        if self._passkeys is not None and self._passkeys.loaded:
            return self._passkeys.stop()
        return succeed(None)

    # SIGHUP.

    def _install_hangup(self) -> None:
        try:
            self._previous_handler = signal.signal(signal.SIGHUP, self._hangup)
        except (ValueError, AttributeError, OSError):
            # Not the main thread, or no SIGHUP on this system: the admin API still reloads.
            log.warn("SIGHUP cannot reload the access list here; use the admin API's /reload")
            return
        self._installed = True

    def _hangup(self, signum: int, frame: FrameType | None) -> None:
        # A signal handler runs between two bytecodes of whatever the main thread was doing,
        # perhaps the reactor itself: callFromThread is the safe way back onto the reactor.
        self._reactor.callFromThread(self._reload)
        previous = self._previous_handler
        if callable(previous):
            previous(signum, frame)

    def _reload(self) -> Deferred[None]:
        """Read the list file again; a failure has been logged by the list, and changes nothing."""
        assert self._access is not None
        log.info("SIGHUP: reloading {path}", path=self._access.path)
        return self._access.reload().addCallbacks(lambda _: None, lambda _: None)
