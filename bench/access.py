"""What access lists and private mode cost an announce, in process, against ours without.

    python bench/access.py [--pairs N] [--requests N]

The request mix of bench/inprocess.py (announces by 50,000 peers into 1000 swarms, reporting
growing totals as clients moving data do) is sent in turns to our site without access control
and to our site with a whitelist (every swarm of the mix among 100,000 listed torrents), a
blacklist (100,000 other torrents) and in private mode (each peer at /<passkey>/announce with
one of 1000 passkeys, so that every announce is credited). Each turn is timed in CPU time of
this process, so that a machine shared with other work does not count its own time against
either; the figure is the median over the pairs of (with / without), the cost of the feature as
a ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import inprocess as ip  # noqa: E402

KINDS = ("whitelist", "blacklist", "private")


def cpu_per_request(connections: ip.Connections, batch: list[bytes]) -> float:
    started = time.process_time()
    connections.send(batch)
    return (time.process_time() - started) / len(batch) * 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args(argv)
    if args.pairs < 2:
        parser.error("--pairs must be at least 2, for the quartiles")
    requests = ip.requests("swarms", args.requests)
    plain = ip.Connections(ip.our_site())
    sites = {kind: ip.Connections(ip.gated_site(kind)) for kind in KINDS}
    ratios: dict[str, list[float]] = {kind: [] for kind in KINDS}
    plain_us: list[float] = []
    for turn in range(args.pairs + 1):
        # Every side gets the same totals, grown since the last turn: what differs is the
        # access control alone, and private mode credits every announce.
        batch = ip.with_totals(requests, turn)
        private_batch = ip.with_passkeys(batch)
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
    for kind in KINDS:
        values = sorted(ratios[kind])
        quartiles = statistics.quantiles(values, n=4)
        print(
            f"{kind}: {statistics.median(values):.3f} x ours (quartiles {quartiles[0]:.3f}"
            f" - {quartiles[2]:.3f}, {len(values)} pairs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
