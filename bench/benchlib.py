"""What every measurement of bench/run.py shares: peer identities and the request mix, load
generation (an asyncio HTTP/1.1 client, wrk with tracker.lua, udpload.c), a minimal bencode
decoder, the interpreters, and starting, pinning and reading the processes under test.

Peer identities must match tracker.lua and udpload.c.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PORT_BASE = 10000
PEER_ID_TAIL = b"\xfe\x00\x81\x7f\xc3\x10\xaa\x55"
NUMWANT = 50
#: The load's swarms and the population of peers announcing into them, HTTP and UDP alike.
SWARMS = 1000
POPULATION = 50_000
#: Live runs: the server under test alone on one core, the load and this driver on the other.
TRACKER_CORE = 0
LOAD_CORE = 1
#: Interpreters for our tracker by name: "python3" is the one running this, if it is CPython
#: (a venv's), and "pypy3-venv" the repository's PyPy venv.
PYPY_VENV = REPO_DIR / ".venv-pypy" / "bin" / "python"
INTERPRETERS = {
    "python3": sys.executable if sys.implementation.name == "cpython" else "python3",
    "pypy3-venv": str(PYPY_VENV),
}
#: PyPy's default nursery is small for a server that allocates per request on two threads:
#: a larger one measured about 1.4x the announce rate. Passed as PYPY_GC_NURSERY.
PYPY_NURSERY = "64M"


# --- identities -------------------------------------------------------------------------


def swarm_hash(k: int) -> bytes:
    """Info hash of swarm k of the many-swarms set."""
    return hashlib.sha1(b"bench-swarm-%d" % k).digest()


def single_swarm_hash(size: int) -> bytes:
    """Info hash of the single swarm pre-populated with `size` peers."""
    return hashlib.sha1(b"bench-one-swarm-%d" % size).digest()


def named_hash(name: str) -> bytes:
    return hashlib.sha1(b"bench-" + name.encode()).digest()


def peer_id(i: int) -> bytes:
    return b"-BM0001-" + struct.pack(">I", i) + PEER_ID_TAIL


def peer_port(i: int) -> int:
    # Every peer has its own port: some trackers key peers on ip:port and all come from 127.0.0.1.
    return PORT_BASE + i


def peer_key(i: int) -> int:
    """Peer i's key, the same at every announce, as libtorrent, qBittorrent and Transmission
    send theirs (aria2 alone sends a new one each time); udpload.c sends the same."""
    return i + 1


def peer_left(i: int) -> int:
    """30% of the population are seeders; the others have a stable amount left."""
    return 0 if i % 10 < 3 else 1000000 + (i % 1000) * 4096


def udp_swarm_hash(k: int) -> bytes:
    """Info hash of swarm k of the UDP load; udpload.c builds the same bytes."""
    return b"udp-bench-swarm" + struct.pack(">I", k) + b"\0"


def announce_path(
    info_hash: bytes,
    i: int,
    event: str | None = None,
    left: int | None = None,
    numwant: int = NUMWANT,
) -> str:
    left_value = peer_left(i) if left is None else left
    path = (
        f"/announce?info_hash={quote_from_bytes(info_hash, safe='')}"
        f"&peer_id={quote_from_bytes(peer_id(i), safe='')}&port={peer_port(i)}"
        f"&key={peer_key(i):08X}&uploaded=0&downloaded=0&left={left_value}&compact=1&numwant={numwant}"
    )
    if event:
        path += f"&event={event}"
    return path


def mixed_announce_path(rng: random.Random, hashes: list[bytes]) -> str:
    """One announce of the load's mix (tracker.lua's "swarms" mode): a random peer of the
    population into a random swarm; 5 % started, 2 % completed, 3 % stopped, the rest periodic."""
    info_hash = hashes[rng.randrange(len(hashes))]
    i = rng.randrange(POPULATION)
    r = rng.random()
    if r < 0.05:
        return announce_path(info_hash, i, "started")
    if r < 0.07:
        return announce_path(info_hash, i, "completed", left=0)
    if r < 0.10:
        return announce_path(info_hash, i, "stopped")
    return announce_path(info_hash, i)


#: BEP 15's announce action, and the events udpload.c draws: started, completed, stopped.
UDP_ANNOUNCE = b"\x00\x00\x00\x01"
_UDP_EVENTS = ((0.05, 2), (0.07, 1), (0.10, 3))


def udp_announce(
    rng: random.Random, connection_id: bytes, transaction: int, fixed: bool = False
) -> bytes:
    """One announce datagram as udpload.c builds it; C{fixed}: its "fixed" population, where
    peer i always announces into swarm i % SWARMS, rather than "churn", a random swarm."""
    i = rng.randrange(POPULATION)
    swarm = i % SWARMS if fixed else rng.randrange(SWARMS)
    roll = rng.random()
    event = next((code for limit, code in _UDP_EVENTS if roll < limit), 0)
    left = 0 if (i % 10 < 3 or event == 1) else 1_000_000 + (i % 1000) * 4096
    return connection_id + struct.pack(
        "!4sI20s20sqqqI4sIiH", UDP_ANNOUNCE, transaction, udp_swarm_hash(swarm), peer_id(i),
        0, left, 0, event, b"\0\0\0\0", peer_key(i), NUMWANT, peer_port(i),
    )  # fmt: skip


def fill_index(index: Any, peers: int, swarms: int, now: int = 1_000_000) -> Any:
    """Announce peers 0..C{peers}-1 into C{index} (a SwarmIndex), spread over C{swarms}
    torrents, one request at a time so that only what the index keeps of them stays."""
    from tracker.core.announce import NONE, AnnounceRequest

    hashes = [swarm_hash(k) for k in range(swarms)]
    for i in range(peers):
        index.announce(
            AnnounceRequest(
                hashes[i % swarms], peer_id(i), b"\x7f\x00\x00\x01",
                peer_port(i) % 65535 + 1, 0, 0, peer_left(i), NONE, 0, True, False,
            ),
            now,
        )  # fmt: skip
    return index


def scrape_path(hashes: Iterable[bytes]) -> str:
    return "/scrape?" + "&".join(f"info_hash={quote_from_bytes(h, safe='')}" for h in hashes)


def compact_ports(peers: bytes) -> set[int]:
    """Ports of the 127.0.0.1 peers in a compact (6 bytes per peer) list."""
    return {struct.unpack(">H", peers[k + 4 : k + 6])[0] for k in range(0, len(peers) - 5, 6)}


# --- bencode ----------------------------------------------------------------------------


class BencodeError(ValueError):
    pass


def bdecode(data: bytes) -> object:
    value, end = _bdecode_at(data, 0)
    if end != len(data):
        raise BencodeError("trailing data")
    return value


def _bdecode_at(data: bytes, pos: int) -> tuple[object, int]:
    if pos >= len(data):
        raise BencodeError("truncated")
    lead = data[pos : pos + 1]
    if lead == b"i":
        end = data.index(b"e", pos)
        return int(data[pos + 1 : end]), end + 1
    if lead.isdigit():
        colon = data.index(b":", pos)
        start = colon + 1
        length = int(data[pos:colon])
        if start + length > len(data):
            raise BencodeError("truncated string")
        return data[start : start + length], start + length
    if lead in (b"l", b"d"):
        items: list[object] = []
        pos += 1
        while data[pos : pos + 1] != b"e":
            item, pos = _bdecode_at(data, pos)
            items.append(item)
        if lead == b"l":
            return items, pos + 1
        return dict(zip(items[::2], items[1::2])), pos + 1
    raise BencodeError(f"bad token at {pos}")


# --- HTTP client ------------------------------------------------------------------------


class HttpClient:
    """One HTTP/1.1 connection, reopened when the server closes it."""

    def __init__(self, port: int, keep_alive: bool = True, timeout: float = 10.0) -> None:
        self.port = port
        self.keep_alive = keep_alive
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        reused = self._writer is not None
        try:
            return await asyncio.wait_for(self._exchange(path), self.timeout)
        except (ConnectionError, asyncio.IncompleteReadError):
            await self.close()
            if not reused:
                raise
        # A kept-alive connection may have been closed by the server in between: retry once.
        return await asyncio.wait_for(self._exchange(path), self.timeout)

    async def _exchange(self, path: str) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(HOST, self.port)
        assert self._reader is not None
        head = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
        if not self.keep_alive:
            head += "Connection: close\r\n"
        self._writer.write((head + "\r\n").encode())
        status, headers = await self._read_head(self._reader)
        body = await self._read_body(self._reader, headers)
        if not self.keep_alive or headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return status, headers

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk[:-2])
        headers["connection"] = "close"  # body delimited by the end of the connection
        return await reader.read()

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


@dataclass
class LoadStats:
    ok: int = 0
    failure: int = 0
    bad_status: int = 0
    errors: int = 0
    failures_seen: list[bytes] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.ok + self.failure + self.bad_status + self.errors

    def record(self, status: int, body: bytes) -> None:
        if status != 200:
            self.bad_status += 1
        elif b"failure reason" in body:
            self.failure += 1
            if len(self.failures_seen) < 3:
                self.failures_seen.append(body[:200])
        else:
            self.ok += 1


async def run_requests(
    port: int,
    paths: Iterable[str],
    concurrency: int = 32,
    keep_alive: bool = True,
    seconds: float | None = None,
) -> LoadStats:
    """Send every path once, `concurrency` at a time, giving up after `seconds`."""
    stats = LoadStats()
    queue: Iterator[str] = iter(paths)
    deadline = None if seconds is None else time.monotonic() + seconds

    async def worker() -> None:
        client = HttpClient(port, keep_alive)
        try:
            for path in queue:
                if deadline is not None and time.monotonic() > deadline:
                    return
                try:
                    status, body = await client.get(path)
                    stats.record(status, body)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
                    stats.errors += 1
                    await client.close()
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return stats


async def fetch(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    client = HttpClient(port, keep_alive=False, timeout=timeout)
    try:
        return await client.get(path)
    finally:
        await client.close()


async def scrape_totals(
    port: int, hashes: list[bytes], batch: int = 10
) -> dict[bytes, dict[bytes, int]]:
    """Scrape entries for every hash, in batches (single hashes if batches are refused)."""
    result: dict[bytes, dict[bytes, int]] = {}
    client = HttpClient(port)
    try:
        for start in range(0, len(hashes), batch):
            chunk = hashes[start : start + batch]
            status, body = await client.get(scrape_path(chunk))
            decoded = bdecode(body) if status == 200 else {}
            files = decoded.get(b"files") if isinstance(decoded, dict) else None
            if not isinstance(files, dict):
                if batch > 1:
                    return await scrape_totals(port, hashes, batch=1)
                continue
            for key, entry in files.items():
                if isinstance(key, bytes) and isinstance(entry, dict):
                    result[key] = {k: v for k, v in entry.items() if isinstance(v, int)}
    finally:
        await client.close()
    return result


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {timeout:.0f} s")


def ours_command(interpreter: str, port: int, database: Path, extra: list[str]) -> list[str]:
    return [
        interpreter, "-m", "twisted", "tracker",
        "--listen", f"tcp:{port}:interface={HOST}",
        "--database", str(database),
        *extra,
    ]  # fmt: skip


def opentracker_command(workdir: Path, listen: list[str], whitelist: list[bytes]) -> list[str]:
    """opentracker listening as ``listen`` says (``-p PORT`` TCP, ``-P PORT`` UDP).

    It is built whitelist-only; as root it chroots to -d and drops to -u.
    """
    root = workdir / "otroot"
    root.mkdir()
    root.chmod(0o755)
    (root / "whitelist.txt").write_text("".join(h.hex() + "\n" for h in whitelist))
    (root / "whitelist.txt").chmod(0o644)
    cmd = ["opentracker", "-i", HOST, *listen, "-d", str(root)]
    if os.geteuid() == 0:
        # The whitelist is read after the chroot, so its path is relative to the new root.
        return [*cmd, "-u", "nobody", "-w", "/whitelist.txt"]
    return [*cmd, "-w", str(root / "whitelist.txt")]


def interpreter_ready(interpreter: str) -> str | None:
    """None if the interpreter can run our tracker, else the reason it cannot."""
    try:
        done = subprocess.run(
            [interpreter, "-c", "import tracker.daemon.tap, twisted"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_DIR,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit code {done.returncode}"
    return None


def start_process(
    cmd: list[str], log_path: Path, core: int | None, cwd: Path
) -> subprocess.Popen[bytes]:
    """Start a server in its own process group, optionally pinned to one core."""
    if core is not None and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", str(core), *cmd]
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
        )


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(grace)


def kill_hard(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def status_kib(pid: int | str, name: str) -> int:
    """A /proc/PID/status figure in KiB (VmRSS, VmHWM); C{pid} "self" for this process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler(threading.Thread):
    """Samples VmRSS every 100 ms and keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            except OSError:
                return
            self._stop_event.wait(0.1)

    def stop(self) -> int:
        self._stop_event.set()
        self.join(2)
        return self.peak_kib


# --- interpreters and cores ---------------------------------------------------------------


def interpreter_path(name: str) -> str:
    """The executable an interpreter's name stands for ("pypy3-venv": the repository's venv)."""
    return INTERPRETERS.get(name, name)


def with_nursery(cmd: list[str], nursery: str = PYPY_NURSERY) -> list[str]:
    """C{cmd} with PyPy's nursery set to C{nursery} when it runs under PyPy."""
    if "pypy" in cmd[0] and nursery:
        return ["env", f"PYPY_GC_NURSERY={nursery}", *cmd]
    return cmd


