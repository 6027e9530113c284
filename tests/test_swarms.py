"""The swarm index's journal: every change written down replays to the same index, including
changes made while a checkpoint or an expiry is written a slice at a time."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import announce, info_hash, peer_id
from tests.helpers import index_state as state
from tracker.core.announce import COMPLETED, STOPPED, AnnounceRequest
from tracker.core.errors import KeyMismatch
from tracker.core.journal import COUNT, GONE, KEYLESS_PEER, PEER, SEEDER, JournalError, replay
from tracker.core.swarms import SwarmIndex

IP6 = bytes(15) + b"\x01"


def random_announce(rng: random.Random) -> AnnounceRequest:
    event = rng.choice(["", "", "", STOPPED, COMPLETED, "started"])
    peer = rng.randrange(40)
    return announce(
        peer,
        rng.randrange(5),
        ip=IP6 if rng.random() < 0.2 else b"\x7f\x00\x00\x01",
        left=rng.choice([0, 0, 10, 500]),
        event=event,
        numwant=rng.choice([0, 5, 50]),
        # Mostly the peer's own key and port; sometimes no key or a wrong one, or another port.
        key=rng.choice([peer + 1, peer + 1, peer + 1, peer + 1, 0, 77]),
        port=rng.choice([None, None, None, 9]),
    )


def announce_any(index: SwarmIndex, request: AnnounceRequest, now: int) -> None:
    """Announce, whether or not the key is accepted."""
    with contextlib.suppress(KeyMismatch):
        index.announce(request, now)


def test_journal_replays_to_the_same_index() -> None:
    """Announces of every kind, then expiry: replaying the journal rebuilds the index exactly."""
    rng = random.Random(5)
    index = SwarmIndex(random.Random(1), journal=True)
    for step in range(3000):
        announce_any(index, random_announce(rng), 1000 + step // 10)
    for _ in index.expire(1200, [0], chunk=7):
        pass
    rebuilt = SwarmIndex()
    pieces = index.take_changes()
    # Each piece whole records, replayed alone as the store replays its rows.
    assert len(pieces) > 3
    for piece in pieces:
        replay(piece, rebuilt)
    assert state(rebuilt) == state(index)
    assert index.take_changes() == []


@pytest.mark.parametrize("seed", range(12))
def test_checkpoint_interleaved_with_announces(seed: int) -> None:
    """A checkpoint written in slices of 3 peers while announces and an expiry change the same
    swarms: the journal from the checkpoint on replays to the index as it ends up."""
    rng = random.Random(seed)
    index = SwarmIndex(random.Random(seed), journal=True)
    for _ in range(400):
        announce_any(index, random_announce(rng), 1000)
    index.take_changes()  # what came before the checkpoint is not replayed
    walk = index.checkpoint([0], chunk=3)
    expiry = index.expire(1001, [0], chunk=5)
    now = 1001
    for _ in walk:
        for _ in range(rng.randrange(4)):
            announce_any(index, random_announce(rng), now)
        next(expiry, None)
        now += 1
    for _ in expiry:
        pass
    rebuilt = SwarmIndex()
    replay(b"".join(index.take_changes()), rebuilt)
    assert state(rebuilt) == state(index)


def test_records_each_kind() -> None:
    """D sets a count, S resets a swarm to a count without peers, G forgets one peer."""
    index = SwarmIndex(journal=True)
    index.announce(announce(1, left=0, event=COMPLETED), 1000)
    index.announce(announce(2), 1000)
    journal = b"".join(index.take_changes())
    rebuilt = SwarmIndex()
    replay(journal + GONE.pack(b"G", info_hash(1), announce(2).peer_id), rebuilt)
    assert rebuilt.scrape([info_hash(1)])[info_hash(1)] == (1, 0, 1)
    replay(COUNT.pack(b"S", info_hash(1), 7), rebuilt)
    assert rebuilt.scrape([info_hash(1)])[info_hash(1)] == (0, 0, 7)
    replay(COUNT.pack(b"D", info_hash(1), 9), rebuilt)
    assert rebuilt.scrape([info_hash(1)])[info_hash(1)] == (0, 0, 9)


def checkpointed(index: SwarmIndex, chunk: int) -> bytes:
    """The index's checkpoint alone, written in runs of at most C{chunk} peers."""
    index.take_changes()
    for _ in index.checkpoint([0], chunk=chunk):
        pass
    return b"".join(index.take_changes())


