"""How long a new client waits for its announce while 300 connections flood the tracker.

For each interpreter, our tracker runs alone on core 0; the flood and the probes run on core 1.
The flood is tests/flooder.py: CONNECTIONS connections, each writing pipelined announces as fast
as the tracker reads them and throwing the replies away. A probe is a newcomer: a new
connection, one announce with Connection: close, timed from connect() to the last byte of the
reply. PROBES probes, 0.1 s apart, are timed on the idle tracker and then under the flood, in
the same run, after a warm-up flood: the median, the 99th percentile and the slowest of each,
the flood's median over the idle one, and about how many announces a second the flood got
answered.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib as bl
import report

FLOODER = bl.REPO_DIR / "tests" / "flooder.py"
#: A probe not answered by then counts as this long.
PROBE_TIMEOUT = 10.0
PROBE_GAP = 0.1
WARMUP_SECONDS = 8.0
NEWCOMER = 50000


async def probe(port: int, n: int) -> float:
    """Seconds a new connection waits for the answer to one announce."""
    path = bl.announce_path(bl.named_hash("newcomer"), NEWCOMER + n % 1000)
    started = time.monotonic()
    try:
        status, body = await bl.fetch(port, path, timeout=PROBE_TIMEOUT)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
        return PROBE_TIMEOUT
    if status != 200 or b"interval" not in body:
        raise RuntimeError(f"probe {n}: {status} {body[:200]!r}")
    return time.monotonic() - started


async def probe_all(port: int, count: int) -> list[float]:
    waits = []
    for n in range(count):
        waits.append(await probe(port, n))
        await asyncio.sleep(PROBE_GAP)
    return waits


def probes(port: int, count: int) -> list[float]:
    return asyncio.run(probe_all(port, count))


def settle(port: int, within: float = 60.0) -> None:
    """Wait until the tracker has answered what the warm-up left it (its flood's connections
    may have gone, but the requests they sent are answered yet) and is idle."""
    deadline = time.monotonic() + within
    while asyncio.run(probe(port, 0)) > 0.05:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the tracker was still busy {within:.0f} s after the warm-up")
        time.sleep(0.5)
    time.sleep(1.0)


def start_flood(
    interpreter: str, port: int, connections: int, seconds: float
) -> subprocess.Popen[str]:
    flooder = subprocess.Popen(
        [interpreter, str(FLOODER), str(port), str(connections), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert flooder.stdout is not None
    if flooder.stdout.readline() != "ready\n":
        raise RuntimeError("the flooder could not open its connections")
    return flooder


def end_flood(flooder: subprocess.Popen[str]) -> dict[str, int]:
    out, _ = flooder.communicate(timeout=60)
    figures = {}
    for line in out.splitlines():
        name, _, value = line.partition(" ")
        if value.isdigit():
            figures[name] = int(value)
    return figures


def summary(waits: list[float]) -> dict[str, float]:
    ordered = sorted(waits)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"median": statistics.median(ordered), "p99": p99, "max": ordered[-1]}


def run_one(interpreter: str, workdir: Path, connections: int, count: int) -> list[Any]:
    """A row of figures: idle and flooded median, p99 and max in ms, their ratio, the flood's
    answered announces a second."""
    port = bl.free_port()
    cmd = bl.with_nursery(bl.ours_command(interpreter, port, workdir / f"{port}.sqlite3", []))
    tracker = bl.start_process(cmd, workdir / "tracker.log", bl.TRACKER_CORE, bl.REPO_DIR)
    try:
        bl.wait_for_port(port, tracker)
        # The flood's own code runs on the interpreter that runs this script.
        end_flood(start_flood(sys.executable, port, connections, WARMUP_SECONDS))
        settle(port)
        idle = summary(probes(port, count))
        # Ended by SIGTERM once the probes are done.
        flooder = start_flood(sys.executable, port, connections, 3600)
        time.sleep(1.0)
        flooded = summary(probes(port, count))
        flooder.terminate()
        figures = end_flood(flooder)
        if tracker.poll() is not None:
            raise RuntimeError(f"the tracker exited with code {tracker.returncode}")
    finally:
        bl.stop_process(tracker)
    rate = figures.get("replies", 0) / max(figures.get("milliseconds", 0), 1) * 1000
    return [
        *(idle[k] * 1000 for k in ("median", "p99", "max")),
        *(flooded[k] * 1000 for k in ("median", "p99", "max")),
        flooded["median"] / idle["median"],
        rate,
        figures.get("closed", 0),
    ]


HEAD = [
    "interpreter", "idle median, ms", "idle p99", "idle max", "flooded median, ms",
    "flooded p99", "flooded max", "flooded / idle (median)", "flood answered, /s",
    "flooders closed",
]  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interpreters", default="python3,pypy3-venv")
    parser.add_argument("--connections", type=int, default=300, help="flooding connections")
    bl.option(parser, "--probes", 100, 10, "newcomers timed, idle and under the flood")


def run(args: argparse.Namespace) -> int:
    bl.pin_self()
    rows = []
    status = 0
    with tempfile.TemporaryDirectory(prefix="trackerflood-") as tmp:
        for name in (i for i in args.interpreters.split(",") if i):
            interpreter = bl.interpreter_path(name)
            reason = bl.interpreter_ready(interpreter)
            if reason is not None:
                print(f"skipping {name}: {reason}", flush=True)
                status = 1
                continue
            row = [name, *run_one(interpreter, Path(tmp), args.connections, args.probes)]
            print(
                f"{name}: newcomer idle median {row[1]:.1f} ms, p99 {row[2]:.1f} ms; among"
                f" {args.connections} flooding connections median {row[4]:.1f} ms, p99"
                f" {row[5]:.1f} ms, max {row[6]:.1f} ms ({row[7]:.0f}x idle); the flood"
                f" answered at about {row[8]:.0f} announces/s, {row[9]} flooders closed",
                flush=True,
            )
            rows.append(row)
    report.record(
        args, "http", "flood", "A newcomer among flooding connections",
        [report.table(HEAD, rows)],
        {"connections": args.connections, "probes": args.probes, "rows": rows},
        [f"{args.connections} connections pipelining announces as fast as the tracker reads"
         f" them; {args.probes} newcomers timed on the idle tracker, then under the flood, in"
         f" the same run. A newcomer not answered within {PROBE_TIMEOUT:.0f} s counts as"
         f" {PROBE_TIMEOUT:.0f} s."],
        per_interpreter=False,
    )  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit("run it as: python3 bench/run.py flood")