def pin_self(core: int = LOAD_CORE) -> None:
    """Keep this driver (and the load it makes itself) off the tracker's core."""
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {core})


def on_load_core(cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(LOAD_CORE), *cmd] if (os.cpu_count() or 1) > 1 else cmd


# --- load generators ----------------------------------------------------------------------


def run_wrk(
    port: int, lua_args: list[str], seconds: float, connections: int = 64, threads: int = 1
) -> dict[str, float]:
    """wrk with tracker.lua on the load core for C{seconds}: the figures its done() prints."""
    cmd = on_load_core([
        "wrk", "-t", str(threads), "-c", str(connections),
        "-d", f"{max(1, round(seconds))}s", "--timeout", "5s", "--latency",
        "-s", str(BENCH_DIR / "tracker.lua"), f"http://{HOST}:{port}", "--", *lua_args,
    ])  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return {k: float(v) for k, v in json.loads(line[len("BENCH_JSON ") :]).items()}
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr.strip()}")


def build_udpload(where: Path) -> Path:
    """udpload.c, built with the system's C compiler into C{where}."""
    binary = where / "udpload"
    source = BENCH_DIR / "udpload.c"
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
    return binary


def run_udpload(binary: Path, port: int, population: str, settings: Any) -> dict[str, float]:
    """udpload on the load core against C{port}; C{settings} has warmup, duration, sockets,
    window, swarms and peers."""
    s = settings
    cmd = on_load_core([
        str(binary), HOST, str(port), str(s.warmup), str(s.duration), str(s.sockets),
        str(s.window), str(s.swarms), str(s.peers), population,
    ])  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def udp_answers(port: int) -> bool:
    """Whether something on C{port} answers a BEP 15 connect."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(struct.pack("!QII", 0x41727101980, 0, 7), (HOST, port))
            return len(sock.recv(64)) == 16
        except OSError:
            return False


def free_udp_port() -> int:
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        return port


# --- the machine and the options ------------------------------------------------------------


def command_output(cmd: list[str]) -> str:
    """First line the command prints (wrk prints its version with a usage error)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return lines[0] if lines else ""


def machine() -> dict[str, Any]:
    """When, at which commit and on what a measurement ran."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    commit = command_output(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "tracker"])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": (commit or "unknown") + (" (modified)" if dirty else ""),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": os.uname().release,
    }


def option(parser: Any, flag: str, full: Any, quick: Any, help: str, type: Any = int) -> None:
    """An option whose default is C{full}, or C{quick} with --quick (bench/run.py applies it)."""
    action = parser.add_argument(
        flag, type=type, default=None, help=f"{help} [{full}; {quick} with --quick]"
    )
    scaled = dict(parser.get_default("scaled") or {})
    scaled[action.dest] = (full, quick)
    parser.set_defaults(scaled=scaled)
