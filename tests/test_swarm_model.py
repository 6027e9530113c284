"""
The swarm index against a model of the rules it keeps, step by step: announces of every event
from seeders and leechers over IPv4 and IPv6, with keys right and wrong, expiry as time passes,
checkpoints, and restarts that rebuild the index from its journal alone (as the SQLite store
does at start). Hypothesis chooses the steps and shrinks any run that breaks a rule to the
fewest steps that still do.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.helpers import announce, index_state, info_hash
from tracker.core.announce import COMPLETED, NONE, PAUSED, STARTED, STOPPED, AnnounceRequest
from tracker.core.errors import KeyMismatch
from tracker.core.interfaces import AnnounceResult, SwarmCounts
from tracker.core.journal import replay
from tracker.core.swarms import SwarmIndex

IPV4 = (b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
IPV6 = (bytes(15) + b"\x01",)
START = 1_000_000


class ModelPeer(NamedTuple):
    address: bytes
    seeder: bool
    seen: int
    completed: bool
    key: int

    @property
    def v6(self) -> bool:
        return len(self.address) == 18


Swarm = dict[bytes, ModelPeer]


class SwarmIndexMachine(RuleBasedStateMachine):
    """
    The model: per torrent, each live peer's address, kind, last announce, whether its
    completion was counted and its key; and the completion count, which only grows. The rules
    it keeps (DESIGN.md section 2, tracker.core.swarms):

     - a peer is (info hash, peer id); C{stopped} removes it, anything else adds or updates it;
     - a completion is counted when a peer with nothing left announces C{completed}, once while
       the peer stays in the swarm;
     - a known peer's announce with another key than it registered with is refused (and
       changes nothing), unless the peer registered none, or it comes from the peer's own
       address and port (which may change the key), or from the other address family (which
       changes nothing and is not refused);
     - an answer never holds the asker, holds leechers only for a seeder or a paused peer, of
       the asker's family only when it asks so, and min(numwant, candidates) peers;
     - peers silent since a cutoff are forgotten at expiry; the count is kept.
    """

    def __init__(self) -> None:
        super().__init__()
        self.swarms: dict[bytes, Swarm] = {}
        self.downloaded: dict[bytes, int] = {}
        self.now = START
        self.journal: list[bytes] = []
        self.index = SwarmIndex(random.Random(0), journal=True)
        self.seen_counts: dict[bytes, int] = {}

    @initialize(seed=st.integers(0, 2**32 - 1))
    def seed(self, seed: int) -> None:
        self.index = SwarmIndex(random.Random(seed), journal=True)

    # Steps.

    @rule(
        torrent=st.integers(1, 2),
        peer=st.integers(1, 5),
        ip=st.sampled_from(IPV4 + IPV6),
        port=st.sampled_from((6881, 6882)),
        left=st.sampled_from((0, 10)),
        event=st.sampled_from((NONE, STARTED, COMPLETED, STOPPED, PAUSED)),
        key=st.sampled_from((0, 0, 1, 2)),
        numwant=st.sampled_from((0, 2, 50)),
        compact=st.booleans(),
        own_family=st.booleans(),
    )
    def announce(
        self,
        torrent: int,
        peer: int,
        ip: bytes,
        port: int,
        left: int,
        event: str,
        key: int,
        numwant: int,
        compact: bool,
        own_family: bool,
    ) -> None:
        request = announce(
            peer,
            torrent,
            ip=ip,
            port=port,
            left=left,
            event=event,
            key=key,
            numwant=numwant,
            compact=compact,
            own_family=own_family,
        )
        hash_, id_ = request.info_hash, request.peer_id
        address = ip + port.to_bytes(2, "big")
        swarm = self.swarms.get(hash_, {})
        before = swarm.get(id_)
        # What the model expects: refused, left as it is, or applied.
        outcome = "apply"
        kept_key = key
        if before is not None and before.key != key:
            if not before.key:
                kept_key = 0
            elif before.address == address:
                kept_key = key or before.key
            elif before.v6 != (len(ip) == 16):
                outcome = "unchanged"
            else:
                outcome = "refused"
        state = index_state(self.index)
        try:
            result = self.index.announce(request, self.now)
        except KeyMismatch:
            assert outcome == "refused", (before, request)
            assert index_state(self.index) == state, "a refused announce changed the index"
            return
        assert outcome != "refused", (before, request)
        if outcome == "unchanged":
            assert index_state(self.index) == state, "an announce of the other family applied"
        elif event == STOPPED:
            swarm.pop(id_, None)
        else:
            completed = before is not None and before.completed
            if left == 0 and event == COMPLETED and not completed:
                completed = True
                self.downloaded[hash_] = self.downloaded.get(hash_, 0) + 1
            swarm[id_] = ModelPeer(address, left == 0, self.now, completed, kept_key)
        if swarm:
            self.swarms[hash_] = swarm
        else:
            self.swarms.pop(hash_, None)
        assert result.counts == self.counts(hash_), (result.counts, self.counts(hash_))
        self.check_answer(request, result)

    def check_answer(self, request: AnnounceRequest, result: AnnounceResult) -> None:
        swarm = self.swarms.get(request.info_hash, {})
        leechers_only = request.left == 0 or request.event == PAUSED
        v6 = len(request.ip) == 16
        candidates = {
            id_: peer
            for id_, peer in swarm.items()
            if id_ != request.peer_id
            and not (leechers_only and peer.seeder)
            and not (request.own_family and peer.v6 != v6)
        }
        wanted = 0 if request.event == STOPPED else request.numwant
        addresses = [result.peers4[k : k + 6] for k in range(0, len(result.peers4), 6)]
        addresses += [result.peers6[k : k + 18] for k in range(0, len(result.peers6), 18)]
        assert len(result.peers4) % 6 == 0 and len(result.peers6) % 18 == 0
        assert len(addresses) == min(wanted, len(candidates)), (addresses, candidates)
        if request.compact:
            # Addresses only: each one a candidate's, no more often than candidates have it.
            pool = [peer.address for peer in candidates.values()]
            for address in addresses:
                assert address in pool, address
                pool.remove(address)
            return
        ids = list(result.peer_ids)
        assert len(ids) == len(set(ids)) == len(addresses)
        assert request.peer_id not in ids, "an asker got itself back"
        for id_, address in zip(ids, addresses):
            assert candidates[id_].address == address, (id_, address)

    @rule(seconds=st.integers(0, 4000))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    @rule(age=st.integers(0, 5000), chunk=st.integers(1, 4))
    def expire(self, age: int, chunk: int) -> None:
        cutoff = self.now - age
        removed = [0]
        for _ in self.index.expire(cutoff, removed, chunk=chunk):
            pass
        gone = 0
        for hash_ in list(self.swarms):
            swarm = self.swarms[hash_]
            for id_ in [i for i, peer in swarm.items() if peer.seen < cutoff]:
                del swarm[id_]
                gone += 1
            if not swarm:
                del self.swarms[hash_]
        assert removed[0] == gone

    @rule()
    def restart(self) -> None:
        """The index rebuilt from its journal alone, as the SQLite store does at start."""
        self.journal += self.index.take_changes()
        rebuilt = SwarmIndex(random.Random(len(self.journal)), journal=True)
        for piece in self.journal:
            replay(piece, rebuilt)
        assert index_state(rebuilt) == index_state(self.index)
        assert rebuilt.take_changes() == [], "replaying wrote to the journal"
        self.index = rebuilt

    @rule(chunk=st.integers(1, 4))
    def checkpoint(self, chunk: int) -> None:
        """The index written whole: the journal before it is no longer needed."""
        self.journal += self.index.take_changes()
        for _ in self.index.checkpoint([0], chunk=chunk):
            pass
        self.journal = self.index.take_changes()

    # What must hold after every step.

    def counts(self, hash_: bytes) -> SwarmCounts:
        swarm = self.swarms.get(hash_, {})
        seeders = sum(peer.seeder for peer in swarm.values())
        return SwarmCounts(seeders, len(swarm) - seeders, self.downloaded.get(hash_, 0))

    @invariant()
    def index_holds_the_model(self) -> None:
        expected = {}
        for hash_ in set(self.swarms) | set(self.downloaded):
            peers = {
                (id_, p.address, (2 if p.seeder else 0) + p.v6, p.seen, int(p.completed), p.key)
                for id_, p in self.swarms.get(hash_, {}).items()
            }
            expected[hash_] = (self.downloaded.get(hash_, 0), peers)
        assert index_state(self.index) == expected

    @invariant()
    def scrape_counts_and_completions_never_go_down(self) -> None:
        hashes = [info_hash(t) for t in (1, 2)]
        scraped = self.index.scrape(hashes)
        for hash_ in hashes:
            assert scraped[hash_] == self.counts(hash_)
            assert scraped[hash_].downloaded >= self.seen_counts.get(hash_, 0)
            self.seen_counts[hash_] = scraped[hash_].downloaded


SwarmIndexMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, database=None
)
TestSwarmIndexModel = SwarmIndexMachine.TestCase
TestSwarmIndexModel.__doc__ = """Random runs of announces, waits, expiries, checkpoints and
restarts keep the swarm index equal to the model, and its answers within the rules."""
