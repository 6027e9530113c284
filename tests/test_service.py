"""The tracker service: the store's life and periodic expiry, on a test clock."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.helpers import announce, info_hash
from tracker.core.announce import AnnounceRequest
from tracker.core.config import TrackerConfig
from tracker.core.interfaces import AnnounceResult, IPeerStore, SwarmCounts
from tracker.daemon.service import TrackerService
from tracker.store.memory import MemoryPeerStore
from tracker.store.sqlite import SQLitePeerStore

START = 50_000
CONFIG = TrackerConfig(interval=100, min_interval=50, peer_timeout=300, expire_every=60)


@implementer(IPeerStore)
class RecordingStore:
    """A memory store that records its lifecycle and expiry calls, and can be told to fail."""

    def __init__(self) -> None:
        self.real = MemoryPeerStore()
        self.events: list[str] = []
        self.cutoffs: list[int] = []
        #: Exceptions the next expiry runs raise, in order.
        self.expiry_failures: list[Exception] = []
        self.start_result: Deferred[None] | None = None
        self.stop_result: Deferred[None] | None = None

    def start(self) -> Deferred[None]:
        self.events.append("start")
        return self.start_result or succeed(None)

    def stop(self) -> Deferred[None]:
        self.events.append("stop")
        return self.stop_result or succeed(None)

    def announce(self, request: AnnounceRequest, now: int) -> AnnounceResult:
        return self.real.announce(request, now)

    def scrape(self, info_hashes: Any) -> dict[bytes, SwarmCounts]:
        return self.real.scrape(info_hashes)

    def count_completion(self, info_hash: bytes, now: int) -> None:
        self.real.count_completion(info_hash, now)

    def expire(self, cutoff: int) -> Deferred[int]:
        self.cutoffs.append(cutoff)
        if self.expiry_failures:
            return fail(self.expiry_failures.pop(0))
        return self.real.expire(cutoff)


class ServiceTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = RecordingStore()
        self.service = TrackerService(self.store, CONFIG, self.clock)

    def start(self) -> None:
        """Start the service on a store that opens a moment later, as the SQLite store does."""
        opening: Deferred[None] = Deferred()
        self.store.start_result = opening
        self.service.startService()
        opening.callback(None)
        self.successResultOf(self.service.started)

    def test_expiry_runs_every_period(self) -> None:
        """Expiry runs at start and then every expire_every seconds, with cutoff
        now - peer_timeout."""
        self.start()
        for _ in range(3):
            self.clock.advance(CONFIG.expire_every)
        self.assertEqual(
            self.store.cutoffs,
            [START + n * CONFIG.expire_every - CONFIG.peer_timeout for n in range(4)],
        )

    def test_silent_peers_forgotten(self) -> None:
        """A peer silent for longer than the peer timeout is gone from its swarm; one that
        announced recently stays."""
        self.start()
        self.store.real.announce(announce(1), START)
        self.clock.advance(200)
        self.store.real.announce(announce(2), START + 200)
        self.clock.advance(CONFIG.peer_timeout)
        counts = self.store.scrape([info_hash(1)])[info_hash(1)]
        self.assertEqual(counts.incomplete, 1)
        result = self.store.real.announce(announce(3, compact=False), START + 500)
        self.assertEqual([p.peer_id for p in result.peers()], [announce(2).peer_id])

    def test_failed_expiry_logged_and_retried(self) -> None:
        """A failed expiry run is logged once and the next run still happens on time."""
        self.store.expiry_failures = [RuntimeError("database is locked")]
        self.start()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.store.real.announce(announce(1), START)
        self.clock.pump([CONFIG.expire_every] * 6)
        self.assertEqual(len(self.store.cutoffs), 1 + 6)
        self.assertEqual(self.flushLoggedErrors(), [])
        counts = self.store.scrape([info_hash(1)])[info_hash(1)]
        self.assertEqual(counts.incomplete, 0)

    def test_expiry_runs_with_store_that_opens_at_once(self) -> None:
        """Expiry also runs when the store's start() has already fired when it returns."""
        self.service.startService()
        self.successResultOf(self.service.started)
        self.clock.advance(CONFIG.expire_every)
        self.assertEqual(
            self.store.cutoffs,
            [START + n * CONFIG.expire_every - CONFIG.peer_timeout for n in range(2)],
        )

    def test_memory_store_peers_expire(self) -> None:
        """With the in-memory store, a peer silent past the peer timeout is forgotten."""
        store = MemoryPeerStore()
        service = TrackerService(store, CONFIG, self.clock)
        service.startService()
        self.addCleanup(service.stopService)
        store.announce(announce(1), START)
        self.clock.pump([CONFIG.expire_every] * 7)
        counts = store.scrape([info_hash(1)])[info_hash(1)]
        self.assertEqual(counts.incomplete, 0)

    def test_expiry_waits_for_store(self) -> None:
        """No expiry runs until the store has opened."""
        self.store.start_result = Deferred()
        self.service.startService()
        self.clock.advance(10 * CONFIG.expire_every)
        self.assertEqual(self.store.cutoffs, [])
        self.assertNoResult(self.service.started)
        self.store.start_result.callback(None)
        self.successResultOf(self.service.started)
        self.assertEqual(len(self.store.cutoffs), 1)

    def test_store_that_cannot_open(self) -> None:
        """If the store cannot open, `started` fails and expiry never runs."""
        self.store.start_result = fail(OSError("no such directory"))
        self.service.startService()
        self.failureResultOf(self.service.started, OSError)
        self.clock.advance(10 * CONFIG.expire_every)
        self.assertEqual(self.store.cutoffs, [])

    def test_stop_stops_store_and_expiry(self) -> None:
        """Stopping the service stops the store, waits for it, and ends expiry."""
        self.start()
        self.store.stop_result = Deferred()
        stopped = self.service.stopService()
        self.assertEqual(self.store.events, ["start", "stop"])
        self.assertNoResult(stopped)
        self.store.stop_result.callback(None)
        self.successResultOf(stopped)
        runs = len(self.store.cutoffs)
        self.clock.advance(10 * CONFIG.expire_every)
        self.assertEqual(len(self.store.cutoffs), runs)
        self.assertFalse(self.service.running)

    def test_stopped_before_store_opened(self) -> None:
        """A service stopped while its store is still opening never starts expiry."""
        self.store.start_result = Deferred()
        self.service.startService()
        self.successResultOf(self.service.stopService())
        self.store.start_result.callback(None)
        self.clock.advance(10 * CONFIG.expire_every)
        self.assertEqual(self.store.cutoffs, [])

    def test_parented_under_application(self) -> None:
        """Under a parent service, starting and stopping the parent starts and stops the store."""
        parent = MultiService()
        self.service.setServiceParent(parent)
        parent.startService()
        self.assertTrue(self.service.running)
        self.successResultOf(parent.stopService())
        self.assertEqual(self.store.events, ["start", "stop"])


class SQLiteServiceTests(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_restart_keeps_swarm(self) -> Any:
        """A service restarted on the same SQLite file still knows its peers."""
        directory = tempfile.mkdtemp(prefix="tracker-service-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "tracker.sqlite3")
        first = TrackerService(SQLitePeerStore(path), CONFIG, reactor)
        first.startService()
        yield first.started
        yield first.store.announce(announce(1), int(reactor.seconds()))
        yield first.stopService()
        second = TrackerService(SQLitePeerStore(path), CONFIG, reactor)
        second.startService()
        self.addCleanup(second.stopService)
        yield second.started
        counts = yield second.store.scrape([info_hash(1)])
        self.assertEqual(counts[info_hash(1)], SwarmCounts(0, 1, 0))
