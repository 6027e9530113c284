"""
The daemon on a failing disk, for real: a process of `python -m twisted tracker` serving HTTP on
127.0.0.1, its database on a small tmpfs filled to the last byte, or under libfiu (Debian's
fiu-utils), which makes pwrite fail with ENOSPC or EIO and fdatasync with EIO inside the
process, as a full or dying disk would. The tracker must go on answering, say in /metrics and
/stats that its writes fail, and once the disk works write every change: restarted on the same
file it knows every peer and every completion.

Mounting a tmpfs needs root; fiu-run and fiu-ctrl come with fiu-utils. Outside CI a missing one
skips its test with a loud reason; with CI set (as .ci/run has it) it fails the test.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.helpers import info_hash, peer_id
from tests.realclients.procs import LOOPBACK, ManagedProcess, free_port, port_is_open, wait_until
from tests.realclients.tracker import http_get
from tracker.core.bencode import bdecode

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Large enough for SQLite's write-ahead log to reach its own checkpoint (4 MB), so that the
#: file system fills because of the filler alone.
TMPFS_SIZE = "8m"
TORRENTS = 4
#: A peer that asks for the peer lists, left out of what the tracker should know.
OBSERVER = 50000


def require(available: bool, what: str) -> None:
    """Skip loudly without C{what}, or fail under CI, which must have it."""
    if available:
        return
    if os.environ.get("CI"):
        raise AssertionError(f"{what}: CI must be able to run this test")
    raise SkipTest(f"NOT RUN: {what}")


class Swarms:
    """Announces to the tracker over HTTP, and what it should know of them."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        #: Peers announced, by torrent; completions, by torrent.
        self.peers: dict[int, set[int]] = {t: set() for t in range(TORRENTS)}
        self.completed: dict[int, set[int]] = {t: set() for t in range(TORRENTS)}

    def announce(
        self, peer: int, torrent: int, left: int = 100, event: str = "", numwant: int = 200
    ) -> dict[bytes, object]:
        query = "&".join(
            (
                "info_hash=" + urllib.parse.quote(info_hash(torrent), safe=""),
                "peer_id=" + urllib.parse.quote(peer_id(peer), safe=""),
                f"port={10000 + peer}",
                "uploaded=0",
                "downloaded=0",
                f"left={left}",
                f"numwant={numwant}",
                "compact=0",
                *((f"event={event}",) if event else ()),
            )
        )
        answer = bdecode(http_get(f"{self.base_url}/announce?{query}"))
        assert isinstance(answer, dict)
        if b"failure reason" in answer:
            raise AssertionError(f"announce refused: {answer[b'failure reason']!r}")
        if peer != OBSERVER:
            self.peers[torrent].add(peer)
        if event == "completed" and left == 0:
            self.completed[torrent].add(peer)
        return answer

    def batch(self, first: int, count: int) -> None:
        """C{count} peers, spread over the torrents; every third completes its download."""
        for n in range(first, first + count):
            done = n % 3 == 0
            self.announce(
                n, n % TORRENTS, left=0 if done else 100, event="completed" if done else ""
            )

    def known(self, torrent: int) -> tuple[set[bytes], int]:
        """The peer ids the tracker returns for a torrent, and its completion count."""
        answer = self.announce(OBSERVER, torrent)
        listed = answer[b"peers"]
        assert isinstance(listed, list)
        ids = {entry[b"peer id"] for entry in listed}
        scraped = bdecode(
            http_get(f"{self.base_url}/scrape?info_hash={urllib.parse.quote(info_hash(torrent))}")
        )
        downloaded = scraped[b"files"][info_hash(torrent)][b"downloaded"]
        return ids, downloaded

    def expected(self, torrent: int) -> tuple[set[bytes], int]:
        return {peer_id(p) for p in self.peers[torrent]}, len(self.completed[torrent])


