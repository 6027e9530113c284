"""What access lists and private mode cost an announce, in process, against ours without.

    python3 bench/run.py access [--pairs N] [--requests N]

The load's announces (50,000 peers into 1000 swarms, reporting growing totals as clients moving
data do) are sent in turns to our site without access control and to our site with a whitelist
(every swarm of the mix among 100,000 listed torrents), a blacklist (100,000 other torrents)
and in private mode (each peer at /<passkey>/announce with one of 1000 passkeys, so that every
announce is credited). Each turn is timed in this process's CPU time, so that a machine shared
with other work does not count its own time against either; the figure is the median over the
pairs of (with / without), the cost of the feature as a ratio.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import benchlib as bl
import inprocess as ip
import report
from twisted.internet.task import Clock

from tracker.core.config import TrackerConfig
from tracker.core.interfaces import IPeerStore
from tracker.http.private import PrivateTrackerResource
from tracker.http.resource import TrackerResource
from tracker.http.site import TrackerSite
from tracker.ops.access import AccessControlledStore, AccessList
from tracker.ops.passkeys import Passkeys
from tracker.store.access import BLACKLIST, WHITELIST, Account, MemoryAccessStore
from tracker.store.memory import MemoryPeerStore

KINDS = ("whitelist", "blacklist", "private")
PASSKEYS = 1000


def passkey(n: int) -> bytes:
    return b"bench-passkey-%06d" % n


def gated_site(access: str) -> TrackerSite:
    """Our site with an access list, or in private mode, its stored state loaded."""
    store: IPeerStore = MemoryPeerStore()
    access_store = MemoryAccessStore()
    clock = Clock()
    if access == "private":
        passkeys = Passkeys(access_store, clock)
        passkeys.load_stored({passkey(n): Account("", 0, 0, 0) for n in range(PASSKEYS)})
        return TrackerSite(PrivateTrackerResource(store, passkeys, TrackerConfig(), clock))
    others = frozenset(random.Random(2).randbytes(20) for _ in range(100_000))
    if access == "whitelist":
        listed = others | {bl.swarm_hash(k) for k in range(bl.SWARMS)}
        access_list = AccessList(WHITELIST, "bench", listed, access_store, clock)
    else:
        access_list = AccessList(BLACKLIST, "bench", others, access_store, clock)
    access_list.load_stored(frozenset())
    store = AccessControlledStore(store, access_list)
    return TrackerSite(TrackerResource(store, TrackerConfig(), clock))


def with_totals(batch: list[bytes], turn: int = 0) -> list[bytes]:
    """The same requests reporting totals that grow with each C{turn}, as clients moving data
    do: sent turn after turn, every peer reports more than it did before, so that private mode
    credits every announce."""
    rewritten = []
    for k, data in enumerate(batch):
        step = turn * len(batch) + k
        moved = b"uploaded=%d&downloaded=%d" % (step * 16384, step * 8192)
        rewritten.append(data.replace(b"uploaded=0&downloaded=0", moved, 1))
    return rewritten


def with_passkeys(batch: list[bytes]) -> list[bytes]:
    """The same requests at /<passkey>/announce: each peer always with its passkey."""
    rewritten = []
    for data in batch:
        peer = data.split(b"peer_id=", 1)[1][:40]
        key = passkey(hash(peer) % PASSKEYS)
        rewritten.append(data.replace(b"GET /", b"GET /%s/" % key, 1))
    return rewritten


def cpu_per_request(connections: ip.Connections, batch: list[bytes]) -> float:
    started = time.process_time()
    connections.send(batch)
    return (time.process_time() - started) / len(batch) * 1e6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    bl.option(parser, "--pairs", 40, 2, "pairs of turns counted (at least 2)")
    bl.option(parser, "--requests", 5000, 1000, "requests a turn")


def run(args: argparse.Namespace) -> int:
    if args.pairs < 2:
        sys.exit("--pairs must be at least 2, for the quartiles")
    requests = ip.requests("swarms", args.requests)
    plain = ip.Connections(ip.our_site())
    sites = {kind: ip.Connections(gated_site(kind)) for kind in KINDS}
    ratios: dict[str, list[float]] = {kind: [] for kind in KINDS}
    plain_us: list[float] = []
    for turn in range(args.pairs + 1):
        # Every side gets the same totals, grown since the last turn: what differs is the
        # access control alone, and private mode credits every announce.
        batch = with_totals(requests, turn)
        private_batch = with_passkeys(batch)
        if turn == 0:
            reply = sites["private"].answer(private_batch[0])
            assert b"failure reason" not in reply, reply
        for kind in KINDS:
            without = cpu_per_request(plain, batch)
            with_access = cpu_per_request(
                sites[kind], private_batch if kind == "private" else batch
            )
            if turn:
                # The first turn fills the swarms.
                plain_us.append(without)
                ratios[kind].append(with_access / without)
    print(f"ours without access control: median {statistics.median(plain_us):.1f} us/request")
    rows = []
    for kind in KINDS:
        median = statistics.median(ratios[kind])
        low, _, high = statistics.quantiles(ratios[kind], n=4)
        rows.append([kind, f"{median:.3f}", f"{low:.3f} - {high:.3f}"])
        print(f"{kind}: {median:.3f} x ours (quartiles {low:.3f} - {high:.3f}, {args.pairs} pairs)")
    report.record(
        args, "http", "access", "Access lists and private mode, in process",
        [report.table(["access control", "x ours without (median)", "quartiles"], rows)],
        {"pairs": args.pairs, "requests": args.requests, "ratios": ratios, "plain_us": plain_us},
        [f"{args.pairs} pairs of turns of {args.requests:,} announces, in CPU time; ours without"
         f" access control: {statistics.median(plain_us):.1f} us an announce."],
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit("run it as: python3 bench/run.py access")
