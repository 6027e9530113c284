"""Time from starting our tracker on a database of 1,000,000 stored peers to its first answer.

    python3 bench/run.py restart [--peers N] [--runs N] [--database PATH]
                                 [--interpreters python3,pypy3-venv]

The database is filled with what a checkpoint of the tracker's own index writes (its journal
format, through its own schema, so the counting triggers run), then the tracker is started on
it, pinned to core 0, and announced to every 20 ms until an announce succeeds. Reports the time
from process start to that first answer, and the database bytes per stored peer. --database
PATH keeps the filled file for later runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import benchlib as bl
import report

from tracker.core.swarms import SwarmIndex
from tracker.store.schema import connect

#: The peer that announces after the restart: new to its swarm, with a valid port.
NEWCOMER = 55_000


def fill(database: Path, peers: int, swarms: int) -> float:
    """Store C{peers} peers spread over C{swarms} torrents; returns the seconds it took."""
    started = time.monotonic()
    index = bl.fill_index(SwarmIndex(journal=True), peers, swarms, int(time.time()))
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
    """The time an announce first succeeds, polling every 20 ms."""
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
    proc = bl.start_process(cmd, workdir / "tracker.log", bl.TRACKER_CORE, bl.REPO_DIR)
    try:
        answered = asyncio.run(first_answer(port, path, started + 60))
    finally:
        bl.stop_process(proc)
    return answered - started


def add_arguments(parser: argparse.ArgumentParser) -> None:
    bl.option(parser, "--peers", 1_000_000, 20_000, "stored peers")
    parser.add_argument("--swarms", type=int, default=bl.SWARMS)
    parser.add_argument("--interpreters", default="python3,pypy3-venv")
    parser.add_argument("--database", type=Path, help="reuse this file (filled first if missing)")
    bl.option(parser, "--runs", 3, 1, "restarts per interpreter")


def run(args: argparse.Namespace) -> int:
    bl.pin_self()
    rows = []
    with tempfile.TemporaryDirectory(prefix="trackerrestart-") as tmp:
        workdir = Path(tmp)
        database = args.database or workdir / "db.sqlite3"
        if not database.exists():
            seconds = fill(database, args.peers, args.swarms)
            print(f"filled {args.peers:,} peers in {args.swarms} swarms in {seconds:.1f} s")
        per_peer = database.stat().st_size / args.peers
        print(f"database: {per_peer:.1f} bytes per stored peer", flush=True)
        for name in (i for i in args.interpreters.split(",") if i):
            interpreter = bl.interpreter_path(name)
            reason = bl.interpreter_ready(interpreter)
            if reason is not None:
                print(f"skipping {name}: {reason}", flush=True)
                continue
            times = [measure(interpreter, database, args.swarms, workdir) for _ in range(args.runs)]
            shown = ", ".join(f"{t:.2f}" for t in times)
            print(f"{name}: first announce after {min(times):.2f} s (runs: {shown})", flush=True)
            rows.append([name, min(times), shown])
    report.record(
        args, "http", "restart", "Restart on a big file",
        [report.table(["interpreter", "first announce after, s (best)", "each run, s"], rows)],
        {"peers": args.peers, "bytes_per_peer": per_peer, "rows": rows},
        [f"{args.peers:,} peers over {args.swarms:,} swarms; the file holds {per_peer:.1f} bytes"
         " per stored peer."],
        per_interpreter=False,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit("run it as: python3 bench/run.py restart")
