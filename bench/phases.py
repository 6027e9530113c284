"""The benchmark's measurements of ours against the Twisted floor, and of memory.

- Floor pairs: the floor (bench/floor.py) and our tracker run side by side on the tracker core
  under the same interpreter, and the same wrk load goes to one, then the other, several times
  over: each pair's ratio is read from measurements a few seconds apart, so the drift of these
  machines (the PyPy floor has moved by 1.6x within minutes) cancels out.
- Memory: our tracker, warmed up, then filled with exactly 50,000 peers over the 1000 benchmark
  swarms: resident memory before and after, and the bytes each peer costs.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib as bl

MEMORY_PEERS = 50_000


def floor_command(interpreter: str, port: int) -> list[str]:
    return [interpreter, str(bl.BENCH_DIR / "floor.py"), str(port)]


def floor_pairs(
    start: Callable[[list[str] | None, Path], Any],
    measure: Callable[[Any], dict[str, float]],
    interpreter: str,
    workdir: Path,
    rounds: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """C{rounds} alternating measurements of the floor and of ours; C{start(cmd, dir)} starts
    a process (ours when C{cmd} is None) and C{measure(running)} loads it once."""
    floor_dir, ours_dir = workdir / "floor", workdir / "ours"
    floor_dir.mkdir()
    ours_dir.mkdir()
    floor = start(floor_command(interpreter, bl.free_port()), floor_dir)
    try:
        ours = start(None, ours_dir)
    except BaseException:
        bl.stop_process(floor.proc)
        raise
    pairs = []
    try:
        for n in range(rounds):
            floor_stats = measure(floor)
            ours_stats = measure(ours)
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
    return summarise_pairs(pairs)


def summarise_pairs(pairs: list[dict[str, Any]]) -> dict[str, Any]:
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


def _status_kib(pid: int, name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return float(line.split()[1])
    return 0.0


def _send(port: int, paths: list[str]) -> bl.LoadStats:
    return asyncio.run(bl.run_requests(port, paths, concurrency=32, seconds=300))


def memory(running: Any, log: Callable[[str], None]) -> dict[str, float]:
    """Warm ours up with peers that come and go, then hold exactly MEMORY_PEERS peers."""
    pid, port = running.proc.pid, running.port
    # The same requests as the fill below, into other swarms, and then every peer stops: the
    # heap has grown to what this load needs and the code is warm before "no peers" is read.
    warm = [bl.named_hash(f"warm-{k}") for k in range(1000)]
    for event in ("started", None, "stopped"):
        _send(port, [bl.announce_path(warm[i % 1000], i, event) for i in range(MEMORY_PEERS)])
    time.sleep(1)
    empty_kib = _status_kib(pid, "VmRSS")
    fill = [
        bl.announce_path(bl.swarm_hash(i % 1000), i, "started", numwant=0)
        for i in range(MEMORY_PEERS)
    ]
    stats = _send(port, fill)
    # Then everyone announces again, as a live swarm does, with peers in the replies.
    _send(port, [bl.announce_path(bl.swarm_hash(i % 1000), i) for i in range(MEMORY_PEERS)])
    time.sleep(1)
    full_kib = _status_kib(pid, "VmRSS")
    result = {
        "peers": float(MEMORY_PEERS),
        "filled_ok": float(stats.ok),
        "rss_empty_kib": empty_kib,
        "rss_full_kib": full_kib,
        "rss_peak_kib": _status_kib(pid, "VmHWM"),
        "bytes_per_peer": (full_kib - empty_kib) * 1024 / MEMORY_PEERS,
    }
    log(
        f"  memory: {empty_kib / 1024:.1f} MiB warmed up with no peers, {full_kib / 1024:.1f} MiB"
        f" with {MEMORY_PEERS:,} ({result['bytes_per_peer']:.0f} bytes/peer), peak"
        f" {result['rss_peak_kib'] / 1024:.1f} MiB"
    )
    return result


#: Peers for the interpreter's own count of the index's memory: enough that heap granularity
#: does not show.
INDEX_PEERS = 500_000


def index_memory(interpreter: str, log: Callable[[str], None]) -> dict[str, float]:
    """bench/index_memory.py under C{interpreter}: the index's bytes per peer, counted."""
    done = subprocess.run(
        [interpreter, str(bl.BENCH_DIR / "index_memory.py"), "--peers", str(INDEX_PEERS)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"index_memory.py failed: {done.stderr.strip()[-500:]}")
    counted = json.loads(done.stdout)
    log(f"  index alone: {counted['bytes_per_peer']:.0f} bytes/peer over {INDEX_PEERS:,} peers")
    return {"index_bytes_per_peer": float(counted["bytes_per_peer"])}