def test_checkpoint_writes_runs_of_peers() -> None:
    """A checkpoint is S records and B records of at most the slice's peers, IPv4 and IPv6,
    keys, times and completions included, and replays to the same index."""
    rng = random.Random(3)
    index = SwarmIndex(random.Random(3), journal=True)
    for step in range(600):
        announce_any(index, random_announce(rng), 1000 + step)
    journal = checkpointed(index, 7)
    assert journal.count(b"B" + info_hash(0)) > 1
    rebuilt = SwarmIndex()
    replay(journal, rebuilt)
    assert state(rebuilt) == state(index)


@pytest.mark.parametrize("cut", [1, 20, 26, 27, 40, 70])
def test_truncated_run_is_refused(cut: int) -> None:
    """A B record cut anywhere, or claiming more peers than it holds, is an error."""
    index = SwarmIndex(journal=True)
    index.announce(announce(1), 1000)
    index.announce(announce(2), 1000)
    run = checkpointed(index, 100)[COUNT.size :]
    assert run[:1] == b"B"
    with pytest.raises(JournalError):
        replay(run[:cut], SwarmIndex())


def test_run_of_unknown_width_is_refused() -> None:
    index = SwarmIndex(journal=True)
    index.announce(announce(1), 1000)
    run = bytearray(checkpointed(index, 100)[COUNT.size :])
    run[22] = 7
    with pytest.raises(JournalError, match="7-byte addresses"):
        replay(bytes(run), SwarmIndex())


@pytest.mark.parametrize("cut", [1, 10, 41, 52, 56, 60])
def test_truncated_journal_is_refused(cut: int) -> None:
    """A journal cut inside a record is an error, not a silently shorter index."""
    index = SwarmIndex(journal=True)
    index.announce(announce(1), 1000)
    journal = b"".join(index.take_changes())
    with pytest.raises(JournalError):
        replay(journal[:cut], SwarmIndex())


@pytest.mark.parametrize("length", [0, 5, 7, 16, 17, 19, 193])
def test_peer_of_unknown_width_is_refused(length: int) -> None:
    """A K or P record whose address is neither 6 nor 18 bytes (IPv4 or IPv6 and a port) is an
    error: loaded, it would put every later peer of its group at the wrong address."""
    request = announce(1)
    address = bytes(range(length))
    good = PEER.pack(b"K", request.info_hash, request.peer_id, 1000, 0, 7, 6) + bytes(6)
    for record in (
        PEER.pack(b"K", request.info_hash, request.peer_id, 1000, 0, 7, length) + address,
        KEYLESS_PEER.pack(b"P", request.info_hash, request.peer_id, 1000, 0, length) + address,
    ):
        with pytest.raises(JournalError, match=f"{length}-byte address"):
            replay(good + record + good, SwarmIndex())


def test_unknown_record_is_refused() -> None:
    with pytest.raises(JournalError):
        replay(b"X" + bytes(40), SwarmIndex())


