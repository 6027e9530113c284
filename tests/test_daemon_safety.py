"""
What keeps a running tracker safe from its operators: one database, one daemon; the signals
they send; a restart that UDP clients do not notice. Mostly against real twistd processes,
listening on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any
from urllib.parse import quote_from_bytes

from twisted.python import usage
from twisted.trial.unittest import TestCase

from tests.helpers import info_hash, peer_id
from tests.test_tap import UNKNOWN_ID, _fetch_when_up, free_port, parse
from tests.test_tap_access import TWISTD, _Daemon
from tests.test_udp import Client, announce_packet, error_message, parse_announce_reply
from tracker.core.bencode import bdecode
from tracker.daemon.listening import DatabaseLockService
from tracker.store.lock import DatabaseLock
from tracker.store.sqlite import SQLitePeerStore


def _announce_url(port: int, peer: int, left: int = 0) -> str:
    return (
        f"http://127.0.0.1:{port}/announce?info_hash={quote_from_bytes(info_hash(1))}"
        f"&peer_id={quote_from_bytes(peer_id(peer))}&port={6880 + peer}&left={left}"
    )


#: twistd as it runs by default: daemonised.
TWISTD_DAEMON = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def _reply(body: bytes) -> dict[bytes, Any]:
    reply = bdecode(body)
    assert isinstance(reply, dict)
    assert b"failure reason" not in reply, reply
    return reply


def _files(directory: str) -> dict[str, tuple[int, int]]:
    """Each file's size and time of last change, but the log's."""
    found = {}
    for name in os.listdir(directory):
        if name == "twistd.log":
            continue
        status = os.stat(os.path.join(directory, name))
        found[name] = (status.st_size, status.st_mtime_ns)
    return found


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class _Directory(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="tracker-safety-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.database = os.path.join(self.directory, "t.sqlite3")

    def daemon(self, port: int, *argv: str) -> _Daemon:
        daemon = _Daemon(
            self.directory,
            "--listen", f"tcp:{port}:interface=127.0.0.1", "--database", self.database, *argv,
        )  # fmt: skip
        self.addCleanup(daemon.stop)
        return daemon


class OneDatabaseTests(_Directory):
    def test_refused_while_options_are_read(self) -> None:
        """A database whose lock another tracker holds is refused with the options, naming
        the file and the holder's pid, before anything starts; the look creates nothing."""
        holder = DatabaseLock(self.database)
        holder.acquire()
        self.addCleanup(holder.release)
        before = sorted(os.listdir(self.directory))
        with self.assertRaises(usage.UsageError) as caught:
            parse("--database", self.database)
        self.assertEqual(
            str(caught.exception),
            f"cannot use the database {self.database!r}: another tracker (pid {os.getpid()})"
            " is using it",
        )
        self.assertEqual(sorted(os.listdir(self.directory)), before)
        holder.release()
        self.assertEqual(parse("--database", self.database)["database"], self.database)
        self.assertEqual(os.listdir(self.directory), [])

    def test_lock_service_refuses_in_one_line(self) -> None:
        """A database taken between the options and the start (two daemons starting at once)
        is refused by the lock service, the daemon's first, with the same line."""
        holder = DatabaseLock(self.database)
        holder.acquire()
        self.addCleanup(holder.release)
        service = DatabaseLockService(SQLitePeerStore(self.database))
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        self.assertEqual(
            str(caught.exception),
            f"cannot use the database {self.database!r}: another tracker (pid {os.getpid()})"
            " is using it",
        )
        holder.release()
        store = SQLitePeerStore(self.database)
        DatabaseLockService(store).startService()
        self.assertTrue(os.path.exists(self.database + ".lock"))
        self.successResultOf(store.stop())
        self.assertFalse(os.path.exists(self.database + ".lock"))

    def test_second_daemon_refused(self) -> None:
        """A second twistd on the database of a running one exits non-zero with one line
        naming the file and the first's pid: it listens on nothing and changes nothing, and
        the first keeps serving."""
        port, other_port = free_port(), free_port()
        first = self.daemon(port)
        deadline = time.monotonic() + 30
        reply = _reply(_fetch_when_up(_announce_url(port, 1), first.process, deadline))
        self.assertEqual(reply[b"complete"], 1)
        # Once its commit is written the first daemon leaves its files alone while idle.
        time.sleep(0.5)
        before = _files(self.directory)
        result = subprocess.run(
            TWISTD + ["tracker", "--listen", f"tcp:{other_port}:interface=127.0.0.1",
                      "--database", self.database],
            cwd=self.directory, capture_output=True, timeout=60,
        )  # fmt: skip
        output = (result.stdout + result.stderr).decode(errors="replace")
        self.assertNotEqual(result.returncode, 0, output)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn(
            f"cannot use the database {self.database!r}: another tracker"
            f" (pid {first.process.pid}) is using it",
            output,
        )
        self.assertFalse(_listening(other_port))
        self.assertEqual(_files(self.directory), before)
        reply = _reply(_fetch_when_up(_announce_url(port, 2, 10), first.process, deadline))
        self.assertEqual((reply[b"complete"], reply[b"incomplete"]), (1, 1))
        log = first.stop()
        self.assertNotIn("Traceback", log)
        self.assertFalse(os.path.exists(self.database + ".lock"))

    def test_restart_after_kill_9(self) -> None:
        """A daemon killed with SIGKILL leaves its lock file but not its lock: a new daemon on
        the same file starts at once and serves what the first had saved."""
        port = free_port()
        first = self.daemon(port)
        deadline = time.monotonic() + 30
        _reply(_fetch_when_up(_announce_url(port, 1), first.process, deadline))
        # Past a group commit (0.1 s), so the seeder is in the file.
        time.sleep(0.5)
        first.process.kill()
        first.process.communicate(timeout=30)
        self.assertTrue(os.path.exists(self.database + ".lock"))
        started = time.monotonic()
        second = self.daemon(port)
        body = _fetch_when_up(_announce_url(port, 2, 10), second.process, time.monotonic() + 30)
        self.assertLess(time.monotonic() - started, 20)
        self.assertEqual((_reply(body)[b"complete"], _reply(body)[b"incomplete"]), (1, 1))
        log = second.stop()
        self.assertNotIn("is using it", log)
        self.assertNotIn("Traceback", log)


