"""
UDP announces per second (BEP 15): our tracker on each interpreter against opentracker's UDP,
in one run, in alternating rounds.

Each tracker runs alone and fresh, pinned to core 0; the load generator (udpload.c, built here
with the system's C compiler) runs on core 1. See bench/README.md, "UDP".

    python3 bench/udp.py [--duration 10] [--warmup 3] [--rounds 3] [--populations churn,fixed]

Two loads (udpload.c): "churn", where almost every announce is by a peer new to its swarm and
the index grows all along, and "fixed", a population of --peers peers each in its own swarm,
which the tracker mostly knows already.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import benchlib as bl

TRACKER_CORE = 0
LOAD_CORE = 1
PYPY_VENV = bl.REPO_DIR / ".venv-pypy" / "bin" / "python"
INTERPRETERS = {"python3": "python3", "pypy3-venv": str(PYPY_VENV)}
GOALS = {"python3": 0.5, "pypy3-venv": 1.0}
POPULATIONS = {
    "churn": "almost every announce is by a peer new to its swarm (a random peer into a random "
    "swarm); the index grows all along",
    "fixed": "peer i always announces into swarm i % swarms: the tracker mostly knows the peer "
    "already, as between a client's start and stop",
}


def udp_swarm_hash(k: int) -> bytes:
    """Info hash of swarm k of the UDP load; udpload.c builds the same bytes."""
    return b"udp-bench-swarm" + struct.pack(">I", k) + b"\0"


@dataclass
class Target:
    key: str
    label: str
    interpreter: str | None = None  # None: opentracker
    floor: bool = False  # bench/udp_floor.py rather than the tracker
    #: Where the tracker runs from, and so which checkout's tracker package it imports.
    cwd: Path = bl.REPO_DIR


def build_load_generator(where: Path) -> Path:
    binary = where / "udpload"
    source = bl.BENCH_DIR / "udpload.c"
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
    return binary


def tracker_command(target: Target, port: int, workdir: Path, swarms: int) -> list[str]:
    if target.interpreter is None:
        hashes = [udp_swarm_hash(k) for k in range(swarms)]
        return bl.opentracker_command(workdir, ["-P", str(port)], hashes)
    if target.floor:
        cmd = [target.interpreter, str(bl.BENCH_DIR / "udp_floor.py"), str(port)]
    else:
        cmd = bl.ours_command(target.interpreter, port, workdir / "db.sqlite3", [])
    if "pypy" in target.interpreter:
        cmd = ["env", "PYPY_GC_NURSERY=64M", *cmd]
    return cmd


def udp_answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(struct.pack("!QII", 0x41727101980, 0, 7), (bl.HOST, port))
            return len(sock.recv(64)) == 16
        except OSError:
            return False


def free_udp_port() -> int:
    while True:
        port = bl.free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((bl.HOST, port))
            except OSError:
                continue
        return port


def measure(
    target: Target, load: Path, population: str, args: argparse.Namespace
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="udp-bench-") as tmp:
        workdir = Path(tmp)
        port = free_udp_port()
        cmd = tracker_command(target, port, workdir, args.swarms)
        proc = bl.start_process(cmd, workdir / "tracker.log", TRACKER_CORE, target.cwd)
        try:
            deadline = time.monotonic() + 30
            while not udp_answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (workdir / "tracker.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{target.label} did not answer on UDP:\n{log}")
                time.sleep(0.1)
            done = subprocess.run(
                [
                    "taskset", "-c", str(LOAD_CORE), str(load), bl.HOST, str(port),
                    str(args.warmup), str(args.duration), str(args.sockets), str(args.window),
                    str(args.swarms), str(args.peers), population,
                ],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            result: dict[str, float] = json.loads(done.stdout)
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
        interpreter = INTERPRETERS.get(name, name)
        reason = bl.interpreter_ready(interpreter)
        if reason is None:
            found.append(Target(f"floor-{name}", f"UDP floor ({name})", interpreter, floor=True))
            found.append(Target(f"ours-{name}", f"ours ({name})", interpreter))
        else:
            print(f"skipping ours on {name}: {reason}", flush=True)
    return found


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--targets", default="python3,pypy3-venv,opentracker")
    parser.add_argument("--sockets", type=int, default=8)
    parser.add_argument("--window", type=int, default=8, help="announces in flight per socket")
    parser.add_argument("--swarms", type=int, default=1000)
    parser.add_argument("--peers", type=int, default=50000)
    parser.add_argument(
        "--populations", default="churn,fixed", help="loads to run: churn, fixed or both"
    )
    parser.add_argument("--out", type=Path, default=bl.BENCH_DIR)
    return parser.parse_args(argv)


def summarize(runs: dict[str, list[dict[str, float]]], found: list[Target]) -> list[str]:
    lines = [
        "| tracker | announces/s (median) | each round | vs opentracker (median of rounds) "
        "| vs the UDP floor | p50 / p99 latency | timeouts |",
        "|---|---|---|---|---|---|---|",
    ]
    reference = runs.get("opentracker")
    for target in found:
        rounds = runs[target.key]
        rates = [r["rate"] for r in rounds]
        ratio = "-"
        if reference and target.key != "opentracker":
            ratios = [r["rate"] / ref["rate"] for r, ref in zip(rounds, reference)]
            goal = GOALS.get(target.key.removeprefix("ours-"))
            verdict = ""
            if goal is not None:
                verdict = f" ({'PASS' if statistics.median(ratios) >= goal else 'FAIL'}: "
                verdict += f"goal {goal}x)"
            ratio = f"{statistics.median(ratios):.2f}x{verdict}"
        floor = runs.get(f"floor-{target.key.removeprefix('ours-')}")
        of_floor = "-"
        if floor and target.key.startswith("ours-"):
            of_floor = (
                f"{statistics.median(r['rate'] / f['rate'] for r, f in zip(rounds, floor)):.2f}"
            )
        lines.append(
            f"| {target.label} | {statistics.median(rates):,.0f} "
            f"| {', '.join(f'{rate:,.0f}' for rate in rates)} | {ratio} | {of_floor} "
            f"| {statistics.median(r['p50_us'] for r in rounds) / 1000:.2f} / "
            f"{statistics.median(r['p99_us'] for r in rounds) / 1000:.2f} ms "
            f"| {sum(r['timeouts'] for r in rounds):.0f} |"
        )
    return lines


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    found = targets(args.targets.split(","))
    populations = args.populations.split(",")
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        p: {target.key: [] for target in found} for p in populations
    }
    with tempfile.TemporaryDirectory(prefix="udpload-") as tmp:
        load = build_load_generator(Path(tmp))
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
    setup = (
        f"{args.rounds} rounds of {args.duration:g} s after {args.warmup:g} s of warm-up; "
        f"{args.sockets} sockets x {args.window} announces in flight; {args.swarms} swarms, "
        f"peers drawn from {args.peers}; tracker on core {TRACKER_CORE}, load on core "
        f"{LOAD_CORE}; {platform.system()} {platform.release()}"
    )
    text = ["# UDP announces per second", "", f"Written by `python3 bench/udp.py`: {setup}."]
    for population in populations:
        table = summarize(runs[population], found)
        print(f"{population}:", "\n".join(table), sep="\n")
        text += ["", f"## {population}: {POPULATIONS[population]}", "", *table]
    (args.out / "UDP_RESULTS.md").write_text("\n".join(text) + "\n")
    (args.out / "udp_results.json").write_text(json.dumps({"setup": setup, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
