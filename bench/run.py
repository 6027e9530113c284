"""The benchmark: one subcommand per measurement. See bench/README.md.

    python3 bench/run.py SUBCOMMAND [--quick] [--out DIR] [options]

--quick shortens every measurement, to check that it runs; its figures are not recorded unless
--out says where. Otherwise each run replaces its own section of bench/results/http.md or
udp.md (and the JSON beside it); --out - records nothing. `faults` takes faults.py's own options.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# This checkout's tracker package, whatever is installed.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import ab  # noqa: E402
import access  # noqa: E402
import census  # noqa: E402
import faults  # noqa: E402
import flood  # noqa: E402
import http_live  # noqa: E402
import inprocess  # noqa: E402
import memory  # noqa: E402
import redis_live  # noqa: E402
import restart  # noqa: E402
import udp_live  # noqa: E402
import ws  # noqa: E402

COMMANDS = {
    "http": (http_live, "live HTTP: ours, the Twisted floor, opentracker, bittorrent-tracker"),
    "udp": (udp_live, "live UDP: ours, the UDP floor, opentracker"),
    "inprocess": (inprocess, "the request path without the kernel, beside the floor"),
    "ab": (ab, "this checkout against another revision"),
    "memory": (memory, "the index's bytes per peer; private mode's own"),
    "restart": (restart, "time to the first answer after a restart on a big file"),
    "faults": (faults, "kill -9 under load, stalled connections, bad input (faults.py)"),
    "flood": (flood, "a newcomer's wait among 300 connections pipelining announces"),
    "census": (census, "the walks over every swarm behind /stats, /metrics, the full scrape"),
    "access": (access, "what access lists and private mode cost an announce"),
    "ws": (ws, "live WebSocket (WebTorrent): ours beside bittorrent-tracker; the goals"),
    "redis": (redis_live, "a node on Redis beside a node on its own memory; the goals"),
}


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = found.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for name, (module, summary) in COMMANDS.items():
        if module is faults:
            commands.add_parser(name, help=summary, add_help=False)
            continue
        command = commands.add_parser(
            name, help=summary, description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        command.add_argument("--quick", action="store_true", help="short, to check that it runs")
        command.add_argument(
            "--out", type=Path, metavar="DIR", help="record in DIR [bench/results]; '-': nowhere"
        )
        module.add_arguments(command)  # type: ignore[attr-defined]
        command.set_defaults(run=module.run)  # type: ignore[attr-defined]
    return found


def main(argv: list[str]) -> int:
    if argv[:1] == ["faults"]:
        # Its options, and its output, are its own.
        return faults.main(argv[1:])
    args = parser().parse_args(argv)
    for dest, (full, quick) in getattr(args, "scaled", {}).items():
        if getattr(args, dest) is None:
            setattr(args, dest, quick if args.quick else full)
    args.argv = argv
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
