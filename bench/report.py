"""Turns the benchmark results into results.json, RESULTS.md and results.png."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import goals

REFERENCES = ("opentracker", "bittorrent-tracker")
RATIO_FIELDS = {
    "rps": "req/s",
    "lat_p50_us": "p50",
    "lat_p99_us": "p99",
    "cpu_percent": "CPU%",
    "requests_per_cpu_second": "req/CPU-s",
    "rss_peak_kib": "peak RSS",
}

LOAD_BOUND_CPU = 80.0

Results = dict[str, Any]


def ratios(results: Results) -> Results:
    """ours / reference for every measured figure, per scenario."""
    found: Results = {}
    for key, ours in results.items():
        if not key.startswith("ours-"):
            continue
        for ref_key in REFERENCES:
            ref = results.get(ref_key)
            if not ref:
                continue
            per_scenario: Results = {}
            for name, mine in ours["scenarios"].items():
                theirs = ref["scenarios"].get(name)
                if theirs:
                    per_scenario[name] = {f: _ratio(mine[f], theirs[f]) for f in RATIO_FIELDS}
            found.setdefault(key, {})[ref_key] = per_scenario
    return found


def _ratio(mine: float, theirs: float) -> float | None:
    return mine / theirs if theirs else None


def write_all(document: Results, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    (out / "RESULTS.md").write_text(markdown(document))
    chart(document, out / "results.png")


# --- markdown ---------------------------------------------------------------------------


def markdown(doc: Results) -> str:
    parts = [
        "# Tracker benchmark results\n",
        _header(doc),
        _goals(doc),
        _floor(doc),
        _memory(doc),
        _overview(doc),
        _details(doc),
        _ratio_tables(doc),
        _state(doc),
        _notes(doc),
    ]
    return "\n".join(p for p in parts if p)


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _header(doc: Results) -> str:
    m, c = doc["machine"], doc["config"]
    pythons = ", ".join(f"{k}: {v}" for k, v in m["pythons"].items())
    return (
        f"- Date: {m['date']}\n"
        f"- Commit: {m['git_commit']}\n"
        f"- Machine: {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}\n"
        f"- Python: {pythons}\n"
        f"- References: opentracker {m['opentracker']} (Debian), bittorrent-tracker "
        f"{m['bittorrent_tracker']} on node {m['node']}; load: {m['wrk']}\n"
        f"- Load: {c['connections']} connections, {c['wrk_threads']} wrk thread(s); "
        f"{c['duration_s']:g} s per measurement after {c['warmup_s']:g} s warm-up; tracker on "
        f"core {c['tracker_core']}, load on core {c['load_core']}; numwant {c['numwant']}, "
        f"compact=1; {c['swarms']} swarms, peer population {c['population']}\n"
        f"- Extra options for our tracker: {' '.join(c['ours_args']) or 'none'}\n"
        f"- Whole run: {doc['elapsed_s']:.0f} s\n"
    )


def _goals(doc: Results) -> str:
    rows = doc.get("goals")
    if not rows:
        return ""
    verdicts = {True: "met", False: "**missed**", None: "not measured"}
    table = [[r["goal"], goals.format_value(r["measured"]), r["target"], verdicts[r["met"]]]
             for r in rows]  # fmt: skip
    return "## Goals\n\nEach against a figure of this same run.\n\n" + _table(
        ["goal", "measured", "target", "verdict"], table
    )


def _floor(doc: Results) -> str:
    floor = doc.get("floor")
    if not floor:
        return ""
    rows = []
    for key, summary in sorted(floor.items()):
        label = doc["trackers"][key]["label"]
        for n, pair in enumerate(summary["pairs"], 1):
            f, o = pair["floor"], pair["ours"]
            rows.append([
                label, str(n), f"{f['rps']:,.0f}", f"{o['rps']:,.0f}", f"{pair['ratio']:.2f}",
                f"{f['lat_p99_us'] / 1000:.2f}", f"{o['lat_p99_us'] / 1000:.2f}",
                f"{f['rss_peak_kib'] / 1024:.0f}", f"{o['rss_peak_kib'] / 1024:.0f}",
            ])  # fmt: skip
    return (
        "## Beside the Twisted floor\n\n"
        "The floor is `bench/floor.py`: a plain twisted.web Site whose leaf resource returns a "
        "fixed 50-peer compact reply, on the same interpreter. Floor and ours run side by side "
        "and take the keep-alive announce load over 1000 swarms in turns, so each pair is "
        "measured a few seconds apart.\n\n"
        + _table(
            [
                "ours",
                "pair",
                "floor req/s",
                "ours req/s",
                "ours / floor",
                "floor p99 ms",
                "ours p99 ms",
                "floor peak RSS MiB",
                "ours peak RSS MiB",
            ],
            rows,
        )  # fmt: skip
    )


def _memory(doc: Results) -> str:
    memory = doc.get("memory")
    if not memory:
        return ""
    rows = [
        [doc["trackers"][key]["label"], f"{m['rss_empty_kib'] / 1024:.1f}",
         f"{m['rss_full_kib'] / 1024:.1f}", f"{m['rss_peak_kib'] / 1024:.1f}",
         f"{m['bytes_per_peer']:.0f}", _counted(m)]
        for key, m in sorted(memory.items())
    ]  # fmt: skip
    head = ["ours", "RSS, no peers, MiB", "RSS, 50,000 peers, MiB", "peak RSS MiB",
            "RSS bytes per peer", "index bytes per peer, counted"]  # fmt: skip
    return (
        "## Memory\n\n"
        "A fresh tracker, warmed up by 50,000 peers that start, announce again and stop in 1000 "
        "other swarms, then holding 50,000 peers over the 1000 benchmark swarms (each announced "
        "twice). RSS bytes per peer = (RSS with the peers - RSS without) / 50,000. The last "
        "column is `bench/index_memory.py`: the index alone holding 500,000 peers, counted by "
        "the interpreter (tracemalloc under CPython; resident memory between two full "
        "collections under PyPy, whose RSS in service also holds its GC's headroom).\n\n"
        + _table(head, rows)
    )


def _counted(memory: Results) -> str:
    value = memory.get("index_bytes_per_peer")
    return "-" if value is None else f"{value:.0f}"


def _trackers(doc: Results) -> list[str]:
    """Ours first, then the references (the JSON file keeps its keys sorted)."""
    order = {"opentracker": 1, "bittorrent-tracker": 2}
    return sorted(doc["trackers"], key=lambda key: (order.get(key, 0), key))


def _scenario_names(doc: Results) -> list[str]:
    names: list[str] = list(doc["config"].get("scenarios", []))
    for tracker in doc["trackers"].values():
        names += [n for n in tracker["scenarios"] if n not in names]
    return names


def _overview(doc: Results) -> str:
    keys = _trackers(doc)
    head = ["scenario"] + [doc["trackers"][k]["label"] for k in keys]
    rows = []
    for name in _scenario_names(doc):
        row = [name]
        for key in keys:
            stats = doc["trackers"][key]["scenarios"].get(name)
            row.append(_rps_cell(stats) if stats else "-")
        rows.append(row)
    return "## Requests per second\n\n" + _table(head, rows)


def _rps_cell(stats: Results) -> str:
    cell = f"{stats['rps']:,.0f}"
    return cell + f" ({stats['errors_total']:,.0f} errors)" if stats["errors_total"] else cell


def _details(doc: Results) -> str:
    head = [
        "tracker", "req/s", "p50 ms", "p99 ms", "CPU %", "req/CPU-s", "peak RSS MiB",
        "failure reason", "non-200", "socket errors", "server closes", "peers/response",
    ]  # fmt: skip
    out = [
        "## Per scenario\n\n"
        'Errors: bencoded "failure reason" bodies, non-200 statuses, and connect/write/'
        'timeout errors seen by wrk. "server closes" counts connections the tracker closed '
        "after answering (wrk reports them as read errors; opentracker closes every one). "
        f"\\* CPU below {LOAD_BOUND_CPU:.0f}%: the tracker's CPU was not the limit (for "
        "opentracker, the single-core load generator is: it reconnects for every request).\n"
    ]
    for name in _scenario_names(doc):
        rows = []
        for key in _trackers(doc):
            s = doc["trackers"][key]["scenarios"].get(name)
            if not s:
                continue
            socket_errors = sum(s[k] for k in ("err_connect", "err_write", "err_timeout"))
            rows.append([
                doc["trackers"][key]["label"], f"{s['rps']:,.0f}",
                f"{s['lat_p50_us'] / 1000:.2f}", f"{s['lat_p99_us'] / 1000:.2f}",
                _cpu_cell(s['cpu_percent']), f"{s['requests_per_cpu_second']:,.0f}",
                f"{s['rss_peak_kib'] / 1024:.1f}", f"{s['failure']:,.0f}",
                f"{s['bad_status']:,.0f}", f"{socket_errors:,.0f}", f"{s['err_read']:,.0f}",
                f"{s['avg_peers_returned']:.1f}",
            ])  # fmt: skip
        out.append(f"### {name}\n\n" + _table(head, rows))
    return "\n".join(out)


def _cpu_cell(percent: float) -> str:
    # A tracker that is not busy on its core was limited by something else than its CPU.
    return f"{percent:.0f}" + (" *" if percent < LOAD_BOUND_CPU else "")


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _ratio_tables(doc: Results) -> str:
    if not doc["ratios"]:
        return ""
    out = [
        "## Our figures as a ratio to each reference\n\n"
        "ours / reference, same run. Above 1 is better for req/s and req/CPU-s, "
        "worse for latency, CPU and memory.\n"
    ]
    for ours_key, refs in sorted(doc["ratios"].items()):
        for ref_key in REFERENCES:
            per_scenario = refs.get(ref_key)
            if per_scenario is None:
                continue
            title = f"### {doc['trackers'][ours_key]['label']} / {ref_key}\n\n"
            rows = [
                [name] + [_fmt_ratio(per_scenario[name][f]) for f in RATIO_FIELDS]
                for name in _scenario_names(doc)
                if name in per_scenario
            ]
            out.append(title + _table(["scenario", *RATIO_FIELDS.values()], rows))
    return "\n".join(out)


def _state(doc: Results) -> str:
    rows = []
    for key in _trackers(doc):
        t = doc["trackers"][key]
        state = t.get("state")
        if not state:
            continue
        db = "-"
        if "db_bytes" in state:
            db = (
                f"{state['db_bytes'] / 2**20:.1f} MiB + {state['wal_bytes'] / 2**20:.1f} MiB WAL, "
                f"{state['db_bytes_per_peer']:.0f} bytes/peer"
            )
        prefill = t.get("prefill", {})
        fills = ", ".join(_prefill_cell(p) for p in prefill.values())
        rows.append([t["label"], f"{state['stored_peers']:,.0f}", db, fills])
    if not rows:
        return ""
    return (
        "## Stored state after the largest single swarm\n\n"
        "Peers summed from scrapes of every benchmark swarm (they differ between trackers "
        "because a faster tracker serves more of the 1000-swarm announces); database = db + "
        "WAL file size divided by those peers. Prefill = time to announce the single-swarm "
        "peers (32 keep-alive connections from a Python loader, numwant=0).\n\n"
        + _table(["tracker", "stored peers", "database", "prefill"], rows)
    )


def _prefill_cell(fill: Results) -> str:
    text = f"{fill['peers']:,.0f} in {fill['seconds']:.1f} s"
    if not fill["complete"]:
        text = f"{fill['sent']:,.0f} of {fill['peers']:,.0f} in {fill['seconds']:.0f} s (cut off)"
    return text + (f" ({fill['failed']:,.0f} failed)" if fill["failed"] else "")


def _notes(doc: Results) -> str:
    lines = []
    for tracker in doc["trackers"].values():
        if "error" in tracker:
            lines.append(f"- {tracker['label']} failed: {tracker['error'].splitlines()[0]}")
        for name, reason in tracker.get("skipped_scenarios", {}).items():
            lines.append(f"- {tracker['label']}, {name}: not measured, {reason}")
    for key, reason in doc["skipped"].items():
        lines.append(f"- {key} skipped: {reason}")
    return "## Problems\n\n" + "\n".join(lines) + "\n" if lines else ""


# --- chart ------------------------------------------------------------------------------


def chart(doc: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _scenario_names(doc)
    keys = _trackers(doc)
    width = 0.8 / max(1, len(keys))
    fig, ax = plt.subplots(figsize=(13, 6))
    for n, key in enumerate(keys):
        scen = doc["trackers"][key]["scenarios"]
        values = [scen[name]["ok_rps"] if name in scen else 0 for name in names]
        xs = [i + (n - (len(keys) - 1) / 2) * width for i in range(len(names))]
        bars = ax.bar(xs, values, width, label=doc["trackers"][key]["label"])
        for bar, name in zip(bars, names):
            if name in scen and scen[name]["cpu_percent"] < LOAD_BOUND_CPU:
                bar.set_hatch("//")
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 3)  # room for the legend above the bars
    ax.set_ylabel("successful requests/s (log scale)")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([textwrap.fill(n, 14) for n in names], fontsize=8)
    fig.text(
        0.01,
        0.01,
        f"hatched: tracker below {LOAD_BOUND_CPU:.0f}% CPU, limited by something else "
        "(for opentracker, the one-core load generator)",
        fontsize=8,
    )
    ax.set_title(f"HTTP tracker throughput, one core each ({doc['machine']['date']})")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(loc="upper center", ncol=len(keys))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
