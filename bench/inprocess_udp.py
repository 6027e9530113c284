"""The UDP announce path's cost without the kernel: datagrams handed to UDPTracker's
datagramReceived, replies to a socket stand-in that drops them.

    python bench/inprocess_udp.py [--requests N] [--rounds N]

The announces are bench/tracker.lua's mix (a population of 50,000 peers over 1000 swarms, from
64 client addresses). Prints microseconds per datagram, per round. There is no floor beside it:
a DatagramProtocol that does nothing costs too little here to measure drift by; compare runs in
turns instead (bench/ab.py).
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

from tracker.config import TrackerConfig  # noqa: E402
from tracker.store.memory import MemoryPeerStore  # noqa: E402
from tracker.udp import PROTOCOL_ID, UDPTracker  # noqa: E402

CLIENTS = 64
SWARMS = 1000
POPULATION = 50_000
_ANNOUNCE = struct.Struct("!8s4s4s20s20sqqqi4sIiH")
_EVENTS = {"started": 2, "completed": 1, "stopped": 3}


class _Socket:
    """What startProtocol takes the sendto of: drops every reply."""

    def sendto(self, data: bytes, addr: Any) -> int:
        return len(data)


class _Transport:
    def getHandle(self) -> _Socket:
        return _Socket()

    def write(self, data: bytes, addr: Any) -> None:
        pass


def datagrams(count: int, ids: dict[str, bytes], seed: int = 1) -> list[tuple[bytes, Any]]:
    rng = random.Random(seed)
    hashes = [bl.swarm_hash(k) for k in range(SWARMS)]
    hosts = list(ids)
    out = []
    for _ in range(count):
        i = rng.randrange(POPULATION)
        r = rng.random()
        event, left = 0, bl.peer_left(i)
        if r < 0.05:
            event = _EVENTS["started"]
        elif r < 0.07:
            event, left = _EVENTS["completed"], 0
        elif r < 0.10:
            event = _EVENTS["stopped"]
        host = hosts[i % len(hosts)]
        data = _ANNOUNCE.pack(
            ids[host], b"\x00\x00\x00\x01", b"TXID", hashes[rng.randrange(SWARMS)], bl.peer_id(i),
            0, left, 0, event, b"\x00" * 4, 0, 50, bl.peer_port(i) % 65535 + 1,
        )  # fmt: skip
        out.append((data, (host, 6881)))
    return out


def send(protocol: DatagramProtocol, batch: list[tuple[bytes, Any]]) -> float:
    receive = protocol.datagramReceived
    started = time.perf_counter()
    for data, addr in batch:
        receive(data, addr)
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    clock = Clock()
    clock.advance(1_000_000)
    ours = UDPTracker(MemoryPeerStore(), TrackerConfig(), clock)
    ours.transport = _Transport()  # type: ignore[assignment]
    ours.startProtocol()
    # Connection IDs as the clients would get them from a connect.
    ids = {}
    replies: list[bytes] = []
    ours._sendto = lambda data, addr: replies.append(data)
    for n in range(CLIENTS):
        host = f"10.0.{n // 250}.{n % 250 + 1}"
        ours.datagramReceived(PROTOCOL_ID + b"\x00\x00\x00\x00" + b"CONN", (host, 6881))
        ids[host] = replies[-1][8:16]
    ours.startProtocol()
    batch = datagrams(args.requests, ids)
    send(ours, batch)  # fill the swarms
    for n in range(args.rounds):
        ours_us = send(ours, batch) / len(batch) * 1e6
        print(f"round {n + 1}: ours {ours_us:.2f} us/request", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
