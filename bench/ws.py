"""Live WebSocket (WebTorrent) tracking: ours on each interpreter beside bittorrent-tracker's
WebSocket server, the same load for every one, each fresh and alone on core 0, the load
(ws_load.mjs, in Node) on core 1.

    python3 bench/run.py ws [--quick] [--rounds 3] [--duration 15] [--warmup 5] [--idle 10000]
                            [--targets python3,pypy3-venv,bittorrent-tracker]

Two measurements a target and round:

- load: 200 connections, one leecher each, of 10 torrents; each keeps one announce in
  flight, carrying 5 offers of 480-character SDPs, and answers every offer relayed to it at
  once. Announces answered per second, and messages the tracker read per second (announces
  and answers), with the tracker's processor use (below 100 %: something else limited it).
- idle: --idle connections opened, each announcing once (no offers) and then silent. Memory
  per connection: the tracker's resident memory with them open, less before (after a
  warm-up of 500 connections opened and closed), over their number. Then a scrape on every
  one: how many are answered ("held"). Under CPython, also the Python objects they hold,
  counted by tracemalloc (bench/ws_memory.py).

The goals (issue 27) are printed as met or not, each from figures of this run. Needs Node and
bench/node_modules (npm ci --prefix bench --ignore-scripts); RLIMIT_NOFILE is raised to its
hard limit for every process started.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib as bl
import report

LOAD = bl.BENCH_DIR / "ws_load.mjs"
REFERENCE = "bittorrent-tracker"
CONNECTIONS = 200
TORRENTS = 10
OFFERS = 5
SDP_LENGTH = 480
#: Connections opened and closed before the idle measurement's first reading.
WARM_UP_CONNECTIONS = 500
#: Goals: announces a second against the reference's, by interpreter; bytes an idle
#: connection; idle connections held.
RATIO_GOALS = {"pypy3-venv": 1.0, "python3": 0.6}
BYTES_GOAL = 10_000
HELD_GOAL = 10_000


@dataclass
class Target:
    key: str
    label: str
    interpreter: str | None = None  # None: bittorrent-tracker


def raise_file_limit() -> int:
    """Open files: the soft limit raised to the hard one, for this process and its children."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def start(target: Target, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = bl.free_port()
    if target.interpreter is None:
        cmd = ["node", str(bl.BENCH_DIR / "bt_ws.mjs"), str(port)]
        url = f"ws://{bl.HOST}:{port}"
    else:
        cmd = bl.with_nursery(
            bl.ours_command(target.interpreter, port, workdir / "db.sqlite3", ["--no-udp"])
        )
        url = f"ws://{bl.HOST}:{port}/announce"
    proc = bl.start_process(cmd, workdir / "tracker.log", bl.TRACKER_CORE, bl.REPO_DIR)
    try:
        bl.wait_for_port(port, proc)
    except RuntimeError:
        log = (workdir / "tracker.log").read_text(errors="replace")[-2000:]
        bl.stop_process(proc)
        raise RuntimeError(f"{target.label} did not start:\n{log}") from None
    return proc, url


def node(*args: str) -> list[str]:
    return bl.on_load_core(["node", str(LOAD), *args])


