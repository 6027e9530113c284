"""Benchmark our HTTP tracker against opentracker and webtorrent's bittorrent-tracker.

Every tracker runs alone on core 0 and gets the same sequence of wrk loads from core 1.
Writes results.json, RESULTS.md and results.png next to this file. See README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import benchlib as bl
import goals
import phases
import report

TRACKER_CORE = 0
LOAD_CORE = 1
SINGLE_SWARM_SIZES = (1, 1000, 10000, 50000)
SWARM_COUNT = 1000
POPULATION = 50000
#: The PyPy venv that run.sh creates; "pypy3-venv" in --interpreters names it.
PYPY_VENV = bl.REPO_DIR / ".venv-pypy" / "bin" / "python"
INTERPRETER_ALIASES = {"pypy3-venv": str(PYPY_VENV)}
#: PyPy's default nursery is small for a server that allocates per request on two threads:
#: a larger one measured about 1.4x the announce rate. Passed as PYPY_GC_NURSERY.
PYPY_NURSERY = "64M"


@dataclass
class Scenario:
    name: str
    lua_args: list[str]
    keep_alive: bool = True
    prefill_size: int = 0  # peers to put into the single swarm before measuring


@dataclass
class Target:
    key: str
    label: str
    kind: str  # "ours", "opentracker" or "bittorrent-tracker"
    interpreter: str = ""


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    database: Path | None = None


@dataclass
class Config:
    duration: float
    warmup: float
    connections: int
    wrk_threads: int
    sizes: tuple[int, ...]
    prefill_budget: float
    ours_args: list[str] = field(default_factory=list)
    pypy_nursery: str = PYPY_NURSERY
    pair_rounds: int = 3


# --- environment ------------------------------------------------------------------------


def pin_self() -> None:
    """Keep this driver (and the prefill loader) off the trackers' core."""
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {LOAD_CORE})


def command_output(cmd: list[str]) -> str:
    """First line the command prints (wrk prints its version with a usage error)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return lines[0] if lines else ""


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(bl.REPO_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "uncommitted"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "uncommitted"


def bittorrent_tracker_version() -> str:
    package = bl.BENCH_DIR / "node_modules" / "bittorrent-tracker" / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "not installed"


def machine_info(interpreters: list[str]) -> dict[str, object]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": os.uname().release,
        "pythons": {
            name: command_output([INTERPRETER_ALIASES.get(name, name), "--version"]) or "missing"
            for name in interpreters
        },
        "node": command_output(["node", "--version"]),
        "wrk": command_output(["wrk", "--version"]).split(" [")[0],
        "opentracker": command_output(["dpkg-query", "-W", "-f", "${Version}", "opentracker"]),
        "bittorrent_tracker": bittorrent_tracker_version(),
        "git_commit": git_commit(),
    }


# --- hashes and scenarios -----------------------------------------------------------------


def all_hashes(sizes: tuple[int, ...]) -> tuple[list[bytes], list[bytes]]:
    return [bl.swarm_hash(k) for k in range(SWARM_COUNT)], [bl.single_swarm_hash(n) for n in sizes]


def write_hash_file(path: Path, hashes: list[bytes]) -> None:
    path.write_text("".join(h.hex() + "\n" for h in hashes))


def hash_files(workdir: Path, hashes: tuple[list[bytes], list[bytes]]) -> tuple[Path, list[bytes]]:
    """The 1000 swarms' hash file for wrk, and every hash the run uses (for whitelists)."""
    swarm_hashes, single_hashes = hashes
    hash_file = workdir / "hashes.txt"
    write_hash_file(hash_file, swarm_hashes)
    return hash_file, swarm_hashes + single_hashes


def scenarios(hash_file: Path, sizes: tuple[int, ...]) -> list[Scenario]:
    many = ["swarms", str(hash_file), str(POPULATION)]
    found = [
        Scenario("announce 1000 swarms, keep-alive", many),
        Scenario("announce 1000 swarms, Connection: close", [*many, "close"], keep_alive=False),
    ]
    for size in sizes:
        found.append(
            Scenario(
                f"announce 1 swarm of {size:,} peer{'' if size == 1 else 's'}",
                ["one", bl.single_swarm_hash(size).hex(), str(size)],
                prefill_size=size,
            )
        )
    found.append(Scenario("scrape 1 hash", ["scrape", str(hash_file), "1"]))
    found.append(Scenario("scrape 10 hashes", ["scrape", str(hash_file), "10"]))
    return found


