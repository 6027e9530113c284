"""Time from starting our tracker on a database of 1,000,000 stored peers to its first answer.

The database is filled with what a checkpoint of the tracker's own index writes (its journal
format, through its own schema), then the tracker is started and announced to every 20 ms until
an announce succeeds. See README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import benchlib as bl

sys.path.insert(0, str(bl.REPO_DIR))
from tracker.core.announce import NONE, AnnounceRequest  # noqa: E402
from tracker.core.swarms import SwarmIndex  # noqa: E402
from tracker.store.schema import connect  # noqa: E402

TRACKER_CORE = 0
#: The peer that announces after the restart: new to its swarm, with a valid port.
NEWCOMER = 55_000


def fill(database: Path, peers: int, swarms: int) -> float:
    """Store C{peers} peers spread over C{swarms} torrents; returns the seconds it took."""
    started = time.monotonic()
    now = int(time.time())
    index = SwarmIndex(journal=True)
    for i in range(peers):
        index.announce(
            AnnounceRequest(
                bl.swarm_hash(i % swarms), bl.peer_id(i), b"\x7f\x00\x00\x01",
                bl.peer_port(i) % 65535 + 1, 0, 0, bl.peer_left(i), NONE, 0, True, False,
            ),
            now,
        )  # fmt: skip
    # One checkpoint's worth of journal: the whole index.
    index.take_changes()
    for _ in index.checkpoint([0]):
        pass
    records = b"".join(index.take_changes())
    connection = connect(str(database))
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO journal (seq, records) VALUES (1, ?)", (records,))
        connection.execute("COMMIT")
        # What a tracker that was stopped cleanly leaves behind: everything checkpointed.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        connection.close()
    return time.monotonic() - started


async def first_answer(port: int, path: str, deadline: float) -> float:
    """Seconds until an announce succeeds, polling every 20 ms."""
    while time.monotonic() < deadline:
        try:
            status, body = await bl.fetch(port, path, timeout=5.0)
            if status == 200 and b"failure reason" not in body:
                return time.monotonic()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass
        await asyncio.sleep(0.02)
    raise RuntimeError("no successful announce before the deadline")


def measure(interpreter: str, database: Path, swarms: int, workdir: Path) -> float:
    port = bl.free_port()
    path = bl.announce_path(bl.swarm_hash(swarms // 2), NEWCOMER, "started")
    cmd = bl.ours_command(interpreter, port, database, [])
    started = time.monotonic()
    proc = bl.start_process(cmd, workdir / "tracker.log", TRACKER_CORE, bl.REPO_DIR)
    try:
        answered = asyncio.run(first_answer(port, path, started + 60))
    finally:
        bl.stop_process(proc)
    return answered - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, default=1_000_000)
    parser.add_argument("--swarms", type=int, default=1000)
    parser.add_argument(
        "--interpreters", default="python3," + str(bl.REPO_DIR / ".venv-pypy/bin/python")
    )
    parser.add_argument(
        "--database", type=Path, help="reuse this filled database (filled first if missing)"
    )
    parser.add_argument("--runs", type=int, default=3, help="restarts per interpreter")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory(prefix="trackerrestart-") as tmp:
        workdir = Path(tmp)
        database = args.database or workdir / "db.sqlite3"
        if not database.exists():
            seconds = fill(database, args.peers, args.swarms)
            print(f"filled {args.peers:,} peers in {args.swarms} swarms in {seconds:.1f} s")
        size = database.stat().st_size
        print(f"database: {size / args.peers:.1f} bytes per stored peer", flush=True)
        for interpreter in (i for i in args.interpreters.split(",") if i):
            times = [measure(interpreter, database, args.swarms, workdir) for _ in range(args.runs)]
            shown = ", ".join(f"{t:.2f}" for t in times)
            print(f"{interpreter}: first announce after {min(times):.2f} s (runs: {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
