"""The request path's cost without the kernel: HTTP requests fed to a Site through an in-memory
transport, ours beside the Twisted floor, in one process.

    python bench/inprocess.py [--requests N] [--rounds N] [--profile] [--mode MODE]
                              [--access whitelist|blacklist|private]

Each round sends the same N keep-alive requests (the wrk mix of bench/tracker.lua: announces by a
population of 50,000 peers into 1000 swarms) over 64 connections, first to the floor
(bench/floor.py), then to our TrackerSite with the memory store (the same index the SQLite store
answers from); --mode one announces into one swarm of 50,000 peers instead, --mode alone as
the only peer of a swarm, --mode scrape scrapes one hash. Prints microseconds per request for
each and ours as a fraction of the floor, per round; PyPy needs a few rounds to warm up.
--profile runs ours under cProfile instead. --access adds a third site, ours with a whitelist
(every swarm of the mix among 100,000 listed torrents), a blacklist (100,000 other torrents) or
in private mode (the same requests at /<passkey>/announce, one of 1000 passkeys per peer,
every announce credited), and prints what it costs beside ours without.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402
from floor import floor_site  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.web.server import Site  # noqa: E402

from tracker.core.config import TrackerConfig  # noqa: E402
from tracker.core.interfaces import IPeerStore  # noqa: E402
from tracker.http.private import PrivateTrackerResource  # noqa: E402
from tracker.http.resource import TrackerResource  # noqa: E402
from tracker.http.site import TrackerSite  # noqa: E402
from tracker.ops.access import AccessControlledStore, AccessList  # noqa: E402
from tracker.ops.passkeys import Passkeys  # noqa: E402
from tracker.store.access import BLACKLIST, WHITELIST, Account, MemoryAccessStore  # noqa: E402
from tracker.store.memory import MemoryPeerStore  # noqa: E402

CONNECTIONS = 64
SWARMS = 1000
POPULATION = 50_000


def swarms_request(rng: random.Random, hashes: list[bytes]) -> str:
    info_hash = hashes[rng.randrange(len(hashes))]
    i = rng.randrange(POPULATION)
    r = rng.random()
    if r < 0.05:
        return bl.announce_path(info_hash, i, "started")
    if r < 0.07:
        return bl.announce_path(info_hash, i, "completed", left=0)
    if r < 0.10:
        return bl.announce_path(info_hash, i, "stopped")
    return bl.announce_path(info_hash, i)


def requests(mode: str, count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    hashes = [bl.swarm_hash(k) for k in range(SWARMS)]
    paths = []
    for _ in range(count):
        if mode == "swarms":
            path = swarms_request(rng, hashes)
        elif mode == "one":
            path = bl.announce_path(bl.single_swarm_hash(50000), rng.randrange(50000))
        elif mode == "alone":
            path = bl.announce_path(bl.single_swarm_hash(1), 0)
        else:
            path = "/scrape?info_hash=" + quote_from_bytes(rng.choice(hashes), safe="")
        paths.append(path)
    return [get_request(path) for path in paths]


def get_request(path: str) -> bytes:
    """A keep-alive GET of C{path}, as a client sends it."""
    return b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:6969\r\n\r\n" % path.encode("ascii")


def our_site() -> TrackerSite:
    """Our site on its memory store, without access control."""
    return TrackerSite(TrackerResource(MemoryPeerStore(), TrackerConfig()))


PASSKEYS = 1000


def passkey(n: int) -> bytes:
    return b"bench-passkey-%06d" % n


def gated_site(access: str) -> TrackerSite:
    """Our site with an access list, or in private mode, its stored state loaded."""
    store: IPeerStore = MemoryPeerStore()
    access_store = MemoryAccessStore()
    clock = Clock()
    others = frozenset(random.Random(2).randbytes(20) for _ in range(100_000))
    if access == "private":
        passkeys = Passkeys(access_store, clock)
        passkeys.load_stored({passkey(n): Account("", 0, 0, 0) for n in range(PASSKEYS)})
        return TrackerSite(PrivateTrackerResource(store, passkeys, TrackerConfig(), clock))
    if access == "whitelist":
        listed = others | {bl.swarm_hash(k) for k in range(SWARMS)}
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


class Connections:
    """Keep-alive connections to one site over in-memory transports."""

    def __init__(self, site: Site) -> None:
        self.channels = []
        for n in range(CONNECTIONS):
            transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000 + n))
            channel = site.buildProtocol(transport.getPeer())
            assert channel is not None
            channel.makeConnection(transport)
            self.channels.append((channel, transport))

    def send(self, batch: list[bytes]) -> float:
        channels = self.channels
        started = time.perf_counter()
        for k, data in enumerate(batch):
            channel, transport = channels[k % CONNECTIONS]
            channel.dataReceived(data)
            transport.clear()
        return time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mode", default="swarms", choices=("swarms", "one", "alone", "scrape"))
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--access", choices=("whitelist", "blacklist", "private"))
    args = parser.parse_args(argv)
    plain_batch = batch = requests(args.mode, args.requests)
    if args.access:
        # Both sites get the same totals: what differs is the access control alone.
        batch = with_totals(plain_batch)
    floor = Connections(floor_site())
    ours = Connections(our_site())
    gated = Connections(gated_site(args.access)) if args.access else None
    gated_batch = with_passkeys(batch) if args.access == "private" else batch
    if args.mode == "one":
        fill = [
            get_request(bl.announce_path(bl.single_swarm_hash(50000), i, "started", numwant=0))
            for i in range(50000)
        ]
        ours.send(fill)
        if gated is not None:
            gated.send(with_passkeys(fill) if args.access == "private" else fill)
    ours.send(batch)  # fill the swarms
    if gated is not None:
        gated.send(gated_batch)
        channel, transport = gated.channels[0]
        channel.dataReceived(gated_batch[0])
        reply = transport.value()
        transport.clear()
        assert b"failure reason" not in reply, reply
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(ours.send, batch)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return 0
    per_request: dict[str, Any] = {}
    for n in range(args.rounds):
        if args.access:
            batch = with_totals(plain_batch, n + 1)
            gated_batch = with_passkeys(batch) if args.access == "private" else batch
        floor_us = floor.send(batch) / len(batch) * 1e6
        ours_us = ours.send(batch) / len(batch) * 1e6
        per_request = {"floor": floor_us, "ours": ours_us}
        line = (
            f"round {n + 1}: floor {floor_us:.1f} us/request, ours {ours_us:.1f} us/request,"
            f" ours at {floor_us / ours_us:.2f} of the floor"
        )
        if gated is not None:
            gated_us = gated.send(gated_batch) / len(batch) * 1e6
            line += (
                f"; with {args.access} {gated_us:.1f} us/request, {gated_us / ours_us:.3f} x ours"
            )
        print(line, flush=True)
    return 0 if per_request else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
