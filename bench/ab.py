"""This checkout's request path against another revision's, in turns.

    python3 bench/run.py ab [--baseline REV] [--protocol http|udp] [--rounds N] [--requests N]
    python3 bench/run.py ab --live [--baseline REV] [--interpreter pypy3-venv|python3]
                                   [--population fixed|churn] [--rounds N]

In process (the default): the baseline's tracker package (by default where this branch left
main: git merge-base HEAD main) is taken from git (git archive REV tracker) and imported beside
this checkout's, each under its own modules, so that both serve the same requests in the same
process, turn about: baseline, this checkout, this checkout, baseline, ... A pair of turns is a
few hundred milliseconds apart, so the drift of a machine shared with other work, which moves
separate runs by 10-20 %, mostly cancels; and each turn is timed in processor time, which the
time another process has the core does not lengthen. HTTP: bench/inprocess.py's keep-alive
announces through each side's TrackerSite on its memory store; UDP: its announces through each
side's UDPTracker.datagramReceived. The figure is the median, after the warm-up rounds, of a
ratio per two rounds, one in each order (this checkout's time over the baseline's: above 1,
this checkout costs more). The side built second came out a few percent slower on PyPy even
with the same code on both sides (--baseline HEAD on a clean checkout measures that), so the
comparison runs once with each side built first and reports the geometric mean of the two.

--live (UDP): each revision's daemon (the baseline's from a directory of its own) under
udpload.c's load, in alternating rounds, each fresh and alone on core 0; the figure is the
median over the rounds of the baseline's announces per second over this checkout's. In process
an announce into a warm index costs about a microsecond under PyPy, so a few nanoseconds show
as a few percent; this shows what they are to an announce as a client gets it answered, kernel
and database thread included.
"""

from __future__ import annotations

import argparse
import importlib
import math
import random
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import benchlib as bl
import inprocess
import report
import udp_live
from twisted.internet.task import Clock

#: BEP 15's connect request: the protocol's magic number, action 0, a transaction ID.
_CONNECT = struct.pack("!Q", 0x41727101980) + b"\0\0\0\0CONN"
MODULES = (
    "tracker.core.config",
    "tracker.http.resource",
    "tracker.http.site",
    "tracker.store.memory",
    "tracker.udp.protocol",
)


def export(revision: str, where: Path, *paths: str) -> Path:
    """C{paths} (the tracker package, ...) as of C{revision}, in C{where}."""
    where.mkdir(exist_ok=True)
    archive = _git("archive", revision, *paths)
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def load(tree: Path) -> dict[str, ModuleType]:
    """The tracker package found in C{tree}, imported apart from the one already loaded."""
    ours = {name: module for name, module in sys.modules.items() if _is_tracker(name)}
    for name in ours:
        del sys.modules[name]
    sys.path.insert(0, str(tree))
    try:
        return {name: importlib.import_module(name) for name in MODULES}
    finally:
        sys.path.remove(str(tree))
        for name in [name for name in sys.modules if _is_tracker(name)]:
            del sys.modules[name]
        sys.modules.update(ours)


def _is_tracker(name: str) -> bool:
    return name == "tracker" or name.startswith("tracker.")


def http_side(modules: dict[str, ModuleType], batch: list[bytes]) -> Callable[[], float]:
    store = modules["tracker.store.memory"].MemoryPeerStore(random.Random(1))
    resource = modules["tracker.http.resource"].TrackerResource(
        store, modules["tracker.core.config"].TrackerConfig()
    )
    connections = inprocess.Connections(modules["tracker.http.site"].TrackerSite(resource))
    connections.send(batch)  # fill the swarms
    return lambda: _cpu(connections.send, batch)


def udp_side(modules: dict[str, ModuleType], count: int) -> Callable[[], float]:
    clock = Clock()
    clock.advance(1_000_000)
    tracker: Any = modules["tracker.udp.protocol"].UDPTracker(
        modules["tracker.store.memory"].MemoryPeerStore(random.Random(7)),
        modules["tracker.core.config"].TrackerConfig(),
        clock,
        random.Random(3),
    )
    # A connection ID as a client gets one, whatever the revision's API for issuing them.
    replies: list[bytes] = []
    tracker._sendto = lambda data, addr: replies.append(data)
    tracker.datagramReceived(_CONNECT, inprocess.CLIENT)
    connection_id = replies[-1][8:16]
    tracker.transport = inprocess._Transport()
    tracker.startProtocol()
    rng = random.Random(1)
    batch = [bl.udp_announce(rng, connection_id, n) for n in range(count)]
    inprocess.feed(tracker.datagramReceived, batch, None)  # fill the swarms
    return lambda: _cpu(inprocess.feed, tracker.datagramReceived, batch, None)