# --- trackers ---------------------------------------------------------------------------


def start_target(target: Target, workdir: Path, whitelist: list[bytes], cfg: Config) -> Running:
    port = bl.free_port()
    log = workdir / "tracker.log"
    database = None
    if target.kind == "ours":
        database = workdir / "db.sqlite3"
        interpreter = INTERPRETER_ALIASES.get(target.interpreter, target.interpreter)
        cmd = bl.ours_command(interpreter, port, database, cfg.ours_args)
        if "pypy" in interpreter and cfg.pypy_nursery:
            cmd = ["env", f"PYPY_GC_NURSERY={cfg.pypy_nursery}", *cmd]
        cwd = bl.REPO_DIR
    elif target.kind == "opentracker":
        cmd = bl.opentracker_command(workdir, ["-p", str(port)], whitelist)
        cwd = workdir
    else:
        cmd = ["node", str(bl.BENCH_DIR / "bt_tracker.mjs"), str(port)]
        cwd = bl.BENCH_DIR
    proc = bl.start_process(cmd, log, TRACKER_CORE, cwd)
    running = Running(proc, port, workdir, database)
    try:
        bl.wait_for_port(port, proc)
    except RuntimeError as exc:
        bl.stop_process(proc)
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{target.label} did not start: {exc}\n{tail}") from exc
    return running


def start_floor(cmd: list[str], workdir: Path, cfg: Config) -> Running:
    """The Twisted floor (bench/floor.py) on the tracker core; PyPy gets ours's GC setting."""
    port = int(cmd[-1])
    if "pypy" in cmd[0] and cfg.pypy_nursery:
        cmd = ["env", f"PYPY_GC_NURSERY={cfg.pypy_nursery}", *cmd]
    proc = bl.start_process(cmd, workdir / "floor.log", TRACKER_CORE, bl.BENCH_DIR)
    try:
        bl.wait_for_port(port, proc)
    except RuntimeError:
        bl.stop_process(proc)
        raise
    return Running(proc, port, workdir)


def ours_against_floor(
    target: Target, workdir: Path, hashes: tuple[list[bytes], list[bytes]], cfg: Config,
    log: Callable[[str], None],
) -> dict[str, object]:  # fmt: skip
    """Floor pairs on the keep-alive announce load, then the memory check, for one interpreter."""
    hash_file, whitelist = hash_files(workdir, hashes)
    keep_alive = scenarios(hash_file, cfg.sizes)[0]

    def start(cmd: list[str] | None, where: Path) -> Running:
        if cmd is None:
            return start_target(target, where, whitelist, cfg)
        return start_floor(cmd, where, cfg)

    interpreter = INTERPRETER_ALIASES.get(target.interpreter, target.interpreter)
    result: dict[str, object] = {}
    try:
        result["floor"] = phases.floor_pairs(
            start, lambda running: measure(running, keep_alive, cfg), interpreter,
            workdir, cfg.pair_rounds, log,
        )  # fmt: skip
        memory_dir = workdir / "memory"
        memory_dir.mkdir()
        running = start_target(target, memory_dir, whitelist, cfg)
        try:
            result["memory"] = memory = phases.memory(running, log)
        finally:
            bl.stop_process(running.proc)
        memory.update(phases.index_memory(interpreter, log))
    except (RuntimeError, OSError, subprocess.TimeoutExpired, asyncio.TimeoutError) as exc:
        result["error"] = str(exc)
        log(f"  FAILED: {exc}")
    return result


