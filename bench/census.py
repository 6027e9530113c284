"""What the periodic walks over every swarm cost: the count behind /stats and /metrics
(tracker/ops/census.py) and the full scrape's build (tracker/http/fullscrape.py), on an index of
many swarms. Both are generators stepped between turns of the reactor; what matters for
announces is the longest single step (how long the reactor is held at once) and, for the
machine, the total.

    python3 bench/run.py census [--swarms N] [--peers N] [--rounds N]

Prints, per round, the total work and the longest step of each, and beside them the time a
single uninterrupted pass would hold the reactor (sorting every hash, for the full scrape).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

import benchlib as bl
import report

from tracker.core.swarms import SwarmIndex
from tracker.http.fullscrape import build
from tracker.ops.census import Census, walk


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    bl.option(parser, "--swarms", 100_000, 1_000, "swarms")
    bl.option(parser, "--peers", 1_000_000, 10_000, "peers over them")
    bl.option(parser, "--rounds", 5, 1, "rounds")


def run(args: argparse.Namespace) -> int:
    index = bl.fill_index(SwarmIndex(), args.peers, args.swarms)
    print(f"{sys.implementation.name}: {args.swarms:,} swarms, {args.peers:,} peers", flush=True)
    rows = []
    for n in range(args.rounds):
        into: list[Census] = []
        census_total, census_step = steps(walk(index, 20, into))
        plain: list[bytes] = []
        gzipped: list[bytes] = []
        scrape_total, scrape_step = steps(build(index, plain, gzipped))
        began = time.perf_counter()
        sorted(index.swarms)
        sort_all = time.perf_counter() - began
        rows.append([
            n + 1, census_total * 1e3, census_step * 1e3, scrape_total * 1e3, scrape_step * 1e3,
            sum(map(len, plain)) / 1e6, sum(map(len, gzipped)) / 1e6, sort_all * 1e3,
        ])  # fmt: skip
        print(
            f"round {n + 1}: census {census_total * 1e3:.1f} ms of work, longest step "
            f"{census_step * 1e3:.2f} ms; full scrape {scrape_total * 1e3:.1f} ms, longest step "
            f"{scrape_step * 1e3:.2f} ms, {sum(map(len, plain)) / 1e6:.1f} MB, gzipped "
            f"{sum(map(len, gzipped)) / 1e6:.1f} MB; "
            f"sorting every hash at once {sort_all * 1e3:.1f} ms",
            flush=True,
        )
    head = ["round", "census ms", "its longest step ms", "full scrape ms",
            "its longest step ms", "MB", "gzipped MB", "sorting every hash at once ms"]  # fmt: skip
    report.record(
        args, "http", "census", "The walks over every swarm",
        [report.table(head, rows)], {"swarms": args.swarms, "peers": args.peers, "rounds": rows},
        [f"{args.swarms:,} swarms, {args.peers:,} peers."],
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit("run it as: python3 bench/run.py census")
