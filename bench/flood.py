"""How long a new client waits for its announce while 300 connections flood the tracker.

For each interpreter, our tracker runs alone on core 0; the flood and the probes run on core 1.
The flood is tests/flooder.py: CONNECTIONS connections, each writing pipelined announces as fast
as the tracker reads them and throwing the replies away. A probe is a newcomer: a new
connection, one announce with Connection: close, timed from connect() to the last byte of the
reply. PROBES probes, 0.1 s apart, are timed on the idle tracker and then under the flood, in
the same run, after a warm-up flood; the line printed per interpreter gives the median, the 99th
percentile and the slowest of each, and the ratio of the flood's median to the idle one.

Usage: python3 bench/flood.py [--interpreters python3-venv,pypy3-venv] [--connections 300]
       [--probes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib as bl

TRACKER_CORE = 0
LOAD_CORE = 1
FLOODER = bl.REPO_DIR / "tests" / "flooder.py"
INTERPRETER_ALIASES = {
    "python3-venv": str(bl.REPO_DIR / ".venv" / "bin" / "python"),
    "pypy3-venv": str(bl.REPO_DIR / ".venv-pypy" / "bin" / "python"),
}
#: As bench/run.py runs PyPy: a larger nursery suits a server allocating per request.
PYPY_NURSERY = "64M"
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


def run_one(name: str, interpreter: str, workdir: Path, connections: int, count: int) -> str:
    port = bl.free_port()
    cmd = bl.ours_command(interpreter, port, workdir / f"flood-{port}.sqlite3", [])
    if "pypy" in interpreter:
        cmd = ["env", f"PYPY_GC_NURSERY={PYPY_NURSERY}", *cmd]
    tracker = bl.start_process(cmd, workdir / "tracker.log", TRACKER_CORE, bl.REPO_DIR)
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
    return (
        f"{name}: newcomer idle median {idle['median'] * 1000:.1f} ms, p99 {idle['p99'] * 1000:.1f}"
        f" ms; under {connections} flooding connections median"
        f" {flooded['median'] * 1000:.1f} ms, p99 {flooded['p99'] * 1000:.1f} ms, max"
        f" {flooded['max'] * 1000:.1f} ms ({flooded['median'] / idle['median']:.1f}x idle);"
        f" flood answered about {rate:.0f} announces/s,"
        f" {figures.get('closed', 0)} flooding connections closed"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--interpreters", default="python3-venv,pypy3-venv")
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--probes", type=int, default=100)
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {LOAD_CORE})
    status = 0
    with tempfile.TemporaryDirectory(prefix="trackerflood-") as tmp:
        for name in args.interpreters.split(","):
            interpreter = INTERPRETER_ALIASES.get(name, name)
            reason = bl.interpreter_ready(interpreter)
            if reason is not None:
                print(f"{name}: skipped, tracker not importable: {reason}", flush=True)
                status = 1
                continue
            print(run_one(name, interpreter, Path(tmp), args.connections, args.probes), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