def targets(interpreters: list[str], wanted: list[str]) -> tuple[list[Target], dict[str, str]]:
    found: list[Target] = []
    skipped: dict[str, str] = {}
    if "ours" in wanted:
        for interp in interpreters:
            key = f"ours-{interp}"
            reason = bl.interpreter_ready(INTERPRETER_ALIASES.get(interp, interp))
            if reason is None:
                found.append(Target(key, f"ours ({interp})", "ours", interp))
            else:
                skipped[key] = (
                    f"`{interp} -c 'import tracker.daemon.tap, twisted'` failed: {reason}"
                )
                print(f"skipping ours on {interp}: {reason}", flush=True)
    if "opentracker" in wanted:
        if shutil.which("opentracker"):
            found.append(Target("opentracker", "opentracker", "opentracker"))
        else:
            skipped["opentracker"] = "opentracker not installed"
    if "bittorrent-tracker" in wanted:
        if bittorrent_tracker_version() != "not installed" and shutil.which("node"):
            found.append(Target("bittorrent-tracker", "bittorrent-tracker", "bittorrent-tracker"))
        else:
            skipped["bittorrent-tracker"] = "node or bench/node_modules missing"
    return found, skipped


# --- measurement ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    """Samples VmRSS every 100 ms and keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            except OSError:
                return
            self._stop_event.wait(0.1)

    def stop(self) -> int:
        self._stop_event.set()
        self.join(2)
        return self.peak_kib


def run_wrk(port: int, scenario: Scenario, seconds: float, cfg: Config) -> dict[str, float]:
    cmd = [
        "wrk", "-t", str(cfg.wrk_threads), "-c", str(cfg.connections),
        "-d", f"{max(1, round(seconds))}s", "--timeout", "5s", "--latency",
        "-s", str(bl.BENCH_DIR / "tracker.lua"), f"http://{bl.HOST}:{port}",
        "--", *scenario.lua_args,
    ]  # fmt: skip
    if (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", str(LOAD_CORE), *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return {k: float(v) for k, v in json.loads(line[len("BENCH_JSON ") :]).items()}
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr.strip()}")


def measure(running: Running, scenario: Scenario, cfg: Config) -> dict[str, float]:
    pid = running.proc.pid
    if cfg.warmup > 0:
        run_wrk(running.port, scenario, cfg.warmup, cfg)
    sampler = RssSampler(pid)
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    sampler.start()
    stats = run_wrk(running.port, scenario, cfg.duration, cfg)
    cpu_after, wall_after = cpu_seconds(pid), time.monotonic()
    peak_kib = sampler.stop()
    if running.proc.poll() is not None:
        raise RuntimeError(f"tracker exited with code {running.proc.returncode}")
    seconds = stats["duration_us"] / 1e6
    cpu_used = cpu_after - cpu_before
    return {
        **stats,
        "rps": stats["requests"] / seconds,
        "ok_rps": stats["ok"] / seconds,
        "cpu_percent": 100.0 * cpu_used / (wall_after - wall_before),
        "requests_per_cpu_second": stats["requests"] / cpu_used if cpu_used > 0 else 0.0,
        "rss_peak_kib": float(peak_kib),
        "errors_total": stats["failure"] + stats["bad_status"] + socket_errors(stats),
        "avg_peers_returned": stats["peers_returned"] / stats["ok"] if stats["ok"] else 0.0,
    }


def socket_errors(stats: dict[str, float]) -> float:
    # Read errors are left out: wrk counts one each time a server closes a kept-alive
    # connection after a complete response (opentracker does so every time). They are
    # reported on their own; a request lost that way is also missing from "ok".
    return sum(stats[k] for k in ("err_connect", "err_write", "err_timeout"))


def prefill(running: Running, size: int, budget: float) -> dict[str, float]:
    """Put peers 0..size-1 into the single swarm of that size (event=started)."""
    info_hash = bl.single_swarm_hash(size)
    # numwant=0: building peer lists is not what the prefill is for.
    paths = (bl.announce_path(info_hash, i, "started", numwant=0) for i in range(size))
    started = time.monotonic()
    stats = asyncio.run(bl.run_requests(running.port, paths, concurrency=32, seconds=budget))
    elapsed = time.monotonic() - started
    if stats.failures_seen:
        print(f"    prefill failures, e.g. {stats.failures_seen[0]!r}", flush=True)
    return {
        "peers": float(size),
        "seconds": elapsed,
        "sent": float(stats.sent),
        "ok": float(stats.ok),
        "failed": float(stats.sent - stats.ok),
        "complete": float(stats.sent == size),
    }


