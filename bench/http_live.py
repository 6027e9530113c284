"""Live HTTP: our tracker against the Twisted floor, opentracker and webtorrent's
bittorrent-tracker, each alone on core 0 under the same wrk loads from core 1.

    python3 bench/run.py http [--quick] [--interpreters python3,pypy3-venv]
                              [--trackers ours,opentracker,bittorrent-tracker] [--sizes ...]

Every tracker takes the same sequence of loads; then, per interpreter of ours, the floor
(bench/floor.py) and ours take the keep-alive load in turns (each pair's ratio from
measurements seconds apart, which cancels the drift of these machines), and a fresh tracker is
filled with a known number of peers for its memory. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import benchlib as bl
import report


@dataclass
class Scenario:
    name: str
    lua_args: list[str]
    prefill_size: int = 0  # peers to put into the single swarm before measuring


@dataclass
class Target:
    key: str
    label: str
    kind: str  # "ours", "floor", "opentracker" or "bittorrent-tracker"
    interpreter: str = ""


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    database: Path | None = None


def bittorrent_tracker_version() -> str:
    package = bl.BENCH_DIR / "node_modules" / "bittorrent-tracker" / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "not installed"


def machine_info(interpreters: list[str]) -> dict[str, object]:
    return {
        **bl.machine(),
        "pythons": {
            name: bl.command_output([bl.interpreter_path(name), "--version"]) or "missing"
            for name in interpreters
        },
        "node": bl.command_output(["node", "--version"]),
        "wrk": bl.command_output(["wrk", "--version"]).split(" [")[0],
        "opentracker": bl.command_output(["dpkg-query", "-W", "-f", "${Version}", "opentracker"]),
        "bittorrent_tracker": bittorrent_tracker_version(),
    }


# --- hashes and scenarios -----------------------------------------------------------------


def every_hash(sizes: list[int]) -> list[bytes]:
    """Every info hash the run uses (for opentracker's whitelist)."""
    swarms = [bl.swarm_hash(k) for k in range(bl.SWARMS)]
    return swarms + [bl.single_swarm_hash(n) for n in sizes]


def scenarios(hash_file: Path, sizes: list[int]) -> list[Scenario]:
    many = ["swarms", str(hash_file), str(bl.POPULATION)]
    found = [
        Scenario(report.KEEP_ALIVE, many),
        Scenario(report.CLOSE, [*many, "close"]),
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


def start(target: Target, workdir: Path, args: argparse.Namespace) -> Running:
    workdir.mkdir(exist_ok=True)
    port = bl.free_port()
    log = workdir / f"{target.kind}.log"
    database = None
    cwd = bl.REPO_DIR
    interpreter = bl.interpreter_path(target.interpreter)
    if target.kind == "ours":
        database = workdir / "db.sqlite3"
        cmd = bl.ours_command(interpreter, port, database, args.ours_arg)
        cmd = bl.with_nursery(cmd, args.pypy_nursery)
    elif target.kind == "floor":
        cmd = [interpreter, str(bl.BENCH_DIR / "floor.py"), "http", str(port)]
        cmd = bl.with_nursery(cmd, args.pypy_nursery)
    elif target.kind == "opentracker":
        cmd = bl.opentracker_command(workdir, ["-p", str(port)], every_hash(args.sizes))
        cwd = workdir
    else:
        cmd = ["node", str(bl.BENCH_DIR / "bt_tracker.mjs"), str(port)]
        cwd = bl.BENCH_DIR
    proc = bl.start_process(cmd, log, bl.TRACKER_CORE, cwd)
    try:
        bl.wait_for_port(port, proc)
    except RuntimeError as exc:
        bl.stop_process(proc)
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{target.label} did not start: {exc}\n{tail}") from exc
    return Running(proc, port, database)


def targets(interpreters: list[str], wanted: list[str]) -> tuple[list[Target], dict[str, str]]:
    found: list[Target] = []
    skipped: dict[str, str] = {}
    if "ours" in wanted:
        for interp in interpreters:
            key = f"ours-{interp}"
            reason = bl.interpreter_ready(bl.interpreter_path(interp))
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


def measure(running: Running, scenario: Scenario, args: argparse.Namespace) -> dict[str, float]:
    pid = running.proc.pid

    def wrk(seconds: float) -> dict[str, float]:
        return bl.run_wrk(
            running.port, scenario.lua_args, seconds, args.connections, args.wrk_threads
        )

    if args.warmup > 0:
        wrk(args.warmup)
    sampler = bl.RssSampler(pid)
    cpu_before, wall_before = bl.cpu_seconds(pid), time.monotonic()
    sampler.start()
    stats = wrk(args.duration)
    cpu_after, wall_after = bl.cpu_seconds(pid), time.monotonic()
    peak_kib = sampler.stop()
    if running.proc.poll() is not None:
        raise RuntimeError(f"tracker exited with code {running.proc.returncode}")
    seconds = stats["duration_us"] / 1e6
    cpu_used = cpu_after - cpu_before
    # Read errors are left out: wrk counts one each time a server closes a kept-alive
    # connection after a complete response (opentracker does so every time). They are
    # reported on their own; a request lost that way is also missing from "ok".
    socket_errors = sum(stats[k] for k in ("err_connect", "err_write", "err_timeout"))
    return {
        **stats,
        "rps": stats["requests"] / seconds,
        "ok_rps": stats["ok"] / seconds,
        "cpu_percent": 100.0 * cpu_used / (wall_after - wall_before),
        "requests_per_cpu_second": stats["requests"] / cpu_used if cpu_used > 0 else 0.0,
        "rss_peak_kib": float(peak_kib),
        "errors_total": stats["failure"] + stats["bad_status"] + socket_errors,
        "avg_peers_returned": stats["peers_returned"] / stats["ok"] if stats["ok"] else 0.0,
    }


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
        sizes = {s: _size(Path(str(running.database) + s)) for s in ("", "-wal")}
        state["db_bytes"] = float(sizes[""])
        state["wal_bytes"] = float(sizes["-wal"])
        state["db_bytes_per_peer"] = (sizes[""] + sizes["-wal"]) / peers if peers else 0.0
    return state


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def bench_target(
    target: Target, workdir: Path, args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every scenario in order on one fresh tracker."""
    hash_file = workdir / "hashes.txt"
    found = scenarios(hash_file, args.sizes)
    running = start(target, workdir, args)
    result: dict[str, Any] = {"label": target.label, "kind": target.kind}
    measured: dict[str, object] = {}
    prefills: dict[str, object] = {}
    skipped: dict[str, str] = {}
    try:
        for scenario in found:
            size = scenario.prefill_size
            if size:
                prefills[str(size)] = fill = prefill(running, size, args.prefill_budget)
                log(f"    prefill: {fill['sent']:.0f} of {size} peers in {fill['seconds']:.1f} s")
                if not fill["complete"]:
                    # Some trackers spend time linear in the swarm size on every announce.
                    skipped[scenario.name] = (
                        f"prefill reached {fill['sent']:,.0f} of {size:,} peers within the "
                        f"{args.prefill_budget:.0f} s budget"
                    )
                    log(f"  {scenario.name}: skipped, {skipped[scenario.name]}")
                    continue
            measured[scenario.name] = stats = measure(running, scenario, args)
            log(
                f"  {scenario.name}: {stats['rps']:.0f} req/s, p99 {stats['lat_p99_us'] / 1000:.1f}"
                f" ms, cpu {stats['cpu_percent']:.0f}%, errors {stats['errors_total']:.0f}"
            )
        if target.kind == "ours":
            result["flat"] = flat_rounds(running, found, args, log)
        # Scrapes change nothing, so this is the state right after the largest swarm.
        result["state"] = stored_state(running, every_hash(args.sizes))
        log(f"    state: {result['state']}")
        result["vm_hwm_kib"] = float(bl.status_kib(running.proc.pid, "VmHWM"))
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
    running: Running, found: list[Scenario], args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, list[float]]:
    """The single-swarm loads again, in turns (1, 1,000, 50,000, ...), once every swarm is
    filled: whether an announce costs the same in any swarm is read from measurements taken
    side by side, as the floor pairs are."""
    by_size = {s.prefill_size: s for s in found if s.prefill_size}
    wanted = [by_size[size] for size in (1, 1000, 50000) if size in by_size]
    rates: dict[str, list[float]] = {s.name: [] for s in wanted}
    if len(wanted) < 2:
        return rates
    for _ in range(args.pair_rounds):
        for scenario in wanted:
            rates[scenario.name].append(measure(running, scenario, args)["rps"])
    log("    in turns: " + ", ".join(f"{n}: {v[-1]:,.0f}" for n, v in rates.items()))
    return rates


# --- ours beside the floor, and its memory ----------------------------------------------------


def floor_pairs(
    target: Target, workdir: Path, args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, Any]:
    """The floor and ours side by side on the tracker core, the same wrk load going to one,
    then the other, C{args.pair_rounds} times: each pair's ratio is read from measurements a
    few seconds apart, so the drift of these machines (the PyPy floor has moved by 1.6x within
    minutes) cancels out."""
    keep_alive = scenarios(workdir / "hashes.txt", args.sizes)[0]
    floor_target = Target("floor", "floor", "floor", target.interpreter)
    floor = start(floor_target, workdir / "floor", args)
    try:
        ours = start(target, workdir / "ours", args)
    except BaseException:
        bl.stop_process(floor.proc)
        raise
    pairs = []
    try:
        for n in range(args.pair_rounds):
            floor_stats = measure(floor, keep_alive, args)
            ours_stats = measure(ours, keep_alive, args)
            ratio = ours_stats["rps"] / floor_stats["rps"] if floor_stats["rps"] else 0.0
            pairs.append({"floor": floor_stats, "ours": ours_stats, "ratio": ratio})
            log(
                f"  pair {n + 1}: floor {floor_stats['rps']:,.0f} req/s (p99"
                f" {floor_stats['lat_p99_us'] / 1000:.1f} ms), ours {ours_stats['rps']:,.0f}"
                f" req/s (p99 {ours_stats['lat_p99_us'] / 1000:.1f} ms): {ratio:.2f} of the floor"
            )
    finally:
        bl.stop_process(floor.proc)
        bl.stop_process(ours.proc)

    def median(side: str, field: str) -> float:
        return statistics.median(p[side][field] for p in pairs)

    return {
        "pairs": pairs,
        "ratio_median": statistics.median(p["ratio"] for p in pairs),
        "ratio_min": min(p["ratio"] for p in pairs),
        "floor_rps_median": median("floor", "rps"),
        "ours_rps_median": median("ours", "rps"),
        "floor_p99_us_median": median("floor", "lat_p99_us"),
        "ours_p99_us_median": median("ours", "lat_p99_us"),
        "floor_rss_peak_kib": max(p["floor"]["rss_peak_kib"] for p in pairs),
        "ours_rss_peak_kib": max(p["ours"]["rss_peak_kib"] for p in pairs),
    }


def _send(port: int, paths: list[str]) -> bl.LoadStats:
    return asyncio.run(bl.run_requests(port, paths, concurrency=32, seconds=300))


def memory(running: Running, peers: int, log: Callable[[str], None]) -> dict[str, float]:
    """Warm ours up with peers that come and go, then hold exactly C{peers} peers."""
    pid, port = running.proc.pid, running.port
    # The same requests as the fill below, into other swarms, and then every peer stops: the
    # heap has grown to what this load needs and the code is warm before "no peers" is read.
    warm = [bl.named_hash(f"warm-{k}") for k in range(bl.SWARMS)]
    for event in ("started", None, "stopped"):
        _send(port, [bl.announce_path(warm[i % bl.SWARMS], i, event) for i in range(peers)])
    time.sleep(1)
    empty_kib = float(bl.status_kib(pid, "VmRSS"))
    fill = [
        bl.announce_path(bl.swarm_hash(i % bl.SWARMS), i, "started", numwant=0)
        for i in range(peers)
    ]
    stats = _send(port, fill)
    # Then everyone announces again, as a live swarm does, with peers in the replies.
    _send(port, [bl.announce_path(bl.swarm_hash(i % bl.SWARMS), i) for i in range(peers)])
    time.sleep(1)
    full_kib = float(bl.status_kib(pid, "VmRSS"))
    result = {
        "peers": float(peers),
        "filled_ok": float(stats.ok),
        "rss_empty_kib": empty_kib,
        "rss_full_kib": full_kib,
        "rss_peak_kib": float(bl.status_kib(pid, "VmHWM")),
        "bytes_per_peer": (full_kib - empty_kib) * 1024 / peers,
    }
    log(
        f"  memory: {empty_kib / 1024:.1f} MiB warmed up with no peers, {full_kib / 1024:.1f} MiB"
        f" with {peers:,} ({result['bytes_per_peer']:.0f} bytes/peer), peak"
        f" {result['rss_peak_kib'] / 1024:.1f} MiB"
    )
    return result


def index_memory(interpreter: str, peers: int, log: Callable[[str], None]) -> float:
    """`run.py memory` under C{interpreter}: the index's bytes per peer, counted."""
    done = subprocess.run(
        [interpreter, str(bl.BENCH_DIR / "run.py"), "memory", "--peers", str(peers),
         "--private-peers", "0", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"run.py memory failed: {done.stderr.strip()[-500:]}")
    counted = float(json.loads(done.stdout.splitlines()[-1])["index_bytes_per_peer"])
    log(f"  index alone: {counted:.0f} bytes/peer over {peers:,} peers")
    return counted


def ours_against_floor(
    target: Target, workdir: Path, args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, Any]:
    """Floor pairs on the keep-alive announce load, then the memory check, for one interpreter."""
    workdir.mkdir()
    (workdir / "hashes.txt").write_text("".join(h.hex() + "\n" for h in every_hash([])))
    result: dict[str, Any] = {}
    try:
        result["floor"] = floor_pairs(target, workdir, args, log)
        running = start(target, workdir / "memory", args)
        try:
            result["memory"] = found = memory(running, args.memory_peers, log)
        finally:
            bl.stop_process(running.proc)
        interpreter = bl.interpreter_path(target.interpreter)
        found["index_bytes_per_peer"] = index_memory(interpreter, args.index_peers, log)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, asyncio.TimeoutError) as exc:
        result["error"] = str(exc)
        log(f"  FAILED: {exc}")
    return result


# --- the subcommand -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    bl.option(parser, "--duration", 10.0, 3.0, "seconds per measurement", float)
    bl.option(parser, "--warmup", 2.0, 1.0, "seconds of warm-up before each", float)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--interpreters", default="python3,pypy3-venv", help="for our tracker, comma-separated"
    )
    parser.add_argument(
        "--trackers", default="ours,opentracker,bittorrent-tracker", help="comma-separated"
    )
    bl.option(parser, "--sizes", "1,1000,10000,50000", "1,1000", "single-swarm sizes", str)
    parser.add_argument(
        "--ours-arg", action="append", default=[], help="extra option for our tracker (repeat)"
    )
    bl.option(parser, "--prefill-budget", 120.0, 45.0, "seconds to fill one swarm", float)
    parser.add_argument(
        "--pypy-nursery",
        default=bl.PYPY_NURSERY,
        help="PYPY_GC_NURSERY for ours and the floor under PyPy ('' for PyPy's default)",
    )
    bl.option(parser, "--pair-rounds", 3, 2, "floor/ours pairs, and rounds of turns")
    bl.option(parser, "--memory-peers", 50_000, 5_000, "peers for the RSS measurement")
    bl.option(parser, "--index-peers", 500_000, 50_000, "peers for the index's own count")


def run(args: argparse.Namespace) -> int:
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s]
    interpreters = [i for i in args.interpreters.split(",") if i]
    bl.pin_self()
    found, skipped = targets(interpreters, args.trackers.split(","))
    started = time.monotonic()
    results: dict[str, Any] = {}
    floor: dict[str, object] = {}
    memory_found: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="trackerbench-") as tmp:
        for target in found:
            print(f"== {target.label}", flush=True)
            workdir = Path(tmp) / target.key
            workdir.mkdir()
            hashes = [bl.swarm_hash(k) for k in range(bl.SWARMS)]
            (workdir / "hashes.txt").write_text("".join(h.hex() + "\n" for h in hashes))
            results[target.key] = bench_target(target, workdir, args, print_flush)
        for target in found:
            if target.kind != "ours":
                continue
            print(f"== {target.label} beside the Twisted floor", flush=True)
            measured = ours_against_floor(
                target, Path(tmp) / f"{target.key}-floor", args, print_flush
            )
            if "floor" in measured:
                floor[target.key] = measured["floor"]
            if "memory" in measured:
                memory_found[target.key] = measured["memory"]
            if "error" in measured:
                results[target.key]["error"] = measured["error"]
    document: dict[str, Any] = {
        "machine": machine_info(interpreters),
        "config": {
            "duration_s": args.duration, "warmup_s": args.warmup,
            "connections": args.connections, "wrk_threads": args.wrk_threads,
            "swarms": bl.SWARMS, "population": bl.POPULATION, "single_swarm_sizes": args.sizes,
            "numwant": bl.NUMWANT, "ours_args": args.ours_arg,
            "prefill_budget_s": args.prefill_budget, "pair_rounds": args.pair_rounds,
            "pypy_nursery": args.pypy_nursery, "tracker_core": bl.TRACKER_CORE,
            "load_core": bl.LOAD_CORE,
            "scenarios": [s.name for s in scenarios(Path("hashes.txt"), args.sizes)],
        },
        "trackers": results,
        "skipped": skipped,
        "floor": floor,
        "memory": memory_found,
        "elapsed_s": time.monotonic() - started,
    }  # fmt: skip
    document["goals"] = report.goals(document)
    notes, tables = report.http_live(document)
    report.record(
        args, "http", "live", "Live, beside the Twisted floor and the other trackers", tables,
        document, notes, per_interpreter=False,
    )  # fmt: skip
    print("== goals, each against a figure of this run", flush=True)
    print(report.goals_text(document["goals"]), flush=True)
    print(f"done in {document['elapsed_s']:.0f} s", flush=True)
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed or not results else 0


def print_flush(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit("run it as: python3 bench/run.py http")