def both_orders(args: argparse.Namespace) -> int:
    """One run with each side built first, and the geometric mean of their medians."""
    medians = []
    for order in ("baseline-first", "ours-first"):
        output = subprocess.run(
            [sys.executable, str(bl.BENCH_DIR / "run.py"), *args.argv,
             "--baseline", args.baseline, "--order", order, "--out", "-"],
            check=True, capture_output=True, timeout=3600,
        ).stdout.decode()  # fmt: skip
        summary = [line for line in output.splitlines() if "this checkout costs" in line][-1]
        print(f"{order}: {summary}", flush=True)
        medians.append(float(re.search(r"costs ([\d.]+) x", summary)[1]))  # type: ignore[index]
    mean = math.sqrt(medians[0] * medians[1])
    print(
        f"{sys.implementation.name} {args.protocol}: this checkout costs {mean:.3f} x"
        f" {args.baseline} (geometric mean of the two orders)"
    )
    rows = [
        ["the baseline", f"{medians[0]:.3f}"],
        ["this checkout", f"{medians[1]:.3f}"],
        ["geometric mean", f"{mean:.3f}"],
    ]
    notes = [
        f"{args.rounds} rounds after {args.warmup_rounds} of warm-up, {args.requests:,} requests"
        " a round; above 1, this checkout costs more."
    ]
    head = ["built first", "this checkout's time / the baseline's (median)"]
    figures = {"baseline": args.baseline, "medians": medians, "geometric_mean": mean}
    title = f"In process, against {args.baseline}"
    report.record(args, args.protocol, "ab", title, [report.table(head, rows)], figures, notes)
    return 0


def _git(*arguments: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(bl.REPO_DIR), *arguments], check=True, capture_output=True
    ).stdout


def _cpu(function: Callable[..., object], *args: Any) -> float:
    """Processor seconds C{function} took: unlike the wall clock, not lengthened by the time
    another process had the core."""
    started = time.process_time()
    function(*args)
    return time.process_time() - started


def in_process(args: argparse.Namespace) -> int:
    """One order's rounds; prints the median of the pairs' ratios."""
    with tempfile.TemporaryDirectory(prefix="tracker-ab-") as folder:
        baseline_modules = load(export(args.baseline, Path(folder), "tracker"))
    ours_modules = {name: importlib.import_module(name) for name in MODULES}
    assert baseline_modules["tracker.http.resource"] is not ours_modules["tracker.http.resource"]
    if args.protocol == "http":
        batch = inprocess.requests("swarms", args.requests)

        def side(modules: dict[str, ModuleType]) -> Callable[[], float]:
            return http_side(modules, batch)
    else:

        def side(modules: dict[str, ModuleType]) -> Callable[[], float]:
            return udp_side(modules, args.requests)

    if args.order == "ours-first":
        ours = side(ours_modules)
        baseline = side(baseline_modules)
    else:
        baseline = side(baseline_modules)
        ours = side(ours_modules)
    times: list[tuple[float, float]] = []
    for n in range(args.warmup_rounds + args.rounds):
        # Each side goes first every other round, so neither always follows the other.
        if n % 2:
            ours_s, baseline_s = ours(), baseline()
        else:
            baseline_s, ours_s = baseline(), ours()
        if n >= args.warmup_rounds:
            times.append((baseline_s, ours_s))
        print(
            f"round {n + 1}{' (warm-up)' if n < args.warmup_rounds else ''}: {args.baseline} "
            f"{baseline_s / args.requests * 1e6:.2f} us/request, this checkout "
            f"{ours_s / args.requests * 1e6:.2f} us/request, ratio {ours_s / baseline_s:.3f}",
            flush=True,
        )
    # The side that goes second can pay for the first's garbage (PyPy's collector, the caches):
    # a ratio per two rounds, one in each order, cancels that.
    ratios = [
        (first[1] + second[1]) / (first[0] + second[0])
        for first, second in zip(times[0::2], times[1::2])
    ]
    low, _, high = _quartiles(ratios)
    print(
        f"{sys.implementation.name} {args.protocol}: this checkout costs"
        f" {statistics.median(ratios):.3f} x {args.baseline} (median of {len(ratios)} pairs of"
        f" rounds, one in each order; quartiles {low:.3f}-{high:.3f})"
    )
    return 0


