"""One tracker node on Redis against one node on the memory index, in one run.

    python3 bench/redis.py [--duration S] [--warmup S] [--interpreters LIST] [--quick]

For each interpreter (default: the repository's .venv and .venv-pypy), under the usual HTTP
keep-alive load of 1000 swarms (tracker.lua's "swarms" mode: 50,000 peers, numwant 50):

- the processor time per announce of a node on the memory index (the default store: swarms
  in memory, SQLite journal behind) and of a node on --redis, and of the redis-server it
  uses, read from /proc/PID/stat (user + system time of every thread), so that the load
  generator sharing the two cores does not blur it;
- flatness: announces by existing peers into one swarm of 1,000 and of 50,000 peers, filled
  by `started` announces through the node;
- Redis's memory per stored peer (INFO memory's used_memory, less an empty Redis's, over the
  peers held), after the 1000-swarm load and with the 50,000-peer swarm.

The node runs on core 0, redis-server and wrk on core 1. Prints each goal of the Redis issue
as met or not with its figure, and what one node and one Redis core serve, scaled to a
deployment of 1,000,000 announces a second. Needs wrk, redis-server, taskset.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib as bl

NODE_CORE = 0
LOAD_CORE = 1
SWARMS = 1000
POPULATION = 50000
SMALL, LARGE = 1000, 50000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
INTERPRETERS = {
    "cpython-venv": bl.REPO_DIR / ".venv" / "bin" / "python",
    "pypy3-venv": bl.REPO_DIR / ".venv-pypy" / "bin" / "python",
}
PYPY_NURSERY = "64M"

#: The issue's goals.
NODE_RATIO_GOAL = 2.0
REDIS_US_GOAL = 15.0
FLAT_GOAL = 1.1
BYTES_PER_PEER_GOAL = 120
TARGET_RATE = 1_000_000


def cpu_seconds(pid: int) -> float:
    """User plus system time of every thread of C{pid} so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat(5), counted after the command's closing parenthesis.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.port = bl.free_port()
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir()
        command = [
            "redis-server", "--port", str(self.port), "--bind", bl.HOST, "--dir", str(self.dir),
            "--save", "", "--appendonly", "no", "--protected-mode", "no",
        ]  # fmt: skip
        self.proc = bl.start_process(command, self.dir / "redis.log", LOAD_CORE, self.dir)
        bl.wait_for_port(self.port, self.proc)

    @property
    def url(self) -> str:
        return f"redis://{bl.HOST}:{self.port}/0"

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def used_memory(self) -> int:
        for line in self.cli("INFO", "memory").splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":")[1])
        raise RuntimeError("no used_memory in INFO memory")

    def peers(self) -> int:
        """Peers held in every swarm (its groups' sizes, in its own field: see swarm.lua)."""
        script = (
            "local n, cursor = 0, '0' repeat local r = redis.call('SCAN', cursor, 'MATCH',"
            " '{*}:h', 'COUNT', 1000) cursor = r[1] for _, k in ipairs(r[2]) do local s ="
            " redis.call('HGET', k, 's') if s then local a, b, c, d = struct.unpack('>I4I4I4I4',"
            " s) n = n + a + b + c + d end end until cursor == '0' return n"
        )
        return int(self.cli("EVAL", script, "0").strip())

    def stop(self) -> None:
        bl.stop_process(self.proc)


class Node:
    def __init__(self, interpreter: str, workdir: Path, name: str, extra: list[str]) -> None:
        self.port = bl.free_port()
        self.dir = workdir / name
        self.dir.mkdir()
        command = bl.ours_command(
            interpreter, self.port, self.dir / "tracker.sqlite3", ["--no-udp", *extra]
        )
        if "pypy" in interpreter:
            os.environ["PYPY_GC_NURSERY"] = PYPY_NURSERY
        self.proc = bl.start_process(command, self.dir / "twistd.log", NODE_CORE, bl.REPO_DIR)
        os.environ.pop("PYPY_GC_NURSERY", None)
        bl.wait_for_port(self.port, self.proc, timeout=60)

    def stop(self) -> None:
        bl.stop_process(self.proc)


