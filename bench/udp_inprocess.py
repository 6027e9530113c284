"""The UDP announce path's cost without the kernel: datagrams fed straight to UDPTracker, in one
process, beside a bare DatagramProtocol that answers every announce with a fixed 50-peer reply
(the UDP floor).

    python bench/udp_inprocess.py [--datagrams N] [--rounds N] [--profile]

The datagrams are udpload.c's mix (bench/udp.py): announces by a population of 50,000 peers into
1000 swarms, 5 % started, 2 % completed, 3 % stopped, numwant 50, new ones each round so that, as
under the real load, most announce a peer new to its swarm. The index keeps its journal,
taken away every 4,000 datagrams as the SQLite store's group commit does (the database thread's
own work is not counted). Prints microseconds per datagram for the floor and ours, per round;
PyPy needs a few rounds to warm up. --profile runs ours under cProfile instead.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402
from twisted.internet.protocol import DatagramProtocol  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from udp import udp_swarm_hash  # noqa: E402

from tracker.core.swarms import SwarmIndex  # noqa: E402
from tracker.store.memory import MemoryPeerStore  # noqa: E402
from tracker.udp.protocol import ANNOUNCE, UDPTracker  # noqa: E402

SWARMS = 1000
POPULATION = 50_000
CLIENT = ("127.0.0.1", 40000)
_EVENTS = ((0.05, 2), (0.07, 1), (0.10, 3))


def announce(
    rng: random.Random, connection_id: bytes, transaction: int, fixed: bool = False
) -> bytes:
    """One announce as udpload.c builds it; C{fixed}: its "fixed" population, where peer i
    always announces into swarm i % SWARMS."""
    i = rng.randrange(POPULATION)
    swarm = i % SWARMS if fixed else rng.randrange(SWARMS)
    roll = rng.random()
    event = next((code for limit, code in _EVENTS if roll < limit), 0)
    left = 0 if (i % 10 < 3 or event == 1) else 1_000_000 + (i % 1000) * 4096
    return connection_id + struct.pack(
        "!4sI20s20sqqqI4sIiH",
        ANNOUNCE,
        transaction,
        udp_swarm_hash(swarm),
        bl.peer_id(i),
        0,
        left,
        0,
        event,
        b"\0\0\0\0",
        bl.peer_key(i),
        50,
        bl.peer_port(i),
    )


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


class Floor(DatagramProtocol):
    """A fixed 50-peer announce reply to every datagram, through the same raw sendto."""

    def __init__(self, sendto: Any) -> None:
        self._sendto = sendto
        self._reply = struct.pack("!4s4siii", ANNOUNCE, b"\0" * 4, 1800, 10, 10) + b"\1" * 300

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self._sendto(self._reply[:4] + data[12:16] + self._reply[8:], addr)


def tracker() -> tuple[UDPTracker, SwarmIndex]:
    store = MemoryPeerStore(random.Random(7))
    store.index = SwarmIndex(random.Random(7), journal=True)
    udp = UDPTracker(store, clock=Clock(), rng=random.Random(3))
    udp.transport = _Transport()  # type: ignore[assignment]
    udp.startProtocol()
    return udp, store.index


def feed(receive: Any, datagrams: list[bytes], index: SwarmIndex | None) -> float:
    start = time.perf_counter()
    for n, datagram in enumerate(datagrams):
        receive(datagram, CLIENT)
        if index is not None and n % 4000 == 0:
            index.take_changes()
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datagrams", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--population", choices=("churn", "fixed"), default="churn")
    args = parser.parse_args(argv)
    udp, index = tracker()
    connection_id = udp._ids.issue(CLIENT[0])
    rng = random.Random(1)

    def fresh() -> list[bytes]:
        # New announces each time, as the load's are (with churn, mostly peers new to their
        # swarm).
        fixed = args.population == "fixed"
        return [announce(rng, connection_id, n, fixed) for n in range(args.datagrams)]

    # The swarms filled as a running tracker's are a few seconds into the load.
    feed(udp.datagramReceived, fresh(), index)
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(feed, udp.datagramReceived, fresh(), index)
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)
        return 0
    floor = Floor(_Socket().sendto)
    for r in range(args.rounds):
        datagrams = fresh()
        floor_s = feed(floor.datagramReceived, datagrams, None)
        ours_s = feed(udp.datagramReceived, datagrams, index)
        per = 1e6 / len(datagrams)
        print(
            f"round {r + 1}: floor {floor_s * per:.2f} us, ours {ours_s * per:.2f} us "
            f"per datagram; peers {index.peer_count()}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