class SignalTests(_Directory):
    """Each signal README documents, sent to a running daemon."""

    def hang_up_twice(self, daemon: _Daemon, port: int, line: str) -> None:
        """SIGHUP twice: each time C{line} is logged and announces are still answered."""
        deadline = time.monotonic() + 30
        _reply(_fetch_when_up(_announce_url(port, 1), daemon.process, deadline))
        for peer in (2, 3):
            mark = len(daemon.log())
            daemon.process.send_signal(signal.SIGHUP)
            daemon.wait_for_log(line, mark)
            reply = _reply(_fetch_when_up(_announce_url(port, peer, 10), daemon.process, deadline))
            self.assertEqual((reply[b"complete"], reply[b"incomplete"]), (1, peer - 1))

    def assert_clean_stop(self, daemon: _Daemon, statuses: tuple[int, ...] = (0,)) -> None:
        log = daemon.stop()
        self.assertIn(daemon.process.returncode, statuses, log)
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)
        self.assertFalse(os.path.exists(self.database + ".lock"))

    def test_sighup_without_a_list(self) -> None:
        """A daemon with no list to reload, given SIGHUP twice, says each time that there is
        nothing to reload and goes on serving; SIGTERM then stops it with exit status 0."""
        port = free_port()
        daemon = self.daemon(port)
        self.hang_up_twice(daemon, port, "SIGHUP: nothing to reload; carrying on")
        self.assert_clean_stop(daemon)

    def test_sighup_with_a_list(self) -> None:
        """A daemon with a whitelist, given SIGHUP twice, reloads it each time and goes on
        serving; SIGTERM then stops it with exit status 0."""
        listed = os.path.join(self.directory, "whitelist.txt")
        with open(listed, "w") as f:
            f.write(info_hash(1).hex() + "\n")
        port = free_port()
        daemon = self.daemon(port, "--whitelist", listed)
        self.hang_up_twice(daemon, port, f"whitelist {listed} reloaded: 1 torrents")
        self.assert_clean_stop(daemon)

    def test_sigint(self) -> None:
        """Ctrl-C (SIGINT) stops the daemon as cleanly as SIGTERM: its last changes written,
        its database closed and let go. twistd then ends as Ctrl-C's convention has it, by the
        signal, so that a shell script running it stops too."""
        port = free_port()
        daemon = self.daemon(port)
        _reply(_fetch_when_up(_announce_url(port, 1), daemon.process, time.monotonic() + 30))
        daemon.process.send_signal(signal.SIGINT)
        daemon.process.communicate(timeout=30)
        self.assert_clean_stop(daemon, (0, -signal.SIGINT))
        again = self.daemon(port)
        body = _fetch_when_up(_announce_url(port, 2, 10), again.process, time.monotonic() + 30)
        self.assertEqual(_reply(body)[b"complete"], 1)

    def test_sigterm_daemonised(self) -> None:
        """twistd daemonised with a pid file: SIGTERM to the pid in it stops the daemon
        cleanly, and neither the pid file nor the lock file is left behind."""
        port = free_port()
        pidfile = os.path.join(self.directory, "twistd.pid")
        logfile = os.path.join(self.directory, "twistd.log")
        started = subprocess.run(
            TWISTD_DAEMON + [f"--pidfile={pidfile}", f"--logfile={logfile}", "tracker",
                           "--listen", f"tcp:{port}:interface=127.0.0.1",
                           "--database", self.database],
            cwd=self.directory, capture_output=True, timeout=60,
        )  # fmt: skip
        self.assertEqual(started.returncode, 0, started.stdout + started.stderr)
        with open(pidfile) as f:
            pid = int(f.read())
        self.addCleanup(_kill, pid)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(_announce_url(port, 1), timeout=5) as response:
                    _reply(response.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with open(self.database + ".lock") as f:
            self.assertEqual(int(f.read()), pid)
        os.kill(pid, signal.SIGTERM)
        while _alive(pid):
            self.assertLess(time.monotonic(), deadline + 30, "the daemon did not stop")
            time.sleep(0.05)
        with open(logfile) as f:
            log = f.read()
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)
        self.assertFalse(os.path.exists(pidfile))
        self.assertFalse(os.path.exists(self.database + ".lock"))


