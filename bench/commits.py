"""What a group commit costs with each commit waiting for its fsync (synchronous=FULL, the
store's setting) beside SQLite's NORMAL, in one process, in turns.

    python3 bench/commits.py [--seconds 5] [--rate 10000] [--rounds 3] [--dir DIR]

Each turn starts a fresh SQLite store on a file in DIR (by default the system's temporary
folder: use a folder on the disk the tracker's database would live on), announces to it at
--rate announces a second (a population of 50,000 peers over 1000 swarms, as bench/inprocess.py)
for --seconds, stops it, and reads its commit meter: commits made, their mean duration (from
handing the changes to the database thread until they are committed), and the mean bytes
written. Announces are answered from memory either way; only the database thread waits for the
fsync. Turns alternate NORMAL, FULL, FULL, NORMAL, ... so that the drift of a shared machine
mostly cancels; the figure is FULL's mean commit duration over NORMAL's, per pair of turns.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, inlineCallbacks  # noqa: E402
from twisted.internet.task import LoopingCall, deferLater  # noqa: E402

from tracker.core.announce import NONE, AnnounceRequest  # noqa: E402
from tracker.store import schema  # noqa: E402
from tracker.store import sqlite as sqlite_store  # noqa: E402
from tracker.store.sqlite import SQLitePeerStore  # noqa: E402

PEERS = 50_000
SWARMS = 1000
#: Announces are sent in bursts this often, as a busy tracker takes them between commits.
BURST_EVERY = 0.01


def connect_with(synchronous: str) -> Any:
    def connect(path: str) -> sqlite3.Connection:
        connection = schema.connect(path)
        connection.execute(f"PRAGMA synchronous={synchronous}").fetchall()
        return connection

    return connect


@inlineCallbacks
def turn(synchronous: str, folder: Path, seconds: float, rate: int) -> Any:
    """One store, fed for C{seconds}; its commits' count, mean seconds and mean bytes."""
    path = folder / f"commits-{synchronous.lower()}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")
    sqlite_store.connect = connect_with(synchronous)
    store = SQLitePeerStore(str(path), reactor)
    yield store.start()
    rng = random.Random(7)
    burst = max(1, int(rate * BURST_EVERY))
    now = int(time.time())

    def send() -> None:
        for _ in range(burst):
            i = rng.randrange(PEERS)
            store.announce(
                AnnounceRequest(
                    bl.swarm_hash(i % SWARMS), bl.peer_id(i), b"\x7f\x00\x00\x01",
                    bl.peer_port(i) % 65535 + 1, 0, 0, bl.peer_left(i), NONE, 0, True, False,
                ),
                now,
            )  # fmt: skip

    loop = LoopingCall(send)
    loop.start(BURST_EVERY)
    yield deferLater(reactor, seconds, lambda: None)
    loop.stop()
    yield store.stop()
    commits = store.commits
    count = commits.latency.count
    return count, commits.latency.total / count, commits.size.total / count


@inlineCallbacks
def main(args: argparse.Namespace) -> Any:
    folder = Path(tempfile.mkdtemp(prefix="bench-commits-", dir=args.dir))
    ratios = []
    try:
        for round_ in range(args.rounds):
            order = ("NORMAL", "FULL") if round_ % 2 == 0 else ("FULL", "NORMAL")
            figures = {}
            for synchronous in order:
                figures[synchronous] = yield turn(synchronous, folder, args.seconds, args.rate)
            for synchronous in order:
                count, mean, size = figures[synchronous]
                print(
                    f"round {round_ + 1} {synchronous:6}: {count} commits,"
                    f" {mean * 1000:.2f} ms each, {size / 1024:.1f} KiB each"
                )
            ratio = figures["FULL"][1] / figures["NORMAL"][1]
            ratios.append(ratio)
            print(f"round {round_ + 1} FULL / NORMAL mean commit duration: {ratio:.2f}")
        print(f"median FULL / NORMAL: {statistics.median(ratios):.2f} (on {folder.parent})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    done: Deferred[Any] = main(args)
    done.addErrback(lambda failure: failure.printTraceback())
    done.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    run()
