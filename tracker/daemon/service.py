"""The tracker's long-lived parts: the store's life, the periodic expiry of silent peers and the
periodic sampling of the tracker's figures."""

from __future__ import annotations

from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tracker.core.config import TrackerConfig
from tracker.core.interfaces import IPeerStore, StoreUnavailable
from tracker.ops.stats import SAMPLE_EVERY, TrackerStats

log = Logger()


class TrackerService(MultiService):
    """
    Starts and stops the store, expires peers every C{config.expire_every} seconds, and samples
    L{stats} every L{SAMPLE_EVERY} seconds. Owns no listener: parent it under any application
    and serve L{tracker.http.resource.TrackerResource} (given C{stats=service.stats}) however the
    application likes.
    """

    def __init__(
        self,
        store: IPeerStore,
        config: TrackerConfig | None = None,
        clock: IReactorTime | None = None,
        stats: TrackerStats | None = None,
    ) -> None:
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as default_reactor

            clock = default_reactor
        assert clock is not None
        self.store = store
        self.config = config or TrackerConfig()
        self._clock = clock
        self._expiry = TimerService(self.config.expire_every, self.expire_once)
        self._expiry.clock = clock
        #: The figures the tracker's resource and UDP listeners count into.
        self.stats = stats or TrackerStats(store, clock)
        # TrackerStats.tick logs its own failures, so the timer cannot stop.
        self._sampling = TimerService(SAMPLE_EVERY, self.stats.tick)
        self._sampling.clock = clock
        #: Fires when the store has opened, or fails if it could not be opened.
        self.started: Deferred[None] = Deferred()

    def startService(self) -> None:
        # Running first: a store that opens at once fires _start_expiry right here.
        super().startService()
        # Expiry starts only once the store is open, so it always finds it open; chained here
        # so that whatever the caller adds to `started` runs after it, and never starts it.
        self.store.start().addCallback(self._start_expiry).chainDeferred(self.started)

    def _start_expiry(self, _: None) -> None:
        if self.running:
            self._expiry.setServiceParent(self)
            self._sampling.setServiceParent(self)

    def stopService(self) -> Deferred[None]:
        self.stats.stop()
        stopped: Deferred[Any] = super().stopService()  # stops expiry, if it ever started
        stopped.addCallback(lambda _: self.store.stop())
        return stopped

    def expire_once(self) -> Deferred[None]:
        """Forget peers silent for longer than the peer timeout; a failure is logged, not raised,
        so that the next run still happens."""
        cutoff = int(self._clock.seconds()) - self.config.peer_timeout
        return self.store.expire(cutoff).addCallbacks(self._expired, self._expiry_failed)

    def _expired(self, removed: int) -> None:
        if removed:
            log.info("expired {count} silent peers", count=removed)

    def _expiry_failed(self, failure: Failure) -> None:
        if failure.check(StoreUnavailable):
            return  # the store has logged its outage, once
        log.failure("peer expiry failed; it will run again", failure)
