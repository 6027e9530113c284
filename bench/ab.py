"""The request path of this checkout against another revision's, in turns, in one run.

    python3 bench/ab.py [--baseline REV] [--pairs N] [--driver inprocess|inprocess_udp] [-- ARGS]

The baseline's tracker package is taken from git (git archive REV) into a temporary folder, and
this checkout's bench/ is copied beside it, so both sides run the very same driver: bench/
inprocess.py (HTTP announces through TrackerSite and the memory store, beside the Twisted floor)
or bench/inprocess_udp.py (UDP announces through datagramReceived). The two run as separate
processes in turns, baseline then this checkout, --pairs times; ARGS go to the driver.

Each process's figure is the median of its rounds after the first (a warm-up, for PyPy's JIT);
for the HTTP driver it is ours divided by the floor measured in the same process, which cancels
the machine's drift, for UDP microseconds per request. Prints each pair's ratio, this checkout
over the baseline (above 1: this checkout costs more), and their median.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_ROUND = re.compile(rb"round \d+: (?:floor ([\d.]+) us/request, )?ours ([\d.]+) us/request")


def figure(tree: Path, driver: str, args: list[str]) -> float:
    output = subprocess.run(
        [sys.executable, str(tree / "bench" / f"{driver}.py"), *args],
        check=True,
        capture_output=True,
        timeout=600,
    ).stdout
    rounds = [
        (float(floor) if floor else None, float(ours)) for floor, ours in _ROUND.findall(output)
    ]
    if len(rounds) < 2:
        raise SystemExit(f"{driver} printed fewer than two rounds:\n{output.decode()}")
    costs = [ours / floor if floor else ours for floor, ours in rounds[1:]]
    return statistics.median(costs)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--driver", default="inprocess", choices=("inprocess", "inprocess_udp"))
    parser.add_argument("args", nargs="*", help="passed to the driver (after --)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tracker-ab-") as folder:
        baseline = Path(folder)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.baseline, "tracker"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
        shutil.copytree(REPO / "bench", baseline / "bench", dirs_exist_ok=True)
        ratios = []
        for n in range(args.pairs):
            before = figure(baseline, args.driver, args.args)
            after = figure(REPO, args.driver, args.args)
            ratios.append(after / before)
            print(
                f"pair {n + 1}: {args.baseline} {before:.4g}, this checkout {after:.4g},"
                f" ratio {after / before:.3f}",
                flush=True,
            )
    median = statistics.median(ratios)
    print(
        f"{sys.implementation.name} {args.driver}: this checkout costs {median:.3f}"
        f" x {args.baseline} (median of {len(ratios)} pairs;"
        f" range {min(ratios):.3f}-{max(ratios):.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
