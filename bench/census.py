"""What the periodic walks over every swarm cost: the count behind /stats and /metrics
(tracker/ops/census.py) and the full scrape's build (tracker/http/fullscrape.py), on an index of
many swarms. Both are generators stepped between turns of the reactor; what matters for announces is
the longest single step (how long the reactor is held at once) and, for the machine, the total.

    python3 bench/census.py [--swarms N] [--peers N] [--rounds N]

Prints, per round, the total work and the longest step of each, and beside them the time a
single uninterrupted pass would hold the reactor (sorting every hash, for the full scrape).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402

from tracker.core.announce import NONE, AnnounceRequest  # noqa: E402
from tracker.core.swarms import SwarmIndex  # noqa: E402
from tracker.http.fullscrape import build  # noqa: E402
from tracker.ops.census import Census, walk  # noqa: E402


def fill(swarms: int, peers: int) -> SwarmIndex:
    index = SwarmIndex()
    hashes = [bl.swarm_hash(k) for k in range(swarms)]
    for i in range(peers):
        index.announce(
            AnnounceRequest(
                hashes[i % swarms], bl.peer_id(i), b"\x7f\x00\x00\x01",
                bl.peer_port(i) % 65535 + 1, 0, 0, bl.peer_left(i), NONE, 0, True, False,
            ),
            1_000_000,
        )  # fmt: skip
    return index


def steps(generator: Iterator[None]) -> tuple[float, float]:
    """Total seconds and the longest step, stepping C{generator} to its end."""
    total = longest = 0.0
    while True:
        began = time.perf_counter()
        try:
            next(generator)
        except StopIteration:
            took = time.perf_counter() - began
            return total + took, max(longest, took)
        took = time.perf_counter() - began
        total += took
        longest = max(longest, took)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--swarms", type=int, default=100_000)
    parser.add_argument("--peers", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    index = fill(args.swarms, args.peers)
    print(f"{sys.implementation.name}: {args.swarms:,} swarms, {args.peers:,} peers", flush=True)
    for n in range(args.rounds):
        into: list[Census] = []
        census_total, census_step = steps(walk(index, 20, into))
        plain: list[bytes] = []
        gzipped: list[bytes] = []
        scrape_total, scrape_step = steps(build(index, plain, gzipped))
        began = time.perf_counter()
        sorted(index.swarms)
        sort_all = time.perf_counter() - began
        print(
            f"round {n + 1}: census {census_total * 1e3:.1f} ms of work, longest step "
            f"{census_step * 1e3:.2f} ms; full scrape {scrape_total * 1e3:.1f} ms, longest step "
            f"{scrape_step * 1e3:.2f} ms, {sum(map(len, plain)) / 1e6:.1f} MB, gzipped "
            f"{sum(map(len, gzipped)) / 1e6:.1f} MB; "
            f"sorting every hash at once {sort_all * 1e3:.1f} ms",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