def _quartiles(values: list[float]) -> list[float]:
    return statistics.quantiles(values, n=4) if len(values) > 1 else values * 3


def live(args: argparse.Namespace) -> int:
    interpreter = bl.interpreter_path(args.interpreter)
    reason = bl.interpreter_ready(interpreter)
    if reason is not None:
        print(f"cannot run {args.interpreter}: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="udp-ab-") as tmp:
        tree = export(args.baseline, Path(tmp) / "baseline", "tracker", "twisted")
        ours = udp_live.Target("ours", "this checkout", interpreter)
        baseline = udp_live.Target("baseline", args.baseline, interpreter, cwd=tree)
        load = bl.build_udpload(Path(tmp))
        rates: dict[str, list[float]] = {"ours": [], "baseline": []}
        for n in range(args.rounds):
            # baseline, ours, ours, baseline: each side as often first as second.
            for target in (baseline, ours) if n % 2 == 0 else (ours, baseline):
                rate = udp_live.measure(target, load, args.population, args)["rate"]
                rates[target.key].append(rate)
                print(f"round {n + 1}: {target.label}: {rate:,.0f} announces/s", flush=True)
    costs = [b / o for b, o in zip(rates["baseline"], rates["ours"])]
    low, _, high = _quartiles(costs)
    median = statistics.median(costs)
    print(
        f"{args.interpreter}, {args.population}: this checkout costs {median:.3f} x"
        f" {args.baseline} (median of {len(costs)} rounds; quartiles {low:.3f}-{high:.3f})"
    )
    rows = [[n + 1, b, o, f"{b / o:.3f}"] for n, (b, o) in enumerate(zip(*rates.values()))]
    report.record(
        args, "udp", f"ab live {args.interpreter} {args.population}",
        f"Live, against {args.baseline}: {args.interpreter}, {args.population} population",
        [report.table(["round", "this checkout, announces/s", "baseline, announces/s",
                       "baseline / this checkout"],
                      [[r[0], r[2], r[1], r[3]] for r in rows])],
        {"baseline": args.baseline, "rates": rates},
        [f"this checkout costs {median:.3f} x {args.baseline} (median of the rounds; quartiles"
         f" {low:.3f}-{high:.3f})."],
        per_interpreter=False,
    )  # fmt: skip
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--baseline", help="git revision to compare with [git merge-base HEAD main]"
    )
    parser.add_argument("--protocol", default="http", choices=("http", "udp"))
    parser.add_argument("--live", action="store_true", help="UDP: the daemons under udpload")
    parser.add_argument(
        "--rounds", type=int, help="rounds counted (even) [40, 8 live; 4, 2 live with --quick]"
    )
    bl.option(parser, "--warmup-rounds", 6, 2, "rounds not counted, in process (even)")
    bl.option(parser, "--requests", 10_000, 1_000, "requests a round, in process")
    parser.add_argument(
        "--order", default="both", choices=("both", "baseline-first", "ours-first"),
        help="which side is built first, in process [both, one run each]",
    )  # fmt: skip
    parser.add_argument("--interpreter", default="pypy3-venv", help="live: the daemons'")
    parser.add_argument("--population", default="fixed", choices=sorted(udp_live.POPULATIONS))
    udp_live.add_load_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.baseline is None:
        args.baseline = _git("merge-base", "HEAD", "main").decode().strip()[:10]
    args.rounds = args.rounds or {(False, False): 40, (False, True): 4, (True, False): 8,
                                  (True, True): 2}[args.live, args.quick]  # fmt: skip
    if args.live:
        return live(args)
    if args.order == "both":
        return both_orders(args)
    return in_process(args)


if __name__ == "__main__":
    sys.exit("run it as: python3 bench/run.py ab")
