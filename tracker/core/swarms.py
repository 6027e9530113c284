"""
Live swarms in memory: the index every announce and scrape is answered from.

Each swarm keeps its peers in up to four groups (leechers and seeders, IPv4 and IPv6). A group
stores its peers packed: a list of peer ids, one byte string of compact addresses, arrays of
last-seen times and of keys, a byte of completion flags per peer and, in private mode, each
peer's last reported totals; the swarm has one dict from peer id to group and position.
Adding and removing a peer is O(1) (a removed peer's slot is filled by the group's last peer),
and choosing C{numwant} random peers is O(numwant) whatever the size of the swarm: an announce
costs the same in a swarm of ten peers or of a million.

The index can write every change into a journal (L{tracker.core.journal}) that the SQLite store
collects and saves in group commits, and can write itself out whole, a slice at a time, for the
store's checkpoints.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Iterable, Iterator

from tracker.core.addresses import pack_peer
from tracker.core.announce import PAUSED, STARTED, STOPPED, AnnounceRequest
from tracker.core.errors import KeyMismatch
from tracker.core.interfaces import NO_COUNTS, AnnounceResult, SwarmCounts
from tracker.core.journal import COMPLETED, COUNT, GONE, PEER, SEEDER, bulk_record
from tracker.core.ledger import Ledger

_IPV4_WIDTH = 6
_IPV6_WIDTH = 18
#: Group slots in a swarm: the kind (leecher 0, seeder 2) plus the family (IPv4 0, IPv6 1).
_LEECHERS, _SEEDERS = 0, 2
#: A group's share of a sample is taken in two runs of consecutive peers (SwarmIndex._take).
_TWO_RUNS = (0, 1)
_LEECHER_SLOTS = (0, 1)
_ALL_SLOTS = (0, 1, 2, 3)
#: The same, of one family: [0] IPv4, [1] IPv6.
_FAMILY_LEECHER_SLOTS = ((0,), (1,))
_FAMILY_SLOTS = ((0, 2), (1, 3))
#: Building the answer's tuples without their generated __new__, which costs more than the rest.
_new_tuple = tuple.__new__
#: A peer's report in private mode: its account's number (0: none yet), then the uploaded and
#: downloaded totals it reported last.
_REPORT = 3
_NO_REPORT = array("q", bytes(8 * _REPORT))
#: Journal records joined into one piece by L{SwarmIndex.take_changes}: at most 20 KiB or so.
CHUNK_RECORDS = 256


class _Group:
    """The peers of one kind and one address family in one swarm."""

    __slots__ = ("ids", "addresses", "seen", "completed", "keys", "width", "reports")

    def __init__(self, width: int) -> None:
        self.ids: list[bytes] = []
        self.addresses = bytearray()
        self.seen = array("q")
        self.completed = bytearray()
        #: The key each peer registered with (0: none), 4 bytes a peer.
        self.keys = array("I")
        self.width = width
        #: Private mode's reports (see L{SwarmIndex._credit}), 3 numbers a peer; None until an
        #: announce with an account reaches the group, so a public tracker keeps none.
        self.reports: array[int] | None = None

    def add(self, peer_id: bytes, address: bytes, now: int, completed: int, key: int) -> int:
        """Add a peer; its position."""
        position = len(self.ids)
        self.ids.append(peer_id)
        self.addresses += address
        self.seen.append(now)
        self.completed.append(completed)
        self.keys.append(key)
        if self.reports is not None:
            self.reports.extend(_NO_REPORT)
        return position

    def remove_at(self, position: int) -> bytes | None:
        """Remove the peer at C{position}; the id of the peer moved into its place, if any."""
        ids = self.ids
        last = len(ids) - 1
        width = self.width
        moved = None
        if position != last:
            moved = ids[last]
            ids[position] = moved
            start = position * width
            self.addresses[start : start + width] = self.addresses[last * width :]
            self.seen[position] = self.seen[last]
            self.completed[position] = self.completed[last]
            self.keys[position] = self.keys[last]
            if self.reports is not None:
                start = position * _REPORT
                self.reports[start : start + _REPORT] = self.reports[last * _REPORT :]
        ids.pop()
        del self.addresses[last * width :]
        self.seen.pop()
        self.completed.pop()
        self.keys.pop()
        if self.reports is not None:
            del self.reports[last * _REPORT :]
        return moved

    def addresses_without(self, position: int) -> bytes:
        """Every address in the group but the one at C{position} (-1: none left out)."""
        if position < 0:
            return bytes(self.addresses)
        start = position * self.width
        addresses = self.addresses
        return bytes(addresses[:start] + addresses[start + self.width :])

    def ids_without(self, position: int) -> list[bytes]:
        if position < 0:
            return list(self.ids)
        return self.ids[:position] + self.ids[position + 1 :]


class Swarm:
    """One torrent: its peer groups and its completion count, which outlives its peers."""

    __slots__ = ("groups", "downloaded", "places")

    def __init__(self, downloaded: int = 0) -> None:
        self.groups: list[_Group | None] = [None, None, None, None]
        self.downloaded = downloaded
        #: Each peer's place: its position in its group times 4, plus the group's slot. One
        #: dict for the swarm, so that finding a peer, or finding it new, is one lookup.
        self.places: dict[bytes, int] = {}

    def counts(self) -> SwarmCounts:
        leechers4, leechers6, seeders4, seeders6 = self.groups
        leechers = len(leechers4.ids) if leechers4 is not None else 0
        if leechers6 is not None:
            leechers += len(leechers6.ids)
        seeders = len(seeders4.ids) if seeders4 is not None else 0
        if seeders6 is not None:
            seeders += len(seeders6.ids)
        return _new_tuple(SwarmCounts, (seeders, leechers, self.downloaded))

    def is_empty(self) -> bool:
        return not self.places

    def find(self, peer_id: bytes) -> tuple[int, int]:
        """The (group slot, position) of a peer; (-1, -1) if it is not in the swarm."""
        place = self.places.get(peer_id)
        if place is None:
            return -1, -1
        return place & 3, place >> 2

    def add(
        self, slot: int, peer_id: bytes, address: bytes, now: int, completed: int, key: int
    ) -> int:
        """Add a peer to the group in C{slot}; its position there."""
        position = self.group(slot).add(peer_id, address, now, completed, key)
        self.places[peer_id] = position << 2 | slot
        return position

    def remove(self, slot: int, position: int) -> None:
        group = self.groups[slot]
        assert group is not None
        del self.places[group.ids[position]]
        moved = group.remove_at(position)
        if moved is not None:
            self.places[moved] = position << 2 | slot

    def group(self, slot: int) -> _Group:
        group = self.groups[slot]
        if group is None:
            group = self.groups[slot] = _Group(_IPV6_WIDTH if slot & 1 else _IPV4_WIDTH)
        return group


class SwarmIndex:
    """
    Every live swarm, answering announces and scrapes synchronously. With C{journal} set it
    also writes each change into L{journal} (see L{tracker.core.journal}), in order.
    """

    def __init__(self, rng: random.Random | None = None, journal: bool = False) -> None:
        self.swarms: dict[bytes, Swarm] = {}
        self._random = (rng or random.Random()).random
        #: Changes not yet taken by L{take_changes}, a record an item; None when nothing is
        #: recorded.
        self.journal: list[bytes] | None = [] if journal else None

    # Answering.

    def announce(self, request: AnnounceRequest, now: int) -> AnnounceResult:
        """Record the announce and answer it (the L{IPeerStore.announce} contract)."""
        info_hash = request.info_hash
        peer_id = request.peer_id
        swarm = self.swarms.get(info_hash)
        address = pack_peer(request.ip, request.port)
        family = 1 if len(address) == _IPV6_WIDTH else 0
        seeder = request.left == 0
        slot = (_SEEDERS if seeder else _LEECHERS) + family
        if swarm is None:
            if request.event == STOPPED:
                return AnnounceResult(NO_COUNTS)
            swarm = self.swarms[info_hash] = Swarm()
            old_slot = position = -1
        else:
            old_slot, position = swarm.find(peer_id)
        completed = 0
        key = request.key
        if old_slot >= 0:
            old_group = swarm.groups[old_slot]
            assert old_group is not None
            other_family = (slot ^ old_slot) & 1
            # Listed at the address it announces from, IP and port: asked once, for the key
            # and for whether the peer stays where it is.
            width = len(address)
            start = position * width
            in_place = not other_family and old_group.addresses[start : start + width] == address
            registered = old_group.keys[position]
            if registered != key:
                key = self._key_kept(old_group, position, in_place, key, other_family)
                if key < 0:
                    return self._unchanged(swarm, request, old_slot, position)
            completed = old_group.completed[position]
            if request.account is not None:
                # Before the peer is removed or moved: a stopped announce is credited too.
                self._credit(old_group, position, request, request.account)
            if request.event == STOPPED:
                swarm.remove(old_slot, position)
                if self.journal is not None:
                    self.journal.append(GONE.pack(b"G", info_hash, peer_id))
                return AnnounceResult(swarm.counts())
            if in_place and old_slot == slot:
                old_group.seen[position] = now
            else:
                swarm.remove(old_slot, position)
                old_slot = -1
        elif request.event == STOPPED:
            return AnnounceResult(swarm.counts())
        journal = self.journal
        if seeder and not completed and request.completes:
            # A completion is counted once per peer (BEP 48 "downloaded").
            completed = 1
            swarm.downloaded += 1
            if journal is not None:
                journal.append(COUNT.pack(b"D", info_hash, swarm.downloaded))
        if old_slot < 0:
            position = swarm.add(slot, peer_id, address, now, completed, key)
            if request.account is not None:
                # New here, or moved here: its report is its baseline.
                self._credit(swarm.group(slot), position, request, request.account)
        else:
            kept = swarm.groups[slot]
            assert kept is not None
            kept.completed[position] = completed
        if journal is not None:
            flags = (SEEDER if seeder else 0) | (COMPLETED if completed else 0)
            journal.append(
                PEER.pack(b"K", info_hash, peer_id, now, flags, key, len(address)) + address
            )
        counts = swarm.counts()
        if not request.numwant:
            return AnnounceResult(counts)
        return self._sample(swarm, request, slot, position, counts)

    def _sample(
        self,
        swarm: Swarm,
        request: AnnounceRequest,
        own_slot: int,
        own_position: int,
        counts: SwarmCounts,
    ) -> AnnounceResult:
        """Up to numwant other peers, chosen at random: leechers only for a seeder, and of the
        announcer's own family only when it asks so."""
        groups = swarm.groups
        # Seeders, and partial seeds that paused (BEP 21), have no use for other seeders.
        leechers_only = request.left == 0 or request.event == PAUSED
        slots: tuple[int, ...]
        if request.own_family:
            family = 1 if len(request.ip) == 16 else 0
            leechers = groups[family]
            total = len(leechers.ids) if leechers is not None else 0
            if leechers_only:
                slots = _FAMILY_LEECHER_SLOTS[family]
            else:
                slots = _FAMILY_SLOTS[family]
                seeders = groups[_SEEDERS + family]
                if seeders is not None:
                    total += len(seeders.ids)
        else:
            slots = _LEECHER_SLOTS if leechers_only else _ALL_SLOTS
            total = counts.incomplete if leechers_only else counts.incomplete + counts.complete
        if own_slot in slots:
            total -= 1
        wanted = request.numwant
        with_ids = not request.compact
        # Addresses and ids by family, so that ids line up with peers then peers6.
        peers: list[list[bytes | bytearray]] = [[], []]
        ids: list[list[bytes]] = [[], []]
        if total <= wanted:
            # Everyone fits: the groups as they are, less the requester.
            for slot in slots:
                group = groups[slot]
                if group is not None:
                    skip = own_position if slot == own_slot else -1
                    peers[slot & 1].append(group.addresses_without(skip))
                    if with_ids:
                        ids[slot & 1] += group.ids_without(skip)
        else:
            # Systematic allocation: each group's share is wanted * its size / total, rounded
            # up or down at random, and the shares add up to wanted exactly.
            offset = int(self._random() * total)
            before = taken = 0
            for slot in slots:
                group = groups[slot]
                if group is None:
                    continue
                size = len(group.ids)
                skip = -1
                if slot == own_slot:
                    skip = own_position
                    size -= 1
                before += size
                upto = (wanted * before + offset) // total
                if upto > taken:
                    family = slot & 1
                    self._take(
                        group, upto - taken, size, skip, peers[family],
                        ids[family] if with_ids else None,
                    )  # fmt: skip
                    taken = upto
        return _new_tuple(
            AnnounceResult, (counts, b"".join(peers[0]), b"".join(peers[1]), ids[0] + ids[1])
        )

    def _take(
        self,
        group: _Group,
        wanted: int,
        size: int,
        skip: int,
        peers: list[bytes | bytearray],
        ids: list[bytes] | None,
    ) -> None:
        """
        C{wanted} of a group's C{size} candidates (its peers less the one at C{skip}), in two
        runs of consecutive peers: the candidates, numbered from a random one on, are cut into
        two halves, and from each half a run is taken at a random place. The halves cannot
        overlap, so no peer is chosen twice; the random first number makes every candidate
        equally likely to be chosen; and a run is a slice of packed addresses, so a sample
        costs a few slices however large the swarm.
        """
        rand = self._random
        rotation = int(rand() * size)
        half = size >> 1
        # wanted <= size, so neither half of wanted exceeds its half of the candidates.
        length = wanted >> 1
        low = 0
        room = half
        addresses = group.addresses
        width = group.width
        for _ in _TWO_RUNS:
            start = (rotation + low + int(rand() * (room - length + 1))) % size
            end = start + length
            if end > size:
                # Past the last candidate the numbering goes on from the first.
                self._append(group, start, size, skip, peers, ids)
                start = 0
                end -= size
            # The two cases without a split, written out: _append would cost a call per run.
            if skip < 0 or end <= skip:
                peers.append(addresses[start * width : end * width])
                if ids is not None:
                    ids += group.ids[start:end]
            elif start >= skip:
                # Every candidate here is past the skipped peer: one place further on.
                peers.append(addresses[(start + 1) * width : (end + 1) * width])
                if ids is not None:
                    ids += group.ids[start + 1 : end + 1]
            else:
                self._append(group, start, end, skip, peers, ids)
            low = half
            room = size - half
            length = wanted - length

    @staticmethod
    def _append(
        group: _Group,
        first: int,
        past: int,
        skip: int,
        peers: list[bytes | bytearray],
        ids: list[bytes] | None,
    ) -> None:
        """The candidates numbered C{first} to C{past}; from the skipped peer on, a candidate's
        position in the group is one more than its number."""
        width = group.width
        if 0 <= skip < past:
            if first < skip:
                peers.append(group.addresses[first * width : skip * width])
                if ids is not None:
                    ids += group.ids[first:skip]
                first = skip
            first += 1
            past += 1
        if first < past:
            peers.append(group.addresses[first * width : past * width])
            if ids is not None:
                ids += group.ids[first:past]

    def count_completion(self, info_hash: bytes, now: int) -> None:
        """Count a completed download by a peer held elsewhere (the
        L{tracker.core.interfaces.IPeerStore.count_completion} contract)."""
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            swarm = self.swarms[info_hash] = Swarm()
        swarm.downloaded += 1
        if self.journal is not None:
            self.journal.append(COUNT.pack(b"D", info_hash, swarm.downloaded))

    def scrape(self, info_hashes: Iterable[bytes]) -> dict[bytes, SwarmCounts]:
        swarms = self.swarms
        counts = {}
        for info_hash in info_hashes:
            swarm = swarms.get(info_hash)
            counts[info_hash] = NO_COUNTS if swarm is None else swarm.counts()
        return counts

    @staticmethod
    def _credit(group: _Group, position: int, request: AnnounceRequest, account: Ledger) -> None:
        """
        Credit C{account} with what the peer at C{position} moved since its previous report, and
        keep this report for the next. A report is the base of the next only: the peer's first
        (or first since the tracker started, or under another passkey) and a C{started} one
        credit nothing. A client that restarted without saying so reports smaller totals, which
        count from zero again, never as a negative delta.
        """
        reports = group.reports
        if reports is None:
            reports = group.reports = _NO_REPORT * len(group.ids)
        start = position * _REPORT
        uploaded = request.uploaded
        downloaded = request.downloaded
        known = reports[start] == account.number
        up = uploaded - reports[start + 1]
        down = downloaded - reports[start + 2]
        reports[start] = account.number
        reports[start + 1] = uploaded
        reports[start + 2] = downloaded
        if not known or request.event == STARTED:
            return
        if up < 0:
            up = uploaded
        if down < 0:
            down = downloaded
        if up or down:
            account.credit(up, down)

    def _key_kept(
        self, group: _Group, position: int, in_place: bool, key: int, other_family: int
    ) -> int:
        """
        The key a known peer keeps after an announce that carries another key than the one it
        registered with (C{in_place}: from the address the peer is listed at); -1 if the
        announce must leave the peer as it is. Raises L{KeyMismatch} when the announce is
        refused.
        """
        registered = group.keys[position]
        if not registered:
            # A peer that registered without a key keeps none: taking the first key sent for it
            # would let whoever sent it first lock the peer out of its own entry.
            return 0
        if in_place:
            # From the address the peer is listed at, IP and port: the peer itself (or someone
            # who shares its address and port, and so could speak for it anyway). aria2 sends
            # a new random key with each UDP announce, and libtorrent's key changes with its
            # local address; the peer keeps its key when it sends none.
            if key:
                group.keys[position] = key
                return key
            return registered
        if other_family:
            # libtorrent (1.2 on) keys each listen socket apart, so one client's IPv4 and IPv6
            # announces carry one peer id and two keys: refusing either would show its user a
            # tracker error for nothing.
            return -1
        raise KeyMismatch()

    def _unchanged(
        self, swarm: Swarm, request: AnnounceRequest, own_slot: int, own_position: int
    ) -> AnnounceResult:
        """The answer to an announce that changes nothing; its peer's entry is left out of the
        sample, as on any announce."""
        counts = swarm.counts()
        if request.event == STOPPED or not request.numwant:
            return AnnounceResult(counts)
        return self._sample(swarm, request, own_slot, own_position, counts)

    # Expiry.

    def expire(self, cutoff: int, removed: list[int], chunk: int = 5000) -> Iterator[None]:
        """
        Forget peers last seen before C{cutoff}, adding their number to C{removed[0]}. A
        generator that yields after about C{chunk} peers were looked at, even within a swarm,
        so a large index is expired a slice at a time between announces.
        """
        budget = chunk
        for info_hash in list(self.swarms):
            swarm = self.swarms.get(info_hash)
            if swarm is None:
                continue
            for slot, group in enumerate(swarm.groups):
                if group is None:
                    continue
                # Backwards: when an announce between slices removes a peer, the one moved
                # into its place comes from the end, which has been looked at already.
                position = len(group.seen)
                while True:
                    position = min(position, len(group.seen)) - 1
                    if position < 0:
                        break
                    if group.seen[position] < cutoff:
                        if self.journal is not None:
                            self.journal.append(GONE.pack(b"G", info_hash, group.ids[position]))
                        swarm.remove(slot, position)
                        removed[0] += 1
                    budget -= 1
                    if budget <= 0:
                        budget = chunk
                        yield None
            if swarm.is_empty() and not swarm.downloaded and self.swarms.get(info_hash) is swarm:
                del self.swarms[info_hash]

    def forget_peers(self) -> int:
        """
        Forget every peer, keeping each torrent's completion count; the number forgotten. Each
        swarm that had peers is journalled as an C{S} record: its count and no peers.
        """
        forgotten = 0
        for info_hash, swarm in list(self.swarms.items()):
            if swarm.is_empty():
                continue
            forgotten += len(swarm.places)
            if swarm.downloaded:
                self.swarms[info_hash] = Swarm(swarm.downloaded)
            else:
                del self.swarms[info_hash]
            if self.journal is not None:
                self.journal.append(COUNT.pack(b"S", info_hash, swarm.downloaded))
        return forgotten

    # Persistence.

    def take_changes(self) -> list[bytes]:
        """
        The journal of every change since the last call, in pieces of whole records (at most
        L{CHUNK_RECORDS} each) to be saved and replayed in order.

        In pieces rather than one: under PyPy, every large byte string made (a commit's worth
        of records joined) made the next minor collections cost in proportion to the whole
        index, a third of an insert-heavy announce's time.
        """
        assert self.journal is not None, "this index keeps no journal"
        records, self.journal = self.journal, []
        join = b"".join
        return [join(records[i : i + CHUNK_RECORDS]) for i in range(0, len(records), CHUNK_RECORDS)]

    def has_changes(self) -> bool:
        return bool(self.journal)

    def checkpoint(self, written: list[int], chunk: int = 5000) -> Iterator[None]:
        """
        Write every swarm into the journal whole (an C{S} record, then C{B} records of its
        peers), so that the journal from here on holds everything: a generator that yields
        after about C{chunk} peers, even within a swarm, so that a large index is written a
        slice at a time between announces. Changes made meanwhile are in the journal after
        their swarm's C{S} record, and a peer is written as it is when its turn comes, so the
        records replay to the index as it is. The bytes written are added to C{written[0]}.
        """
        budget = chunk
        for info_hash in list(self.swarms):
            swarm = self.swarms.get(info_hash)
            if swarm is None:
                continue
            self._write(COUNT.pack(b"S", info_hash, swarm.downloaded), written)
            for slot, group in enumerate(swarm.groups):
                if group is None:
                    continue
                seeders = SEEDER if slot & _SEEDERS else 0
                width = group.width
                # Backwards, a run at a time, as expire goes: a peer moved by a removal between
                # slices is written twice, never missed.
                end = len(group.ids)
                while True:
                    end = min(end, len(group.ids))
                    if end <= 0:
                        break
                    start = max(end - budget, 0)
                    record = bulk_record(
                        info_hash, seeders, width, group.ids[start:end],
                        group.addresses[start * width : end * width], group.seen[start:end],
                        group.completed[start:end], group.keys[start:end],
                    )  # fmt: skip
                    self._write(record, written)
                    budget -= end - start
                    end = start
                    if budget <= 0:
                        budget = chunk
                        yield None

    def _write(self, record: bytes, written: list[int]) -> None:
        # The journal is looked up each time: the store takes it away between slices.
        assert self.journal is not None, "this index keeps no journal"
        self.journal.append(record)
        written[0] += len(record)

    # Loading, from a journal (tracker.core.journal.replay) or older tables; nothing is recorded.

    def load_peer(
        self,
        info_hash: bytes,
        peer_id: bytes,
        address: bytes,
        seeder: int,
        seen: int,
        done: int,
        key: int = 0,
    ) -> None:
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            swarm = self.swarms[info_hash] = Swarm()
        slot = (_SEEDERS if seeder else _LEECHERS) + (1 if len(address) == _IPV6_WIDTH else 0)
        old_slot, position = swarm.find(peer_id)
        if old_slot >= 0:
            swarm.remove(old_slot, position)
        swarm.add(slot, peer_id, address, seen, done, key)

    def load_gone(self, info_hash: bytes, peer_id: bytes) -> None:
        swarm = self.swarms.get(info_hash)
        if swarm is None:
            return
        old_slot, position = swarm.find(peer_id)
        if old_slot >= 0:
            swarm.remove(old_slot, position)
        if swarm.is_empty() and not swarm.downloaded:
            del self.swarms[info_hash]

    def load_count(self, info_hash: bytes, downloaded: int, reset: bool = False) -> None:
        swarm = self.swarms.get(info_hash)
        if swarm is None or reset:
            swarm = self.swarms[info_hash] = Swarm()
        swarm.downloaded = downloaded

    def peer_count(self) -> int:
        return sum(len(g.ids) for s in self.swarms.values() for g in s.groups if g is not None)