def wrk(port: int, seconds: float, *mode: str) -> dict[str, float]:
    command = [
        "wrk", "-t1", "-c64", f"-d{max(1, round(seconds))}s", "-s",
        str(bl.BENCH_DIR / "tracker.lua"), f"http://{bl.HOST}:{port}", "--", *mode,
    ]  # fmt: skip
    if (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", str(LOAD_CORE), *command]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON ") :])  # type: ignore[no-any-return]
    raise RuntimeError(f"wrk printed no result: {out[-500:]}")


def measure(
    port: int, pids: list[int], seconds: float, warmup: float, *mode: str
) -> tuple[list[float], int]:
    """Microseconds of processor time per answered announce in each of C{pids}, and how
    many were answered, over one wrk run after a warm-up run."""
    if warmup:
        wrk(port, warmup, *mode)
    before = [cpu_seconds(pid) for pid in pids]
    result = wrk(port, seconds, *mode)
    after = [cpu_seconds(pid) for pid in pids]
    answered = int(result["ok"])
    if answered == 0 or result["failure"] or result["bad_status"]:
        raise RuntimeError(f"failed requests under load: {result}")
    return [(b - a) * 1e6 / answered for a, b in zip(before, after)], answered


def fill(port: int, info_hash: bytes, size: int) -> None:
    paths = [bl.announce_path(info_hash, i, "started") for i in range(size)]
    stats = asyncio.run(bl.run_requests(port, paths, concurrency=32))
    if stats.ok != size:
        raise RuntimeError(f"filling a swarm of {size}: {stats}")


def run_interpreter(name: str, interpreter: str, args: argparse.Namespace) -> dict[str, float]:
    figures: dict[str, float] = {}
    workdir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    hashfile = workdir / "hashes.txt"
    hashfile.write_text("".join(bl.swarm_hash(k).hex() + "\n" for k in range(SWARMS)))
    swarms = ("swarms", str(hashfile), str(POPULATION))
    try:
        # The memory index: the default store.
        node = Node(interpreter, workdir, "memory", [])
        try:
            (node_us,), answered = measure(
                node.port, [node.proc.pid], args.duration, args.warmup, *swarms
            )
        finally:
            node.stop()
        figures["memory_node_us"] = node_us
        print(f"  memory index: node {node_us:.1f} us/announce ({answered} answered)")

        redis = Redis(workdir)
        try:
            empty = redis.used_memory()
            node = Node(interpreter, workdir, "redis", ["--redis", redis.url])
            try:
                (node_us, redis_us), answered = measure(
                    node.port, [node.proc.pid, redis.proc.pid], args.duration, args.warmup,
                    *swarms,
                )  # fmt: skip
                figures["redis_node_us"] = node_us
                figures["redis_server_us"] = redis_us
                print(
                    f"  Redis: node {node_us:.1f} us/announce, redis-server {redis_us:.1f}"
                    f" us/announce ({answered} answered)"
                )
                peers = redis.peers()
                figures["bytes_per_peer_swarms"] = (redis.used_memory() - empty) / peers
                print(
                    f"  Redis memory, 1000 swarms: {peers} peers,"
                    f" {figures['bytes_per_peer_swarms']:.0f} bytes a peer"
                )
                redis.cli("FLUSHALL")
                empty = redis.used_memory()
                for size in (SMALL, LARGE):
                    info_hash = bl.single_swarm_hash(size)
                    began = time.monotonic()
                    fill(node.port, info_hash, size)
                    if size == LARGE:
                        peers = redis.peers()
                        figures["bytes_per_peer_large"] = (redis.used_memory() - empty) / peers
                    one = ("one", info_hash.hex(), str(size))
                    (node_us, redis_us), answered = measure(
                        node.port, [node.proc.pid, redis.proc.pid], args.duration,
                        args.warmup, *one,
                    )  # fmt: skip
                    figures[f"one_{size}_node_us"] = node_us
                    figures[f"one_{size}_redis_us"] = redis_us
                    print(
                        f"  one swarm of {size} (filled in {time.monotonic() - began:.0f} s):"
                        f" node {node_us:.1f}, redis-server {redis_us:.1f} us/announce"
                    )
                print(
                    f"  Redis memory, one swarm of {LARGE}:"
                    f" {figures['bytes_per_peer_large']:.0f} bytes a peer"
                )
            finally:
                node.stop()
        finally:
            redis.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def verdict(met: bool) -> str:
    return "met    " if met else "NOT MET"


