"""
The service behind access control: it reads the stored access list and passkeys when the
tracker starts, reloads the list file on SIGHUP, and writes the passkeys' last totals when the
tracker stops. Beside it, what the daemon does on the other signals an operator sends: SIGHUP
handled whether there is anything to reload or not, and SIGTERM's exit status.
"""

from __future__ import annotations

import contextlib
import signal
from types import FrameType
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger
from twisted.python.failure import Failure

from tracker.core.interfaces import StoreStopped
from tracker.ops.access import AccessList
from tracker.ops.passkeys import Passkeys
from tracker.store.access import IAccessStore, StoredAccess

log = Logger()


class HangupService(Service):
    """
    Handles SIGHUP for as long as it runs: C{reload} is called on the reactor's thread, or,
    with nothing to reload, one line says so. Either way the tracker carries on. SIGHUP's
    default action is to end the process, and it is what C{kill -HUP} and a C{systemctl
    reload} send: a daemon must never be without a handler for it.
    """

    def __init__(self, reactor: Any, reload: Callable[[], object] | None = None) -> None:
        self._reactor = reactor
        self._reload = reload
        self._previous_handler: Any = None
        self._installed = False

    def startService(self) -> None:
        super().startService()
        try:
            self._previous_handler = signal.signal(signal.SIGHUP, self._hangup)
        except (ValueError, AttributeError, OSError):
            # Not the main thread, or no SIGHUP on this system: the admin API still reloads.
            if self._reload is not None:
                log.warn("SIGHUP cannot reload the access list here; use the admin API's /reload")
            return
        self._installed = True

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._installed:
            signal.signal(signal.SIGHUP, self._previous_handler)
            self._installed = False
        return succeed(None)

    def _hangup(self, signum: int, frame: FrameType | None) -> None:
        # A signal handler runs between two bytecodes of whatever the main thread was doing,
        # perhaps the reactor itself: callFromThread is the safe way back onto the reactor.
        self._reactor.callFromThread(self._hung_up)
        previous = self._previous_handler
        if callable(previous):
            previous(signum, frame)

    def _hung_up(self) -> None:
        if self._reload is None:
            log.info("SIGHUP: nothing to reload; carrying on")
            return
        maybeDeferred(self._reload).addErrback(
            lambda failure: log.failure("SIGHUP: the reload failed; carrying on", failure)
        )


def exit_zero_on_sigterm(reactor: Any) -> None:
    """
    Have a daemon stopped by SIGTERM exit with status 0 once its shutdown has run, as service
    managers and scripts expect of a stop they asked for. twistd would otherwise send itself
    the signal again (Twisted keeps it as the reactor's C{_exitSignal}), to end "killed by
    SIGTERM", status 143 to a shell. SIGINT keeps that ending: a shell running the tracker in
    the foreground stops its script on Ctrl-C only if the tracker dies of it.
    """

    def forget_sigterm() -> None:
        if getattr(reactor, "_exitSignal", None) == signal.SIGTERM:
            reactor._exitSignal = None

    reactor.addSystemEventTrigger("after", "shutdown", forget_sigterm)


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
        self._hangup: HangupService | None = None
        if reload_on_hangup and access_list is not None:
            self._hangup = HangupService(reactor, self._reload)

    def startService(self) -> None:
        super().startService()
        self._store.load().addCallbacks(self._loaded, self._load_failed)
        if self._hangup is not None:
            self._hangup.startService()

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
        if self._hangup is not None and self._hangup.running:
            self._hangup.stopService()
        if self._passkeys is not None and self._passkeys.loaded:
            return self._passkeys.stop()
        return succeed(None)

    def _reload(self) -> Deferred[None]:
        """Read the list file again; a failure has been logged by the list, and changes nothing."""
        assert self._access is not None
        log.info("SIGHUP: reloading {path}", path=self._access.path)
        return self._access.reload().addCallbacks(lambda _: None, lambda _: None)
