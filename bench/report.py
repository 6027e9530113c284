"""Results: bench/results/http.md and udp.md, each written from the JSON beside it.

Each file holds one section per measurement (the live run, in process on each interpreter, the
A/B comparison, ...); a run replaces its own section and rewrites the Markdown from the whole
JSON. Also the HTTP run's goals, each checked against a figure of the same run (issue 8), and
the tables of the two live runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import benchlib as bl

RESULTS_DIR = bl.BENCH_DIR / "results"
TITLES = {
    "http": "HTTP",
    "udp": "UDP",
    "ws": "WebSocket (WebTorrent)",
    "redis": "Redis (many nodes)",
}
#: Sections in this order, each kind by its first word, then alphabetically.
ORDER = ("live", "inprocess", "ab", "access", "memory", "census", "restart", "flood")

Results = dict[str, Any]


def table(head: list[str], rows: list[list[Any]], title: str | None = None) -> Results:
    return {"title": title, "head": head, "rows": rows}


def record(
    args: argparse.Namespace, protocol: str, key: str, title: str, tables: list[Results],
    figures: Any, notes: Sequence[str] = (), per_interpreter: bool = True,
) -> None:  # fmt: skip
    """Section C{key} of results/C{protocol}.json replaced, and the Markdown rewritten. A quick
    run records nothing unless --out says where."""
    if str(args.out) == "-" or (args.out is None and args.quick):
        return
    out = args.out or RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    if per_interpreter:
        key += f" ({interpreter()})"
        title += f" ({interpreter()})"
    path = out / f"{protocol}.json"
    document = json.loads(path.read_text()) if path.exists() else {}
    executable = Path(sys.executable)
    if executable.is_relative_to(bl.REPO_DIR):
        executable = executable.relative_to(bl.REPO_DIR)
    document[key] = {
        "title": title,
        "command": " ".join([str(executable), "bench/run.py", *args.argv]),
        "machine": bl.machine(),
        "notes": list(notes),
        "tables": tables,
        "figures": figures,
    }
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    (out / f"{protocol}.md").write_text(markdown(protocol, document))
    print(f"recorded in {out / protocol}.md and .json", flush=True)


def interpreter() -> str:
    version = ".".join(map(str, sys.version_info[:2]))
    return f"{'PyPy' if sys.implementation.name == 'pypy' else 'CPython'} {version}"


def markdown(protocol: str, document: Results) -> str:
    def order(key: str) -> tuple[int, str]:
        kind = key.split()[0]
        return (ORDER.index(kind) if kind in ORDER else len(ORDER), key)

    parts = [
        f"# {TITLES[protocol]} results\n\nWritten by `bench/run.py` from `{protocol}.json` beside"
        " this file, which holds every figure; `bench/README.md` says what each measures.\n"
    ]
    for key in sorted(document, key=order):
        section = document[key]
        m = section["machine"]
        parts.append(
            f"## {section['title']}\n\n`{section['command']}`: {m['date']}, commit {m['commit']},"
            f" {m['nproc']} CPUs ({m['cpu_model']}), Linux {m['kernel']}.\n"
        )
        parts += [note + "\n" for note in section["notes"]]
        for t in section["tables"]:
            heading = f"### {t['title']}\n\n" if t["title"] else ""
            parts.append(heading + markdown_table(t["head"], t["rows"]))
    return "\n".join(parts)


def markdown_table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.{0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


# --- the HTTP run's goals -----------------------------------------------------------------

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
#: UDP: times opentracker's rate our tracker must reach, per interpreter.
UDP_GOALS = {"python3": 0.5, "pypy3-venv": 1.0}


def _kind(key: str) -> str:
    return "pypy" if "pypy" in key else "cpython"


def _row(goal: str, measured: float | None, target: str, met: bool | None) -> Results:
    return {"goal": goal, "measured": measured, "target": target, "met": met}


def _rps(doc: Results, key: str, scenario: str) -> float | None:
    stats = doc["trackers"].get(key, {}).get("scenarios", {}).get(scenario)
    return stats["rps"] if stats else None


def _turns(doc: Results, key: str, scenario: str) -> float | None:
    """The median rate of a single-swarm load measured in turns with the others."""
    rates = doc["trackers"].get(key, {}).get("flat", {}).get(scenario)
    return statistics.median(rates) if rates else _rps(doc, key, scenario)


def _compare(mine: float | None, theirs: float | None) -> float | None:
    return mine / theirs if mine is not None and theirs else None


def goals(doc: Results) -> list[Results]:
    rows = []
    for key in sorted(k for k in doc["trackers"] if k.startswith("ours-")):
        label, flavour = doc["trackers"][key]["label"], _kind(key)
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
        rows += _memory_goals(doc, key, label, flavour, pairs)
    return rows


def _memory_goals(
    doc: Results, key: str, label: str, flavour: str, pairs: Results | None
) -> list[Results]:
    memory = doc.get("memory", {}).get(key)
    if not memory:
        return []
    peak_mib = memory["rss_peak_kib"] / 1024
    rows = []
    if flavour == "cpython":
        rows.append(_row(f"{label}: peak RSS with {memory['peers']:,.0f} peers, MiB", peak_mib,
                         f"<= {CPYTHON_RSS_MIB:g}", peak_mib <= CPYTHON_RSS_MIB))  # fmt: skip
    elif pairs:
        limit = pairs["floor_rss_peak_kib"] / 1024 + PYPY_RSS_OVER_FLOOR_MIB
        rows.append(_row(f"{label}: peak RSS with {memory['peers']:,.0f} peers, MiB", peak_mib,
                         f"<= floor's {pairs['floor_rss_peak_kib'] / 1024:.0f} + "
                         f"{PYPY_RSS_OVER_FLOOR_MIB:g}", peak_mib <= limit))  # fmt: skip
    per_peer = memory["bytes_per_peer"]
    rows.append(_row(f"{label}: RSS bytes per stored peer", per_peer, f"<= {BYTES_PER_PEER:g}",
                     per_peer <= BYTES_PER_PEER))  # fmt: skip
    counted = memory.get("index_bytes_per_peer")
    if counted is not None:
        # The interpreter's own count: under PyPy, RSS also holds the headroom its GC keeps.
        rows.append(_row(f"{label}: bytes per peer in the index, counted", counted,
                         f"<= {BYTES_PER_PEER:g}", counted <= BYTES_PER_PEER))  # fmt: skip
    return rows


def goals_text(rows: list[Results]) -> str:
    lines = []
    for row in rows:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[row["met"]]
        lines.append(f"{verdict}  {row['goal']}: {_cell(row['measured'])} ({row['target']})")
    return "\n".join(lines)


# --- the live runs' tables ----------------------------------------------------------------

#: A tracker below this CPU % was limited by something else than its own CPU.
LOAD_BOUND_CPU = 80.0


def http_live(doc: Results) -> tuple[list[str], list[Results]]:
    """Notes and tables of the live HTTP run's document."""
    m, c = doc["machine"], doc["config"]
    pythons = ", ".join(f"{k}: {v}" for k, v in m["pythons"].items())
    notes = [
        f"Python: {pythons}. References: opentracker {m['opentracker']} (Debian),"
        f" bittorrent-tracker {m['bittorrent_tracker']} on node {m['node']}. Load: {m['wrk']},"
        f" {c['connections']} connections, {c['wrk_threads']} thread(s), {c['duration_s']:g} s"
        f" per measurement after {c['warmup_s']:g} s of warm-up; tracker on core"
        f" {c['tracker_core']}, load on core {c['load_core']}; numwant {c['numwant']}, compact;"
        f" {c['swarms']} swarms, a population of {c['population']:,} peers. Extra options for"
        f" ours: {' '.join(c['ours_args']) or 'none'}. Whole run: {doc['elapsed_s']:.0f} s."
    ]
    for tracker in doc["trackers"].values():
        if "error" in tracker:
            notes.append(f"{tracker['label']} failed: {tracker['error'].splitlines()[0]}")
        for name, reason in tracker.get("skipped_scenarios", {}).items():
            notes.append(f"{tracker['label']}, {name}: not measured, {reason}.")
    notes += [f"{key} skipped: {reason}." for key, reason in doc["skipped"].items()]
    verdicts = {True: "met", False: "**missed**", None: "not measured"}
    tables = [
        table(
            ["goal", "measured", "target", "verdict"],
            [[r["goal"], r["measured"], r["target"], verdicts[r["met"]]] for r in doc["goals"]],
            "Goals, each against a figure of this run",
        )
    ]
    tables += [t for t in (_floor(doc), _memory(doc), _overview(doc), _details(doc)) if t]
    tables += [t for t in [_state(doc)] if t]
    return notes, tables


