"""Fault checks for our tracker; prints PASS/FAIL lines and exits non-zero on any failure.

1. kill -9 during a load run, then restart on the same database: it must start cleanly, no
   scrape "downloaded" count may go down, and peers that announced more than 1 s before the
   kill must still be returned.
2. 200 stalled connections (half a request, or nothing at all) must not starve a good client.
3. 64 connections sending malformed input must not stop good clients being served.
4. The crash loop: CYCLES times (20 by default), completions and a wrk load, kill -9 at a
   random moment, a restart on the same database. Every restart must replay the journal and
   serve; no completion count may go down (from the count after the previous restart, nor
   from a scrape taken SAVED_AFTER before the kill); every completion answered more than
   SAVED_AFTER before the kill (the group commit interval, 0.1 s, plus 0.5 s for a commit
   being written) must be counted, and none twice.

Usage: python3 bench/faults.py [--interpreter python3] [--ours-arg=--option ...]
       [--cycles 20] [--only crash-loop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_from_bytes

import benchlib as bl

TRACKER_CORE = 0
LOAD_CORE = 1
FAULT_SWARMS = 10
PEERS_PER_SWARM = 20
FIRST_KNOWN_PEER = 40000  # peer indexes (ports 50000+) apart from the load's population
OBSERVER_PEER = 45000
GOOD_LATENCY_LIMIT = 1.0
STALLED_SOCKETS = 200
BAD_CLIENTS = 64
CRASH_CYCLES = 20
CRASH_TORRENTS = 10
#: Peer indexes of the crash loop's completions, apart from every other population.
FIRST_COMPLETER = 1_000_000
#: A completion answered this long before a kill must have been saved: the group commit
#: interval (tracker.store.sqlite.COMMIT_EVERY) plus a commit still being written.
SAVED_AFTER = 0.1 + 0.5


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Tracker:
    interpreter: str
    database: Path
    log: Path
    extra: list[str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.port = bl.free_port()
        cmd = bl.ours_command(self.interpreter, self.port, self.database, self.extra)
        self.proc = bl.start_process(cmd, self.log, TRACKER_CORE, bl.REPO_DIR)
        bl.wait_for_port(self.port, self.proc)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            bl.stop_process(self.proc)

    def kill9(self) -> None:
        if self.proc is not None:
            bl.kill_hard(self.proc)


def fault_hashes() -> list[bytes]:
    return [bl.named_hash(f"fault-{k}") for k in range(FAULT_SWARMS)]


def known_peers(swarm: int) -> list[int]:
    first = FIRST_KNOWN_PEER + swarm * PEERS_PER_SWARM
    return list(range(first, first + PEERS_PER_SWARM))


def response_ports(body: bytes) -> set[int] | None:
    """Peer ports in an announce response, or None if it is not a successful one."""
    try:
        decoded = bl.bdecode(body)
    except (bl.BencodeError, ValueError, IndexError):
        return None
    if not isinstance(decoded, dict) or b"failure reason" in decoded:
        return None
    peers = decoded.get(b"peers", b"")
    if isinstance(peers, bytes):
        return bl.compact_ports(peers)
    if isinstance(peers, list):
        return {int(p[b"port"]) for p in peers if isinstance(p, dict) and b"port" in p}
    return None


# --- check 1: kill -9 and restart -------------------------------------------------------


async def announce_known_peers(port: int) -> None:
    """Every known peer starts; every fourth one also completes, so downloaded > 0."""
    paths = []
    for swarm, info_hash in enumerate(fault_hashes()):
        for i in known_peers(swarm):
            paths.append(bl.announce_path(info_hash, i, "started"))
            if i % 4 == 0:
                paths.append(bl.announce_path(info_hash, i, "completed", left=0))
    stats = await bl.run_requests(port, paths, concurrency=1)
    if stats.ok != len(paths):
        raise RuntimeError(f"known peers: {stats.ok}/{len(paths)} announces succeeded")


def start_load(port: int, hash_file: Path, seconds: int) -> subprocess.Popen[bytes]:
    cmd = [
        "wrk", "-t", "1", "-c", "64", "-d", f"{seconds}s", "--timeout", "2s",
        "-s", str(bl.BENCH_DIR / "tracker.lua"), f"http://{bl.HOST}:{port}",
        "--", "swarms", str(hash_file), "50000",
    ]  # fmt: skip
    if (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", str(LOAD_CORE), *cmd]
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def downloaded_counts(port: int, hashes: list[bytes]) -> dict[bytes, int]:
    entries = asyncio.run(asyncio.wait_for(bl.scrape_totals(port, hashes), 60))
    return {h: e.get(b"downloaded", 0) for h, e in entries.items()}


def check_kill_restart(tracker: Tracker, workdir: Path) -> list[Check]:
    checks: list[Check] = []
    load_hashes = [bl.swarm_hash(k) for k in range(1000)]
    hash_file = workdir / "hashes.txt"
    hash_file.write_text("".join(h.hex() + "\n" for h in load_hashes))
    watched = fault_hashes() + load_hashes[:100]
    tracker.start()
    asyncio.run(asyncio.wait_for(announce_known_peers(tracker.port), 60))
    load = start_load(tracker.port, hash_file, 10)
    try:
        time.sleep(1.5)  # the known peers are now more than 1 s old, under load
        before = downloaded_counts(tracker.port, watched)
        time.sleep(0.3)
        tracker.kill9()
    finally:
        bl.kill_hard(load)
    checks.append(restart_check(tracker))
    if not checks[-1].passed:
        return checks
    after = downloaded_counts(tracker.port, watched)
    checks.append(downloaded_check(before, after))
    checks.append(asyncio.run(asyncio.wait_for(peers_kept_check(tracker.port), 60)))
    return checks


def restart_check(tracker: Tracker) -> Check:
    name = "kill -9 under load, restart on the same database"
    try:
        tracker.start()
        status, body = asyncio.run(
            bl.fetch(tracker.port, bl.announce_path(fault_hashes()[0], OBSERVER_PEER))
        )
    except (RuntimeError, OSError, asyncio.TimeoutError) as exc:
        tail = tracker.log.read_text(errors="replace")[-800:]
        return Check(name, False, f"{exc}; log tail: {tail!r}")
    time.sleep(1.0)
    if not tracker.alive():
        return Check(name, False, f"exited after restart with code {tracker.proc.returncode}")  # type: ignore[union-attr]
    if status != 200 or response_ports(body) is None:
        return Check(name, False, f"first announce after restart: {status} {body[:200]!r}")
    return Check(name, True, "restarted and answered an announce")


def downloaded_check(before: dict[bytes, int], after: dict[bytes, int]) -> Check:
    name = "no scrape downloaded count went down"
    lower = [(h.hex()[:8], n, after.get(h, 0)) for h, n in before.items() if after.get(h, 0) < n]
    if not before:
        return Check(name, False, "no scrape entries before the kill")
    if lower:
        return Check(
            name, False, f"{len(lower)} hashes lower, e.g. (hash, before, after) {lower[:3]}"
        )
    total_after = sum(after.get(h, 0) for h in before)
    detail = f"{len(before)} hashes, total {sum(before.values())} before, {total_after} after"
    return Check(name, True, detail)


async def peers_kept_check(port: int) -> Check:
    name = "peers announced more than 1 s before the kill are returned"
    missing = 0
    for swarm, info_hash in enumerate(fault_hashes()):
        # A leecher: a seeder would rightly be sent only the swarm's leechers.
        path = bl.announce_path(info_hash, OBSERVER_PEER + 1 + swarm, left=1000, numwant=50)
        status, body = await bl.fetch(port, path)
        ports = response_ports(body) if status == 200 else None
        if ports is None:
            return Check(name, False, f"announce failed: {status} {body[:200]!r}")
        missing += len({bl.peer_port(i) for i in known_peers(swarm)} - ports)
    total = FAULT_SWARMS * PEERS_PER_SWARM
    if missing:
        return Check(name, False, f"{missing} of {total} known peers missing")
    return Check(name, True, f"all {total} known peers returned")


# --- checks 2 and 3: hostile connections ------------------------------------------------


async def good_client(port: int, seconds: float) -> tuple[int, int, float]:
    """Announces on fresh connections for `seconds`: (ok, failed, worst latency)."""
    ok = failed = 0
    worst = 0.0
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        path = bl.announce_path(fault_hashes()[1], OBSERVER_PEER + 100 + n % 50)
        started = time.monotonic()
        try:
            status, body = await bl.fetch(port, path, timeout=5.0)
            good = status == 200 and response_ports(body) is not None
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            good = False
        worst = max(worst, time.monotonic() - started)
        ok, failed = (ok + 1, failed) if good else (ok, failed + 1)
        n += 1
        await asyncio.sleep(0.05)
    return ok, failed, worst


def good_client_check(name: str, result: tuple[int, int, float], alive: bool) -> Check:
    ok, failed, worst = result
    detail = f"{ok} ok, {failed} failed, worst latency {worst * 1000:.0f} ms"
    passed = alive and ok > 0 and failed == 0 and worst < GOOD_LATENCY_LIMIT
    return Check(name, passed, detail if alive else detail + "; tracker died")


def open_stalled_sockets(port: int) -> list[socket.socket]:
    """Half of them send part of a request line, the other half nothing, then they stall."""
    socks = []
    for n in range(STALLED_SOCKETS):
        sock = socket.create_connection((bl.HOST, port), timeout=5)
        if n % 2 == 0:
            sock.sendall(b"GET /announce?info_hash=%12%34")
        socks.append(sock)
    return socks


def check_stalled(tracker: Tracker) -> Check:
    name = f"{STALLED_SOCKETS} stalled connections do not starve a good client"
    try:
        socks = open_stalled_sockets(tracker.port)
    except OSError as exc:
        return Check(name, False, f"could not open stalled sockets: {exc}")
    try:
        result = asyncio.run(asyncio.wait_for(good_client(tracker.port, 5.0), 60))
    finally:
        for sock in socks:
            sock.close()
    return good_client_check(name, result, tracker.alive())


def bad_inputs() -> list[bytes]:
    short_hash = "%01" * 19
    many_hashes = "&".join(f"info_hash={'%02' * 20}" for _ in range(2000))
    return [
        b"\x00\xff\x13\x37" * 256 + b"\r\n\r\n",
        b"GET /announce?info_hash=%ZZ%zz&peer_id=&port=abc&left=-1 HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /announce?info_hash={short_hash}&peer_id=x&port=99999999 HTTP/1.1\r\n\r\n".encode(),
        b"GET /announce?" + b"a" * 200000 + b" HTTP/1.1\r\n\r\n",
        b"GET /announce HTTP/1.1\r\nX-Junk: " + b"y" * 100000 + b"\r\n\r\n",
        b"POST /announce HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\nabc",
        b"GET /announce HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzzzz\r\n",
        b"BREW /coffee HTCPCP/1.0\r\n\r\n",
        b"GET /scrape?" + many_hashes.encode() + b" HTTP/1.1\r\n\r\n",
        b"GET /announce?info_hash=%00%00 HTTP/0.9\r\n\r\n" * 50,
        b"\r\n" * 5000,
    ]


async def bad_client(port: int, seconds: float, offset: int) -> int:
    inputs = bad_inputs()
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        payload = inputs[(offset + sent) % len(inputs)]
        sent += 1
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(bl.HOST, port), 2)
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.05)
            continue
        try:
            writer.write(payload)
            await asyncio.wait_for(writer.drain(), 1)
            await asyncio.wait_for(reader.read(65536), 0.5)
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()
    return sent


async def bad_input_run(port: int, seconds: float) -> tuple[tuple[int, int, float], int]:
    good = asyncio.ensure_future(good_client(port, seconds))
    sent = await asyncio.gather(*(bad_client(port, seconds, n) for n in range(BAD_CLIENTS)))
    return await good, sum(sent)


def check_bad_input(tracker: Tracker) -> Check:
    name = f"{BAD_CLIENTS} connections sending bad input do not stop good clients"
    result, sent = asyncio.run(asyncio.wait_for(bad_input_run(tracker.port, 5.0), 60))
    check = good_client_check(name, result, tracker.alive())
    check.detail += f"; {sent} bad requests sent"
    return check


# --- check 4: the crash loop ------------------------------------------------------------


def crash_hashes() -> list[bytes]:
    return [bl.named_hash(f"crash-{t}") for t in range(CRASH_TORRENTS)]


@dataclass
class Completer:
    """Completes the crash loop's torrents one announce at a time, each by a new peer, round
    the torrents in turn."""

    port: int
    peer: int
    #: (torrent, when answered) of every completion the tracker answered.
    answered: list[tuple[int, float]] = field(default_factory=list)
    in_flight: int | None = None

    async def run(self) -> None:
        client = bl.HttpClient(self.port, timeout=10.0)
        hashes = crash_hashes()
        try:
            while True:
                t = self.peer % CRASH_TORRENTS
                path = (
                    f"/announce?info_hash={quote_from_bytes(hashes[t], safe='')}"
                    f"&peer_id={quote_from_bytes(bl.peer_id(self.peer), safe='')}"
                    f"&port={1024 + self.peer % 60000}&left=0&event=completed&numwant=0"
                )
                self.in_flight = t
                status, body = await client.get(path)
                if status != 200 or b"failure reason" in body:
                    raise RuntimeError(f"completion refused: {status} {body[:200]!r}")
                self.answered.append((t, time.monotonic()))
                self.in_flight = None
                self.peer += 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass  # the tracker was killed
        finally:
            await client.close()


@dataclass
class CrashCycle:
    """What one kill and restart showed."""

    restart_seconds: float
    answered: int
    saved: int
    #: Seconds before the kill the oldest lost completion was answered (0: none lost).
    oldest_lost: float
    went_down: list[str]
    counted_twice: list[str]


async def crash_load(
    tracker: Tracker, hash_file: Path, completer: Completer, rng: random.Random
) -> tuple[dict[bytes, int], float]:
    """Load and completions, a scrape, then kill -9 at least SAVED_AFTER later: the scrape's
    counts and the moment of the kill."""
    load = start_load(tracker.port, hash_file, 30)
    task = asyncio.ensure_future(completer.run())
    try:
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        safe = await bl.scrape_totals(tracker.port, crash_hashes() + crash_watched_load())
        await asyncio.sleep(SAVED_AFTER + rng.uniform(0.0, 1.0))
        killed = time.monotonic()
        tracker.kill9()
    finally:
        bl.kill_hard(load)
    await asyncio.wait_for(task, 30)
    return {h: e.get(b"downloaded", 0) for h, e in safe.items()}, killed


def crash_watched_load() -> list[bytes]:
    """Load swarms whose counts are watched too: wrk completes peers in them (tracker.lua)."""
    return [bl.swarm_hash(k) for k in range(0, 1000, 20)]


def check_crash_loop(tracker: Tracker, workdir: Path, cycles: int) -> list[Check]:
    load_hashes = [bl.swarm_hash(k) for k in range(1000)]
    hash_file = workdir / "hashes.txt"
    hash_file.write_text("".join(h.hex() + "\n" for h in load_hashes))
    hashes = crash_hashes()
    watched = hashes + crash_watched_load()
    rng = random.Random(20261208)
    results: list[CrashCycle] = []
    floor = dict.fromkeys(watched, 0)
    ceiling = dict.fromkeys(hashes, 0)
    previous = dict.fromkeys(hashes, 0)
    answered: list[tuple[int, float]] = []
    killed = 0.0
    peer = FIRST_COMPLETER
    replay_failure = ""
    for cycle in range(cycles + 1):
        started = time.monotonic()
        try:
            tracker.start()
            counts = downloaded_counts(tracker.port, watched)
        except (RuntimeError, OSError, asyncio.TimeoutError) as exc:
            tail = tracker.log.read_text(errors="replace")[-800:]
            replay_failure = f"restart {cycle}: {exc}; log tail: {tail!r}"
            break
        restart_seconds = time.monotonic() - started
        if cycle:
            saved = sum(counts.get(h, 0) for h in hashes) - sum(previous.values())
            lost = [killed - when for _, when in answered[max(saved, 0) :]]
            results.append(
                CrashCycle(
                    restart_seconds,
                    len(answered),
                    saved,
                    max(lost, default=0.0),
                    [f"{h.hex()[:8]} {floor[h]}->{counts.get(h, 0)}" for h in watched
                     if counts.get(h, 0) < floor[h]],
                    [f"{h.hex()[:8]} {ceiling[h]}->{counts.get(h, 0)}" for h in hashes
                     if counts.get(h, 0) > ceiling[h]],
                )
            )  # fmt: skip
        if cycle == cycles:
            break
        completer = Completer(tracker.port, peer)
        safe, killed = asyncio.run(crash_load(tracker, hash_file, completer, rng))
        answered = completer.answered
        # The peer whose completion was in flight may have been counted: never reused.
        peer = completer.peer + 1
        previous = {h: counts.get(h, 0) for h in hashes}
        # After the next restart, no count may be below its count now, nor below the scrape
        # taken at least SAVED_AFTER before the kill; nor above one per completion sent.
        floor = {h: max(counts.get(h, 0), safe.get(h, 0)) for h in watched}
        ceiling = dict(previous)
        for t, _ in answered:
            ceiling[hashes[t]] += 1
        if completer.in_flight is not None:
            ceiling[hashes[completer.in_flight]] += 1
    tracker.stop()
    return crash_checks(cycles, results, replay_failure)


def crash_checks(cycles: int, results: list[CrashCycle], replay_failure: str) -> list[Check]:
    done = len(results)
    restarts = [r.restart_seconds for r in results]
    replayed = Check(
        f"the journal replayed after each of {cycles} kill -9 under load",
        not replay_failure and done == cycles,
        replay_failure
        or f"{done} restarts, each answered a scrape after {min(restarts):.2f}-"
        f"{max(restarts):.2f} s (median {statistics.median(restarts):.2f} s)",
    )
    down = [(n, r.went_down) for n, r in enumerate(results, 1) if r.went_down]
    twice = [(n, r.counted_twice) for n, r in enumerate(results, 1) if r.counted_twice]
    lost = [r.answered - r.saved for r in results]
    oldest = [r.oldest_lost for r in results]
    answered = sum(r.answered for r in results)
    return [
        replayed,
        Check(
            "no completion count went down",
            done > 0 and not down,
            f"after kills {[n for n, _ in down]}, e.g. {down[0][1][:3]}" if down else
            f"{len(crash_watched_load()) + CRASH_TORRENTS} torrents watched over {done} restarts",
        ),
        Check(
            "at most the last group commit lost (every completion answered"
            f" {SAVED_AFTER:.1f} s before a kill kept)",
            done > 0 and max(oldest, default=0.0) <= SAVED_AFTER,
            f"{answered} completions answered; lost per kill at most {max(lost, default=0)}"
            f" (median {statistics.median(lost) if lost else 0}); the oldest lost was answered"
            f" {max(oldest, default=0.0) * 1000:.0f} ms before its kill (median over kills"
            f" {statistics.median(oldest) * 1000 if oldest else 0:.0f} ms)",
        ),
        Check(
            "no completion counted twice",
            done > 0 and not twice,
            f"after kills {[n for n, _ in twice]}, e.g. {twice[0][1][:3]}" if twice else
            f"{CRASH_TORRENTS} torrents, each completion by a new peer",
        ),
    ]  # fmt: skip


# --- driver -----------------------------------------------------------------------------


def run_checks(
    tracker: Tracker, workdir: Path, checks: list[Check], only: str | None, cycles: int
) -> None:
    """Appends to `checks` as it goes, so an abort keeps the results so far."""
    if only is None:
        checks.extend(check_kill_restart(tracker, workdir))
        if not tracker.alive():
            tracker.stop()
            tracker.database = workdir / "fresh.sqlite3"  # the old one may be what broke it
            tracker.start()
        checks.append(check_stalled(tracker))
        checks.append(check_bad_input(tracker))
        tracker.stop()
    looped = Tracker(
        tracker.interpreter, workdir / "crash.sqlite3", workdir / "crash.log", tracker.extra
    )
    try:
        checks.extend(check_crash_loop(looped, workdir, cycles))
    finally:
        looped.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--interpreter", default="python3")
    parser.add_argument("--ours-arg", action="append", default=[], help="extra tracker option")
    parser.add_argument("--cycles", type=int, default=CRASH_CYCLES, help="kills of the crash loop")
    parser.add_argument("--only", choices=["crash-loop"], help="run this check alone")
    args = parser.parse_args(argv)
    reason = bl.interpreter_ready(args.interpreter)
    if reason is not None:
        print(f"FAIL tracker not importable with {args.interpreter}: {reason}")
        return 2
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {LOAD_CORE})
    with tempfile.TemporaryDirectory(prefix="trackerfaults-") as tmp:
        workdir = Path(tmp)
        tracker = Tracker(
            args.interpreter, workdir / "db.sqlite3", workdir / "tracker.log", args.ours_arg
        )
        checks: list[Check] = []
        try:
            run_checks(tracker, workdir, checks, args.only, args.cycles)
        except (RuntimeError, OSError, asyncio.TimeoutError) as exc:
            checks.append(Check("fault checks ran to the end", False, str(exc)))
        finally:
            tracker.stop()
    for check in checks:
        print(f"{'PASS' if check.passed else 'FAIL'} {check.name}: {check.detail}", flush=True)
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
