"""
Access lists, private mode and the admin API as the daemon runs them: their options, their
wiring, SIGHUP on a real twistd, and passkey totals across a restart.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote_from_bytes

from twisted.python import usage
from twisted.trial.unittest import TestCase

from tests.helpers import info_hash, peer_id
from tests.test_admin import call
from tests.test_tap import TAC, _fetch_when_up, _Reactor, free_port, parse
from tracker.core.bencode import bdecode
from tracker.core.groups import GroupCountingStore
from tracker.daemon.listening import ListeningService
from tracker.daemon.service import TrackerService
from tracker.daemon.tap import makeService
from tracker.http.private import PrivateTrackerResource
from tracker.http.resource import TrackerResource
from tracker.http.site import TrackerSite
from tracker.ops.access import AccessControlledStore
from tracker.ops.admin import DEFAULT_ADMIN_LISTEN, AdminSite
from tracker.ops.control import AccessService, HangupService
from tracker.store.access import BLACKLIST, WHITELIST
from tracker.udp.private import PrivateUDPTracker
from tracker.udp.protocol import UDPTracker

HEX1 = info_hash(1).hex()
HEX2 = info_hash(2).hex()
TOKEN = "admin-token-0123456789abcdef"
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile="]


class _Files(TestCase):
    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="tracker-access-tap-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    def file(self, name: str, text: str) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "w") as f:
            f.write(text)
        return path


class AccessOptionsTests(_Files):
    def test_lists(self) -> None:
        """--whitelist and --blacklist read their file at once; without either there is no
        list; both together are refused."""
        path = self.file("list.txt", f"{HEX1}\n# comment\n{HEX2.upper()}\n")
        listed = parse("--whitelist", path)["access-list"]
        self.assertEqual(
            (listed.list_name, listed.path, listed.file_hashes),
            (WHITELIST, path, frozenset({info_hash(1), info_hash(2)})),
        )
        self.assertEqual(parse("--blacklist", path)["access-list"].list_name, BLACKLIST)
        self.assertIsNone(parse()["access-list"])
        with self.assertRaises(usage.UsageError) as raised:
            parse("--whitelist", path, "--blacklist", path)
        self.assertEqual(
            str(raised.exception), "--whitelist and --blacklist cannot be used together"
        )

    def test_list_mistakes(self) -> None:
        """A list file with a bad line, or none, is a usage error naming the file and line."""
        bad = self.file("bad.txt", f"{HEX1}\n\n{HEX2[:-1]}\n")
        with self.assertRaises(usage.UsageError) as raised:
            parse("--blacklist", bad)
        self.assertEqual(
            str(raised.exception),
            f"--blacklist {bad}: line 3: not a 40-digit hex info hash: {HEX2[:-1]!r}",
        )
        missing = os.path.join(self.directory, "missing.txt")
        with self.assertRaises(usage.UsageError) as raised:
            parse("--whitelist", missing)
        self.assertEqual(
            str(raised.exception),
            f"--whitelist {missing}: cannot read it: No such file or directory",
        )

    def test_admin_options(self) -> None:
        """The admin API is off by default, on with a token file, on loopback port 6970
        unless told otherwise; it never starts without a token."""
        token = self.file("token", f"  {TOKEN}\n")
        self.assertIsNone(parse()["admin-token"])
        options = parse("--admin-token-file", token)
        self.assertEqual(options["admin-token"], TOKEN.encode())
        self.assertEqual(options["admin-listen"], DEFAULT_ADMIN_LISTEN)
        self.assertEqual(DEFAULT_ADMIN_LISTEN, "tcp:6970:interface=127.0.0.1")
        options = parse("--admin-token-file", token, "--admin-listen", "tcp:7070")
        self.assertEqual(options["admin-listen"], "tcp:7070")
        for argv, message in [
            (["--admin-listen", "tcp:7070"], "--admin-listen needs --admin-token-file FILE"),
            (["--admin-token-file", self.file("empty", "\n")], "at least 16 printable"),
            (["--admin-token-file", self.file("spaced", "a b c d e f g h i j")], "at least 16"),
            (["--admin-token-file", os.path.join(self.directory, "none")], "cannot read it"),
            (["--admin-token-file", token, "--admin-listen", "tcp:x"], "--admin-listen tcp:x: not"),
        ]:
            with self.assertRaises(usage.UsageError) as raised:
                parse(*argv)
            self.assertIn(message, str(raised.exception))

    def test_private_flag(self) -> None:
        """--private is off by default, and on with an admin API to add passkeys through."""
        self.assertFalse(parse()["private"])
        options = parse("--private", "--admin-token-file", self.file("token", TOKEN))
        self.assertTrue(options["private"])

    def test_private_needs_the_admin_api(self) -> None:
        """--private without --admin-token-file, which would start a tracker with no way to add
        a passkey and refusing every announce, is refused with a line saying what to add."""
        with self.assertRaises(usage.UsageError) as raised:
            parse("--private")
        self.assertEqual(
            str(raised.exception),
            "--private needs --admin-token-file FILE: passkeys are added through the admin API,"
            " and without one every announce is refused",
        )


class AccessWiringTests(_Files):
    def services(self, *argv: str) -> tuple[list[Any], _Reactor]:
        database = os.path.join(self.directory, "t.sqlite3")
        options = parse("--listen", "tcp:7000", "--database", database, *argv)
        reactor = _Reactor()
        root = makeService(options, reactor)
        children = list(root)  # type: ignore[call-overload]
        for child in children:
            if isinstance(child, ListeningService):
                child.startService()
                self.addCleanup(child.stopService)
        return children, reactor

    def test_plain_tracker_unchanged(self) -> None:
        """Without a list, private mode or token, the daemon is built as before: the store
        itself behind the resource (counting the WebSocket peers in), no admin listener, no
        access service."""
        children, reactor = self.services()
        self.assertFalse(any(isinstance(c, AccessService) for c in children))
        site = reactor.tcpServers[0][1]
        self.assertIs(type(site.resource), TrackerResource)
        tracker = next(c for c in children if isinstance(c, TrackerService))
        counting = site.resource.children[b"announce"]._store
        self.assertIsInstance(counting, GroupCountingStore)
        self.assertIs(counting.store, tracker.store)
        self.assertEqual(len(reactor.tcpServers), 1)

    def test_everything_on(self) -> None:
        """With a whitelist, private mode and a token: the resource and UDP tracker are the
        private ones, behind the access list; the admin API listens on loopback port 6970;
        the access service comes after the tracker service."""
        children, reactor = self.services(
            "--whitelist", self.file("w.txt", HEX1), "--private",
            "--admin-token-file", self.file("token", TOKEN),
        )  # fmt: skip
        kinds = [type(c) for c in children]
        self.assertGreater(kinds.index(AccessService), kinds.index(TrackerService))
        (tracker_port, site, _, _), (admin_port, admin, _, interface) = reactor.tcpServers
        self.assertIsInstance(site, TrackerSite)
        self.assertIsInstance(site.resource, PrivateTrackerResource)
        self.assertEqual((admin_port, interface), (6970, "127.0.0.1"))
        self.assertIsInstance(admin, AdminSite)
        udp = reactor.udpServers[0][1]
        self.assertIsInstance(udp, PrivateUDPTracker)
        self.assertIsInstance(udp._store.store, AccessControlledStore)

    def test_sighup_always_handled(self) -> None:
        """Whatever the options, one service handles SIGHUP: the access service's, which
        reloads the list, or one that says there is nothing to reload."""
        token = self.file("token", TOKEN)
        for argv, reloads in [
            ((), False),
            (("--private", "--admin-token-file", token, "--admin-listen", "tcp:0"), False),
            (("--whitelist", self.file("w.txt", HEX1)), True),
            (("--blacklist", self.file("b.txt", ""), "--private", "--admin-token-file", token,
              "--admin-listen", "tcp:0"), True),
        ]:  # fmt: skip
            children, _ = self.services(*argv)
            handlers = [c for c in children if isinstance(c, HangupService)]
            handlers += [c._hangup for c in children if isinstance(c, AccessService) and c._hangup]
            self.assertEqual(len(handlers), 1, argv)
            self.assertEqual(handlers[0]._reload is not None, reloads, argv)

    def test_blacklist_public(self) -> None:
        """A blacklist without private mode: the public resource and UDP tracker, behind it."""
        children, reactor = self.services("--blacklist", self.file("b.txt", ""))
        udp = reactor.udpServers[0][1]
        self.assertIs(type(udp), UDPTracker)
        self.assertIsInstance(udp._store.store, AccessControlledStore)
        self.assertIn(AccessService, [type(c) for c in children])


def _announce_url(port: int, torrent: int, prefix: str = "", **extra: int) -> str:
    query = (
        f"info_hash={quote_from_bytes(info_hash(torrent))}"
        f"&peer_id={quote_from_bytes(peer_id(1))}&port=6881&left=0"
    )
    query += "".join(f"&{name}={value}" for name, value in extra.items())
    return f"http://127.0.0.1:{port}{prefix}/announce?{query}"


def _reason(body: bytes) -> bytes | None:
    reply = bdecode(body)
    assert isinstance(reply, dict)
    return reply.get(b"failure reason")  # type: ignore[return-value]


class _Daemon:
    """A twistd running the tracker, logging to a file."""

    def __init__(self, directory: str, *argv: str, tac: bool = False) -> None:
        self.log_path = os.path.join(directory, "twistd.log")
        env = dict(os.environ)
        command = TWISTD + [f"--logfile={self.log_path}"]
        if tac:
            # tracker.tac takes the same options from the environment.
            env["TRACKER_OPTIONS"] = shlex.join(argv)
            command += ["-y", TAC]
        else:
            command += ["tracker", *argv]
        self.process = subprocess.Popen(
            command, cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, after: int = 0, deadline: float = 20) -> None:
        end = time.monotonic() + deadline
        while text not in self.log()[after:]:
            if self.process.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"never logged {text!r}:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.communicate(timeout=30)
            finally:
                if self.process.poll() is None:
                    self.process.kill()
                    self.process.communicate()
        return self.log()


class DaemonTests(_Files):
    timeout = 120

    def daemon(self, *argv: str, tac: bool = False) -> _Daemon:
        daemon = _Daemon(self.directory, *argv, tac=tac)
        self.addCleanup(daemon.stop)
        return daemon

    def test_sighup_reloads_the_list(self) -> None:
        """A real twistd running tracker.tac, given --whitelist through TRACKER_OPTIONS,
        reloads the list on SIGHUP, keeps the list in force when the file has a mistake
        (logging the line), and still stops cleanly on SIGTERM."""
        listed = self.file("whitelist.txt", HEX1 + "\n")
        port = free_port()
        daemon = self.daemon(
            "--listen", f"tcp:{port}:interface=127.0.0.1", "--no-udp",
            "--database", os.path.join(self.directory, "t.sqlite3"), "--whitelist", listed,
            tac=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        refused = _fetch_when_up(_announce_url(port, 2), daemon.process, deadline)
        self.assertEqual(_reason(refused), b"unregistered torrent: this tracker serves only"
                                           b" the torrents it lists")  # fmt: skip
        self.file("whitelist.txt", f"{HEX1}\n{HEX2}\n")
        mark = len(daemon.log())
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log("reloaded: 2 torrents", mark)
        served = _fetch_when_up(_announce_url(port, 2), daemon.process, deadline)
        self.assertIsNone(_reason(served))
        self.file("whitelist.txt", f"{HEX1}\nnonsense\n")
        mark = len(daemon.log())
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log("the list in force is kept", mark)
        self.assertIn("line 2: not a 40-digit hex info hash: 'nonsense'", daemon.log()[mark:])
        served = _fetch_when_up(_announce_url(port, 2), daemon.process, deadline)
        self.assertIsNone(_reason(served))
        log = daemon.stop()
        self.assertIn(daemon.process.returncode, (0, -signal.SIGTERM), log)
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)

    def test_private_tracker_with_admin_api(self) -> None:
        """A private tracker run by twistd: a passkey added through the admin API announces at
        /<passkey>/announce, its transfer is credited, and passkey and totals survive a
        restart."""
        port, admin_port = free_port(), free_port()
        argv = [
            "--listen", f"tcp:{port}:interface=127.0.0.1", "--no-udp", "--private",
            "--database", os.path.join(self.directory, "t.sqlite3"),
            "--admin-token-file", self.file("token", TOKEN),
            "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1",
        ]  # fmt: skip
        daemon = self.daemon(*argv)
        deadline = time.monotonic() + 30
        bare = _fetch_when_up(_announce_url(port, 1), daemon.process, deadline)
        self.assertIn(b"this tracker is private", _reason(bare) or b"")
        daemon.wait_for_log(f"admin API listening on http://127.0.0.1:{admin_port}/")
        while True:
            status, added = call(
                admin_port, "POST", "/passkeys", {"label": "alice"}, TOKEN.encode()
            )
            # 503 in the moment the stored passkeys are still being read, as documented.
            if status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(status, 201)
        prefix = "/" + added["passkey"]
        for uploaded in (100, 1100):
            body = _fetch_when_up(
                _announce_url(port, 1, prefix, uploaded=uploaded), daemon.process, deadline
            )
            self.assertIsNone(_reason(body))
        status, listing = call(admin_port, "GET", "/passkeys", token=TOKEN.encode())
        self.assertEqual(listing["passkeys"][0]["uploaded"], 1000)
        status, stats = call(admin_port, "GET", "/stats", token=TOKEN.encode())
        # The figures of /stats.json, which a private tracker does not serve in public: the
        # bare announce was refused, the two with the passkey answered.
        self.assertEqual(
            stats["requests"]["http"]["announce"], {"ok": 2, "refused": 1, "errors": 0}
        )
        self.assertIn("top_torrents", stats)
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/stats.json", timeout=10)
        self.assertEqual(refused.exception.code, 404)
        self.assertIn(b"this tracker is private", _reason(refused.exception.read()) or b"")
        self.assertNotIn("Traceback", daemon.stop())
        again = self.daemon(*argv)
        body = _fetch_when_up(_announce_url(port, 1, prefix, uploaded=1500), again.process,
                              time.monotonic() + 30)  # fmt: skip
        self.assertIsNone(_reason(body))
        _, listing = call(admin_port, "GET", "/passkeys", token=TOKEN.encode())
        self.assertEqual(
            [(p["passkey"], p["label"], p["uploaded"]) for p in listing["passkeys"]],
            [(added["passkey"], "alice", 1000)],
        )
        self.assertNotIn("Traceback", again.stop())

    def test_private_tracker_never_serves_a_public_runs_peers(self) -> None:
        """A tracker started private on the database of a public run does not hand its peers
        to passkey holders: it says it forgot them, keeps the completion counts, and serves
        only the peers that announce to it."""
        port, admin_port = free_port(), free_port()
        database = os.path.join(self.directory, "t.sqlite3")
        listen = ["--listen", f"tcp:{port}:interface=127.0.0.1", "--no-udp", "--database", database]
        public = self.daemon(*listen)
        deadline = time.monotonic() + 30
        body = _fetch_when_up(_announce_url(port, 1), public.process, deadline)
        self.assertIsNone(_reason(body))
        # Both runs log into one file.
        mark = len(public.stop())
        private = self.daemon(
            *listen, "--private", "--admin-token-file", self.file("token", TOKEN),
            "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1",
        )  # fmt: skip
        private.wait_for_log("open, serving", mark)
        self.assertNotIn("Traceback", private.log()[:mark])
        self.assertIn(
            f"{database} was last used by a public tracker: its stored peers (1) are forgotten",
            private.log()[mark:],
        )
        while True:
            status, added = call(admin_port, "POST", "/passkeys", {}, TOKEN.encode())
            if status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(status, 201)
        # A leecher, to whom the public run's seeder would be given.
        url = (
            f"http://127.0.0.1:{port}/{added['passkey']}/announce"
            f"?info_hash={quote_from_bytes(info_hash(1))}&peer_id={quote_from_bytes(peer_id(2))}"
            "&port=6882&left=100"
        )
        reply = bdecode(_fetch_when_up(url, private.process, deadline))
        self.assertEqual((reply[b"peers"], reply[b"complete"], reply[b"incomplete"]), (b"", 0, 1))
        self.assertNotIn("Traceback", private.stop())

    def test_bad_list_refuses_to_start(self) -> None:
        """A list file with a bad line ends the start in one line naming it, non-zero."""
        bad = self.file("bad.txt", "zz\n")
        result = subprocess.run(
            [sys.executable, "-m", "twisted", "tracker", "--whitelist", bad],
            cwd=self.directory, capture_output=True, timeout=60,
        )  # fmt: skip
        output = (result.stdout + result.stderr).decode(errors="replace")
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn(f"--whitelist {bad}: line 1: not a 40-digit hex info hash: 'zz'", output)
        self.assertEqual(json.dumps(sorted(os.listdir(self.directory))), '["bad.txt"]')