def _floor(doc: Results) -> Results | None:
    rows = []
    for key, summary in sorted(doc.get("floor", {}).items()):
        for n, pair in enumerate(summary["pairs"], 1):
            f, o = pair["floor"], pair["ours"]
            rows.append([
                doc["trackers"][key]["label"], n, f["rps"], o["rps"], pair["ratio"],
                f["lat_p99_us"] / 1000, o["lat_p99_us"] / 1000,
                f["rss_peak_kib"] / 1024, o["rss_peak_kib"] / 1024,
            ])  # fmt: skip
    head = ["ours", "pair", "floor req/s", "ours req/s", "ours / floor", "floor p99 ms",
            "ours p99 ms", "floor peak RSS MiB", "ours peak RSS MiB"]  # fmt: skip
    title = "Beside the Twisted floor: the keep-alive announces over 1000 swarms, in turns"
    return table(head, rows, title) if rows else None


def _memory(doc: Results) -> Results | None:
    rows = [
        [doc["trackers"][key]["label"], m["rss_empty_kib"] / 1024, m["rss_full_kib"] / 1024,
         m["rss_peak_kib"] / 1024, m["bytes_per_peer"], m.get("index_bytes_per_peer")]
        for key, m in sorted(doc.get("memory", {}).items())
    ]  # fmt: skip
    head = ["ours", "RSS warmed up, no peers, MiB", "RSS with the peers, MiB", "peak RSS MiB",
            "RSS bytes per peer", "index bytes per peer, counted"]  # fmt: skip
    return table(head, rows, "Memory") if rows else None


