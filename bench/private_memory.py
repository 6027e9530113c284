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
from urllib.parse import quote_from_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import inprocess as ip  # noqa: E402

from tracker.config import TrackerConfig  # noqa: E402
from tracker.resource import TrackerResource  # noqa: E402
from tracker.site import TrackerSite  # noqa: E402
from tracker.store.memory import MemoryPeerStore  # noqa: E402

_ANNOUNCE = (
    b"GET /announce?info_hash=%s&peer_id=%s&port=%d&uploaded=%d&downloaded=%d&left=5"
    b"&compact=1&numwant=0 HTTP/1.1\r\nHost: bench\r\n\r\n"
)


def announces(peers: int, round: int) -> list[bytes]:
    batch = []
    for k in range(peers):
        info_hash = quote_from_bytes(b"%020d" % (k % 1000)).encode()
        peer_id = quote_from_bytes(b"-BM0001-%012d" % k).encode()
        moved = (k + 1) * round
        batch.append(_ANNOUNCE % (info_hash, peer_id, 1024 + k % 60000, moved * 7, moved * 3))
    return batch


def held_per_peer(private: bool, peers: int) -> float:
    """Bytes a site holds per peer after every peer announced twice."""
    tracemalloc.start()
    if private:
        site = ip.gated_site("private")
    else:
        site = TrackerSite(TrackerResource(MemoryPeerStore(), TrackerConfig()))
    connections = ip.Connections(site)
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for round in (1, 2):
        batch = announces(peers, round)
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
