"""One tracker node on Redis against one node on the memory index, in one run.

    python3 bench/run.py redis [--quick] [--duration S] [--warmup S] [--interpreters LIST]

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
deployment of 1,000,000 announces a second; the goals go to bench/results/redis.md. Needs
wrk, redis-server, taskset.
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
import report

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


def judged(results: dict[str, dict[str, float]]) -> str:
    """The interpreter whose figures the node's goal and the capacity are taken from: PyPy's,
    the faster, when it ran."""
    return "pypy3-venv" if "pypy3-venv" in results else next(iter(results))


def goals(results: dict[str, dict[str, float]]) -> list[list[str]]:
    """Each goal of the Redis issue with its figure, its target and whether it is met."""
    rows = []
    judged_on = judged(results)
    figures = results[judged_on]
    ratio = figures["redis_node_us"] / figures["memory_node_us"]
    rows.append([
        f"node on Redis / node on the memory index, {judged_on}", f"{ratio:.2f}x",
        f"<= {NODE_RATIO_GOAL}x", verdict(ratio <= NODE_RATIO_GOAL),
    ])  # fmt: skip
    redis_us = max(f["redis_server_us"] for f in results.values())
    rows.append([
        "redis-server per announce, 1000 swarms (worst interpreter)", f"{redis_us:.1f} us",
        f"<= {REDIS_US_GOAL:g} us", verdict(redis_us <= REDIS_US_GOAL),
    ])  # fmt: skip
    for name, f in results.items():
        small = f[f"one_{SMALL}_node_us"] + f[f"one_{SMALL}_redis_us"]
        flat = (f[f"one_{LARGE}_node_us"] + f[f"one_{LARGE}_redis_us"]) / small
        rows.append([
            f"flat, {name}: {LARGE:,} peers against {SMALL:,}, node and redis-server",
            f"{flat:.2f}x", f"<= {FLAT_GOAL}x", verdict(flat <= FLAT_GOAL),
        ])  # fmt: skip
    for key, what in (("bytes_per_peer_swarms", "1000 swarms"), ("bytes_per_peer_large",
                      f"one swarm of {LARGE:,}")):  # fmt: skip
        worst = max(f[key] for f in results.values())
        rows.append([
            f"Redis memory per stored peer, {what}", f"{worst:.0f} B",
            f"<= {BYTES_PER_PEER_GOAL} B", verdict(worst <= BYTES_PER_PEER_GOAL),
        ])  # fmt: skip
    return rows


def figures_table(results: dict[str, dict[str, float]]) -> tuple[list[str], list[list[str]]]:
    """Each interpreter's figures: processor time per announce, and bytes per stored peer."""
    rows = []
    for name, f in results.items():
        rows.append([
            name, f"{f['memory_node_us']:.1f} us", f"{f['redis_node_us']:.1f} us",
            f"{f['redis_server_us']:.1f} us",
            f"{f[f'one_{SMALL}_redis_us']:.1f} / {f[f'one_{LARGE}_redis_us']:.1f} us",
            f"{f['bytes_per_peer_swarms']:.0f} / {f['bytes_per_peer_large']:.0f} B",
        ])  # fmt: skip
    head = [
        "interpreter", "node, memory index", "node, Redis", "redis-server, 1000 swarms",
        f"redis-server, one swarm of {SMALL:,} / {LARGE:,}",
        f"Redis bytes a peer, 1000 swarms / one of {LARGE:,}",
    ]  # fmt: skip
    return head, rows


def verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def capacity(results: dict[str, dict[str, float]]) -> str:
    judged_on = judged(results)
    node_rate = 1e6 / results[judged_on]["redis_node_us"]
    redis_rate = 1e6 / results[judged_on]["redis_server_us"]
    return (
        f"Capacity ({judged_on}, processor time alone): one node core {node_rate:,.0f}"
        f" announces/s, one Redis core {redis_rate:,.0f}; {TARGET_RATE:,} announces/s:"
        f" {math.ceil(TARGET_RATE / node_rate)} node processes (one per core) on"
        f" {math.ceil(TARGET_RATE / redis_rate)} Redis Cluster primaries, before headroom."
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, help="seconds of load a measurement [10]")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each [5]")
    parser.add_argument("--interpreters", default="cpython-venv,pypy3-venv")
    parser.set_defaults(scaled={"duration": (10.0, 3.0), "warmup": (5.0, 2.0)})


def run(args: argparse.Namespace) -> int:
    for tool in ("wrk", "redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            print(f"bench/run.py redis needs {tool}")
            return 1
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
        print(f"{name} ({interpreter}):", flush=True)
        results[name] = run_interpreter(name, interpreter, args)
    if not results:
        return 1
    table = report.table(["goal", "measured", "target", "met"], goals(results), "Goals (issue 26)")
    measured = report.table(*figures_table(results), "Per announce, and Redis's memory")
    for shown in (table, measured):
        print(f"\n{shown['title']}\n" + report.markdown_table(shown["head"], shown["rows"]))
    print(capacity(results))
    setup = (
        f"{args.duration:g} s of load after {args.warmup:g} s of warm-up; node on core"
        f" {NODE_CORE}, redis-server and wrk on core {LOAD_CORE}; processor time from /proc."
    )
    report.record(
        args, "redis", "live", "A node on Redis beside a node on its own memory", [table, measured],
        {"setup": setup, "results": results}, [setup, capacity(results)], per_interpreter=False,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit("run it as: python3 bench/run.py redis")