def report(results: dict[str, dict[str, float]]) -> None:
    print("\nGoals (issue 26):")
    judged = results.get("pypy3-venv") or next(iter(results.values()))
    judged_on = "pypy3-venv" if "pypy3-venv" in results else next(iter(results))
    for name, figures in results.items():
        ratio = figures["redis_node_us"] / figures["memory_node_us"]
        note = "" if name == judged_on else " (for reference)"
        print(
            f"  {verdict(ratio <= NODE_RATIO_GOAL) if name == judged_on else '       '}"
            f" node on Redis / node on the memory index, {name}: {ratio:.2f}x"
            f" (goal <= {NODE_RATIO_GOAL}x){note}"
        )
    redis_us = max(figures["redis_server_us"] for figures in results.values())
    print(
        f"  {verdict(redis_us <= REDIS_US_GOAL)} redis-server per announce, 1000 swarms:"
        f" {redis_us:.1f} us (goal <= {REDIS_US_GOAL:g} us; worst of the interpreters)"
    )
    for name, figures in results.items():
        small = figures[f"one_{SMALL}_node_us"] + figures[f"one_{SMALL}_redis_us"]
        large = figures[f"one_{LARGE}_node_us"] + figures[f"one_{LARGE}_redis_us"]
        flat = large / small
        redis_flat = figures[f"one_{LARGE}_redis_us"] / figures[f"one_{SMALL}_redis_us"]
        print(
            f"  {verdict(flat <= FLAT_GOAL)} flat, {name}: a swarm of {LARGE} costs {flat:.2f}x"
            f" one of {SMALL}, node and redis-server together (redis-server alone"
            f" {redis_flat:.2f}x; goal <= {FLAT_GOAL}x)"
        )
    swarms = max(figures["bytes_per_peer_swarms"] for figures in results.values())
    large = max(figures["bytes_per_peer_large"] for figures in results.values())
    print(
        f"  {verdict(swarms <= BYTES_PER_PEER_GOAL)} Redis memory per stored peer, 1000 swarms:"
        f" {swarms:.0f} bytes (goal <= {BYTES_PER_PEER_GOAL})"
    )
    print(
        f"  {verdict(large <= BYTES_PER_PEER_GOAL)} Redis memory per stored peer, one swarm of"
        f" {LARGE}: {large:.0f} bytes (goal <= {BYTES_PER_PEER_GOAL})"
    )
    node_rate = 1e6 / judged["redis_node_us"]
    redis_rate = 1e6 / judged["redis_server_us"]
    print(f"\nCapacity from these figures ({judged_on}, processor time alone):")
    print(f"  one node core: {node_rate:,.0f} announces/s; one Redis core: {redis_rate:,.0f}")
    print(
        f"  {TARGET_RATE:,} announces/s: {math.ceil(TARGET_RATE / node_rate)} node processes"
        f" (one per core) on {math.ceil(TARGET_RATE / redis_rate)} Redis Cluster"
        " primaries, before headroom"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--interpreters", default="cpython-venv,pypy3-venv")
    parser.add_argument("--quick", action="store_true", help="3 s runs after 2 s warm-ups")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3.0, 2.0
    for tool in ("wrk", "redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/redis.py needs {tool}")
    results = {}
    for name in args.interpreters.split(","):
        interpreter = str(INTERPRETERS.get(name, name))
        problem = bl.interpreter_ready(interpreter)
        if problem is None:
            done = subprocess.run([interpreter, "-c", "import redis"], capture_output=True)
            problem = None if done.returncode == 0 else "redis-py is not installed"
        if problem is not None:
            print(f"{name}: skipped ({problem})")
            continue
        print(f"{name} ({interpreter}):")
        results[name] = run_interpreter(name, interpreter, args)
    if results:
        report(results)


if __name__ == "__main__":
    main()
