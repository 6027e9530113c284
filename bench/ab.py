"""The request path of this checkout against another revision's, in one process, in turns.

    python3 bench/ab.py [--baseline REV] [--protocol http|udp] [--rounds N] [--requests N]

The baseline's tracker package (by default where this branch left main: git merge-base HEAD
main) is taken from git (git archive REV tracker) and imported beside this checkout's, each
under its own modules, so that both serve the same requests in the same process, turn about:
baseline, this checkout, this checkout, baseline, ... A pair of turns is a few hundred
milliseconds apart, so the drift of a machine shared with other work, which moves separate
runs by 10-20 %, mostly cancels; and each turn is timed in processor time, which the time
another process has the core does not lengthen.

HTTP: bench/inprocess.py's keep-alive announces (a population of 50,000 peers over 1000
swarms) through each side's TrackerSite and TrackerResource on its memory store. UDP:
bench/udp_inprocess.py's announces (the same mix) through each side's
UDPTracker.datagramReceived. Prints each round's ratio (this checkout's time over the
baseline's: above 1, this checkout costs more) and the median, after the warm-up rounds, of a
ratio per two rounds, one in each order. The side built (filled, first run) second came out a
few percent slower on PyPy even when both sides held the same code (--baseline HEAD on a clean
checkout measures that), so by default the whole comparison runs twice, once with each side
built first, and the geometric mean of the two medians is the figure.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import inprocess  # noqa: E402
import udp_inprocess  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

#: BEP 15's connect request: the protocol's magic number, action 0, a transaction ID.
_CONNECT = struct.pack("!Q", 0x41727101980) + b"\0\0\0\0CONN"
MODULES = (
    "tracker.core.config",
    "tracker.http.resource",
    "tracker.http.site",
    "tracker.store.memory",
    "tracker.udp.protocol",
)


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
    tracker.datagramReceived(_CONNECT, udp_inprocess.CLIENT)
    connection_id = replies[-1][8:16]
    tracker.transport = udp_inprocess._Transport()
    tracker.startProtocol()
    rng = random.Random(1)
    batch = [udp_inprocess.announce(rng, connection_id, n) for n in range(count)]
    udp_inprocess.feed(tracker.datagramReceived, batch, None)  # fill the swarms
    return lambda: _cpu(udp_inprocess.feed, tracker.datagramReceived, batch, None)


def both_orders(argv: list[str], baseline: str) -> int:
    """
    One run with each side built first, and the geometric mean of their medians. The side
    built (filled, and first run) second came out a few percent slower on PyPy, even with the
    same code on both sides; the two orders cancel that.
    """
    medians = []
    for order in ("baseline-first", "ours-first"):
        output = subprocess.run(
            [sys.executable, __file__, *argv, "--baseline", baseline, "--order", order],
            check=True,
            capture_output=True,
            timeout=1800,
        ).stdout.decode()
        summary = [line for line in output.splitlines() if "this checkout costs" in line][-1]
        print(f"{order}: {summary}", flush=True)
        medians.append(float(re.search(r"costs ([\d.]+) x", summary)[1]))  # type: ignore[index]
    print(
        f"{sys.implementation.name}: this checkout costs {math.sqrt(medians[0] * medians[1]):.3f}"
        f" x {baseline} (geometric mean of the two orders)"
    )
    return 0


def _git(*arguments: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(REPO), *arguments], check=True, capture_output=True
    ).stdout


def _cpu(function: Callable[..., object], *args: Any) -> float:
    """Processor seconds C{function} took: unlike the wall clock, not lengthened by the time
    another process had the core."""
    started = time.process_time()
    function(*args)
    return time.process_time() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--baseline",
        default=None,
        help="git revision to compare with [default: git merge-base HEAD main]",
    )
    parser.add_argument("--protocol", default="http", choices=("http", "udp"))
    parser.add_argument("--rounds", type=int, default=40, help="rounds counted (even)")
    parser.add_argument("--warmup", type=int, default=6, help="rounds not counted (even)")
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument(
        "--order",
        default="both",
        choices=("both", "baseline-first", "ours-first"),
        help="which side is built first [default: both, one run each]",
    )
    args = parser.parse_args(argv)
    if args.baseline is None:
        args.baseline = _git("merge-base", "HEAD", "main").decode().strip()[:10]
    if args.order == "both":
        return both_orders(argv, args.baseline)
    with tempfile.TemporaryDirectory(prefix="tracker-ab-") as folder:
        archive = _git("archive", args.baseline, "tracker")
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        baseline_modules = load(Path(folder))
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
    ratios = []
    times: list[tuple[float, float]] = []
    for n in range(args.warmup + args.rounds):
        # Each side goes first every other round, so neither always follows the other.
        if n % 2:
            ours_s, baseline_s = ours(), baseline()
        else:
            baseline_s, ours_s = baseline(), ours()
        ratio = ours_s / baseline_s
        if n >= args.warmup:
            times.append((baseline_s, ours_s))
        print(
            f"round {n + 1}{' (warm-up)' if n < args.warmup else ''}: {args.baseline} "
            f"{baseline_s / args.requests * 1e6:.2f} us/request, this checkout "
            f"{ours_s / args.requests * 1e6:.2f} us/request, ratio {ratio:.3f}",
            flush=True,
        )
    # The side that goes second can pay for the first's garbage (PyPy's collector, the caches):
    # a ratio per two rounds, one in each order, cancels that.
    for first, second in zip(times[0::2], times[1::2]):
        ratios.append((first[1] + second[1]) / (first[0] + second[0]))
    median = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4)
    print(
        f"{sys.implementation.name} {args.protocol}: this checkout costs {median:.3f} x"
        f" {args.baseline} (median of {len(ratios)} pairs of rounds, one in each order;"
        f" quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f})"
    )
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    status = main(sys.argv[1:])
    print(f"({time.monotonic() - started:.0f} s)")
    sys.exit(status)
