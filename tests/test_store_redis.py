"""The storage contract against Redis and against a Redis Cluster, plus what only they promise."""

from __future__ import annotations

import random
import struct
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.helpers import info_hash, peer_id
from tests.redis_servers import RedisServer, shared_cluster, shared_server
from tests.store_contract import StoreContract, announce
from tests.test_swarms import random_announce
from tracker.core.announce import COMPLETED, STOPPED
from tracker.core.errors import KeyMismatch
from tracker.core.interfaces import StoreUnavailable, SwarmCounts


class RedisStoreTests(StoreContract, TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.url = shared_server().url

    def make_store(self) -> Any:
        from tracker.store.redis import RedisPeerStore

        return RedisPeerStore(self.url, reactor, sweep_every=0)


class RedisClusterStoreTests(StoreContract, TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.url = shared_cluster().url

    def make_store(self) -> Any:
        from tracker.store.redis import RedisPeerStore

        return RedisPeerStore(self.url, reactor, sweep_every=0)


def _store(url: str, **kwargs: Any) -> Any:
    from tracker.store.redis import RedisPeerStore

    kwargs.setdefault("sweep_every", 0)
    return RedisPeerStore(url, reactor, **kwargs)


class RedisOnlyTests(TestCase):
    """What the Redis store promises beyond the contract, on a single Redis."""

    timeout = 30

    def setUp(self) -> None:
        self.server = shared_server()

    @inlineCallbacks
    def started(self, url: str | None = None, **kwargs: Any) -> Any:
        store = _store(url or self.server.url, **kwargs)
        yield store.start()
        self.addCleanup(store.stop)
        return store

    @inlineCallbacks
    def test_swarm_keys_share_a_tag_and_expire_by_themselves(self) -> Any:
        """A swarm's keys all carry its info hash in hex as their hash tag; its peers' keys
        expire a peer timeout after the last announce (plus up to 5 minutes, as their expiry
        is pushed back once in 5 minutes), its completion count never."""
        store = yield self.started(peer_timeout=600)
        yield store.announce(announce(1, left=0, event=COMPLETED), 1000)
        yield store.announce(announce(2), 1000)
        tag = "{" + info_hash(1).hex() + "}"
        # The peers' places; the IPv4 leechers' and seeders' addresses, and their ids with
        # the times last seen; completions.
        groups = [tag + f":{kind}{slot}" for kind in "ar" for slot in (0, 2)]
        self.assertEqual(
            sorted(self.server.cli("KEYS", "*").split()), sorted([*groups, tag + ":d", tag + ":h"])
        )
        for key in [tag + ":h", *groups]:
            ttl = int(self.server.cli("PTTL", key))
            self.assertTrue(590_000 < ttl <= 901_000, (key, ttl))
        self.assertEqual(self.server.cli("PTTL", tag + ":d").strip(), "-1")

    @inlineCallbacks
    def test_announces_drop_silent_peers_without_a_sweep(self) -> Any:
        """One announce in four into a swarm looks at one other peer and drops it if it is
        silent, so a live swarm sheds its dead peers even if no sweep ever runs."""
        store = yield self.started(peer_timeout=100)
        for n in range(1, 21):
            yield store.announce(announce(n), 1000)
        counts = []
        # 20 drops take 80 announces on average; 300 leave it more than 7 deviations short.
        for _ in range(300):
            result = yield store.announce(announce(99), 1200)
            counts.append(result.counts.incomplete)
        self.assertEqual(counts[-1], 1)
        self.assertTrue(all(a >= b for a, b in zip(counts, counts[1:])), counts)
        self.assertGreater(counts[0], 1)

    @inlineCallbacks
    def test_scripts_loaded_again_after_a_flush(self) -> Any:
        """A Redis that lost its scripts (restarted, failed over, SCRIPT FLUSH) gets them
        again, and the announce that found them missing is answered."""
        store = yield self.started()
        yield store.announce(announce(1), 1000)
        self.server.cli("SCRIPT", "FLUSH")
        result = yield store.announce(announce(2), 1000)
        self.assertEqual(result.counts, SwarmCounts(0, 2, 0))

    @inlineCallbacks
    def test_one_reactor_turn_one_round_trip(self) -> Any:
        """Announces and scrapes made in one turn of the reactor go to Redis in one pipeline."""
        store = yield self.started()
        before = store.roundtrips.latency.count
        answers = [store.announce(announce(n, torrent=n % 7), 1000) for n in range(1, 101)]
        answers.append(store.scrape([info_hash(t) for t in range(7)]))
        results = yield gatherResults(answers)
        self.assertEqual(store.roundtrips.latency.count - before, 1)
        self.assertEqual(sum(c.incomplete for c in results[-1].values()), 100)

    @inlineCallbacks
    def test_one_script_call_per_round_trip(self) -> Any:
        """The announces of one round trip are one call of the script, which runs each; a
        hundred at most, so that no call holds Redis for long."""

        def script_calls() -> int:
            for line in self.server.cli("INFO", "commandstats").splitlines():
                if line.startswith("cmdstat_evalsha:"):
                    return int(line.split("calls=")[1].split(",")[0])
            return 0

        store = yield self.started()
        yield store.announce(announce(1), 1000)
        before = script_calls()
        answers = [store.announce(announce(n, torrent=n % 7), 1000) for n in range(2, 102)]
        results = yield gatherResults(answers)
        self.assertEqual(script_calls() - before, 1)
        # Each torrent's last announce counts every peer of the batch in it, in order.
        self.assertEqual(
            [r.counts.incomplete for r in results[-7:]],
            [sum(1 for m in range(1, 102) if m % 7 == n % 7) for n in range(95, 102)],
        )
        before = script_calls()
        yield gatherResults([store.announce(announce(n), 1000) for n in range(200, 450)])
        self.assertEqual(script_calls() - before, 3)

    @inlineCallbacks
    def test_a_refused_batch_is_sent_again_call_by_call(self) -> Any:
        """A batch that Redis refuses whole (here: one swarm's key is of the wrong type, which
        fails the script) is sent again call by call: the others are answered, and only the
        one that fails on its own fails."""
        store = yield self.started()
        self.server.cli("SET", "{" + info_hash(5).hex() + "}:h", "not a hash")
        answers = [store.announce(announce(n, torrent=n), 1000) for n in range(1, 11)]
        results = yield gatherResults(
            [d.addErrback(lambda f: f.trap(StoreUnavailable)) for d in answers]
        )
        self.assertEqual(results[4], StoreUnavailable)
        self.assertEqual(
            [r.counts for n, r in enumerate(results, 1) if n != 5], [SwarmCounts(0, 1, 0)] * 9
        )

    @inlineCallbacks
    def test_unreachable_redis_fails_fast_and_recovers(self) -> Any:
        """With Redis gone, an announce fails with StoreUnavailable within 3 seconds, and
        once Redis is back the store answers again by itself."""
        own = RedisServer().start()
        self.addCleanup(own.destroy)
        store = yield self.started(own.url)
        yield store.announce(announce(1), 1000)
        own.stop()
        for _ in range(3):
            began = time.monotonic()
            with self.assertRaises(StoreUnavailable):
                yield store.announce(announce(2), 1000)
            self.assertLess(time.monotonic() - began, 3)
        own.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                result = yield store.announce(announce(2), 1000)
                break
            except StoreUnavailable:
                self.assertLess(time.monotonic(), deadline)
                yield deferLater(reactor, 0.2, lambda: None)
        # Redis restarted without persistence: the swarm starts again.
        self.assertEqual(result.counts, SwarmCounts(0, 1, 0))

    @inlineCallbacks
    def test_one_node_sweeps_per_period_and_all_read_its_totals(self) -> Any:
        """Of two nodes whose expiry runs in the same period, one sweeps; both then report
        the totals it counted."""
        first = yield self.started(sweep_every=60)
        second = yield self.started(sweep_every=60)
        yield first.announce(announce(1, left=0, event=COMPLETED), 1000)
        yield first.announce(announce(2, torrent=2), 1000)
        yield second.announce(announce(3, torrent=2), 500)
        none = yield second.swarm_totals()
        self.assertIsNone(none)
        removed = yield gatherResults([first.expire(900), second.expire(900)])
        self.assertEqual(sorted(removed), [0, 1])
        for store in (first, second):
            totals = yield store.swarm_totals()
            self.assertEqual(
                totals[:5],
                (2, 1, 1, 1, ((info_hash(1), 1, 0, 1), (info_hash(2), 0, 1, 0))),
            )


class RedisClusterOnlyTests(TestCase):
    """What the Redis store promises on a cluster."""

    timeout = 30

    def setUp(self) -> None:
        self.cluster = shared_cluster()

    @inlineCallbacks
    def test_scrape_spanning_slots(self) -> Any:
        """A scrape of torrents held by every primary is answered whole, with one pipeline
        per primary."""
        store = _store(self.cluster.url)
        yield store.start()
        self.addCleanup(store.stop)
        torrents = range(1, 41)
        yield gatherResults(
            [store.announce(announce(t, torrent=t, left=t % 2), 1000) for t in torrents]
        )
        from tracker.store.redis import swarm_keys

        nodes = {store.connection.node_of(swarm_keys(info_hash(t))[0]) for t in torrents}
        self.assertEqual(len(nodes), 3)
        before = store.roundtrips.latency.count
        counts = yield store.scrape([info_hash(t) for t in torrents])
        self.assertEqual(store.roundtrips.latency.count - before, 3)
        self.assertEqual(counts, {info_hash(t): SwarmCounts(1 - t % 2, t % 2, 0) for t in torrents})
        totals = yield store.expire(0).addCallback(lambda _: store.swarm_totals())
        self.assertEqual(totals[:4], (40, 20, 20, 0))

    @inlineCallbacks
    def test_every_count_across_primaries(self) -> Any:
        """A full scrape's read finds every torrent on every primary, one whose peers have
        all left but which has completions among them, and no torrent twice."""
        store = _store(self.cluster.url)
        yield store.start()
        self.addCleanup(store.stop)
        for t in range(1, 31):
            yield store.announce(announce(t, torrent=t, left=t % 2), 1000)
        yield store.announce(announce(99, torrent=40, left=0, event=COMPLETED), 1000)
        yield store.announce(announce(99, torrent=40, left=0, event=STOPPED), 1000)
        counts = yield store.every_count()
        expected = {info_hash(t): SwarmCounts(1 - t % 2, t % 2, 0) for t in range(1, 31)}
        expected[info_hash(40)] = SwarmCounts(0, 0, 1)
        self.assertEqual(counts, expected)


class FailoverTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_store_follows_a_failover(self) -> Any:
        """When a cluster primary stops and its replica takes over, the store follows the new
        topology by itself: its announces fail for a few seconds at most, then are answered
        again, with the swarm the replica kept."""
        from tests.redis_servers import RedisCluster, require_redis
        from tracker.store.redis import swarm_keys

        require_redis()
        cluster = RedisCluster(replicas=1)
        self.addCleanup(cluster.destroy)
        yield deferToThread(cluster.start)
        store = _store(cluster.url)
        yield store.start()
        self.addCleanup(store.stop)
        yield store.announce(announce(1), 1000)
        # Replicated long since; then the swarm's primary dies.
        yield deferLater(reactor, 1, lambda: None)
        primary = cluster.primary_of(swarm_keys(info_hash(1))[0])
        primary.kill()
        began = time.monotonic()
        while True:
            try:
                result = yield store.announce(announce(2), 1000)
                break
            except StoreUnavailable:
                self.assertLess(time.monotonic() - began, 60, "the store never followed")
                yield deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(result.counts, SwarmCounts(0, 2, 0))
        self.assertNotEqual(cluster.primary_of(swarm_keys(info_hash(1))[0]), primary)


class SameRulesTests(TestCase):
    """The Redis store and the index in memory, given the same announces, agree."""

    timeout = 120

    @inlineCallbacks
    def check_same_rules(self, url: str) -> Any:
        from tracker.ops.passkeys import Passkeys
        from tracker.store.access import MemoryAccessStore
        from tracker.store.memory import MemoryPeerStore

        redis_store = _store(url)
        yield redis_store.start()
        self.addCleanup(redis_store.stop)
        memory = MemoryPeerStore()
        sides = []
        for _ in range(2):
            # A clock never advanced: the totals are never written, only credited.
            passkeys = Passkeys(MemoryAccessStore(), Clock())
            passkeys.load_stored({})
            for passkey in (b"a" * 32, b"b" * 32, b"c" * 32):
                passkeys._put_in_force(passkey, 0, 0)
            sides.append(passkeys)
        rng = random.Random(3)
        for step in range(1500):
            now = 1000 + step
            request = random_announce(rng)._replace(
                uploaded=rng.randrange(10_000), downloaded=rng.randrange(10_000)
            )
            private = rng.random() < 0.7
            passkey = rng.choice((b"a" * 32, b"b" * 32, b"c" * 32))
            outcomes = []
            for store, passkeys in ((memory, sides[0]), (redis_store, sides[1])):
                account = passkeys.ledgers[passkey] if private else None
                try:
                    result = yield store.announce(request._replace(account=account), now)
                except KeyMismatch:
                    outcomes.append("refused")
                else:
                    chosen = len(result.peers4) // 6 + len(result.peers6) // 18
                    outcomes.append((result.counts, chosen))
            self.assertEqual(outcomes[0], outcomes[1], (step, request))
            if step % 500 == 499:
                removed = yield gatherResults(
                    [memory.expire(now - 300), redis_store.expire(now - 300)]
                )
                self.assertEqual(removed[0], removed[1])
        self.assertEqual(
            [(p.uploaded, p.downloaded) for p in sides[0].ledgers.values()],
            [(p.uploaded, p.downloaded) for p in sides[1].ledgers.values()],
        )
        self.assertGreater(sum(p.uploaded for p in sides[1].ledgers.values()), 0)

    def test_same_answers_refusals_and_credits(self) -> Any:
        """Announces of every kind (other families, wrong keys, moves, stops, completions),
        most of them in private mode under three passkeys, with sweeps between: the same
        counts, the same number of peers chosen, the same refusals and the same credits to
        each passkey, on one Redis."""
        return self.check_same_rules(shared_server().url)

    def test_same_on_a_cluster(self) -> Any:
        """The same on a 3-primary cluster."""
        return self.check_same_rules(shared_cluster().url)


#: swarm.lua's layout: peers per bucket on average, and a place's fields.
_LOAD = 50
_PLACE = struct.Struct(">BIIB")


def _bucket_index(peer: bytes, buckets: int) -> int:
    """The bucket that swarm.lua's linear hashing puts C{peer} in, among C{buckets}."""
    h = 0
    for at in (8, 12, 16):
        h ^= int.from_bytes(peer[at : at + 4], "big")
    low = 1 << (buckets.bit_length() - 1)
    index = h & (low - 1)
    if index < buckets - low:
        index = h & (2 * low - 1)
    return index


def check_layout(client: Any, torrent: bytes) -> tuple[int, dict[bytes, tuple[int, int]]]:
    """
    Check every invariant of one swarm's keys in Redis and return its number of buckets and
    each peer's group and position: the sizes in its own field are the peers in its buckets;
    each peer is in the bucket its id hashes to, and its place points at a record with its
    id and its address; no record is left over; every bucket is a packed hash.
    """
    tag = b"{" + torrent.hex().encode() + b"}"
    first = tag + b":h"
    sizes = struct.unpack_from(">IIII", client.hget(first, b"s"))
    buckets = struct.unpack_from(">I", client.hget(first, b"s"), 28)[0]
    places: dict[bytes, tuple[int, int]] = {}
    for index in range(buckets):
        key = first + (str(index).encode() if index else b"")
        assert client.object("encoding", key) == b"listpack", (key, client.hlen(key))
        assert client.pttl(key) > 0, key
        for peer, place in client.hgetall(key).items():
            if peer in (b"s", b"-"):
                continue
            assert _bucket_index(peer, buckets) == index, (peer, index)
            slot, position, _, _ = _PLACE.unpack_from(place)
            width = 18 if slot % 2 else 6
            address = place[_PLACE.size : _PLACE.size + width]
            record = client.getrange(tag + b":r%d" % slot, position * 24, position * 24 + 19)
            assert record == peer, (peer, slot, position, record)
            listed = client.getrange(
                tag + b":a%d" % slot, position * width, position * width + width - 1
            )
            assert listed == address, (peer, listed, address)
            places[peer] = (slot, position)
    assert client.exists(first + str(buckets).encode()) == 0
    for slot in range(4):
        held = sorted(p for s, p in places.values() if s == slot)
        assert held == list(range(sizes[slot])), (slot, sizes[slot], held[:5])
    return buckets, places


class LayoutTests(TestCase):
    """The swarm's keys stay consistent while its peers' hash is split and merged."""

    timeout = 120

    @inlineCallbacks
    def test_buckets_split_and_merge_with_every_kind_of_change(self) -> Any:
        """A swarm grown to 700 peers (both families, leechers and seeders) has a bucket per
        50 peers, each a packed hash holding the peers whose ids hash to it, each place
        pointing at its peer's records; peers that move group, change address, stop or go
        silent keep it so; and as the swarm shrinks, its buckets merge back into one."""
        import redis

        server = shared_server()
        client = redis.Redis.from_url(server.url)
        store = _store(server.url, peer_timeout=100)
        yield store.start()
        self.addCleanup(store.stop)
        ip6 = bytes(15) + b"\x01"

        def put(n: int, now: int, **kwargs: Any) -> Any:
            kwargs.setdefault("ip", ip6 if n % 5 == 0 else b"\x7f\x00\x00\x01")
            return store.announce(announce(n, left=n % 3, **kwargs), now)

        for n in range(1, 701):
            yield put(n, 1000)
        buckets, places = yield deferToThread(check_layout, client, info_hash(1))
        self.assertEqual(len(places), 700)
        self.assertEqual(buckets, 14)
        rng = random.Random(5)
        for n in rng.sample(range(1, 701), 150):
            change = rng.choice(("complete", "address", "family", "stop", "again"))
            if change == "complete":
                yield store.announce(announce(n, left=0, event=COMPLETED), 1050)
            elif change == "address":
                yield put(n, 1050, ip=b"\x7f\x00\x00\x02")
            elif change == "family":
                yield put(n, 1050, ip=b"\x7f\x00\x00\x03" if n % 5 == 0 else ip6)
            elif change == "stop":
                yield put(n, 1050, event=STOPPED)
            else:
                yield put(n, 1050)
        buckets, places = yield deferToThread(check_layout, client, info_hash(1))
        stopped = 700 - len(places)
        self.assertGreater(stopped, 10)
        # Those that announced at 1050 stay; the others go silent and are swept.
        kept = [n for n in range(1, 701) if peer_id(n) in places]
        for n in kept[:60]:
            yield put(n, 1150)
        # (The announces at 1150 dropped some of the silent ones too, one look in four.)
        removed = yield store.expire(1100)
        self.assertGreater(removed, len(places) - 60 - 60)
        buckets, places = yield deferToThread(check_layout, client, info_hash(1))
        self.assertEqual(sorted(places), sorted(peer_id(n) for n in kept[:60]))
        self.assertLessEqual(buckets, 2)
        for n in kept[:60]:
            yield put(n, 1160, event=STOPPED)
        buckets, places = yield deferToThread(check_layout, client, info_hash(1))
        self.assertEqual((buckets, places), (1, {}))
