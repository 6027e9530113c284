"""
The live UDP announce path of this checkout against another revision's: each revision's
daemon on one interpreter under udpload.c's load, in alternating rounds (baseline, this
checkout, this checkout, baseline, ...), each fresh and alone on core 0 with the load on core 1.

    python3 bench/udp_ab.py --baseline REV [--interpreter pypy3-venv] [--population fixed]
                            [--rounds 8] [--duration 8] [--warmup 3]

bench/ab.py times the tracker's own code in process, where an announce repeated into a warm
index costs about a microsecond under PyPy; this times the announce as a client gets it
answered: the kernel's receive and send, the batching port, the journal and the database
thread included. The baseline's tracker package is taken from git (git archive REV) and run
from a directory of its own. Prints each round's announces per second, the cost ratio of each
pair of rounds (the baseline's rate over this checkout's: above 1, this checkout costs more)
and their median.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl  # noqa: E402
import udp  # noqa: E402


def export(revision: str, where: Path) -> Path:
    """The tracker package and its twistd plugin as of C{revision}, in C{where}."""
    where.mkdir()
    archive = subprocess.run(
        ["git", "archive", revision, "tracker", "twisted"],
        cwd=bl.REPO_DIR, check=True, capture_output=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare with")
    parser.add_argument("--interpreter", default="pypy3-venv", choices=sorted(udp.INTERPRETERS))
    parser.add_argument("--population", default="fixed", choices=sorted(udp.POPULATIONS))
    parser.add_argument("--rounds", type=int, default=8, help="rounds of each side")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    own = parser.parse_args(argv)
    # The rest of the load's settings (sockets, announces in flight, swarms, peers): udp.py's.
    args = udp.parse_args(["--duration", str(own.duration), "--warmup", str(own.warmup)])
    interpreter = udp.INTERPRETERS[own.interpreter]
    reason = bl.interpreter_ready(interpreter)
    if reason is not None:
        print(f"cannot run {own.interpreter}: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="udp-ab-") as tmp:
        tree = export(own.baseline, Path(tmp) / "baseline")
        ours = udp.Target("ours", "this checkout", interpreter)
        baseline = udp.Target("baseline", own.baseline, interpreter, cwd=tree)
        load = udp.build_load_generator(Path(tmp))
        rates: dict[str, list[float]] = {"ours": [], "baseline": []}
        for n in range(own.rounds):
            # baseline, ours, ours, baseline: each side as often first as second.
            for target in (baseline, ours) if n % 2 == 0 else (ours, baseline):
                rate = udp.measure(target, load, own.population, args)["rate"]
                rates[target.key].append(rate)
                print(f"round {n + 1}: {target.label}: {rate:,.0f} announces/s", flush=True)
    costs = [b / o for b, o in zip(rates["baseline"], rates["ours"])]
    quartiles = statistics.quantiles(costs, n=4) if len(costs) > 1 else costs * 3
    print(
        f"{own.interpreter}, {own.population}: this checkout"
        f" costs {statistics.median(costs):.3f} x {own.baseline} (median of {len(costs)}"
        f" rounds; quartiles {quartiles[0]:.3f}-{quartiles[-1]:.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