def _trackers(doc: Results) -> list[str]:
    """Ours first, then the references."""
    order = {"opentracker": 1, "bittorrent-tracker": 2}
    return sorted(doc["trackers"], key=lambda key: (order.get(key, 0), key))


def _scenario_names(doc: Results) -> list[str]:
    names: list[str] = list(doc["config"].get("scenarios", []))
    for tracker in doc["trackers"].values():
        names += [n for n in tracker["scenarios"] if n not in names]
    return names


def _overview(doc: Results) -> Results:
    keys = _trackers(doc)
    rows = []
    for name in _scenario_names(doc):
        row: list[Any] = [name]
        for key in keys:
            s = doc["trackers"][key]["scenarios"].get(name)
            errors = f" ({s['errors_total']:,.0f} errors)" if s and s["errors_total"] else ""
            row.append(f"{s['rps']:,.0f}{errors}" if s else None)
        rows.append(row)
    head = ["scenario"] + [doc["trackers"][k]["label"] for k in keys]
    return table(head, rows, "Requests per second")


def _details(doc: Results) -> Results:
    head = [
        "scenario", "tracker", "req/s", "p50 ms", "p99 ms", "CPU %", "req/CPU-s", "peak RSS MiB",
        "failure reason", "non-200", "socket errors", "server closes", "peers/response",
    ]  # fmt: skip
    rows = []
    for name in _scenario_names(doc):
        for key in _trackers(doc):
            s = doc["trackers"][key]["scenarios"].get(name)
            if not s:
                continue
            cpu = f"{s['cpu_percent']:.0f}" + (" *" if s["cpu_percent"] < LOAD_BOUND_CPU else "")
            rows.append([
                name, doc["trackers"][key]["label"], s["rps"], s["lat_p50_us"] / 1000,
                s["lat_p99_us"] / 1000, cpu, s["requests_per_cpu_second"],
                s["rss_peak_kib"] / 1024, int(s["failure"]), int(s["bad_status"]),
                int(sum(s[k] for k in ("err_connect", "err_write", "err_timeout"))),
                int(s["err_read"]), s["avg_peers_returned"],
            ])  # fmt: skip
    title = (
        "Per scenario (\\* below 80 % CPU: something else limited the tracker, for opentracker"
        " the one-core load generator, as it closes every connection; wrk counts those closes"
        ' as read errors, here "server closes")'
    )
    return table(head, rows, title)


