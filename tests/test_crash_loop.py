"""
The daemon killed with SIGKILL under load, again and again, each time restarted on the same
database: the journal replays every time, no completion count goes down, and what is lost is at
most what the last group commit would have written.
"""

from __future__ import annotations

import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import quote_from_bytes

from twisted.trial.unittest import SynchronousTestCase

from tracker.core.bencode import bdecode
from tracker.store.sqlite import COMMIT_EVERY

FLOODER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flooder.py")
CYCLES = 5
TORRENTS = 5
#: A completion answered this long before the kill must have been saved: the group commit
#: interval, plus a commit still being written (a generous bound for a loaded machine).
SAVED_AFTER = COMMIT_EVERY + 0.5
#: Seconds the tracker may take to start and replay its journal.
START_TIMEOUT = 60.0


def torrent(t: int) -> bytes:
    return b"CRASH" + t.to_bytes(15, "big")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Tracker:
    """The daemon, run as a user runs it, on one database file, restarted on another port."""

    def __init__(self, directory: str) -> None:
        self.database = os.path.join(directory, "tracker.sqlite3")
        self.log = os.path.join(directory, "tracker.log")
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "twisted",
                    "tracker",
                    "--no-udp",
                    "--listen",
                    f"tcp:{self.port}:interface=127.0.0.1",
                    "--database",
                    self.database,
                ],  # fmt: skip
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"the tracker exited on start: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the tracker did not listen: {self.log_tail()}") from None
                time.sleep(0.05)

    def kill(self) -> float:
        """SIGKILL; the moment it was sent."""
        assert self.process is not None
        killed = time.monotonic()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        return killed

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_tail(self) -> str:
        with open(self.log, "rb") as log:
            return log.read()[-2000:].decode("utf-8", "replace")

    def completions(self) -> dict[int, int]:
        """Each watched torrent's completion count, by a scrape (answered once the journal has
        been read back)."""
        target = "/scrape?" + "&".join(
            f"info_hash={quote_from_bytes(torrent(t))}" for t in range(TORRENTS)
        )
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=START_TIMEOUT)
        try:
            connection.request("GET", target)
            body = connection.getresponse().read()
        finally:
            connection.close()
        reply = bdecode(body)
        if not isinstance(reply, dict) or b"files" not in reply:
            raise AssertionError(f"scrape answered {body[:200]!r}: {self.log_tail()}")
        files = reply[b"files"]
        return {t: files[torrent(t)][b"downloaded"] for t in range(TORRENTS)}


class Completer(threading.Thread):
    """
    Completes the watched torrents one announce at a time, each by a new peer, round the
    torrents in turn; remembers when each was answered, and which one was sent and not yet
    answered.
    """

    def __init__(self, port: int, first_peer: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.peer = first_peer
        #: (torrent, when answered) of every completion the tracker answered.
        self.answered: list[tuple[int, float]] = []
        self.in_flight: int | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            while not self.stopping.is_set():
                t = self.peer % TORRENTS
                peer_id = b"-CL0001-" + self.peer.to_bytes(12, "big")
                target = (
                    f"/announce?info_hash={quote_from_bytes(torrent(t))}"
                    f"&peer_id={quote_from_bytes(peer_id)}&port={1024 + self.peer % 60000}"
                    "&left=0&event=completed&compact=1&numwant=0"
                )
                self.in_flight = t
                connection.request("GET", target)
                body = connection.getresponse().read()
                assert b"failure reason" not in body, body
                self.answered.append((t, time.monotonic()))
                self.in_flight = None
                self.peer += 1
        except (OSError, http.client.HTTPException):
            pass  # the tracker was killed
        finally:
            connection.close()


class CrashLoopTests(SynchronousTestCase):
    def test_kill_9_loop(self) -> None:
        """Five times: completions and a flood of announces, SIGKILL at a random moment, a
        restart on the same database. Every restart replays the journal and serves; every
        completion answered more than a group commit's interval (plus one commit being written)
        before the kill is counted after the restart, none twice, and so no count ever goes
        down from what was saved."""
        directory = tempfile.mkdtemp(prefix="tracker-crash-loop-")
        self.addCleanup(shutil.rmtree, directory, True)
        tracker = Tracker(directory)
        self.addCleanup(tracker.stop)
        rng = random.Random(20261208)
        #: The lowest and highest each count may be after the next restart.
        floor = dict.fromkeys(range(TORRENTS), 0)
        ceiling = dict.fromkeys(range(TORRENTS), 0)
        previous: dict[int, int] = dict(floor)
        answered: list[tuple[int, float]] = []
        killed = 0.0
        peer = 0
        for cycle in range(CYCLES + 1):
            tracker.start()
            counts = tracker.completions()
            saved = sum(counts.values()) - sum(previous.values())
            lost = [killed - when for _, when in answered[max(saved, 0) :]]
            how = (
                f"after kill {cycle}: {saved} of {len(answered)} completions answered before it"
                f" were saved; the oldest lost one was answered {max(lost, default=0):.3f} s"
                f" before the kill (at most {SAVED_AFTER:.3f} s allowed)"
            )
            for t in range(TORRENTS):
                self.assertGreaterEqual(counts[t], floor[t], f"torrent {t} went down {how}")
                self.assertLessEqual(counts[t], ceiling[t], f"torrent {t} counted twice {how}")
            if cycle == CYCLES:
                break
            flooder = subprocess.Popen(
                [sys.executable, FLOODER, str(tracker.port), "16", "30"],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert flooder.stdout is not None
                self.assertEqual(flooder.stdout.readline(), "ready\n")
                completer = Completer(tracker.port, peer)
                completer.start()
                time.sleep(rng.uniform(1.0, 2.0))
                killed = tracker.kill()
                completer.stopping.set()
                completer.join(15)
            finally:
                flooder.kill()
                flooder.communicate()
            answered = completer.answered
            self.assertGreater(len(answered), 5, "too few completions answered")
            # The peer whose completion was in flight may have been counted: never reused.
            peer = completer.peer + 1
            previous, floor, ceiling = dict(counts), dict(counts), dict(counts)
            for t, when in answered:
                ceiling[t] += 1
                if when < killed - SAVED_AFTER:
                    floor[t] += 1
            if completer.in_flight is not None:
                ceiling[completer.in_flight] += 1
        with open(tracker.log, "rb") as f:
            log = f.read()
        self.assertEqual(log.count(b"open, serving"), CYCLES + 1, tracker.log_tail())
        self.assertNotIn(b"Traceback", log)