def stored_state(running: Running, hashes: list[bytes]) -> dict[str, float]:
    """Peers the tracker reports over all benchmark swarms, and our database size."""
    entries = asyncio.run(asyncio.wait_for(bl.scrape_totals(running.port, hashes), 300))
    peers = sum(e.get(b"complete", 0) + e.get(b"incomplete", 0) for e in entries.values())
    state: dict[str, float] = {"stored_peers": float(peers), "scraped_hashes": float(len(entries))}
    if running.database is not None:
        db = running.database
        sizes = {suffix: _size(Path(str(db) + suffix)) for suffix in ("", "-wal")}
        state["db_bytes"] = float(sizes[""])
        state["wal_bytes"] = float(sizes["-wal"])
        state["db_bytes_per_peer"] = (sizes[""] + sizes["-wal"]) / peers if peers else 0.0
    return state


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


# --- driver -----------------------------------------------------------------------------


def bench_target(
    target: Target, workdir: Path, hashes: tuple[list[bytes], list[bytes]], cfg: Config,
    log: Callable[[str], None],
) -> dict[str, object]:  # fmt: skip
    hash_file, every_hash = hash_files(workdir, hashes)
    running = start_target(target, workdir, every_hash, cfg)
    result: dict[str, object] = {"label": target.label, "kind": target.kind, "scenarios": {}}
    measured: dict[str, object] = {}
    prefills: dict[str, object] = {}
    skipped: dict[str, str] = {}
    try:
        for scenario in scenarios(hash_file, cfg.sizes):
            size = scenario.prefill_size
            if size:
                prefills[str(size)] = fill = prefill(running, size, cfg.prefill_budget)
                log(f"    prefill: {fill['sent']:.0f} of {size} peers in {fill['seconds']:.1f} s")
                if not fill["complete"]:
                    # Some trackers spend time linear in the swarm size on every announce.
                    skipped[scenario.name] = (
                        f"prefill reached {fill['sent']:,.0f} of {size:,} peers within the "
                        f"{cfg.prefill_budget:.0f} s budget"
                    )
                    log(f"  {scenario.name}: skipped, {skipped[scenario.name]}")
                    continue
            measured[scenario.name] = stats = measure(running, scenario, cfg)
            log(
                f"  {scenario.name}: {stats['rps']:.0f} req/s, p99 {stats['lat_p99_us'] / 1000:.1f}"
                f" ms, cpu {stats['cpu_percent']:.0f}%, errors {stats['errors_total']:.0f}"
            )
        if target.kind == "ours":
            result["flat"] = flat_rounds(running, scenarios(hash_file, cfg.sizes), cfg, log)
        # Scrapes change nothing, so this is the state right after the largest swarm.
        result["state"] = stored_state(running, every_hash)
        log(f"    state: {result['state']}")
        result["vm_hwm_kib"] = float(status_kib(running.proc.pid, "VmHWM"))
    except (RuntimeError, OSError, subprocess.TimeoutExpired, asyncio.TimeoutError) as exc:
        result["error"] = str(exc)
        log(f"  FAILED: {exc}")
    finally:
        bl.stop_process(running.proc)
    result["scenarios"] = measured
    result["prefill"] = prefills
    result["skipped_scenarios"] = skipped
    return result


