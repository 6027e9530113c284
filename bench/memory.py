"""Bytes the swarm index holds per peer, counted by the interpreter rather than read off the
process's RSS: 50,000 peers over 1000 swarms, as the benchmark's memory check uses. CPython
counts with tracemalloc; under PyPy, which has no tracemalloc, it is the growth of the process's
resident memory between two full collections, which leaves out the garbage a serving tracker's
heap also holds between collections.

    python3 bench/index_memory.py [--peers N] [--swarms N]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402

from tracker.core.announce import NONE, AnnounceRequest  # noqa: E402
from tracker.core.swarms import SwarmIndex  # noqa: E402


def requests(peers: int, swarms: int, hashes: list[bytes]) -> Iterator[AnnounceRequest]:
    # One at a time: only what the index keeps of them (peer ids, mostly) stays counted.
    for i in range(peers):
        yield AnnounceRequest(
            hashes[i % swarms], bl.peer_id(i), b"\x7f\x00\x00\x01", bl.peer_port(i) % 65535 + 1,
            0, 0, bl.peer_left(i), NONE, 0, True, False,
        )  # fmt: skip


def _used() -> int:
    if sys.implementation.name == "pypy":
        gc.collect()
        gc.collect()
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/self/status")
    import tracemalloc

    return int(tracemalloc.get_traced_memory()[0])


def measure(peers: int, swarms: int) -> dict[str, float]:
    hashes = [bl.swarm_hash(k) for k in range(swarms)]
    if sys.implementation.name != "pypy":
        import tracemalloc

        tracemalloc.start()
    before = _used()
    index = SwarmIndex()
    for request in requests(peers, swarms, hashes):
        index.announce(request, 1_000_000)
    after = _used()
    assert index.peer_count() == peers
    return {
        "interpreter": sys.implementation.name,
        "peers": peers,
        "swarms": swarms,
        "bytes_per_peer": (after - before) / peers,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, default=50_000)
    parser.add_argument("--swarms", type=int, default=1000)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.peers, args.swarms)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
