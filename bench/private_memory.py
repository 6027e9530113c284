"""What private mode keeps per peer beyond a public tracker, counted with tracemalloc (CPython).

    python3 bench/private_memory.py [--peers N]

N peers (default 50,000, over 1000 swarms) announce twice each, reporting growing totals, to
our site without access control and to our site in private mode (1000 passkeys, as
bench/access.py); the figure is the difference of the bytes each site holds afterwards, per
peer: the crediting state (each peer's last report) and anything else private mode keeps.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402
import inprocess as ip  # noqa: E402


def held_per_peer(private: bool, peers: int) -> float:
    """Bytes a site holds per peer after every peer announced twice."""
    tracemalloc.start()
    connections = ip.Connections(ip.gated_site("private") if private else ip.our_site())
    # Every peer once, in the swarms of bench/access.py.
    requests = [
        ip.get_request(bl.announce_path(bl.swarm_hash(k % ip.SWARMS), k, numwant=0))
        for k in range(peers)
    ]
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for turn in (1, 2):
        batch = ip.with_totals(requests, turn)
        connections.send(ip.with_passkeys(batch) if private else batch)
    for _, transport in connections.channels:
        transport.clear()
    del batch
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / peers


def main(argv: list[str]) -> int:
    if sys.implementation.name != "cpython":
        sys.exit("bench/private_memory.py counts with tracemalloc: run it under CPython")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, default=50_000)
    args = parser.parse_args(argv)
    public = held_per_peer(False, args.peers)
    private = held_per_peer(True, args.peers)
    print(
        f"{args.peers} peers: public {public:.0f} B/peer, private {private:.0f} B/peer;"
        f" private mode keeps {private - public:.0f} B/peer more"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