def measure_load(target: Target, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ws-bench-") as tmp:
        proc, url = start(target, Path(tmp))
        try:
            load = subprocess.Popen(
                node(
                    "load", url, str(CONNECTIONS), str(TORRENTS), str(OFFERS),
                    str(args.warmup), str(args.duration), str(SDP_LENGTH),
                ),
                stdout=subprocess.PIPE, cwd=bl.BENCH_DIR,
            )  # fmt: skip
            time.sleep(args.warmup)
            cpu_before = bl.cpu_seconds(proc.pid)
            began = time.monotonic()
            output, _ = load.communicate(timeout=args.warmup + args.duration + 60)
            cpu = (bl.cpu_seconds(proc.pid) - cpu_before) / max(time.monotonic() - began, 1e-9)
            if proc.poll() is not None:
                raise RuntimeError(f"{target.label} exited during the load")
            counts = json.loads(output.decode().strip().splitlines()[-1])
        finally:
            bl.stop_process(proc)
    seconds = counts["seconds"]
    return {
        "announces_per_s": counts["announces"] / seconds,
        "messages_per_s": (counts["announces"] + counts["answers_sent"]) / seconds,
        "relayed_per_s": (counts["offers_received"] + counts["answers_received"]) / seconds,
        "failures": counts["failures"],
        "closed": counts["closed"],
        "cpu": cpu,
    }


def _read_json_line(stream: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        if line.startswith(b"{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise RuntimeError("the load generator said nothing")


def measure_idle(target: Target, count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ws-idle-") as tmp:
        proc, url = start(target, Path(tmp))
        try:
            warm = subprocess.Popen(
                node("idle", url, str(WARM_UP_CONNECTIONS), str(TORRENTS)),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=bl.BENCH_DIR,
            )  # fmt: skip
            _read_json_line(warm.stdout, 60)
            warm.communicate(b"close\n", timeout=30)
            time.sleep(2)
            before = bl.status_kib(proc.pid, "VmRSS")
            idle = subprocess.Popen(
                node("idle", url, str(count), str(TORRENTS)),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=bl.BENCH_DIR,
            )  # fmt: skip
            try:
                opened = _read_json_line(idle.stdout, 300)
                time.sleep(2)
                after = bl.status_kib(proc.pid, "VmRSS")
                assert idle.stdin is not None
                idle.stdin.write(b"check\n")
                idle.stdin.flush()
                checked = _read_json_line(idle.stdout, 60)
                idle.stdin.write(b"close\n")
                idle.stdin.flush()
                idle.wait(30)
            finally:
                if idle.poll() is None:
                    bl.kill_hard(idle)
            if proc.poll() is not None:
                raise RuntimeError(f"{target.label} exited with {count} connections open")
        finally:
            bl.stop_process(proc)
    return {
        "opened": opened["opened"],
        "refused": opened["failed"],
        "answered": checked["answered"],
        "bytes_per_connection": (after - before) * 1024 / max(opened["opened"], 1),
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
    }


def measure_objects(interpreter: str, count: int) -> dict[str, float]:
    """Bytes an idle connection holds in Python objects, by tracemalloc (bench/ws_memory.py,
    the tracker's site in a process of its own under CPython)."""
    done = subprocess.run(
        [interpreter, str(bl.BENCH_DIR / "ws_memory.py"), str(count)],
        capture_output=True, timeout=600, cwd=bl.BENCH_DIR,
    )  # fmt: skip
    lines = [line for line in done.stdout.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"ws_memory.py said nothing: {done.stderr.decode()[-2000:]}")
    figures: dict[str, float] = json.loads(lines[-1])
    return figures


def targets(names: list[str]) -> list[Target]:
    found = []
    for name in names:
        if name == REFERENCE:
            modules = bl.BENCH_DIR / "node_modules" / "bittorrent-tracker"
            if shutil.which("node") and modules.exists():
                found.append(Target(REFERENCE, REFERENCE))
            else:
                print(f"skipping {REFERENCE}: needs node and bench/node_modules", flush=True)
            continue
        interpreter = bl.interpreter_path(name)
        reason = bl.interpreter_ready(interpreter)
        if reason is None:
            found.append(Target(name, f"ours ({name})", interpreter))
        else:
            print(f"skipping ours on {name}: {reason}", flush=True)
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    bl.option(parser, "--duration", 15.0, 3.0, "seconds of each load measurement", float)
    bl.option(parser, "--warmup", 5.0, 1.0, "seconds of warm-up before it", float)
    bl.option(parser, "--rounds", 3, 1, "rounds")
    bl.option(parser, "--idle", HELD_GOAL, 1000, "idle connections to hold")
    parser.add_argument("--targets", default=f"python3,pypy3-venv,{REFERENCE}")


def goals(
    loads: dict[str, list[dict[str, float]]],
    idles: dict[str, dict[str, float]],
    idle: int,
    objects: dict[str, float] | None,
) -> list[list[Any]]:
    """Each goal: [goal, figure, target, met]."""
    rows: list[list[Any]] = []
    if objects is not None:
        per = objects["bytes_per_connection"]
        rows.append(
            [f"Python objects an idle connection holds (tracemalloc, CPython, "
             f"{objects['opened']:,.0f} open)", f"{per:,.0f} bytes", f"<= {BYTES_GOAL:,}",
             per <= BYTES_GOAL]
        )  # fmt: skip
    reference = loads.get(REFERENCE)
    for name, wanted in RATIO_GOALS.items():
        ours = loads.get(name)
        if ours is None or reference is None:
            continue
        # A ratio per round, ours and the reference measured minutes apart at most.
        ratio = statistics.median(
            mine["announces_per_s"] / theirs["announces_per_s"]
            for mine, theirs in zip(ours, reference)
        )
        rows.append(
            [f"announces/s, ours ({name}) / {REFERENCE}", f"{ratio:.2f}x", f">= {wanted}x",
             ratio >= wanted]
        )  # fmt: skip
    for name, figures in idles.items():
        if name == REFERENCE:
            continue
        per = figures["bytes_per_connection"]
        rows.append(
            [f"memory an idle connection, ours ({name})", f"{per:,.0f} bytes",
             f"<= {BYTES_GOAL:,}", per <= BYTES_GOAL]
        )  # fmt: skip
        held = figures["answered"]
        rows.append(
            [f"idle connections held and answered, ours ({name})",
             f"{held:,.0f} of {idle:,}", f">= {HELD_GOAL:,}", held >= HELD_GOAL]
        )  # fmt: skip
    return rows


def run(args: argparse.Namespace) -> int:
    limit = raise_file_limit()
    if limit < args.idle + 1000:
        print(f"open files are limited to {limit}: --idle {args.idle} may not fit", flush=True)
    found = targets(args.targets.split(","))
    loads: dict[str, list[dict[str, float]]] = {target.key: [] for target in found}
    for round_number in range(1, args.rounds + 1):
        for target in found:
            result = measure_load(target, args)
            loads[target.key].append(result)
            print(
                f"round {round_number}: {target.label}: {result['announces_per_s']:,.0f}"
                f" announces/s, {result['messages_per_s']:,.0f} messages/s read,"
                f" {result['relayed_per_s']:,.0f} relayed/s, cpu {result['cpu']:.0%},"
                f" {result['failures']:.0f} failures",
                flush=True,
            )
    idles: dict[str, dict[str, float]] = {}
    for target in found:
        idles[target.key] = measure_idle(target, args.idle)
        figures = idles[target.key]
        print(
            f"idle: {target.label}: {figures['opened']:,.0f} opened, {figures['answered']:,.0f}"
            f" answered, {figures['bytes_per_connection']:,.0f} bytes a connection"
            f" ({figures['rss_before_mib']:.0f} -> {figures['rss_after_mib']:.0f} MiB)",
            flush=True,
        )
    objects = None
    cpython = next((t for t in found if t.key == "python3"), None)
    if cpython is not None and cpython.interpreter is not None:
        objects = measure_objects(cpython.interpreter, args.idle)
        print(
            f"idle: ours (python3), tracemalloc: {objects['bytes_per_connection']:,.0f} bytes"
            f" a connection, {objects['opened']:,.0f} open",
            flush=True,
        )
    labels = {target.key: target.label for target in found}
    load_table = report.table(
        ["tracker", "announces/s", "messages/s read", "relayed/s", "cpu", "failures"],
        [
            [
                labels[key],
                statistics.median(r["announces_per_s"] for r in runs),
                statistics.median(r["messages_per_s"] for r in runs),
                statistics.median(r["relayed_per_s"] for r in runs),
                f"{statistics.median(r['cpu'] for r in runs):.0%}",
                sum(r["failures"] for r in runs),
            ]
            for key, runs in loads.items()
        ],
        f"Load: medians of {args.rounds} rounds",
    )
    idle_table = report.table(
        ["tracker", "opened", "answered", "bytes a connection", "RSS before, MiB", "after"],
        [
            [
                labels[key],
                f["opened"],
                f["answered"],
                f["bytes_per_connection"],
                f["rss_before_mib"],
                f["rss_after_mib"],
            ]
            for key, f in idles.items()
        ],  # fmt: skip
        f"Idle: {args.idle:,} connections",
    )
    goal_rows = goals(loads, idles, args.idle, objects)
    goal_table = report.table(
        ["goal", "measured", "target", "met"],
        [[g, figure, wanted, "met" if met else "NOT MET"] for g, figure, wanted, met in goal_rows],
        "Goals (issue 27)",
    )
    tables = [goal_table, load_table, idle_table]
    for t in tables:
        print(f"{t['title']}\n" + report.markdown_table(t["head"], t["rows"]), flush=True)
    setup = (
        f"{args.rounds} rounds of {args.duration:g} s after {args.warmup:g} s of warm-up;"
        f" {CONNECTIONS} connections, {TORRENTS} torrents, {OFFERS} offers of {SDP_LENGTH}"
        f" characters an announce, every offer answered; {args.idle:,} idle connections;"
        f" tracker on core {bl.TRACKER_CORE}, load (Node) on core {bl.LOAD_CORE}."
    )
    report.record(
        args, "ws", "live", f"Live, beside {REFERENCE}", tables,
        {"setup": setup, "labels": labels, "loads": loads, "idle": idles, "objects": objects},
        [setup],
        per_interpreter=False,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit("run it as: python3 bench/run.py ws")
