"""
The access service: loading the stored state, SIGHUP, and the last write at stop; SIGHUP with
nothing to reload, and SIGTERM's exit status.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from types import FrameType
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import info_hash, totals
from tracker.ops.access import AccessList
from tracker.ops.control import AccessService, HangupService, exit_zero_on_sigterm
from tracker.ops.passkeys import Passkeys
from tracker.store.access import WHITELIST, Account, MemoryAccessStore, StoredAccess

KEY = b"k" * 32


class _Reactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.from_thread: list[Any] = []

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self.from_thread.append(f)


class _BrokenStore(MemoryAccessStore):
    def load(self) -> Deferred[StoredAccess]:
        return fail(RuntimeError("no such table: passkeys"))


class AccessServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="tracker-control-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.reactor = _Reactor()
        self.store = MemoryAccessStore()
        self.store.listed[WHITELIST].add(info_hash(2))
        self.store.passkeys[KEY] = Account("", 0, 5, 6)
        self.access = AccessList(
            WHITELIST, os.path.join(directory, "w.txt"), frozenset(), self.store, self.reactor
        )
        self.passkeys = Passkeys(self.store, Clock())

    def test_loads_the_stored_state(self) -> None:
        """Starting puts the stored torrents and passkeys in force."""
        service = AccessService(self.store, self.access, self.passkeys, self.reactor, False)
        service.startService()
        self.assertTrue(self.access.loaded and self.passkeys.loaded)
        self.assertTrue(self.access.allows(info_hash(2)))
        self.assertEqual(totals(self.passkeys, KEY), [5, 6])

    def test_stop_writes_the_totals(self) -> None:
        """Stopping writes the passkeys' totals not written yet."""
        service = AccessService(self.store, None, self.passkeys, self.reactor, False)
        service.startService()
        self.passkeys.ledgers[KEY].credit(20, 0)
        self.successResultOf(service.stopService())
        self.assertEqual(self.store.passkeys[KEY].uploaded, 25)

    def test_unreadable_state_stops_the_tracker(self) -> None:
        """If the stored state cannot be read, the failure is logged and the daemon stops:
        requests waiting for it are failed, not left hanging."""
        self.reactor.running = True
        waiting = self.passkeys.when_loaded()
        AccessService(
            _BrokenStore(), self.access, self.passkeys, self.reactor, False
        ).startService()
        self.failureResultOf(waiting, RuntimeError)
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_sighup(self) -> None:
        """SIGHUP hands a reload to the reactor through callFromThread, calls the handler that
        was there before, and stopping puts that handler back."""
        called: list[int] = []

        def previous(signum: int, frame: FrameType | None) -> None:
            called.append(signum)

        original = signal.signal(signal.SIGHUP, previous)
        self.addCleanup(signal.signal, signal.SIGHUP, original)
        service = AccessService(self.store, self.access, self.passkeys, self.reactor)
        service.startService()
        self.assertIsNot(signal.getsignal(signal.SIGHUP), previous)
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual(called, [signal.SIGHUP])
        self.assertEqual(len(self.reactor.from_thread), 1)
        service.stopService()
        self.assertIs(signal.getsignal(signal.SIGHUP), previous)

    def test_no_handler_without_a_list(self) -> None:
        """Private mode alone installs no SIGHUP handler: there is no file to reload."""
        before = signal.getsignal(signal.SIGHUP)
        service = AccessService(self.store, None, self.passkeys, self.reactor)
        service.startService()
        self.assertIs(signal.getsignal(signal.SIGHUP), before)
        service.stopService()


class HangupServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = _Reactor()
        original = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, original)
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def hang_up(self) -> None:
        """SIGHUP to this process, and the work it handed the reactor done."""
        os.kill(os.getpid(), signal.SIGHUP)
        calls, self.reactor.from_thread = self.reactor.from_thread, []
        for call in calls:
            call()

    def lines(self) -> list[str]:
        return [formatEvent(event) for event in self.logged if "log_format" in event]

    def test_nothing_to_reload(self) -> None:
        """Without anything to reload, SIGHUP is still handled: one line says so, each time,
        and the process carries on; stopping puts the previous handler back."""
        before = signal.getsignal(signal.SIGHUP)
        service = HangupService(self.reactor)
        service.startService()
        self.assertIsNot(signal.getsignal(signal.SIGHUP), before)
        self.hang_up()
        self.hang_up()
        self.assertEqual(self.lines(), ["SIGHUP: nothing to reload; carrying on"] * 2)
        service.stopService()
        self.assertIs(signal.getsignal(signal.SIGHUP), before)

    def test_reload(self) -> None:
        """With something to reload, SIGHUP reloads it on the reactor's thread; a reload that
        fails is logged and the handler stays."""
        reloads: list[int] = []

        def reload() -> Deferred[None]:
            reloads.append(1)
            if len(reloads) == 2:
                return fail(RuntimeError("disk on fire"))
            return succeed(None)

        service = HangupService(self.reactor, reload)
        service.startService()
        self.addCleanup(service.stopService)
        self.hang_up()
        self.hang_up()
        self.hang_up()
        self.assertEqual(len(reloads), 3)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIn("SIGHUP: the reload failed; carrying on", self.lines())


class SigtermTests(SynchronousTestCase):
    def test_exit_status_zero(self) -> None:
        """After a shutdown that SIGTERM asked for, the reactor no longer asks twistd to die of
        the signal (it exits 0); after one that SIGINT asked for, it still does."""
        for number, left in [(signal.SIGTERM, None), (signal.SIGINT, signal.SIGINT)]:
            reactor = MemoryReactorClock()
            exit_zero_on_sigterm(reactor)
            [(forget, args, kwargs)] = reactor.triggers["after"]["shutdown"]
            reactor._exitSignal = number  # type: ignore[attr-defined]
            forget(*args, **kwargs)
            self.assertEqual(reactor._exitSignal, left)  # type: ignore[attr-defined]
