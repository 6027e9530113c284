"""Live UDP announces per second (BEP 15): our tracker on each interpreter against the UDP
floor on the same interpreter and opentracker's UDP, in alternating rounds, each fresh and
alone on core 0 under udpload.c's load from core 1.

    python3 bench/run.py udp [--quick] [--rounds 3] [--duration 10] [--warmup 3]
                             [--targets python3,pypy3-venv,opentracker] [--populations churn,fixed]

Two loads: "churn", where almost every announce is by a peer new to its swarm and the index
grows all along, and "fixed", peer i always into swarm i % swarms, which the tracker mostly
knows already. See bench/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import benchlib as bl
import report

POPULATIONS = {
    "churn": "almost every announce is by a peer new to its swarm (a random peer into a random "
    "swarm); the index grows all along",
    "fixed": "peer i always announces into swarm i % swarms: the tracker mostly knows the peer "
    "already, as between a client's start and stop",
}


@dataclass
class Target:
    key: str
    label: str
    interpreter: str | None = None  # None: opentracker
    floor: bool = False  # bench/floor.py udp rather than the tracker
    #: Where the tracker runs from, and so which checkout's tracker package it imports.
    cwd: Path = bl.REPO_DIR


def tracker_command(target: Target, port: int, workdir: Path, swarms: int) -> list[str]:
    if target.interpreter is None:
        hashes = [bl.udp_swarm_hash(k) for k in range(swarms)]
        return bl.opentracker_command(workdir, ["-P", str(port)], hashes)
    if target.floor:
        cmd = [target.interpreter, str(bl.BENCH_DIR / "floor.py"), "udp", str(port)]
    else:
        cmd = bl.ours_command(target.interpreter, port, workdir / "db.sqlite3", [])
    return bl.with_nursery(cmd)


def measure(
    target: Target, load: Path, population: str, args: argparse.Namespace
) -> dict[str, float]:
    """One round: a fresh C{target} under the load for C{args.duration} seconds."""
    with tempfile.TemporaryDirectory(prefix="udp-bench-") as tmp:
        workdir = Path(tmp)
        port = bl.free_udp_port()
        cmd = tracker_command(target, port, workdir, args.swarms)
        proc = bl.start_process(cmd, workdir / "tracker.log", bl.TRACKER_CORE, target.cwd)
        try:
            deadline = time.monotonic() + 30
            while not bl.udp_answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (workdir / "tracker.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{target.label} did not answer on UDP:\n{log}")
                time.sleep(0.1)
            result = bl.run_udpload(load, port, population, args)
            if proc.poll() is not None:
                raise RuntimeError(f"{target.label} exited during the load")
            return result
        finally:
            bl.stop_process(proc)


def targets(names: list[str]) -> list[Target]:
    found = []
    for name in names:
        if name == "opentracker":
            if shutil.which("opentracker"):
                found.append(Target("opentracker", "opentracker"))
            else:
                print("skipping opentracker: not installed", flush=True)
            continue
        interpreter = bl.interpreter_path(name)
        reason = bl.interpreter_ready(interpreter)
        if reason is None:
            found.append(Target(f"floor-{name}", f"UDP floor ({name})", interpreter, floor=True))
            found.append(Target(f"ours-{name}", f"ours ({name})", interpreter))
        else:
            print(f"skipping ours on {name}: {reason}", flush=True)
    return found


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """udpload's settings, shared with the live A/B comparison."""
    bl.option(parser, "--duration", 10.0, 2.0, "seconds of each round's measurement", float)
    bl.option(parser, "--warmup", 3.0, 1.0, "seconds of warm-up before it", float)
    parser.add_argument("--sockets", type=int, default=8)
    parser.add_argument("--window", type=int, default=8, help="announces in flight per socket")
    parser.add_argument("--swarms", type=int, default=bl.SWARMS)
    parser.add_argument("--peers", type=int, default=bl.POPULATION)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_load_arguments(parser)
    bl.option(parser, "--rounds", 3, 1, "rounds")
    parser.add_argument("--targets", default="python3,pypy3-venv,opentracker")
    bl.option(parser, "--populations", "churn,fixed", "fixed", "loads: churn, fixed or both", str)


def run(args: argparse.Namespace) -> int:
    found = targets(args.targets.split(","))
    populations = args.populations.split(",")
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        p: {target.key: [] for target in found} for p in populations
    }
    with tempfile.TemporaryDirectory(prefix="udpload-") as tmp:
        load = bl.build_udpload(Path(tmp))
        for round_number in range(1, args.rounds + 1):
            for population in populations:
                for target in found:
                    result = measure(target, load, population, args)
                    runs[population][target.key].append(result)
                    print(
                        f"round {round_number}, {population}: {target.label}: "
                        f"{result['rate']:,.0f} announces/s (p99 {result['p99_us'] / 1000:.2f} "
                        f"ms, {result['timeouts']:.0f} timeouts, "
                        f"{result['peers_per_reply']:.1f} peers a reply)",
                        flush=True,
                    )
    labels = {target.key: target.label for target in found}
    tables = [report.udp_live(runs[p], labels, f"{p}: {POPULATIONS[p]}") for p in populations]
    for t in tables:
        print(f"{t['title']}\n" + report.markdown_table(t["head"], t["rows"]), flush=True)
    setup = (
        f"{args.rounds} rounds of {args.duration:g} s after {args.warmup:g} s of warm-up;"
        f" {args.sockets} sockets x {args.window} announces in flight; {args.swarms} swarms,"
        f" peers drawn from {args.peers:,}; tracker on core {bl.TRACKER_CORE}, load on core"
        f" {bl.LOAD_CORE}."
    )
    report.record(
        args, "udp", "live", "Live, beside the UDP floor and opentracker", tables,
        {"setup": setup, "labels": labels, "runs": runs}, [setup], per_interpreter=False,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit("run it as: python3 bench/run.py udp")
