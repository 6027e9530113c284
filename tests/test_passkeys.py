"""Passkeys: crediting transfers as deltas, writing them in batches, and managing the table."""

from __future__ import annotations

import contextlib
import random
import sqlite3
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import announce, info_hash, totals
from tests.test_resource import LogCapture
from tests.test_swarms import random_announce
from tracker.core.announce import COMPLETED, NONE, STARTED, STOPPED, AnnounceRequest
from tracker.core.errors import KeyMismatch
from tracker.core.ledger import Report, credit_report
from tracker.core.swarms import SwarmIndex
from tracker.ops.passkeys import PasskeyError, Passkeys, check_passkey, new_passkey
from tracker.store.access import Account, MemoryAccessStore, Totals

KEY = b"k" * 32
OTHER = b"o" * 32


def report(
    uploaded: int,
    downloaded: int,
    event: str = NONE,
    peer: int = 1,
    torrent: int = 1,
    **fields: Any,
) -> AnnounceRequest:
    return announce(peer, torrent, event=event, **fields)._replace(
        uploaded=uploaded, downloaded=downloaded
    )


class _CountingStore(MemoryAccessStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[dict[bytes, tuple[int, int]]] = []
        self.credited: list[dict[bytes, tuple[int, int]]] = []
        self.failing = False
        self.error: Exception = OSError("disk full")

    def write_totals(self, totals: Totals, credited: Totals) -> Deferred[None]:
        self.writes.append(dict(totals))
        self.credited.append(dict(credited))
        if self.failing:
            return fail(self.error)
        return super().write_totals(totals, credited)


class PasskeyTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = _CountingStore()
        self.store.passkeys[KEY] = Account("alice", 5, 100, 200)
        self.store.passkeys[OTHER] = Account("", 6, 0, 0)
        self.passkeys = Passkeys(self.store, self.clock, flush_every=1)
        self.passkeys.load_stored(dict(self.store.passkeys))
        self.index = SwarmIndex(random.Random(1))

    def record(self, passkey: bytes, request: AnnounceRequest, now: int = 0) -> None:
        """Announce C{request} to the index, made with C{passkey}."""
        self.index.announce(request._replace(account=self.passkeys.ledgers[passkey]), now)


class DeltaTests(PasskeyTestCase):
    """The index credits a passkey's ledger as it records the announce."""

    def test_deltas_not_totals(self) -> None:
        """A peer's first announce sets its baseline; each next one is credited with the growth
        since the previous, not with the totals it reports."""
        self.record(KEY, report(1000, 500))
        self.assertEqual(totals(self.passkeys, KEY), [100, 200])
        self.record(KEY, report(1500, 800))
        self.record(KEY, report(1500, 800))
        self.record(KEY, report(4000, 800))
        self.assertEqual(totals(self.passkeys, KEY), [100 + 3000, 200 + 300])

    def test_started_sets_a_new_baseline(self) -> None:
        """A started announce credits nothing and is the base of the next."""
        self.record(KEY, report(1000, 1000))
        self.record(KEY, report(50, 20, STARTED))
        self.record(KEY, report(80, 30))
        self.assertEqual(totals(self.passkeys, KEY), [100 + 30, 200 + 10])

    def test_reset_counts_from_zero_never_negative(self) -> None:
        """A client that restarted without saying so reports less than before: what it
        reports is counted from zero, never as a negative delta."""
        self.record(KEY, report(10_000, 10_000))
        self.record(KEY, report(300, 20_000))
        self.assertEqual(totals(self.passkeys, KEY), [100 + 300, 200 + 10_000])
        self.record(KEY, report(500, 20_000))
        self.assertEqual(totals(self.passkeys, KEY), [100 + 500, 200 + 10_000])

    def test_stopped_is_credited_then_forgotten(self) -> None:
        """A stopped announce is credited; the peer's next announce starts a new baseline."""
        self.record(KEY, report(100, 0))
        self.record(KEY, report(150, 0, STOPPED))
        self.record(KEY, report(900, 0))
        self.assertEqual(totals(self.passkeys, KEY), [100 + 50, 200])

    def test_peers_and_torrents_apart(self) -> None:
        """Each peer of each torrent has its own baseline."""
        self.record(KEY, report(100, 0, peer=1))
        self.record(KEY, report(1000, 0, peer=2))
        self.record(KEY, report(5000, 0, torrent=2))
        self.record(KEY, report(110, 0, peer=1))
        self.record(KEY, report(1020, 0, peer=2))
        self.record(KEY, report(5030, 0, torrent=2))
        self.assertEqual(totals(self.passkeys, KEY), [100 + 60, 200])

    def test_report_follows_a_moving_peer(self) -> None:
        """A leecher that completes, and a peer that announces from a new port, are credited
        as they move to another group of their swarm, and their baseline moves with them."""
        self.record(KEY, report(100, 1000, peer=1, left=10))
        self.record(KEY, report(100, 1010, COMPLETED, peer=1, left=0))
        self.record(KEY, report(130, 1010, peer=1, left=0))
        self.record(KEY, report(0, 0, peer=2, port=7000))
        self.record(KEY, report(5, 0, peer=2, port=7001))
        self.record(KEY, report(9, 0, peer=2, port=7001))
        self.assertEqual(totals(self.passkeys, KEY), [100 + 30 + 9, 200 + 10])

    def test_peer_changing_passkey(self) -> None:
        """A peer that announces under another passkey starts a new baseline under it."""
        self.record(KEY, report(100, 0))
        self.record(OTHER, report(5000, 0))
        self.record(OTHER, report(5010, 0))
        self.assertEqual(totals(self.passkeys, KEY), [100, 200])
        self.assertEqual(totals(self.passkeys, OTHER), [10, 0])

    def test_expired_peer_starts_again(self) -> None:
        """A peer that expired from its swarm starts from a new baseline; one that keeps
        announcing keeps its own."""
        self.record(KEY, report(100, 0, peer=1), now=0)
        self.record(KEY, report(100, 0, peer=2), now=0)
        self.record(KEY, report(110, 0, peer=1), now=100)
        removed = [0]
        list(self.index.expire(50, removed))
        self.assertEqual(removed, [1])
        self.record(KEY, report(120, 0, peer=1), now=150)
        self.record(KEY, report(9000, 0, peer=2), now=150)
        self.assertEqual(totals(self.passkeys, KEY), [100 + 20, 200])

    def test_peer_loaded_after_a_restart_starts_again(self) -> None:
        """A peer the index loaded from the store (after a restart) has no report yet: its
        first announce is a baseline only."""
        request = report(100, 0, peer=1)
        self.index.load_peer(request.info_hash, request.peer_id, b"\x7f\0\0\1\x27\x11", 0, 0, 0)
        self.record(KEY, report(100, 0, peer=2))
        self.record(KEY, request)
        self.record(KEY, report(140, 0, peer=1))
        self.assertEqual(totals(self.passkeys, KEY), [100 + 40, 200])

    def test_unchanged_announce_credits_nothing(self) -> None:
        """An announce the index leaves unchanged (another family, without the peer's key)
        is not credited, nor does it move the peer's baseline."""
        self.record(KEY, report(100, 0, key=7))
        self.record(KEY, report(100_000, 0, ip=b"\x20\x01" + b"\0" * 14, key=8))
        self.record(KEY, report(150, 0, key=7))
        self.assertEqual(totals(self.passkeys, KEY), [100 + 50, 200])
        with self.assertRaises(KeyMismatch):
            self.record(KEY, report(200_000, 0, ip=b"\x0a\0\0\1", key=8))
        self.assertEqual(totals(self.passkeys, KEY), [100 + 50, 200])

    def test_public_announces_keep_no_reports(self) -> None:
        """Swarms that no private announce reached keep no reports: a public tracker pays
        nothing for them."""
        self.index.announce(report(100, 0, peer=1), 0)
        self.index.announce(report(100, 0, peer=2, left=0), 0)
        swarm = self.index.swarms[info_hash(1)]
        self.assertEqual([g.reports for g in swarm.groups if g is not None], [None, None])
        self.record(KEY, report(100, 0, peer=3))
        self.record(KEY, report(160, 0, peer=3))
        self.record(KEY, report(170, 0, peer=1))
        self.record(KEY, report(175, 0, peer=1))
        self.assertEqual(totals(self.passkeys, KEY), [100 + 60 + 5, 200])

    def test_removed_passkey_credits_nothing(self) -> None:
        """Announces already admitted under a passkey removed meanwhile are not written."""
        ledger = self.passkeys.ledgers[OTHER]
        self.record(OTHER, report(100, 0))
        self.successResultOf(self.passkeys.remove(OTHER))
        self.index.announce(report(200, 0)._replace(account=ledger), 0)
        self.assertNotIn(OTHER, self.passkeys.ledgers)
        self.clock.advance(1)
        self.assertEqual(self.store.writes, [])

    def test_passkey_added_again_starts_afresh(self) -> None:
        """A passkey removed and added again is credited only with what its peers move after
        that, not with the growth since a report made before it was removed."""
        self.record(OTHER, report(100, 0))
        self.successResultOf(self.passkeys.remove(OTHER))
        self.assertEqual(self.successResultOf(self.passkeys.add(OTHER)), OTHER)
        self.record(OTHER, report(5000, 0))
        self.record(OTHER, report(5010, 0))
        self.assertEqual(totals(self.passkeys, OTHER), [10, 0])


class FlushTests(PasskeyTestCase):
    def test_batched_writes(self) -> None:
        """Credits are written once a second, all passkeys in one write, never one a request."""
        for n in range(1, 101):
            self.record(KEY, report(n * 10, 0))
            self.record(OTHER, report(0, n * 5, peer=2))
        self.assertEqual(self.store.writes, [])
        self.clock.advance(1)
        self.assertEqual(self.store.writes, [{KEY: (1090, 200), OTHER: (0, 495)}])
        self.assertEqual(self.store.passkeys[KEY].uploaded, 100 + 990)
        self.clock.advance(10)
        self.assertEqual(len(self.store.writes), 1)

    def test_failed_write_is_retried(self) -> None:
        """A write that fails is logged and its credits go into the next one."""
        log = LogCapture(self)
        self.store.failing = True
        self.record(KEY, report(10, 0))
        self.record(KEY, report(30, 0))
        self.clock.advance(1)
        self.assertEqual(len(log.failures()), 1)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.store.failing = False
        self.record(KEY, report(35, 0))
        self.clock.advance(1)
        self.assertEqual(self.store.writes[-1], {KEY: (125, 200)})
        self.assertEqual(self.store.passkeys[KEY].uploaded, 125)

    def test_failing_disk_logged_once_a_minute(self) -> None:
        """While the disk fails, the log says so once (one line, no traceback), at most once a
        minute after, and once when writes work again; the totals written then are whole."""
        log = LogCapture(self)
        self.store.error = sqlite3.OperationalError("database or disk is full")
        self.store.failing = True
        for n in range(1, 301):
            self.record(KEY, report(n * 10, 0))
            self.clock.advance(1)
        errors = [e for e in log.events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1 + 299 // 60)
        self.assertEqual(log.failures(), [])
        self.store.failing = False
        self.record(KEY, report(3010, 0))
        self.clock.advance(1)
        self.assertEqual(self.store.writes[-1], {KEY: (100 + 3000, 200)})
        infos = [e for e in log.events if e["log_level"] == LogLevel.info]
        self.assertEqual(len(infos), 1)

    def test_stop_writes_the_rest(self) -> None:
        """Stopping writes what is pending at once, and nothing is scheduled after."""
        self.record(KEY, report(10, 0))
        self.record(KEY, report(30, 0))
        self.successResultOf(self.passkeys.stop())
        self.assertEqual(self.store.writes, [{KEY: (120, 200)}])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class TableTests(PasskeyTestCase):
    def test_add_generated_and_given(self) -> None:
        """A passkey is generated when none is given; a given one must be well formed; an
        existing one is not replaced."""
        generated = self.successResultOf(self.passkeys.add(None, "bob", 7))
        assert generated is not None
        self.assertEqual(len(generated), 32)
        self.assertIn(generated, self.passkeys.ledgers)
        self.assertEqual(self.store.passkeys[generated], Account("bob", 7, 0, 0))
        self.assertIsNone(self.successResultOf(self.passkeys.add(KEY, "again", 8)))
        self.assertEqual(totals(self.passkeys, KEY), [100, 200])
        with self.assertRaises(PasskeyError):
            self.passkeys.add(b"short", "", 9)

    def test_listing(self) -> None:
        """The listing has every passkey with its label and totals, uncommitted credits too."""
        self.record(KEY, report(10, 0))
        self.record(KEY, report(30, 0))
        rows = self.passkeys.listing()
        self.assertEqual([(r.passkey, r.label, r.uploaded) for r in rows],
                         [(KEY, "alice", 120), (OTHER, "", 0)])  # fmt: skip

    def test_passkey_format(self) -> None:
        """Passkeys are 16 to 64 URL-safe characters."""
        for good in [b"a" * 16, b"A-z_09" * 10, new_passkey()]:
            self.assertEqual(check_passkey(good), good)
        for bad in [b"a" * 15, b"a" * 65, b"a" * 15 + b"/", b"a" * 15 + b"%", b"\xff" * 20]:
            with self.assertRaises(PasskeyError):
                check_passkey(bad)

    def test_loading_waiters(self) -> None:
        """Callers waiting for the table are released when it loads."""
        passkeys = Passkeys(MemoryAccessStore(), self.clock)
        waiting = passkeys.when_loaded()
        self.assertFalse(passkeys.loaded)
        passkeys.load_stored({})
        self.assertIsNone(self.successResultOf(waiting))


class CreditModelTests(PasskeyTestCase):
    """Random announces of every kind (wrong keys, other families, moves, stops, expiry) under
    three passkeys, against a model of the crediting rules: the reports stay aligned with
    their peers, and each ledger is credited exactly what the model says."""

    def test_random_announces_against_the_model(self) -> None:
        ledgers = [self.passkeys.ledgers[KEY], self.passkeys.ledgers[OTHER]]
        self.successResultOf(self.passkeys.add(b"t" * 32))
        ledgers.append(self.passkeys.ledgers[b"t" * 32])
        start = {id(ledger): (ledger.uploaded, ledger.downloaded) for ledger in ledgers}
        expected = {id(ledger): [0, 0] for ledger in ledgers}
        model: dict[tuple[bytes, bytes], tuple[int, int, int]] = {}
        rng = random.Random(11)
        for step in range(6000):
            now = 1000 + step
            account = rng.choice(ledgers)
            request = random_announce(rng)._replace(
                uploaded=rng.randrange(10_000), downloaded=rng.randrange(10_000), account=account
            )
            peer = (request.info_hash, request.peer_id)
            before = self._place(peer)
            with contextlib.suppress(KeyMismatch):
                self.index.announce(request, now)
            after = self._place(peer)
            if request.event == STOPPED:
                recorded = before is not None and after is None
            else:
                recorded = after is not None and after[0].seen[after[1]] == now
            if recorded:
                previous = model.get(peer) if before is not None else None
                if (
                    previous is not None
                    and previous[0] == account.number
                    and request.event != STARTED
                ):
                    for k, reported in enumerate((request.uploaded, request.downloaded)):
                        delta = reported - previous[k + 1]
                        expected[id(account)][k] += reported if delta < 0 else delta
                model[peer] = (account.number, request.uploaded, request.downloaded)
            if step % 500 == 499:
                list(self.index.expire(now - 300, [0]))
            self._check_reports(model)
        for ledger in ledgers:
            up, down = start[id(ledger)]
            self.assertEqual(
                (ledger.uploaded - up, ledger.downloaded - down), tuple(expected[id(ledger)])
            )
        self.assertGreater(sum(sum(moved) for moved in expected.values()), 0)

    def _place(self, peer: tuple[bytes, bytes]) -> tuple[Any, int] | None:
        swarm = self.index.swarms.get(peer[0])
        if swarm is None:
            return None
        slot, position = swarm.find(peer[1])
        if slot < 0:
            return None
        return swarm.groups[slot], position

    def _check_reports(self, model: dict[tuple[bytes, bytes], tuple[int, int, int]]) -> None:
        for info_hash_, swarm in self.index.swarms.items():
            for group in swarm.groups:
                if group is None or group.reports is None:
                    continue
                self.assertEqual(len(group.reports), 3 * len(group.ids))
                for position, member in enumerate(group.ids):
                    report = tuple(group.reports[position * 3 : position * 3 + 3])
                    self.assertEqual(report, model[(info_hash_, member)])


class OutsideTheIndexTests(PasskeyTestCase):
    def test_same_rule_as_the_index(self) -> None:
        """credit_report, which credits WebSocket peers, credits what the index credits for
        the same reports of a peer: baselines, started, restarts, stops and passkey changes
        alike."""
        twin_store = _CountingStore()
        twin_store.passkeys.update(self.store.passkeys)
        twin = Passkeys(twin_store, self.clock, flush_every=1)
        twin.load_stored(dict(twin_store.passkeys))
        rng = random.Random(3)
        last: Report | None = None
        for step in range(3000):
            passkey = rng.choice((KEY, KEY, KEY, OTHER))
            event = rng.choice((NONE, NONE, NONE, STARTED, STOPPED))
            up, down = rng.randrange(5000), rng.randrange(5000)
            request = announce(1, event=event)._replace(uploaded=up, downloaded=down)
            self.record(passkey, request, step)
            if event == STOPPED and last is None:
                # Not a peer: the index has nothing to credit, nor does a WebSocket tracker.
                continue
            last = credit_report(twin.ledgers[passkey], last, up, down, event == STARTED)
            if event == STOPPED:
                last = None
        for passkey in (KEY, OTHER):
            self.assertEqual(totals(twin, passkey), totals(self.passkeys, passkey))
        self.assertGreater(totals(twin, KEY)[0], 100)