def test_random_announces_do_meet_wrong_keys() -> None:
    """The random announces above do try wrong keys on known peers, so the replay tests cover
    refused announces too."""
    rng = random.Random(5)
    index = SwarmIndex(random.Random(1))
    refused = 0
    for step in range(3000):
        try:
            index.announce(random_announce(rng), 1000 + step // 10)
        except KeyMismatch:
            refused += 1
    assert refused > 100


def test_keys_survive_replay_and_checkpoint() -> None:
    """A peer's key is in the journal and in a checkpoint: the rebuilt index refuses the wrong
    key and accepts the right one."""
    index = SwarmIndex(journal=True)
    index.announce(announce(1, key=0xDEADBEEF), 1000)
    index.announce(announce(2, ip=IP6, left=0, key=0xFFFFFFFF), 1000)
    index.announce(announce(3), 1000)
    from_journal = SwarmIndex()
    replay(b"".join(index.take_changes()), from_journal)
    for _ in index.checkpoint([0]):
        pass
    from_checkpoint = SwarmIndex()
    replay(b"".join(index.take_changes()), from_checkpoint)
    for rebuilt in (from_journal, from_checkpoint):
        assert state(rebuilt) == state(index)
        # From other ports: the peers' own addresses could change their keys.
        with pytest.raises(KeyMismatch):
            rebuilt.announce(announce(1, port=1, key=1, event=STOPPED), 1001)
        with pytest.raises(KeyMismatch):
            rebuilt.announce(announce(2, ip=IP6, port=2, key=0, event=STOPPED), 1001)
        rebuilt.announce(announce(1, key=0xDEADBEEF, event=STOPPED), 1001)
        rebuilt.announce(announce(3, key=5, event=STOPPED), 1001)
        assert rebuilt.scrape([info_hash(1)])[info_hash(1)] == (1, 0, 0)


def keyless_record(peer: int, seen: int, port: int, seeder: bool = False) -> bytes:
    """A peer as schema version 2 wrote it: a P record, without a key."""
    request = announce(peer)
    address = request.ip + port.to_bytes(2, "big")
    flags = SEEDER if seeder else 0
    return (
        KEYLESS_PEER.pack(b"P", request.info_hash, request.peer_id, seen, flags, len(address))
        + address
    )


def test_version_2_records_load_as_peers_without_keys() -> None:
    """A journal of version 2's P records loads as peers without keys, which accept any key;
    a K record written later for the same peer replaces it, key and all."""
    old = keyless_record(1, 900, 1111) + keyless_record(2, 950, 2222, seeder=True)
    index = SwarmIndex(journal=True)
    replay(old, index)
    assert index.scrape([info_hash(1)])[info_hash(1)] == (1, 1, 0)
    group = index.swarms[info_hash(1)].groups[0]
    assert group is not None and list(group.keys) == [0]
    # New records after the old ones: peer 3 registers with a key.
    index.announce(announce(3, key=42), 1000)
    rebuilt = SwarmIndex()
    replay(old + b"".join(index.take_changes()), rebuilt)
    assert state(rebuilt) == state(index)
    rebuilt.announce(announce(1, key=7, port=1234), 1001)
    with pytest.raises(KeyMismatch):
        rebuilt.announce(announce(3, key=7, port=3), 1001)


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.tuples(*[st.integers(0, 40)] * 4),
    asker=st.integers(0, 200),
    asker_left=st.sampled_from([0, 7]),
    asker_v6=st.booleans(),
    numwant=st.integers(1, 60),
    own_family=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_sample_is_distinct_complete_and_excludes_the_asker(
    sizes: tuple[int, int, int, int],
    asker: int,
    asker_left: int,
    asker_v6: bool,
    numwant: int,
    own_family: bool,
    seed: int,
) -> None:
    """Whatever the mix of leechers and seeders over IPv4 and IPv6, and wherever the asker sits
    among them: an answer holds min(numwant, candidates) distinct peers, never the asker, only
    leechers for a seeder, only the asker's family when asked so (UDP), each with its own
    address, and ids in the order of the addresses."""
    index = SwarmIndex(random.Random(seed))
    kinds = {}
    n = 0
    for slot, size in enumerate(sizes):
        for _ in range(size):
            n += 1
            kinds[peer_id(n)] = slot
            index.announce(
                announce(n, ip=IP6 if slot & 1 else b"\x7f\x00\x00\x01", left=0 if slot & 2 else 5),
                1000,
            )
    asker_id = peer_id(asker) if asker <= n else peer_id(10_000)
    request = announce(
        asker if asker <= n else 10_000,
        ip=IP6 if asker_v6 else b"\x7f\x00\x00\x01",
        left=asker_left,
        numwant=numwant,
        compact=False,
        own_family=own_family,
    )
    kinds[asker_id] = (2 if asker_left == 0 else 0) + asker_v6
    result = index.announce(request, 1000)
    ids = list(result.peer_ids)
    allowed = [
        p
        for p, slot in kinds.items()
        if p != asker_id
        and not (asker_left == 0 and slot & 2)
        and not (own_family and slot & 1 != asker_v6)
    ]
    assert len(ids) == min(numwant, len(allowed))
    assert len(set(ids)) == len(ids)
    assert asker_id not in ids
    assert set(ids) <= set(allowed)
    addresses = [result.peers4[k : k + 6] for k in range(0, len(result.peers4), 6)]
    addresses += [result.peers6[k : k + 18] for k in range(0, len(result.peers6), 18)]
    assert len(addresses) == len(ids)
    for peer, address in zip(ids, addresses):
        number = int.from_bytes(peer[8:], "big")
        assert address[-2:] == (10000 + number).to_bytes(2, "big")
        assert len(address) == (18 if kinds[peer] & 1 else 6)


def test_samples_from_mixed_groups_are_uniform() -> None:
    """Leechers and seeders over both families, the asker among them: every other peer is
    handed out about equally often, whichever group it is in."""
    index = SwarmIndex(random.Random(3))
    for n in range(1, 241):
        index.announce(announce(n, ip=IP6 if n % 4 == 0 else b"\x7f\x00\x00\x01", left=n % 3), 1000)
    handed: dict[bytes, int] = dict.fromkeys((peer_id(n) for n in range(1, 241) if n != 7), 0)
    draws = 600
    for _ in range(draws):
        result = index.announce(announce(7, left=1, numwant=48, compact=False), 1000)
        for peer in result.peer_ids:
            handed[peer] += 1
    # 48 of 239 per draw: about 120.5 times each; binomial sd ~9.8, so +-5 sd.
    assert min(handed.values()) > 120.5 - 50
    assert max(handed.values()) < 120.5 + 50
