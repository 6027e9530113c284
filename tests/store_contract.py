"""
The storage contract, written once and run against every L{IPeerStore} implementation.

A subclass provides C{make_store()} returning an unstarted store; each test starts it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from zope.interface.verify import verifyObject

from tests import helpers
from tests.helpers import info_hash, peer_id
from tracker.core.announce import COMPLETED, PAUSED, STARTED, STOPPED, AnnounceRequest
from tracker.core.errors import KeyMismatch
from tracker.core.interfaces import AnnounceResult, IPeerStore, Peer, SwarmCounts


def announce(*args: Any, **kwargs: Any) -> AnnounceRequest:
    """An announce in the dictionary form, whose answer carries peer ids to check."""
    kwargs.setdefault("compact", False)
    return helpers.announce(*args, **kwargs)


def peers(result: AnnounceResult) -> list[Peer]:
    return result.peers()


KEY = 0x565E1D1F
OTHER_KEY = 0x10A1814A
IP6 = bytes(15) + b"\x01"


class StoreContract:
    """Mixin for a trial C{TestCase}."""

    def make_store(self) -> Any:
        raise NotImplementedError

    @inlineCallbacks
    def started_store(self) -> Any:
        store = self.make_store()
        yield store.start()
        self.addCleanup(store.stop)  # type: ignore[attr-defined]
        return store

    def test_provides_interface(self) -> None:
        """The store provides every method of the storage contract."""
        self.assertTrue(verifyObject(IPeerStore, self.make_store()))  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_first_announce_is_alone(self) -> Any:
        """The first peer of a swarm is counted and gets no peers back, not even itself."""
        store = yield self.started_store()
        result = yield store.announce(announce(1, event=STARTED), 1000)
        self.assertEqual(result.counts, SwarmCounts(0, 1, 0))
        self.assertEqual(peers(result), [])

    @inlineCallbacks
    def test_peers_find_each_other(self) -> Any:
        """Two leechers of one torrent are given each other's compact address."""
        store = yield self.started_store()
        yield store.announce(announce(1, port=6881), 1000)
        result = yield store.announce(announce(2, port=6882), 1000)
        self.assertEqual(
            [(p.peer_id, p.address) for p in peers(result)],
            [(peer_id(1), b"\x7f\x00\x00\x01\x1a\xe1")],
        )

    @inlineCallbacks
    def test_torrents_are_separate(self) -> Any:
        """Peers of another torrent are never returned."""
        store = yield self.started_store()
        yield store.announce(announce(1, torrent=1), 1000)
        result = yield store.announce(announce(2, torrent=2), 1000)
        self.assertEqual(peers(result), [])
        self.assertEqual(result.counts, SwarmCounts(0, 1, 0))

    @inlineCallbacks
    def test_requester_never_in_own_list(self) -> Any:
        """Whatever numwant asks, the requester is not handed itself."""
        store = yield self.started_store()
        for n in range(1, 6):
            yield store.announce(announce(n), 1000)
        for n in range(1, 6):
            result = yield store.announce(announce(n, numwant=200), 1000)
            ids = {p.peer_id for p in peers(result)}
            self.assertNotIn(peer_id(n), ids)
            self.assertEqual(len(ids), 4)

    @inlineCallbacks
    def test_numwant_limits_peers(self) -> Any:
        """At most numwant peers come back, chosen from the whole swarm; numwant 0 gives none."""
        store = yield self.started_store()
        for n in range(1, 31):
            yield store.announce(announce(n), 1000)
        result = yield store.announce(announce(99, numwant=10), 1000)
        self.assertEqual(len(peers(result)), 10)
        self.assertEqual(len({p.peer_id for p in peers(result)}), 10)
        none = yield store.announce(announce(98, numwant=0), 1000)
        self.assertEqual(peers(none), [])
        self.assertEqual(none.counts.incomplete, 32)

    @inlineCallbacks
    def test_sampling_reaches_every_peer(self) -> Any:
        """Repeated small samples are random: over many announces every peer gets handed out."""
        store = yield self.started_store()
        for n in range(1, 41):
            yield store.announce(announce(n), 1000)
        seen: set[bytes] = set()
        for _ in range(400):
            result = yield store.announce(announce(100, numwant=5), 1000)
            seen.update(p.peer_id for p in peers(result))
        self.assertEqual(seen, {peer_id(n) for n in range(1, 41)})

    @inlineCallbacks
    def test_seeders_get_only_leechers(self) -> Any:
        """A seeder is given leechers only; a leecher is given seeders and leechers."""
        store = yield self.started_store()
        yield store.announce(announce(1, left=0), 1000)
        yield store.announce(announce(2, left=0), 1000)
        yield store.announce(announce(3, left=5), 1000)
        seeder = yield store.announce(announce(1, left=0), 1000)
        self.assertEqual({p.peer_id for p in peers(seeder)}, {peer_id(3)})
        leecher = yield store.announce(announce(3, left=5), 1000)
        self.assertEqual({p.peer_id for p in peers(leecher)}, {peer_id(1), peer_id(2)})
        self.assertEqual(leecher.counts, SwarmCounts(2, 1, 0))

    @inlineCallbacks
    def test_paused_peer_gets_only_leechers(self) -> Any:
        """BEP 21: a paused partial seed stays in the swarm as incomplete and is given leechers."""
        store = yield self.started_store()
        yield store.announce(announce(1, left=0), 1000)
        yield store.announce(announce(2, left=5), 1000)
        result = yield store.announce(announce(3, left=7, event=PAUSED), 1000)
        self.assertEqual({p.peer_id for p in peers(result)}, {peer_id(2)})
        self.assertEqual(result.counts, SwarmCounts(1, 2, 0))

    @inlineCallbacks
    def test_reannounce_updates_peer(self) -> Any:
        """A re-announce moves a peer from leecher to seeder and updates its address."""
        store = yield self.started_store()
        yield store.announce(announce(1, left=10, port=1111), 1000)
        yield store.announce(announce(1, left=0, port=2222), 1010)
        result = yield store.announce(announce(2), 1020)
        self.assertEqual(result.counts, SwarmCounts(1, 1, 0))
        self.assertEqual([p.address[-2:] for p in peers(result)], [(2222).to_bytes(2, "big")])

    @inlineCallbacks
    def test_stopped_removes_peer(self) -> Any:
        """A stopped peer leaves the swarm at once and gets no peers back."""
        store = yield self.started_store()
        yield store.announce(announce(1), 1000)
        yield store.announce(announce(2), 1000)
        stopped = yield store.announce(announce(1, event=STOPPED), 1000)
        self.assertEqual(peers(stopped), [])
        self.assertEqual(stopped.counts, SwarmCounts(0, 1, 0))
        result = yield store.announce(announce(3), 1000)
        self.assertEqual({p.peer_id for p in peers(result)}, {peer_id(2)})

    @inlineCallbacks
    def test_stopped_unknown_torrent(self) -> Any:
        """A stopped announce for an unknown torrent is answered and creates nothing."""
        store = yield self.started_store()
        result = yield store.announce(announce(1, torrent=7, event=STOPPED), 1000)
        self.assertEqual(result.counts, SwarmCounts(0, 0, 0))
        counts = yield store.scrape([info_hash(7)])
        self.assertEqual(counts, {info_hash(7): SwarmCounts(0, 0, 0)})

    @inlineCallbacks
    def test_completed_counts_once_per_peer(self) -> Any:
        """A peer's completion is counted once however often it sends completed."""
        store = yield self.started_store()
        yield store.announce(announce(1, left=10, event=STARTED), 1000)
        yield store.announce(announce(1, left=0, event=COMPLETED), 1010)
        result = yield store.announce(announce(1, left=0, event=COMPLETED), 1020)
        self.assertEqual(result.counts, SwarmCounts(1, 0, 1))
        yield store.announce(announce(2, left=0, event=COMPLETED), 1030)
        counts = yield store.scrape([info_hash(1)])
        self.assertEqual(counts[info_hash(1)].downloaded, 2)

    @inlineCallbacks
    def test_completed_with_bytes_left_not_counted(self) -> Any:
        """completed with left > 0 is not a finished download."""
        store = yield self.started_store()
        result = yield store.announce(announce(1, left=5, event=COMPLETED), 1000)
        self.assertEqual(result.counts, SwarmCounts(0, 1, 0))

    @inlineCallbacks
    def test_downloaded_survives_peers_leaving(self) -> Any:
        """The completion count stays after the peer stops and after expiry."""
        store = yield self.started_store()
        yield store.announce(announce(1, left=0, event=COMPLETED), 1000)
        yield store.announce(announce(1, left=0, event=STOPPED), 1001)
        yield store.announce(announce(2, left=0, event=COMPLETED), 1002)
        yield store.expire(5000)
        counts = yield store.scrape([info_hash(1)])
        self.assertEqual(counts[info_hash(1)], SwarmCounts(0, 0, 2))

    @inlineCallbacks
    def test_completion_of_a_peer_held_elsewhere(self) -> Any:
        """count_completion (a WebSocket peer's completion) adds one to a torrent's downloaded,
        known to the store or not, adds no peer, and stays after expiry as any completion."""
        store = yield self.started_store()
        yield store.count_completion(info_hash(1), 1000)
        yield store.announce(announce(1, left=0, event=COMPLETED), 1000)
        yield store.count_completion(info_hash(1), 1001)
        yield store.count_completion(info_hash(2), 1001)
        counts = yield store.scrape([info_hash(1), info_hash(2)])
        self.assertEqual(
            counts, {info_hash(1): SwarmCounts(1, 0, 3), info_hash(2): SwarmCounts(0, 0, 1)}
        )
        yield store.expire(5000)
        counts = yield store.scrape([info_hash(1), info_hash(2)])
        self.assertEqual(
            counts, {info_hash(1): SwarmCounts(0, 0, 3), info_hash(2): SwarmCounts(0, 0, 1)}
        )
        result = yield store.announce(announce(2, torrent=2, left=0, event=COMPLETED), 5000)
        self.assertEqual(result.counts, SwarmCounts(1, 0, 2))

    @inlineCallbacks
    def test_scrape_many_and_unknown(self) -> Any:
        """A multi-scrape answers every hash asked, zeros for unknown torrents."""
        store = yield self.started_store()
        yield store.announce(announce(1, torrent=1, left=0), 1000)
        yield store.announce(announce(2, torrent=1, left=3), 1000)
        yield store.announce(announce(3, torrent=2, left=3), 1000)
        counts = yield store.scrape([info_hash(1), info_hash(2), info_hash(3)])
        self.assertEqual(
            counts,
            {
                info_hash(1): SwarmCounts(1, 1, 0),
                info_hash(2): SwarmCounts(0, 1, 0),
                info_hash(3): SwarmCounts(0, 0, 0),
            },
        )

    @inlineCallbacks
    def test_expire_forgets_silent_peers(self) -> Any:
        """Peers last seen before the cutoff are removed and counted; recent ones stay."""
        store = yield self.started_store()
        yield store.announce(announce(1, left=0), 1000)
        yield store.announce(announce(2), 1000)
        yield store.announce(announce(3), 2000)
        removed = yield store.expire(1500)
        self.assertEqual(removed, 2)
        result = yield store.announce(announce(4), 2000)
        self.assertEqual({p.peer_id for p in peers(result)}, {peer_id(3)})
        self.assertEqual(result.counts, SwarmCounts(0, 2, 0))

    @inlineCallbacks
    def test_expired_torrent_comes_back(self) -> Any:
        """A torrent whose peers all expired works again when a peer returns."""
        store = yield self.started_store()
        yield store.announce(announce(1), 1000)
        yield store.expire(2000)
        yield store.announce(announce(2), 3000)
        result = yield store.announce(announce(3), 3000)
        self.assertEqual({p.peer_id for p in peers(result)}, {peer_id(2)})
        self.assertEqual(result.counts, SwarmCounts(0, 2, 0))

    @inlineCallbacks
    def test_ipv6_peers(self) -> Any:
        """IPv6 peers are kept with their 16-byte address and port (18 bytes compact)."""
        store = yield self.started_store()
        ip6 = bytes(15) + b"\x01"
        yield store.announce(announce(1, ip=ip6, port=6881), 1000)
        result = yield store.announce(announce(2), 1000)
        self.assertEqual([p.address for p in peers(result)], [ip6 + b"\x1a\xe1"])

    @inlineCallbacks
    def test_mixed_families_keep_ids_and_addresses_paired(self) -> Any:
        """In a swarm of IPv4 and IPv6 peers, each peer comes back with its own address."""
        store = yield self.started_store()
        ip6 = bytes(15) + b"\x01"
        expected = {}
        for n in range(1, 9):
            ip = ip6 if n % 3 == 0 else b"\x7f\x00\x00\x01"
            yield store.announce(announce(n, ip=ip, left=n % 2), 1000)
            expected[peer_id(n)] = ip + (10000 + n).to_bytes(2, "big")
        result = yield store.announce(announce(100), 1000)
        self.assertEqual({p.peer_id: p.address for p in peers(result)}, expected)

    @inlineCallbacks
    def test_own_family_sample(self) -> Any:
        """Asked for its own family's peers only (UDP), an announcer gets numwant of those
        however many of the other family there are."""
        store = yield self.started_store()
        ip6 = bytes(15) + b"\x01"
        for n in range(1, 41):
            yield store.announce(announce(n, ip=ip6 if n > 10 else b"\x7f\x00\x00\x01"), 1000)
        v4 = yield store.announce(announce(100, numwant=8, own_family=True), 1000)
        v6 = yield store.announce(announce(101, ip=ip6, numwant=35, own_family=True), 1000)
        self.assertEqual((len(v4.peers4), v4.peers6), (8 * 6, b""))
        self.assertEqual((v6.peers4, len(v6.peers6)), (b"", 30 * 18))

    @inlineCallbacks
    def test_large_swarm_sample_is_distinct_and_bounded(self) -> Any:
        """A swarm larger than numwant in both kinds gives numwant distinct other peers."""
        store = yield self.started_store()
        for n in range(1, 121):
            yield store.announce(announce(n, left=n % 2), 1000)
        for asker, left in ((1, 1), (2, 0)):
            result = yield store.announce(announce(asker, left=left, numwant=30), 1000)
            ids = [p.peer_id for p in peers(result)]
            self.assertEqual(len(ids), 30)
            self.assertEqual(len(set(ids)), 30)
            self.assertNotIn(peer_id(asker), ids)
            port_of = {peer_id(n): (10000 + n).to_bytes(2, "big") for n in range(1, 121)}
            self.assertEqual([p.address[-2:] for p in peers(result)], [port_of[i] for i in ids])

    @inlineCallbacks
    def test_compact_answer_has_addresses_without_ids(self) -> Any:
        """A compact announce gets the same peers as compact bytes, IPv4 and IPv6 apart."""
        store = yield self.started_store()
        ip6 = bytes(15) + b"\x01"
        yield store.announce(announce(1, port=6881), 1000)
        yield store.announce(announce(2, ip=ip6, port=6882), 1000)
        result = yield store.announce(announce(3, compact=True), 1000)
        self.assertEqual(result.peers4, b"\x7f\x00\x00\x01\x1a\xe1")
        self.assertEqual(result.peers6, ip6 + b"\x1a\xe2")
        self.assertEqual(list(result.peer_ids), [])

    @inlineCallbacks
    def test_large_swarm_samples_are_uniform(self) -> Any:
        """In a swarm far larger than numwant, every peer is handed out about equally often."""
        store = yield self.started_store()
        for n in range(1, 201):
            yield store.announce(announce(n, left=n % 3), 1000)
        handed: dict[bytes, int] = {}
        for _ in range(400):
            result = yield store.announce(announce(500, numwant=50), 1000)
            ids = [p.peer_id for p in peers(result)]
            self.assertEqual(len(set(ids)), 50)
            for i in ids:
                handed[i] = handed.get(i, 0) + 1
        # Each of the 200 is chosen with probability 1/4 per announce: 100 times on average.
        self.assertEqual(len(handed), 200)
        self.assertLess(max(handed.values()), 160)
        self.assertGreater(min(handed.values()), 50)

    @inlineCallbacks
    def test_leecher_turning_seeder_keeps_completion_once(self) -> Any:
        """A peer that completes, then re-announces as a seeder, is counted once and moves
        from incomplete to complete."""
        store = yield self.started_store()
        yield store.announce(announce(1, left=10), 1000)
        yield store.announce(announce(1, left=0, event=COMPLETED), 1001)
        yield store.announce(announce(1, left=0), 1002)
        yield store.announce(announce(1, left=0, event=COMPLETED), 1003)
        counts = yield store.scrape([info_hash(1)])
        self.assertEqual(counts[info_hash(1)], SwarmCounts(1, 0, 1))

    @inlineCallbacks
    def listed(self, store: Any) -> Any:
        """Every other peer of torrent 1 as (peer id, address), seen by a newcomer."""
        result = yield store.announce(announce(999, numwant=200), 2000)
        return {p.peer_id: p.address for p in peers(result)}

    @inlineCallbacks
    def test_stopped_with_another_key_refused(self) -> Any:
        """A stopped announce from another address (IP or port) with another key than the peer
        registered with, or with none, is refused, and the peer stays in the swarm."""
        store = yield self.started_store()
        yield store.announce(announce(1, key=KEY, port=1111), 1000)
        for ip, port, key in (
            (b"\x7f\x00\x00\x01", 2222, OTHER_KEY),
            (b"\x0a\x00\x00\x07", 1111, 0),
        ):
            with self.assertRaises(KeyMismatch):
                yield store.announce(announce(1, ip=ip, port=port, key=key, event=STOPPED), 1001)
        listed = yield self.listed(store)
        self.assertEqual(listed, {peer_id(1): b"\x7f\x00\x00\x01\x04\x57"})

    @inlineCallbacks
    def test_update_with_another_key_refused(self) -> Any:
        """An update with another key, or with none, neither moves the peer nor changes it from
        leecher to seeder."""
        store = yield self.started_store()
        yield store.announce(announce(1, key=KEY, port=1111), 1000)
        for key in (OTHER_KEY, 0):
            with self.assertRaises(KeyMismatch):
                yield store.announce(announce(1, key=key, port=2222, left=0), 1001)
        listed = yield self.listed(store)
        self.assertEqual(listed, {peer_id(1): b"\x7f\x00\x00\x01\x04\x57"})
        counts = yield store.scrape([info_hash(1)])
        self.assertEqual(counts[info_hash(1)], SwarmCounts(0, 2, 0))

    @inlineCallbacks
    def test_right_key_updates_and_stops(self) -> Any:
        """With the key it registered with, a peer moves, completes and stops as ever."""
        store = yield self.started_store()
        yield store.announce(announce(1, key=KEY, port=1111), 1000)
        yield store.announce(announce(1, key=KEY, port=2222, left=0, event=COMPLETED), 1001)
        listed = yield self.listed(store)
        self.assertEqual(listed, {peer_id(1): b"\x7f\x00\x00\x01\x08\xae"})
        stopped = yield store.announce(announce(1, key=KEY, event=STOPPED), 1002)
        self.assertEqual(stopped.counts, SwarmCounts(0, 1, 1))

    @inlineCallbacks
    def test_peer_without_key_takes_none_later(self) -> Any:
        """A peer that registered without a key stays without one, even when a key comes from
        its own address: any announce for it is accepted, and the first key sent for it is not
        adopted (whoever sent it first could otherwise lock the peer out)."""
        store = yield self.started_store()
        yield store.announce(announce(1, port=1111), 1000)
        yield store.announce(announce(1, key=KEY, port=1111), 1001)
        yield store.announce(announce(1, key=KEY, port=2222), 1001)
        yield store.announce(announce(1, key=OTHER_KEY, port=3333), 1002)
        listed = yield self.listed(store)
        self.assertEqual(listed, {peer_id(1): b"\x7f\x00\x00\x01\x0d\x05"})
        yield store.announce(announce(1, event=STOPPED), 1003)
        listed = yield self.listed(store)
        self.assertEqual(listed, {})

    @inlineCallbacks
    def test_key_forgotten_with_the_peer(self) -> Any:
        """Once a peer has stopped or expired, its peer id registers afresh with any key."""
        store = yield self.started_store()
        yield store.announce(announce(1, key=KEY), 1000)
        yield store.announce(announce(1, key=KEY, event=STOPPED), 1001)
        yield store.announce(announce(1, key=OTHER_KEY), 1002)
        yield store.expire(1500)
        yield store.announce(announce(1, key=KEY, port=4444), 2000)
        listed = yield self.listed(store)
        self.assertEqual(listed, {peer_id(1): b"\x7f\x00\x00\x01\x11\x5c"})

    @inlineCallbacks
    def test_other_family_with_another_key_leaves_peer_alone(self) -> Any:
        """libtorrent keys its IPv4 and IPv6 sockets apart: an announce with another key from
        the other address family is answered with peers, not refused, and neither moves nor
        removes the peer registered from the first."""
        store = yield self.started_store()
        yield store.announce(announce(2), 1000)
        yield store.announce(announce(1, key=KEY, port=1111), 1000)
        from_v6 = yield store.announce(announce(1, ip=IP6, key=OTHER_KEY, port=1111), 1001)
        self.assertEqual([p.peer_id for p in peers(from_v6)], [peer_id(2)])
        self.assertEqual(from_v6.counts, SwarmCounts(0, 2, 0))
        stopped_v6 = yield store.announce(
            announce(1, ip=IP6, key=OTHER_KEY, port=1111, event=STOPPED), 1002
        )
        self.assertEqual(stopped_v6.counts, SwarmCounts(0, 2, 0))
        listed = yield self.listed(store)
        self.assertEqual(listed[peer_id(1)], b"\x7f\x00\x00\x01\x04\x57")
        yield store.announce(announce(1, key=KEY, event=STOPPED), 1003)
        listed = yield self.listed(store)
        self.assertNotIn(peer_id(1), listed)

    @inlineCallbacks
    def test_own_address_may_change_the_key(self) -> Any:
        """From the address a peer is listed at (IP and port) another key is accepted and
        becomes the peer's: aria2 sends a new random key with each UDP announce, and
        libtorrent's changes with its local address. An announce there without a key keeps
        the key; elsewhere only the new key is accepted."""
        store = yield self.started_store()
        yield store.announce(announce(1, key=KEY, port=1111), 1000)
        yield store.announce(announce(1, key=OTHER_KEY, port=1111), 1001)
        yield store.announce(announce(1, key=0, port=1111, left=0), 1002)
        with self.assertRaises(KeyMismatch):
            yield store.announce(announce(1, key=KEY, port=2222), 1003)
        yield store.announce(announce(1, key=OTHER_KEY, port=2222, left=0), 1004)
        listed = yield self.listed(store)
        self.assertEqual(listed, {peer_id(1): b"\x7f\x00\x00\x01\x08\xae"})
        stopped = yield store.announce(announce(1, key=12345, port=2222, event=STOPPED), 1005)
        # Left: the newcomer that looked.
        self.assertEqual(stopped.counts, SwarmCounts(0, 1, 0))