def flat_rounds(
    running: Running, found: list[Scenario], cfg: Config, log: Callable[[str], None]
) -> dict[str, list[float]]:
    """The single-swarm loads again, in turns (1, 1,000, 50,000, ...), once every swarm is
    filled: whether an announce costs the same in any swarm is read from measurements taken
    side by side, as the floor pairs are."""
    by_size = {s.prefill_size: s for s in found if s.prefill_size}
    wanted = [by_size[size] for size in (1, 1000, 50000) if size in by_size]
    rates: dict[str, list[float]] = {s.name: [] for s in wanted}
    if len(wanted) < 2:
        return rates
    for _ in range(cfg.pair_rounds):
        for scenario in wanted:
            rates[scenario.name].append(measure(running, scenario, cfg)["rps"])
    log("    in turns: " + ", ".join(f"{n}: {v[-1]:,.0f}" for n, v in rates.items()))
    return rates


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 s measurements, 1 s warm-up")
    parser.add_argument("--duration", type=float, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds (default 2)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--interpreters", default="python3,pypy3-venv", help="comma-separated, for our tracker"
    )
    parser.add_argument(
        "--trackers", default="ours,opentracker,bittorrent-tracker", help="comma-separated"
    )
    parser.add_argument(
        "--sizes", default=",".join(map(str, SINGLE_SWARM_SIZES)), help="single-swarm sizes"
    )
    parser.add_argument(
        "--ours-arg", action="append", default=[], help="extra option for our tracker (repeat)"
    )
    parser.add_argument(
        "--prefill-budget", type=float, help="seconds allowed per swarm prefill (default 120)"
    )
    parser.add_argument(
        "--pypy-nursery",
        default=PYPY_NURSERY,
        help="PYPY_GC_NURSERY for our tracker under PyPy ('' for PyPy's default)",
    )
    parser.add_argument(
        "--pair-rounds", type=int, help="floor/ours measurement pairs per interpreter (default 3)"
    )
    parser.add_argument("--out", type=Path, default=bl.BENCH_DIR, help="output directory")
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace) -> Config:
    duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    budget = args.prefill_budget or (45.0 if args.quick else 120.0)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s)
    rounds = args.pair_rounds or (2 if args.quick else 3)
    return Config(
        duration,
        warmup,
        args.connections,
        args.wrk_threads,
        sizes,
        budget,
        args.ours_arg,
        args.pypy_nursery,
        rounds,
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    cfg = make_config(args)
    interpreters = [i for i in args.interpreters.split(",") if i]
    pin_self()
    found, skipped = targets(interpreters, args.trackers.split(","))
    hashes = all_hashes(cfg.sizes)
    started = time.monotonic()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="trackerbench-") as tmp:
        for target in found:
            print(f"== {target.label}", flush=True)
            workdir = Path(tmp) / target.key
            workdir.mkdir()
            results[target.key] = bench_target(target, workdir, hashes, cfg, print_flush)
        floor: dict[str, object] = {}
        memory: dict[str, object] = {}
        for target in found:
            if target.kind != "ours":
                continue
            print(f"== {target.label} beside the Twisted floor", flush=True)
            workdir = Path(tmp) / f"{target.key}-floor"
            workdir.mkdir()
            measured = ours_against_floor(target, workdir, hashes, cfg, print_flush)
            if "floor" in measured:
                floor[target.key] = measured["floor"]
            if "memory" in measured:
                memory[target.key] = measured["memory"]
            if "error" in measured:
                results[target.key]["error"] = measured["error"]
    document = {
        "machine": machine_info(interpreters),
        "config": {
            "duration_s": cfg.duration, "warmup_s": cfg.warmup, "connections": cfg.connections,
            "wrk_threads": cfg.wrk_threads, "swarms": SWARM_COUNT, "population": POPULATION,
            "single_swarm_sizes": list(cfg.sizes), "numwant": bl.NUMWANT,
            "ours_args": cfg.ours_args, "prefill_budget_s": cfg.prefill_budget,
            "pair_rounds": cfg.pair_rounds, "pypy_nursery": cfg.pypy_nursery,
            "tracker_core": TRACKER_CORE, "load_core": LOAD_CORE,
            "scenarios": [s.name for s in scenarios(Path("hashes.txt"), cfg.sizes)],
        },
        "trackers": results,
        "skipped": skipped,
        "ratios": report.ratios(results),
        "floor": floor,
        "memory": memory,
        "elapsed_s": time.monotonic() - started,
    }  # fmt: skip
    document["goals"] = goals.evaluate(document)
    report.write_all(document, args.out)
    print("== goals (issue 8), each against a figure of this run", flush=True)
    print(goals.text(document["goals"]), flush=True)
    print(f"done in {document['elapsed_s']:.0f} s; wrote {args.out}/RESULTS.md", flush=True)
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed or not results else 0


def print_flush(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
