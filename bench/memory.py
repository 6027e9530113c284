"""Bytes the swarm index holds per peer, and what private mode keeps per peer beyond it,
counted by the interpreter rather than read off a process's RSS.

    python3 bench/run.py memory [--peers N] [--private-peers N] [--json]

The index: N peers over 1000 swarms. CPython counts with tracemalloc; under PyPy, which has no
tracemalloc, it is the growth of the process's resident memory between two full collections,
which leaves out the garbage a serving tracker's heap also holds between collections.

Private mode (CPython only): N peers announce twice each, reporting growing totals, to our
site without access control and to our site in private mode (1000 passkeys, as in `access`);
the figure is the difference of the bytes each site holds afterwards, per peer: the crediting
state (each peer's last report) and anything else private mode keeps.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys

import access
import benchlib as bl
import inprocess as ip
import report

from tracker.core.swarms import SwarmIndex


def _used() -> int:
    if sys.implementation.name == "pypy":
        gc.collect()
        gc.collect()
        return bl.status_kib("self", "VmRSS") * 1024
    import tracemalloc

    return int(tracemalloc.get_traced_memory()[0])


def index_bytes_per_peer(peers: int, swarms: int) -> float:
    if sys.implementation.name != "pypy":
        import tracemalloc

        tracemalloc.start()
    before = _used()
    index = bl.fill_index(SwarmIndex(), peers, swarms)
    after = _used()
    assert index.peer_count() == peers
    if sys.implementation.name != "pypy":
        tracemalloc.stop()
    return (after - before) / peers


def held_per_peer(private: bool, peers: int) -> float:
    """Bytes a site holds per peer after every peer announced twice."""
    import tracemalloc

    tracemalloc.start()
    connections = ip.Connections(access.gated_site("private") if private else ip.our_site())
    # Every peer once, in the load's swarms.
    requests = [
        ip.get_request(bl.announce_path(bl.swarm_hash(k % bl.SWARMS), k, numwant=0))
        for k in range(peers)
    ]
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for turn in (1, 2):
        batch = access.with_totals(requests, turn)
        connections.send(access.with_passkeys(batch) if private else batch)
    for _, transport in connections.channels:
        transport.clear()
    del batch
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / peers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    bl.option(parser, "--peers", 500_000, 5_000, "peers in the index")
    parser.add_argument("--swarms", type=int, default=bl.SWARMS)
    bl.option(parser, "--private-peers", 50_000, 2_000, "peers for private mode (0: skip it)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    figures: dict[str, float] = {"peers": args.peers}
    figures["index_bytes_per_peer"] = index = index_bytes_per_peer(args.peers, args.swarms)
    rows = [[f"the index, {args.peers:,} peers over {args.swarms:,} swarms", index]]
    if args.private_peers and sys.implementation.name == "cpython":
        public = held_per_peer(False, args.private_peers)
        private = held_per_peer(True, args.private_peers)
        figures.update(private_peers=args.private_peers, public=public, private=private)
        rows += [
            [f"our site, {args.private_peers:,} peers announced twice", public],
            ["the same in private mode", private],
            ["private mode's own", private - public],
        ]
    elif args.private_peers:
        print("private mode's bytes are counted with tracemalloc: run it under CPython")
    if args.json:
        print(json.dumps(figures))
        return 0
    for what, value in rows:
        print(f"{what}: {value:.0f} bytes per peer")
    report.record(
        args, "http", "memory", "Memory, counted",
        [report.table(["what", "bytes per peer"], rows)], figures,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit("run it as: python3 bench/run.py memory")
