"""The request path's cost without the kernel, ours beside the Twisted floor, in one process.

    python3 bench/run.py inprocess [--protocol http|udp] [--requests N] [--rounds N]
                                   [--mode swarms|one|alone|scrape] [--population churn|fixed]
                                   [--profile]

HTTP: each round sends the same N keep-alive requests (the load's mix: announces by a
population of 50,000 peers into 1000 swarms) over 64 in-memory connections, first to the floor
(bench/floor.py), then to our TrackerSite with the memory store (the same index the SQLite
store answers from); --mode one announces into one swarm of 50,000 peers instead, --mode alone
as the only peer of a swarm, --mode scrape scrapes one hash.

UDP: udpload.c's announces, new ones each round (with the churn population, mostly peers new to
their swarm), fed straight to UDPTracker.datagramReceived over the memory store's index with its
journal on, taken away every 4,000 datagrams as the SQLite store's group commit does, beside the
UDP floor's datagramReceived. The index grows by about 190,000 peers a round, so the later
rounds show what a large index costs (under PyPy, its minor collections).

Prints microseconds per request for each and ours as a fraction of the floor, per round; PyPy
needs a few rounds to warm up. --profile runs ours under cProfile instead.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from typing import Any, Callable

import benchlib as bl
import report
from floor import UDPFloor, floor_site
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.server import Site

from tracker.core.config import TrackerConfig
from tracker.core.swarms import SwarmIndex
from tracker.http.resource import TrackerResource
from tracker.http.site import TrackerSite
from tracker.store.memory import MemoryPeerStore
from tracker.udp.protocol import UDPTracker

CONNECTIONS = 64
CLIENT = ("127.0.0.1", 40000)
#: Requests (HTTP) or datagrams (UDP) a round, in a full run and with --quick.
COUNTS = {"http": (20_000, 2_000), "udp": (200_000, 5_000)}


# --- HTTP -----------------------------------------------------------------------------------


def requests(mode: str, count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    hashes = [bl.swarm_hash(k) for k in range(bl.SWARMS)]
    paths = []
    for _ in range(count):
        if mode == "swarms":
            path = bl.mixed_announce_path(rng, hashes)
        elif mode == "one":
            path = bl.announce_path(bl.single_swarm_hash(50000), rng.randrange(50000))
        elif mode == "alone":
            path = bl.announce_path(bl.single_swarm_hash(1), 0)
        else:
            path = bl.scrape_path([rng.choice(hashes)])
        paths.append(path)
    return [get_request(path) for path in paths]


def get_request(path: str) -> bytes:
    """A keep-alive GET of C{path}, as a client sends it."""
    return b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:6969\r\n\r\n" % path.encode("ascii")


def our_site() -> TrackerSite:
    """Our site on its memory store, without access control."""
    return TrackerSite(TrackerResource(MemoryPeerStore(), TrackerConfig()))


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

    def answer(self, data: bytes) -> bytes:
        """The reply to one request."""
        channel, transport = self.channels[0]
        channel.dataReceived(data)
        reply: bytes = transport.value()
        transport.clear()
        return reply


def http_sides(args: argparse.Namespace) -> tuple[Callable[[], float], Callable[[], float]]:
    batch = requests(args.mode, args.requests)
    floor, ours = Connections(floor_site()), Connections(our_site())
    if args.mode == "one":
        ours.send(
            [
                get_request(bl.announce_path(bl.single_swarm_hash(50000), i, "started", numwant=0))
                for i in range(50000)
            ]
        )
    ours.send(batch)  # fill the swarms
    reply = ours.answer(batch[0])
    assert b" 200 " in reply.split(b"\r\n", 1)[0] and b"failure reason" not in reply, reply
    return lambda: floor.send(batch), lambda: ours.send(batch)


# --- UDP ------------------------------------------------------------------------------------


class _Socket:
    """What UDPTracker sends through: counts the bytes instead."""

    def __init__(self) -> None:
        self.sent = 0

    def sendto(self, data: bytes, addr: Any) -> int:
        self.sent += len(data)
        return len(data)


class _Transport:
    def __init__(self) -> None:
        self.socket = _Socket()

    def getHandle(self) -> _Socket:
        return self.socket


def udp_tracker() -> tuple[UDPTracker, SwarmIndex]:
    store = MemoryPeerStore(random.Random(7))
    store.index = SwarmIndex(random.Random(7), journal=True)
    udp = UDPTracker(store, clock=Clock(), rng=random.Random(3))
    udp.transport = _Transport()  # type: ignore[assignment]
    udp.startProtocol()
    return udp, store.index


def feed(receive: Callable[[bytes, Any], None], datagrams: list[bytes], index: Any) -> float:
    start = time.perf_counter()
    for n, datagram in enumerate(datagrams):
        receive(datagram, CLIENT)
        if index is not None and n % 4000 == 0:
            index.take_changes()
    return time.perf_counter() - start


def udp_sides(args: argparse.Namespace) -> tuple[Callable[[], float], Callable[[], float]]:
    udp, index = udp_tracker()
    connection_id = udp._ids.issue(CLIENT[0])
    rng = random.Random(1)
    fixed = args.population == "fixed"
    batches: list[list[bytes]] = []

    def fresh() -> list[bytes]:
        # New announces each round, as the live load's are; the floor gets the same ones.
        return [bl.udp_announce(rng, connection_id, n, fixed) for n in range(args.requests)]

    def floor() -> float:
        batches.append(fresh())
        return feed(UDPFloor(_Socket().sendto).datagramReceived, batches[-1], None)

    def ours() -> float:
        return feed(udp.datagramReceived, batches.pop(), index)

    # The swarms filled as a running tracker's are a few seconds into the load.
    feed(udp.datagramReceived, fresh(), index)
    return floor, ours


# --- the subcommand -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=("http", "udp"), default="http")
    parser.add_argument(
        "--requests", type=int, help="a round [HTTP 20,000, UDP 200,000; 2,000, 5,000 with --quick]"
    )
    bl.option(parser, "--rounds", 5, 2, "rounds")
    parser.add_argument("--mode", default="swarms", choices=("swarms", "one", "alone", "scrape"))
    parser.add_argument("--population", default="churn", choices=("churn", "fixed"))
    parser.add_argument("--profile", action="store_true", help="ours under cProfile instead")


def run(args: argparse.Namespace) -> int:
    args.requests = args.requests or COUNTS[args.protocol][args.quick]
    floor, ours = (http_sides if args.protocol == "http" else udp_sides)(args)
    if args.profile:
        import cProfile
        import pstats

        if args.protocol == "udp":
            floor()  # makes the next batch
        profiler = cProfile.Profile()
        profiler.runcall(ours)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return 0
    rows = []
    for n in range(args.rounds):
        floor_us = floor() / args.requests * 1e6
        ours_us = ours() / args.requests * 1e6
        rows.append([n + 1, round(floor_us, 2), round(ours_us, 2), round(floor_us / ours_us, 3)])
        print(
            f"round {n + 1}: floor {floor_us:.2f} us, ours {ours_us:.2f} us a request;"
            f" ours at {floor_us / ours_us:.2f} of the floor",
            flush=True,
        )
    load = args.mode if args.protocol == "http" else args.population
    last = [row[3] for row in rows[len(rows) // 2 :]]
    report.record(
        args, args.protocol, f"inprocess {load}",
        f"In process, {load}: ours beside the floor",
        [report.table(["round", "floor us", "ours us", "ours / floor"], rows)],
        {"load": load, "requests": args.requests, "rounds": rows},
        [f"{args.requests:,} a round; ours at {statistics.median(last):.2f} of the floor (median"
         " of the later half of the rounds)."],
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit("run it as: python3 bench/run.py inprocess")
