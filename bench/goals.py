"""The speed, latency and memory goals the benchmark checks, each against a figure of the same
run (issue 8): a list of rows with what was measured, the target and whether it was met."""

from __future__ import annotations

import statistics
from typing import Any

KEEP_ALIVE = "announce 1000 swarms, keep-alive"
CLOSE = "announce 1000 swarms, Connection: close"
SWARM_OF_1 = "announce 1 swarm of 1 peer"
SWARM_OF_1000 = "announce 1 swarm of 1,000 peers"
SWARM_OF_50K = "announce 1 swarm of 50,000 peers"

#: Fraction of the Twisted floor our tracker must reach, per interpreter kind.
FLOOR_FRACTION = {"cpython": 0.7, "pypy": 0.6}
#: Times bittorrent-tracker's rate, keep-alive and close alike.
BT_TRACKER_TIMES = {"cpython": 2.0, "pypy": 3.0}
OPENTRACKER_FRACTION_PYPY = 0.5
FLAT_FRACTION = 0.9
PYPY_P99_MS = 10.0
CPYTHON_P99_OF_FLOOR = 1.5
CPYTHON_RSS_MIB = 80.0
PYPY_RSS_OVER_FLOOR_MIB = 50.0
BYTES_PER_PEER = 200.0


def kind(key: str) -> str:
    return "pypy" if "pypy" in key else "cpython"


def _row(goal: str, measured: float | None, target: str, met: bool | None) -> dict[str, Any]:
    return {"goal": goal, "measured": measured, "target": target, "met": met}


def _rps(doc: dict[str, Any], key: str, scenario: str) -> float | None:
    stats = doc["trackers"].get(key, {}).get("scenarios", {}).get(scenario)
    return stats["rps"] if stats else None


def _turns(doc: dict[str, Any], key: str, scenario: str) -> float | None:
    """The median rate of a single-swarm load measured in turns with the others."""
    rates = doc["trackers"].get(key, {}).get("flat", {}).get(scenario)
    return statistics.median(rates) if rates else _rps(doc, key, scenario)


def _compare(mine: float | None, theirs: float | None) -> float | None:
    return mine / theirs if mine is not None and theirs else None


def evaluate(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(k for k in doc["trackers"] if k.startswith("ours-")):
        label, flavour = doc["trackers"][key]["label"], kind(key)
        pairs = doc.get("floor", {}).get(key)
        if pairs:
            fraction = FLOOR_FRACTION[flavour]
            ratio = pairs["ratio_median"]
            rows.append(
                _row(f"{label}: req/s as a fraction of the Twisted floor (median of pairs)",
                     ratio, f">= {fraction}", ratio >= fraction)
            )  # fmt: skip
            p99 = pairs["ours_p99_us_median"] / 1000
            if flavour == "pypy":
                rows.append(_row(f"{label}: p99 latency, ms", p99, f"<= {PYPY_P99_MS:g}",
                                 p99 <= PYPY_P99_MS))  # fmt: skip
            else:
                of_floor = p99 / (pairs["floor_p99_us_median"] / 1000)
                rows.append(_row(f"{label}: p99 latency as a multiple of the floor's", of_floor,
                                 f"<= {CPYTHON_P99_OF_FLOOR:g}",
                                 of_floor <= CPYTHON_P99_OF_FLOOR))  # fmt: skip
        if flavour == "pypy":
            vs_ot = _compare(_rps(doc, key, KEEP_ALIVE), _rps(doc, "opentracker", KEEP_ALIVE))
            rows.append(
                _row(f"{label}: keep-alive req/s / opentracker", vs_ot,
                     f">= {OPENTRACKER_FRACTION_PYPY}",
                     None if vs_ot is None else vs_ot >= OPENTRACKER_FRACTION_PYPY)
            )  # fmt: skip
        times = BT_TRACKER_TIMES[flavour]
        for scenario, name in ((KEEP_ALIVE, "keep-alive"), (CLOSE, "Connection: close")):
            vs_bt = _compare(_rps(doc, key, scenario), _rps(doc, "bittorrent-tracker", scenario))
            rows.append(
                _row(f"{label}: {name} req/s / bittorrent-tracker", vs_bt, f">= {times:g}",
                     None if vs_bt is None else vs_bt >= times)
            )  # fmt: skip
        # A swarm of 1 has no one to return, so its replies are empty; a swarm of 1000 gets
        # replies of 50 peers, as the 50,000 does: the second row compares like with like.
        for small, name in ((SWARM_OF_1, "1"), (SWARM_OF_1000, "1,000")):
            flat = _compare(_turns(doc, key, SWARM_OF_50K), _turns(doc, key, small))
            rows.append(
                _row(f"{label}: req/s in a swarm of 50,000 / in a swarm of {name}", flat,
                     f">= {FLAT_FRACTION}", None if flat is None else flat >= FLAT_FRACTION)
            )  # fmt: skip
        rows += _memory_rows(doc, key, label, flavour, pairs)
    return rows


def _memory_rows(
    doc: dict[str, Any], key: str, label: str, flavour: str, pairs: dict[str, Any] | None
) -> list[dict[str, Any]]:
    memory = doc.get("memory", {}).get(key)
    if not memory:
        return []
    peak_mib = memory["rss_peak_kib"] / 1024
    rows = []
    if flavour == "cpython":
        rows.append(_row(f"{label}: peak RSS with 50,000 peers, MiB", peak_mib,
                         f"<= {CPYTHON_RSS_MIB:g}", peak_mib <= CPYTHON_RSS_MIB))  # fmt: skip
    elif pairs:
        limit = pairs["floor_rss_peak_kib"] / 1024 + PYPY_RSS_OVER_FLOOR_MIB
        rows.append(_row(f"{label}: peak RSS with 50,000 peers, MiB", peak_mib,
                         f"<= floor's {pairs['floor_rss_peak_kib'] / 1024:.0f} + "
                         f"{PYPY_RSS_OVER_FLOOR_MIB:g}", peak_mib <= limit))  # fmt: skip
    per_peer = memory["bytes_per_peer"]
    rows.append(_row(f"{label}: RSS bytes per stored peer", per_peer, f"<= {BYTES_PER_PEER:g}",
                     per_peer <= BYTES_PER_PEER))  # fmt: skip
    counted = memory.get("index_bytes_per_peer")
    if counted is not None:
        # The interpreter's own count: under PyPy, RSS also holds the headroom its GC keeps.
        rows.append(_row(f"{label}: bytes per peer in the index, counted (500,000 peers)",
                         counted, f"<= {BYTES_PER_PEER:g}", counted <= BYTES_PER_PEER))  # fmt: skip
    return rows


def format_value(value: float | None) -> str:
    if value is None:
        return "not measured"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[row["met"]]
        lines.append(f"{verdict}  {row['goal']}: {format_value(row['measured'])} ({row['target']})")
    return "\n".join(lines)