def _state(doc: Results) -> Results | None:
    rows = []
    for key in _trackers(doc):
        t = doc["trackers"][key]
        state = t.get("state")
        if not state:
            continue
        db = None
        if "db_bytes" in state:
            db = (
                f"{state['db_bytes'] / 2**20:.1f} MiB + {state['wal_bytes'] / 2**20:.1f} MiB WAL, "
                f"{state['db_bytes_per_peer']:.0f} bytes/peer"
            )
        fills = ", ".join(_prefill_cell(p) for p in t.get("prefill", {}).values())
        rows.append([t["label"], state["stored_peers"], db, fills])
    title = (
        "Stored after the largest single swarm (peers summed from scrapes of every swarm;"
        " prefill: the single swarms' peers announced from 32 connections, numwant=0)"
    )
    return table(["tracker", "stored peers", "database", "prefill"], rows, title) if rows else None


def _prefill_cell(fill: Results) -> str:
    text = f"{fill['peers']:,.0f} in {fill['seconds']:.1f} s"
    if not fill["complete"]:
        text = f"{fill['sent']:,.0f} of {fill['peers']:,.0f} in {fill['seconds']:.0f} s (cut off)"
    return text + (f" ({fill['failed']:,.0f} failed)" if fill["failed"] else "")


def udp_live(runs: dict[str, list[Results]], labels: dict[str, str], title: str) -> Results:
    """One population's table: every target's rounds, against opentracker and the floor."""
    reference = runs.get("opentracker")
    rows = []
    for key, rounds in runs.items():
        if not rounds:
            continue
        rates = [r["rate"] for r in rounds]
        versus = None
        if reference and key != "opentracker":
            ratio = statistics.median(r["rate"] / ref["rate"] for r, ref in zip(rounds, reference))
            goal = UDP_GOALS.get(key.removeprefix("ours-")) if key.startswith("ours-") else None
            verdict = f" ({'PASS' if ratio >= goal else 'FAIL'}: goal {goal}x)" if goal else ""
            versus = f"{ratio:.2f}x{verdict}"
        floor = runs.get(f"floor-{key.removeprefix('ours-')}")
        of_floor = None
        if floor and key.startswith("ours-"):
            of_floor = statistics.median(r["rate"] / f["rate"] for r, f in zip(rounds, floor))
        rows.append([
            labels[key], statistics.median(rates), ", ".join(f"{rate:,.0f}" for rate in rates),
            versus, of_floor,
            f"{statistics.median(r['p50_us'] for r in rounds) / 1000:.2f} / "
            f"{statistics.median(r['p99_us'] for r in rounds) / 1000:.2f} ms",
            int(sum(r["timeouts"] for r in rounds)),
        ])  # fmt: skip
    head = ["tracker", "announces/s (median)", "each round", "vs opentracker (median of rounds)",
            "vs the UDP floor", "p50 / p99 latency", "timeouts"]  # fmt: skip
    return table(head, rows, title)
