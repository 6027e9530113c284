"""The swarm index's journal: every change written down replays to the same index, including
changes made while a checkpoint or an expiry is written a slice at a time."""

from __future__ import annotations

import random

import pytest

from tests.helpers import announce, info_hash
from tracker.announce import COMPLETED, STOPPED, AnnounceRequest
from tracker.journal import COUNT, GONE, JournalError, replay
from tracker.swarms import SwarmIndex

IP6 = bytes(15) + b"\x01"


def state(index: SwarmIndex) -> dict[bytes, tuple[int, set[tuple[bytes, bytes, int, int, int]]]]:
    """Everything the index holds, in a form that compares equal whatever the peers' order."""
    found = {}
    for hash_, swarm in index.swarms.items():
        peers = set()
        for slot, group in enumerate(swarm.groups):
            if group is None:
                continue
            for position, peer_id in enumerate(group.ids):
                address = bytes(
                    group.addresses[position * group.width : (position + 1) * group.width]
                )
                peers.add((peer_id, address, slot, group.seen[position], group.completed[position]))
        if peers or swarm.downloaded:
            found[hash_] = (swarm.downloaded, peers)
    return found


def random_announce(rng: random.Random) -> AnnounceRequest:
    event = rng.choice(["", "", "", STOPPED, COMPLETED, "started"])
    return announce(
        rng.randrange(40),
        rng.randrange(5),
        ip=IP6 if rng.random() < 0.2 else b"\x7f\x00\x00\x01",
        left=rng.choice([0, 0, 10, 500]),
        event=event,
        numwant=rng.choice([0, 5, 50]),
    )


def test_journal_replays_to_the_same_index() -> None:
    """Announces of every kind, then expiry: replaying the journal rebuilds the index exactly."""
    rng = random.Random(5)
    index = SwarmIndex(random.Random(1), journal=True)
    for step in range(3000):
        index.announce(random_announce(rng), 1000 + step // 10)
    for _ in index.expire(1200, [0], chunk=7):
        pass
    rebuilt = SwarmIndex()
    replay(index.take_changes(), rebuilt)
    assert state(rebuilt) == state(index)


@pytest.mark.parametrize("seed", range(12))
def test_checkpoint_interleaved_with_announces(seed: int) -> None:
    """A checkpoint written in slices of 3 peers while announces and an expiry change the same
    swarms: the journal from the checkpoint on replays to the index as it ends up."""
    rng = random.Random(seed)
    index = SwarmIndex(random.Random(seed), journal=True)
    for _ in range(400):
        index.announce(random_announce(rng), 1000)
    index.take_changes()  # what came before the checkpoint is not replayed
    walk = index.checkpoint([0], chunk=3)
    expiry = index.expire(1001, [0], chunk=5)
    now = 1001
    for _ in walk:
        for _ in range(rng.randrange(4)):
            index.announce(random_announce(rng), now)
        next(expiry, None)
        now += 1
    for _ in expiry:
        pass
    rebuilt = SwarmIndex()
    replay(index.take_changes(), rebuilt)
    assert state(rebuilt) == state(index)


def test_records_each_kind() -> None:
    """D sets a count, S resets a swarm to a count without peers, G forgets one peer."""
    index = SwarmIndex(journal=True)
    index.announce(announce(1, left=0, event=COMPLETED), 1000)
    index.announce(announce(2), 1000)
    journal = index.take_changes()
    rebuilt = SwarmIndex()
    replay(journal + GONE.pack(b"G", info_hash(1), announce(2).peer_id), rebuilt)
    assert rebuilt.scrape([info_hash(1)])[info_hash(1)] == (1, 0, 1)
    replay(COUNT.pack(b"S", info_hash(1), 7), rebuilt)
    assert rebuilt.scrape([info_hash(1)])[info_hash(1)] == (0, 0, 7)
    replay(COUNT.pack(b"D", info_hash(1), 9), rebuilt)
    assert rebuilt.scrape([info_hash(1)])[info_hash(1)] == (0, 0, 9)


@pytest.mark.parametrize("cut", [1, 10, 41, 52, 56])
def test_truncated_journal_is_refused(cut: int) -> None:
    """A journal cut inside a record is an error, not a silently shorter index."""
    index = SwarmIndex(journal=True)
    index.announce(announce(1), 1000)
    journal = index.take_changes()
    with pytest.raises(JournalError):
        replay(journal[:cut], SwarmIndex())


def test_unknown_record_is_refused() -> None:
    with pytest.raises(JournalError):
        replay(b"X" + bytes(40), SwarmIndex())
