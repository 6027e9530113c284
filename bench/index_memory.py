"""Bytes the swarm index holds per peer, counted by tracemalloc (CPython) rather than read off
the process's RSS: 50,000 peers over 1000 swarms, as the benchmark's memory check uses.

    python3 bench/index_memory.py [--peers N] [--swarms N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402

from tracker.announce import NONE, AnnounceRequest  # noqa: E402
from tracker.swarms import SwarmIndex  # noqa: E402


def requests(peers: int, swarms: int, hashes: list[bytes]) -> Iterator[AnnounceRequest]:
    # One at a time: only what the index keeps of them (peer ids, mostly) stays counted.
    for i in range(peers):
        yield AnnounceRequest(
            hashes[i % swarms], bl.peer_id(i), b"\x7f\x00\x00\x01", bl.peer_port(i),
            0, 0, bl.peer_left(i), NONE, 0, True, False,
        )  # fmt: skip


def measure(peers: int, swarms: int) -> dict[str, float]:
    hashes = [bl.swarm_hash(k) for k in range(swarms)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = SwarmIndex()
    for request in requests(peers, swarms, hashes):
        index.announce(request, 1_000_000)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert index.peer_count() == peers
    return {"peers": peers, "swarms": swarms, "bytes_per_peer": (after - before) / peers}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, default=50_000)
    parser.add_argument("--swarms", type=int, default=1000)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.peers, args.swarms)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