class Daemon:
    """One run of the tracker on a database, perhaps under a command such as fiu-run."""

    def __init__(self, database: Path, logs: Path, prefix: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        )
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "twisted",
            "tracker",
            "--listen",
            f"tcp:{self.port}:interface={LOOPBACK}",
            "--no-udp",
            "--database",
            str(database),
        ]
        logs.mkdir(parents=True, exist_ok=True)
        runs = len(list(logs.glob("tracker-*.log")))
        self.process = ManagedProcess("tracker", argv, logs / f"tracker-{runs}.log", env=env)
        try:
            wait_until(self._up, 30, f"the tracker to listen on port {self.port}")
        except BaseException:
            self.process.stop()
            raise

    def _up(self) -> bool:
        if not self.process.running():
            raise AssertionError(f"the tracker exited:\n{self.process.log_tail()}")
        return port_is_open(self.port)

    def metrics(self) -> dict[str, float]:
        text = http_get(f"{self.base_url}/metrics").decode()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.startswith("tracker_db_") and not sample.labels
        }

    def stats(self) -> dict[str, object]:
        figures = json.loads(http_get(f"{self.base_url}/stats.json"))
        assert isinstance(figures, dict)
        return figures

    def wait_for(self, check: Callable[[dict[str, float]], bool], what: str) -> dict[str, float]:
        found: list[dict[str, float]] = []

        def done() -> bool:
            found[:] = [self.metrics()]
            return check(found[0])

        try:
            wait_until(done, 45, what, interval=0.1)
        except TimeoutError:
            raise AssertionError(f"{what}: {found}\n{self.process.log_tail()}") from None
        return found[0]

    def stop(self) -> str:
        """Stop it as an operator would (SIGTERM); its log."""
        self.process.stop(grace=30)
        code = self.process.proc.returncode
        log = self.process.log_path.read_text("utf-8", "replace")
        # Twisted re-raises the signal that stopped it once it has shut down.
        assert code in (0, -signal.SIGTERM), f"the tracker exited with {code}:\n{log[-4000:]}"
        assert "Main loop terminated." in log, log[-4000:]
        return log


def unhealthy(found: dict[str, float]) -> bool:
    return found.get("tracker_db_healthy") == 0 and found["tracker_db_unwritten_bytes"] > 0


def written(found: dict[str, float]) -> bool:
    return found.get("tracker_db_healthy") == 1 and found["tracker_db_unwritten_bytes"] == 0


def written_since(before: float) -> Callable[[dict[str, float]], bool]:
    """Healthy, nothing waiting, and a commit made since C{before} commits were counted."""
    return lambda found: written(found) and found["tracker_db_commit_bytes_count"] > before


class DiskTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="tracker-disk-"))
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.logs = self.directory / "logs"

    def start(self, database: Path, prefix: Sequence[str] = ()) -> Daemon:
        daemon = Daemon(database, self.logs, prefix)
        self.addCleanup(daemon.process.stop)
        return daemon

    def assert_restart_knows_everything(self, database: Path, swarms: Swarms) -> None:
        """A new run on the file knows every peer and every completion announced."""
        daemon = self.start(database)
        again = Swarms(daemon.base_url)
        for torrent in range(TORRENTS):
            ids, downloaded = again.known(torrent)
            expected_ids, expected_downloaded = swarms.expected(torrent)
            self.assertEqual(ids, expected_ids, f"torrent {torrent}")
            self.assertEqual(downloaded, expected_downloaded, f"torrent {torrent}")
        daemon.stop()


class FullDiskTests(DiskTestCase):
    timeout = 240

    def setUp(self) -> None:
        super().setUp()
        self.mount = self.directory / "disk"
        self.mount.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(self.mount)],
            capture_output=True,
        )
        require(
            mounted.returncode == 0,
            f"cannot mount a tmpfs (needs root): {mounted.stderr.decode().strip()}",
        )
        self.addCleanup(subprocess.run, ["umount", "-l", str(self.mount)], check=False)

    def fill(self) -> Path:
        """A file taking every byte left on the tmpfs."""
        filler = self.mount / "filler"
        with open(filler, "wb", buffering=0) as f:
            for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
                block = b"\0" * size
                while True:
                    try:
                        f.write(block)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
        with self.assertRaises(OSError):
            (self.mount / "one-more-byte").write_bytes(b"x")
        return filler

    def test_full_disk_then_space_again(self) -> None:
        """On a full disk the tracker answers every announce from memory, and /metrics,
        /stats.json and /stats say its writes fail and how much waits; once space returns
        every change is written: a restart knows every peer and every completion."""
        database = self.mount / "tracker.sqlite3"
        daemon = self.start(database)
        swarms = Swarms(daemon.base_url)
        swarms.batch(0, 20)
        daemon.wait_for(written_since(0), "the first announces written")
        filler = self.fill()
        # Answered from memory: the new peers are in the answers at once.
        swarms.batch(20, 40)
        answer = swarms.announce(100, 0)
        self.assertEqual(len(answer[b"peers"]), len(swarms.peers[0]) - 1)  # type: ignore[arg-type]
        found = daemon.wait_for(unhealthy, "/metrics to say the writes fail")
        self.assertGreaterEqual(found["tracker_db_commit_failures_total"], 1)
        database_state = daemon.stats()["database"]
        assert isinstance(database_state, dict)
        self.assertIs(database_state["healthy"], False)
        self.assertIn("full", database_state["error"])
        page = http_get(f"{daemon.base_url}/stats").decode()
        self.assertIn("Database writes failing since", page)
        swarms.batch(60, 40)
        swarms.announce(3, 3, event="stopped")
        swarms.peers[3].discard(3)
        committed = found["tracker_db_commit_bytes_count"]
        filler.unlink()
        daemon.wait_for(written_since(committed), "/metrics to say every change is written")
        self.assertNotIn("Database writes failing", http_get(f"{daemon.base_url}/stats").decode())
        log = daemon.stop()
        self.assertIn("cannot write to the database", log)
        self.assertIn("work again", log)
        self.assert_restart_knows_everything(database, swarms)