def _alive(pid: int) -> bool:
    """Whether C{pid} runs: a process that has exited but nobody reaped (its parent is gone)
    counts as stopped."""
    if not os.path.isdir("/proc"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _kill(pid: int) -> None:
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


class ConnectionIdRestartTests(_Directory):
    def test_connection_id_outlives_a_restart(self) -> None:
        """A UDP client that connected before the daemon restarted on the same database
        announces after the restart with the connection ID it has: accepted, and answered
        with the swarm as it was. An ID the tracker never issued is still refused."""
        port = free_port()
        first = self.daemon(port)
        _fetch_when_up(_announce_url(port, 1), first.process, time.monotonic() + 30)
        client = Client("127.0.0.1", port)
        self.addCleanup(client.close)
        connection = client.connect()
        reply = client.exchange(announce_packet(connection, 2))
        self.assertEqual(parse_announce_reply(reply)[1:3], (1, 1))
        log = first.stop()
        self.assertEqual(first.process.returncode, 0, log)
        second = self.daemon(port)
        _fetch_when_up(_announce_url(port, 3, 10), second.process, time.monotonic() + 30)
        reply = client.exchange(announce_packet(connection, 4))
        _, leechers, seeders, peers = parse_announce_reply(reply)
        self.assertEqual((leechers, seeders), (3, 1))
        self.assertIn(socket.inet_aton("127.0.0.1") + (6881).to_bytes(2, "big"), peers)
        forged = bytes(8) if connection != bytes(8) else b"\x01" * 8
        reply = client.exchange(announce_packet(forged, 5))
        self.assertEqual(error_message(reply), UNKNOWN_ID)
        self.assertNotIn("Traceback", second.stop())