class InjectedFaultTests(DiskTestCase):
    timeout = 240

    def setUp(self) -> None:
        super().setUp()
        require(
            shutil.which("fiu-run") is not None and shutil.which("fiu-ctrl") is not None,
            "fiu-run and fiu-ctrl are not installed (Debian: apt-get install fiu-utils)",
        )
        self.fifos = str(self.directory / "fiu")

    def fiu(self, daemon: Daemon, *commands: str) -> None:
        """Tell the running tracker's libfiu to enable or disable failure points."""
        argv = ["fiu-ctrl", "-f", self.fifos]
        for command in commands:
            argv += ["-c", command]
        result = subprocess.run(
            [*argv, str(daemon.process.pid)], capture_output=True, text=True, timeout=10
        )
        self.assertEqual((result.returncode, result.stdout.strip()), (0, ""), result.stderr)

    def test_injected_disk_faults(self) -> None:
        """Under libfiu, pwrite failing with ENOSPC (SQLite's SQLITE_FULL), fdatasync with EIO
        (SQLITE_IOERR_FSYNC: the connection is replaced and the changes written again through
        a new one), then both failing at random: the tracker answers throughout, /metrics tells
        each failure, and after each every change is written; a restart knows them all."""
        database = self.directory / "tracker.sqlite3"
        daemon = self.start(database, ["fiu-run", "-x", "-f", self.fifos])
        wait_until(
            lambda: os.path.exists(f"{self.fifos}-{daemon.process.pid}.in"),
            10,
            "libfiu's control pipe",
        )
        swarms = Swarms(daemon.base_url)
        swarms.batch(0, 20)
        found = daemon.wait_for(written_since(0), "the first announces written")

        for point, error, reason in (
            ("posix/io/rw/pwrite", errno.ENOSPC, "full"),
            ("posix/io/sync/fdatasync", errno.EIO, "disk I/O error"),
        ):
            self.fiu(daemon, f"enable name={point},failinfo={error}")
            first = max(swarms.peers[0]) + 1
            swarms.batch(first, 20)
            found = daemon.wait_for(unhealthy, f"/metrics to say the writes fail ({point})")
            database_state = daemon.stats()["database"]
            assert isinstance(database_state, dict)
            self.assertIn(reason, database_state["error"])
            swarms.batch(first + 20, 20)
            self.fiu(daemon, f"disable name={point}")
            daemon.wait_for(
                written_since(found["tracker_db_commit_bytes_count"]),
                f"every change written after {point} works again",
            )

        self.fiu(
            daemon,
            "enable_random name=posix/io/rw/pwrite,probability=0.3,failinfo=5",
            "enable_random name=posix/io/sync/fdatasync,probability=0.3,failinfo=5",
        )
        for round_ in range(10):
            swarms.batch(200 + 10 * round_, 10)
            time.sleep(0.1)
        found = daemon.metrics()
        self.fiu(daemon, "disable name=posix/io/rw/pwrite", "disable name=posix/io/sync/fdatasync")
        daemon.wait_for(
            written_since(found["tracker_db_commit_bytes_count"]),
            "every change written after the random faults",
        )
        log = daemon.stop()
        self.assertIn(
            "SQLITE_IOERR_FSYNC" if sys.implementation.name == "cpython" else "disk I/O", log
        )
        self.assert_restart_knows_everything(database, swarms)
