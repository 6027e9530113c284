"""The daemon's command line, its service tree, the twistd plugin and tracker.tac."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any
from urllib.parse import quote_from_bytes

from twisted.application.service import IServiceCollection
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import TestCase

from tests.helpers import info_hash, peer_id
from tests.test_udp import (
    Client,
    announce_packet,
    connect_packet,
    error_message,
    parse_announce_reply,
)
from tests.wsclient import WebSocketClient
from tracker.core.bencode import bdecode
from tracker.core.config import TrackerConfig
from tracker.daemon.listening import DatabaseLockService, ListeningService, listen_reusing_port
from tracker.daemon.service import TrackerService
from tracker.daemon.tap import DEFAULT_DATABASE, Options, default_listen, makeService
from tracker.http.resource import TrackerResource
from tracker.http.site import TrackerSite
from tracker.udp.connection_ids import ConnectionIdsService
from tracker.udp.protocol import UDPTracker
from tracker.ws.tracker import WebSocketTracker

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAC = os.path.join(REPOSITORY, "tracker.tac")
EVERY_OPTION = [
    "--listen",
    "--database",
    "--interval",
    "--min-interval",
    "--peer-timeout",
    "--expire-every",
    "--numwant-default",
    "--numwant-max",
    "--max-scrape",
    "--idle-timeout",
    "--unwritten-limit",
    "--trusted-proxy",
    "--allow-ip-param",
    "--listen-udp",
    "--no-udp",
    "--no-stats",
    "--full-scrape",
    "--no-websocket",
    "--whitelist",
    "--blacklist",
    "--private",
    "--admin-listen",
    "--admin-token-file",
    "--reuse-port",
    "--redis",
]


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


class OptionsTests(TestCase):
    def test_defaults(self) -> None:
        """With no options: default config, database, idle timeout and listeners."""
        options = parse()
        self.assertEqual(options["config"], TrackerConfig())
        self.assertEqual(options["database"], DEFAULT_DATABASE)
        self.assertEqual(options["idle-timeout"], 30)
        self.assertEqual(options["unwritten-limit"], 64)
        self.assertEqual(options["listen"], default_listen())
        self.assertEqual(options["trusted-proxy"], [])
        # UDP on the same port and addresses as HTTP.
        self.assertEqual(
            options["listen-udp"],
            ["udp:6969:interface=\\:\\:" if "tcp6" in default_listen()[0] else "udp:6969"],
        )

    def test_udp_listeners(self) -> None:
        """UDP follows each TCP --listen unless --listen-udp says where, or --no-udp."""
        twins = parse("--listen", "tcp:7000", "--listen", "tcp6:7001:interface=\\:\\:1")
        self.assertEqual(twins["listen-udp"], ["udp:7000", "udp:7001:interface=\\:\\:1"])
        tls = parse("--listen", "tcp:0", "--listen", "unix:/tmp/t.sock")
        self.assertEqual(tls["listen-udp"], [])
        chosen = parse("--listen", "tcp:7000", "--listen-udp", "udp:7100:interface=::1")
        self.assertEqual(chosen["listen-udp"], ["udp:7100:interface=::1"])
        self.assertEqual(parse("--no-udp")["listen-udp"], [])

    def test_bad_udp_listeners(self) -> None:
        for description, reason in [
            ("udp:x", "port must be a number 0-65535"),
            ("udp:70000", "port must be a number 0-65535"),
            ("tcp:6969", "not udp:PORT or udp:PORT:interface=ADDRESS"),
            ("udp:6969:interface=localhost", "interface= must be an IPv4 or IPv6 address"),
            ("udp:6969:port=1", "interface= must be an IPv4 or IPv6 address"),
        ]:
            with self.assertRaises(usage.UsageError) as raised:
                parse("--listen-udp", description)
            self.assertEqual(str(raised.exception), f"--listen-udp {description}: {reason}")

    def test_every_option(self) -> None:
        """Every option reaches the configuration."""
        options = parse(
            "--listen=tcp:7000",
            "--database=/srv/t.sqlite3",
            "--interval=600",
            "--min-interval=300",
            "--peer-timeout=900",
            "--expire-every=30",
            "--numwant-default=20",
            "--numwant-max=80",
            "--max-scrape=10",
            "--idle-timeout=5",
            "--unwritten-limit=8",
            "--trusted-proxy=10.0.0.0/8",
            "--allow-ip-param",
            "--no-stats",
            "--full-scrape",
            "--no-websocket",
        )
        self.assertEqual(
            options["config"],
            TrackerConfig(
                interval=600,
                min_interval=300,
                peer_timeout=900,
                expire_every=30,
                numwant_default=20,
                numwant_max=80,
                max_scrape_hashes=10,
                trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),),
                allow_ip_param=True,
                stats=False,
                full_scrape=True,
                websocket=False,
            ),
        )
        self.assertEqual(options["listen"], ["tcp:7000"])
        self.assertEqual(options["database"], "/srv/t.sqlite3")
        self.assertEqual(options["idle-timeout"], 5)
        self.assertEqual(options["unwritten-limit"], 8)

    def test_short_database_option(self) -> None:
        """-d names the database."""
        self.assertEqual(parse("-d", "x.sqlite3")["database"], "x.sqlite3")

    def test_listen_repeatable(self) -> None:
        """--listen may be given several times; each is kept, in order."""
        options = parse("--listen", "tcp:7000", "--listen", "tcp6:7001:interface=\\:\\:1")
        self.assertEqual(options["listen"], ["tcp:7000", "tcp6:7001:interface=\\:\\:1"])

    def test_trusted_proxies(self) -> None:
        """--trusted-proxy takes addresses and CIDR networks, IPv4 and IPv6, repeatedly; host
        bits in a network are tolerated."""
        options = parse(
            "--trusted-proxy",
            "192.0.2.1",
            "--trusted-proxy",
            "10.1.2.3/8",
            "--trusted-proxy",
            "2001:db8::/32",
        )
        networks = options["config"].trusted_proxies
        self.assertEqual(
            networks,
            (
                ipaddress.ip_network("192.0.2.1/32"),
                ipaddress.ip_network("10.0.0.0/8"),
                ipaddress.ip_network("2001:db8::/32"),
            ),
        )
        self.assertTrue(options["config"].is_trusted_proxy(ipaddress.ip_address("10.200.0.1")))
        self.assertFalse(options["config"].is_trusted_proxy(ipaddress.ip_address("11.0.0.1")))

    def test_invalid_values_refused(self) -> None:
        """Nonsense numbers, inconsistent intervals and bad networks are usage errors."""
        bad = [
            ["--interval", "abc"],
            ["--interval", "0"],
            ["--interval", "-5"],
            ["--min-interval", "0"],
            ["--interval", "600", "--min-interval", "601", "--peer-timeout", "900"],
            ["--interval", "600", "--peer-timeout", "599", "--min-interval", "300"],
            ["--peer-timeout", "1.5"],
            ["--expire-every", "0"],
            ["--numwant-default", "-1"],
            ["--numwant-max", "0"],
            ["--numwant-default", "100", "--numwant-max", "50"],
            ["--max-scrape", "0"],
            ["--idle-timeout", "0"],
            ["--idle-timeout", "x"],
            ["--unwritten-limit", "0"],
            ["--unwritten-limit", "1.5"],
            ["--trusted-proxy", "10.0.0.0/33"],
            ["--trusted-proxy", "proxy.example.com"],
            ["--trusted-proxy", ""],
            ["--no-such-option"],
        ]
        for argv in bad:
            self.assertRaises(usage.UsageError, parse, *argv)

    def test_defaults_follow_the_interval(self) -> None:
        """--interval alone brings the min interval (half of it) and the peer timeout (1.5x)
        along, so a shorter interval needs no other option."""
        config = parse("--interval", "600")["config"]
        self.assertEqual(
            (config.interval, config.min_interval, config.peer_timeout), (600, 300, 900)
        )
        self.assertEqual(parse("--interval", "7200")["config"].min_interval, 3600)
        self.assertEqual(
            parse("--interval", "600", "--min-interval", "60")["config"].min_interval, 60
        )

    def test_unusable_database_refused(self) -> None:
        """A --database that cannot be the tracker's database is a usage error naming the path
        and the reason, and the check changes and creates nothing."""
        directory = tempfile.mkdtemp(prefix="tracker-baddb-")
        self.addCleanup(shutil.rmtree, directory, True)
        text = os.path.join(directory, "notes.txt")
        with open(text, "w") as f:
            f.write("these are my notes, not a database\n" * 200)
        newer = os.path.join(directory, "newer.sqlite3")
        connection = sqlite3.connect(newer)
        connection.execute("PRAGMA user_version = 99")
        connection.commit()
        connection.close()
        cases = {
            directory: "directory",
            text: "not an SQLite database",
            os.path.join(directory, "missing", "t.sqlite3"): "does not exist",
            newer: "upgrade the tracker",
        }
        before = sorted(os.listdir(directory))
        for path, reason in cases.items():
            with self.assertRaises(usage.UsageError) as caught:
                parse("--database", path)
            self.assertIn(repr(path), str(caught.exception))
            self.assertIn(reason, str(caught.exception))
        self.assertEqual(sorted(os.listdir(directory)), before)
        with open(text) as f:
            self.assertTrue(f.read().startswith("these are my notes"))
        fresh = os.path.join(directory, "fresh.sqlite3")
        self.assertEqual(parse("--database", fresh)["database"], fresh)
        self.assertFalse(os.path.exists(fresh))

    def test_numwant_default_zero_allowed(self) -> None:
        """--numwant-default 0 (send no peers unless asked) is accepted."""
        self.assertEqual(parse("--numwant-default", "0")["config"].numwant_default, 0)


class _UDPPort:
    def __init__(self, port: int, interface: str) -> None:
        self._address = IPv4Address("UDP", interface or "0.0.0.0", port)
        self.reading = True

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True

    def getHost(self) -> IPv4Address:
        return self._address

    def stopListening(self) -> None:
        pass


class _Reactor(MemoryReactorClock):
    """Records UDP listeners as MemoryReactor records TCP ones."""

    def __init__(self) -> None:
        super().__init__()
        self.udpServers: list[tuple[int, Any, str, int]] = []
        self.udpPorts: list[_UDPPort] = []

    def listenUDP(
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> _UDPPort:
        self.udpServers.append((port, protocol, interface, maxPacketSize))
        self.udpPorts.append(_UDPPort(port, interface))
        return self.udpPorts[-1]

    def adoptDatagramPort(
        self, fileDescriptor: int, addressFamily: Any, protocol: Any, maxPacketSize: int = 8192
    ) -> _UDPPort:
        """What --reuse-port's UDP listeners bind with where the batching port cannot."""
        self.udpServers.append((0, protocol, "", maxPacketSize))
        self.udpPorts.append(_UDPPort(0, ""))
        return self.udpPorts[-1]


class _Datagrams:
    """A UDP transport that keeps what is written to it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, datagram: bytes, addr: Any) -> None:
        self.sent.append(datagram)


UNKNOWN_ID = b"connection ID expired or unknown; connect again"


class MakeServiceTests(TestCase):
    def test_wiring(self) -> None:
        """makeService builds a tracker service on the database, taken for the daemon alone
        before anything listens, one listener per --listen, each serving the tracker site with
        the configured idle timeout and WebSocket peers on its announce URL, and beside each a
        UDP tracker on the same port and interface."""
        directory = tempfile.mkdtemp(prefix="tracker-tap-")
        self.addCleanup(shutil.rmtree, directory, True)
        database = os.path.join(directory, "t.sqlite3")
        options = parse(
            "--listen",
            "tcp:7000:interface=127.0.0.1",
            "--listen",
            "tcp:7001",
            "--database",
            database,
            "--idle-timeout",
            "7",
            "--unwritten-limit",
            "3",
            "--interval",
            "600",
            "--min-interval",
            "60",
        )
        reactor = _Reactor()
        root = makeService(options, reactor)
        self.assertTrue(IServiceCollection.providedBy(root))
        children = list(root)  # type: ignore[call-overload]
        trackers = [c for c in children if isinstance(c, TrackerService)]
        listeners = [c for c in children if isinstance(c, ListeningService)]
        self.assertEqual(len(trackers), 1)
        self.assertEqual(len(listeners), 4)
        self.assertEqual(trackers[0].config, options["config"])
        self.assertEqual(trackers[0].store.path, database)  # type: ignore[attr-defined]
        self.assertIsInstance(children[0], DatabaseLockService)
        self.assertIs(children[0]._store, trackers[0].store)
        commits = trackers[0].store.commits  # type: ignore[attr-defined]
        self.assertEqual(commits.unwritten_limit, 3 * 1024 * 1024)
        # Start only the listeners: the store would start a real database thread.
        for listener in listeners:
            listener.startService()
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(7000, "127.0.0.1"), (7001, "")],
        )
        factory: Any
        for _, factory, _, _ in reactor.tcpServers:
            self.assertIsInstance(factory, TrackerSite)
            self.assertEqual(factory.timeOut, 7)
            self.assertIsInstance(factory.resource, TrackerResource)
            self.assertIsInstance(factory.resource.websocket, WebSocketTracker)
        self.assertIs(reactor.tcpServers[0][1], reactor.tcpServers[1][1])
        self.assertEqual(
            [(port, interface) for port, _, interface, _ in reactor.udpServers],
            [(7000, "127.0.0.1"), (7001, "")],
        )
        for _, protocol, _, _ in reactor.udpServers:
            self.assertIsInstance(protocol, UDPTracker)
            # HTTP and UDP count into the figures the service samples.
            self.assertIs(protocol.stats, trackers[0].stats)
        self.assertIs(reactor.tcpServers[0][1].resource.stats, trackers[0].stats)
        # The UDP ports are bound but not read until the connection IDs' kept secrets are
        # loaded, by a service after the tracker's, which opens their store.
        self.assertEqual([port.reading for port in reactor.udpPorts], [False, False])
        loaders = [c for c in children if isinstance(c, ConnectionIdsService)]
        self.assertEqual(len(loaders), 1)
        self.assertGreater(children.index(loaders[0]), children.index(trackers[0]))
        # An ID issued on one port is good on the other: an unknown ID is refused at once,
        # that one waits for the store, which is not started here.
        first, second = (protocol for _, protocol, _, _ in reactor.udpServers)
        first.makeConnection(_Datagrams())
        second.makeConnection(_Datagrams())
        first.datagramReceived(connect_packet(), ("127.0.0.1", 5000))
        connection = first.transport.sent[0][8:]
        second.datagramReceived(announce_packet(b"\x00" * 8, 1), ("127.0.0.1", 5000))
        self.assertEqual(error_message(second.transport.sent.pop()), UNKNOWN_ID)
        second.datagramReceived(announce_packet(connection, 1), ("127.0.0.1", 5000))
        self.assertEqual(second.transport.sent, [])
        for listener in listeners:
            listener.stopService()
        self.assertFalse(os.path.exists(database))

    def test_no_websocket(self) -> None:
        """--no-websocket leaves the announce URL to HTTP alone."""
        directory = tempfile.mkdtemp(prefix="tracker-tap-")
        self.addCleanup(shutil.rmtree, directory, True)
        options = parse(
            "--listen", "tcp:7000", "--database", os.path.join(directory, "t.sqlite3"),
            "--no-websocket",
        )  # fmt: skip
        reactor = _Reactor()
        root = makeService(options, reactor)
        listeners = [c for c in root if not isinstance(c, TrackerService)]  # type: ignore[attr-defined]
        for listener in listeners:
            listener.startService()
            self.addCleanup(listener.stopService)
        self.assertIsNone(reactor.tcpServers[0][1].resource.websocket)


class CommandLineTests(TestCase):
    timeout = 60

    def test_plugin_help(self) -> None:
        """`python -m twisted tracker --help` works from any directory, the repository's own
        too (whose twisted/plugins folder must not hide the installed Twisted), and lists
        every option."""
        directory = tempfile.mkdtemp(prefix="tracker-help-")
        self.addCleanup(shutil.rmtree, directory, True)
        for cwd in (directory, REPOSITORY):
            result = subprocess.run(
                [sys.executable, "-m", "twisted", "tracker", "--help"],
                cwd=cwd,
                capture_output=True,
                timeout=60,
            )
            output = result.stdout.decode()
            self.assertEqual(result.returncode, 0, result.stderr.decode())
            for option in EVERY_OPTION:
                self.assertIn(option, output)
        self.assertEqual(os.listdir(directory), [])

    def test_tac_serves_and_stops(self) -> None:
        """`twistd -n -y tracker.tac` with TRACKER_OPTIONS listens where told, answers an
        announce, creates the database, and exits cleanly on SIGTERM."""
        directory = tempfile.mkdtemp(prefix="tracker-tac-")
        self.addCleanup(shutil.rmtree, directory, True)
        database = os.path.join(directory, "x.sqlite3")
        port = free_port()
        env = dict(os.environ)
        env["TRACKER_OPTIONS"] = f"--listen tcp:{port}:interface=127.0.0.1 --database {database}"
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "-n",
                "--pidfile=",
                "--logfile=-",
                "-y",
                TAC,
            ],
            cwd=directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            url = (
                f"http://127.0.0.1:{port}/announce?info_hash={quote_from_bytes(info_hash(1))}"
                f"&peer_id={quote_from_bytes(peer_id(1))}&port=6881&left=0"
            )
            body = _fetch_when_up(url, process, deadline=time.monotonic() + 30)
            reply = bdecode(body)
            assert isinstance(reply, dict)
            self.assertIn(b"interval", reply)
            self.assertEqual(reply[b"complete"], 1)
            # The same port over UDP (BEP 15), in the same swarm: the HTTP seeder is its peer.
            client = Client("127.0.0.1", port)
            try:
                udp = client.exchange(announce_packet(client.connect(), 2, torrent=1))
            finally:
                client.close()
            seeder = socket.inet_aton("127.0.0.1") + (6881).to_bytes(2, "big")
            self.assertEqual(parse_announce_reply(udp)[1:], (1, 1, [seeder]))
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        log = output.decode(errors="replace")
        # twistd re-raises the signal that stopped it once shut down, so a clean stop on SIGTERM
        # exits "killed by SIGTERM" after its shutdown has run.
        self.assertIn(process.returncode, (0, -signal.SIGTERM), log)
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)
        self.assertTrue(os.path.exists(database))
        # The start-up lines a user reads: where to announce, and which database is in use.
        self.assertIn(f"tracker listening on http://127.0.0.1:{port}/announce", log)
        self.assertIn(f"tracker listening on udp://127.0.0.1:{port}/announce", log)
        self.assertIn(f"database {database} open, serving", log)


class RefusedStartTests(TestCase):
    timeout = 60

    def test_bad_database_refuses_to_start(self) -> None:
        """Given a text file as its database, the daemon exits non-zero at once with a line
        naming the file, never listens, and leaves the file as it was."""
        directory = tempfile.mkdtemp(prefix="tracker-refused-")
        self.addCleanup(shutil.rmtree, directory, True)
        text = os.path.join(directory, "notes.txt")
        with open(text, "w") as f:
            f.write("not a database\n" * 300)
        port = free_port()
        result = subprocess.run(
            [sys.executable, "-m", "twisted", "tracker", "--listen",
             f"tcp:{port}:interface=127.0.0.1", "--database", text],
            cwd=directory, capture_output=True, timeout=60,
        )  # fmt: skip
        output = (result.stdout + result.stderr).decode(errors="replace")
        self.assertNotEqual(result.returncode, 0, output)
        self.assertIn(f"cannot use the database {text!r}: it is not an SQLite database", output)
        self.assertNotIn("Traceback", output)
        with socket.socket() as sock:
            self.assertNotEqual(sock.connect_ex(("127.0.0.1", port)), 0)
        self.assertEqual(sorted(os.listdir(directory)), ["notes.txt"])

    def test_option_mistakes_say_only_what_is_wrong(self) -> None:
        """A mistyped option ends twistd and twist alike in one line naming it, pointing at
        --help, with a non-zero exit and nothing created; not in the whole usage text."""
        directory = tempfile.mkdtemp(prefix="tracker-mistake-")
        self.addCleanup(shutil.rmtree, directory, True)
        twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
                  "--pidfile=", "tracker"]  # fmt: skip
        twist = [sys.executable, "-m", "twisted", "tracker"]
        for command, expected in [
            (twistd + ["--interval", "x"], "tracker: --interval must be a whole number, not 'x'"),
            (twist + ["--listen", "tcp:notaport"], "tracker: --listen tcp:notaport: not a valid"),
            (twist + ["--bogus"], "tracker: option --bogus not recognized"),
        ]:
            result = subprocess.run(command, cwd=directory, capture_output=True, timeout=60)
            output = (result.stdout + result.stderr).decode(errors="replace")
            self.assertNotEqual(result.returncode, 0, output)
            self.assertEqual(output.strip().splitlines(), [output.strip()], output)
            self.assertIn(expected, output)
            self.assertIn("--help lists every option", output)
        self.assertEqual(os.listdir(directory), [])

    def test_faults_in_named_files_say_only_what_is_wrong(self) -> None:
        """A command line that is right but names a file the tracker cannot use (a list with a
        bad line, a token file that cannot be read, a database that is not one) ends in one
        line naming the file and the fault, without pointing at --help, which would not help."""
        directory = tempfile.mkdtemp(prefix="tracker-fault-")
        self.addCleanup(shutil.rmtree, directory, True)
        whitelist = os.path.join(directory, "whitelist.txt")
        with open(whitelist, "w") as f:
            f.write("not a hash\n")
        missing = os.path.join(directory, "admin.token")
        notes = os.path.join(directory, "notes.txt")
        with open(notes, "w") as f:
            f.write("not a database\n" * 300)
        before = sorted(os.listdir(directory))
        twist = [sys.executable, "-m", "twisted", "tracker", "--listen",
                 f"tcp:{free_port()}:interface=127.0.0.1"]  # fmt: skip
        for argv, expected in [
            (["--whitelist", whitelist],
             f"tracker: --whitelist {whitelist}: line 1: not a 40-digit hex info hash"),
            (["--admin-token-file", missing],
             f"tracker: --admin-token-file {missing}: cannot read it: No such file or directory"),
            (["--database", notes],
             f"tracker: cannot use the database {notes!r}: it is not an SQLite database"),
        ]:  # fmt: skip
            result = subprocess.run(twist + argv, cwd=directory, capture_output=True, timeout=60)
            output = (result.stdout + result.stderr).decode(errors="replace")
            self.assertNotEqual(result.returncode, 0, output)
            self.assertEqual(output.strip().splitlines(), [output.strip()], output)
            self.assertIn(expected, output)
            self.assertNotIn("--help", output)
        self.assertEqual(sorted(os.listdir(directory)), before)

    def test_tac_with_bad_options_says_why(self) -> None:
        """tracker.tac given a bad TRACKER_OPTIONS exits non-zero with one line that says what
        is wrong, and no traceback; it points at --help for a mistyped option only."""
        directory = tempfile.mkdtemp(prefix="tracker-badtac-")
        self.addCleanup(shutil.rmtree, directory, True)
        env = dict(os.environ, TRACKER_OPTIONS=f"--database {directory}")
        result = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
             "--pidfile=", "--logfile=-", "-y", TAC],
            cwd=directory, env=env, capture_output=True, timeout=60,
        )  # fmt: skip
        output = (result.stdout + result.stderr).decode(errors="replace")
        self.assertNotEqual(result.returncode, 0, output)
        self.assertIn(f"TRACKER_OPTIONS: cannot use the database {directory!r}", output)
        # The options are right, the database is not: --help would not help.
        self.assertNotIn("--help", output)
        self.assertNotIn("Traceback", output)
        self.assertEqual(os.listdir(directory), [])
        # A mistyped option points at the list of options.
        env = dict(os.environ, TRACKER_OPTIONS="--interval x")
        result = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
             "--pidfile=", "--logfile=-", "-y", TAC],
            cwd=directory, env=env, capture_output=True, timeout=60,
        )  # fmt: skip
        output = (result.stdout + result.stderr).decode(errors="replace")
        self.assertNotEqual(result.returncode, 0, output)
        self.assertIn(
            "TRACKER_OPTIONS: --interval must be a whole number, not 'x'"
            " (see `twistd tracker --help`)",
            output,
        )
        self.assertEqual(os.listdir(directory), [])


def _fetch_when_up(url: str, process: Any, deadline: float, context: Any = None) -> bytes:
    """GET C{url}, retrying while the daemon is starting; fail if it exits or never answers."""
    while True:
        if process.poll() is not None:
            raise AssertionError(f"twistd exited early: {process.communicate()[0]!r}")
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                return response.read()  # type: ignore[no-any-return]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _has_tls() -> bool:
    try:
        import OpenSSL  # noqa: F401
    except ImportError:
        return False
    return True


def _self_signed(directory: str) -> tuple[str, str]:
    """A key and a certificate for 127.0.0.1, valid for a day, written into C{directory}."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_path = os.path.join(directory, "key.pem")
    cert_path = os.path.join(directory, "cert.pem")
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _answers(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection on C{host} C{port}."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(5)
        return sock.connect_ex((host, port)) == 0


def _port_of(url: str, pattern: str) -> int:
    match = re.fullmatch(pattern, url)
    assert match is not None, f"{url!r} is not {pattern!r}"
    return int(match.group(1))


def _read_until(process: Any, text: str, deadline: float) -> str:
    """What C{process} printed up to the line holding C{text}."""
    lines: list[str] = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode(errors="replace")
        if not line:
            break
        lines.append(line)
        if text in line:
            return "".join(lines)
    raise AssertionError(f"never printed {text!r}:\n{''.join(lines)}")


class ListenTests(TestCase):
    timeout = 60

    def test_bad_endpoints_refused(self) -> None:
        """A mistyped --listen is refused while parsing options, with a line naming it."""
        directory = tempfile.mkdtemp(prefix="tracker-listen-")
        self.addCleanup(shutil.rmtree, directory, True)
        missing = os.path.join(directory, "nokey.pem")
        for description, expected in [
            ("tcp:notaport", "--listen tcp:notaport: not a valid endpoint"),
            ("carrier-pigeon:1", "--listen carrier-pigeon:1: not a valid endpoint"),
            ("tcp:99999", "--listen tcp:99999: port 99999 is out of range 0-65535"),
            (
                f"ssl:0:privateKey={missing}",
                f"cannot read {missing}: No such file or directory"
                if _has_tls()
                else "TLS needs pyOpenSSL: run pip install '.[tls]'",
            ),
        ]:
            with self.assertRaises(usage.UsageError) as caught:
                parse("--listen", description, "--database", os.path.join(directory, "t.db"))
            self.assertIn(expected, str(caught.exception))
        self.assertEqual(os.listdir(directory), [])

    def test_port_in_use_refuses_to_start(self) -> None:
        """A port already taken, TCP or only its UDP twin, ends twistd and twist alike with one
        line naming it and a non-zero exit, before anything says it listens: nothing is left
        listening, and no database is created or touched (an existing one gets no -wal or
        -shm file beside it)."""
        directory = tempfile.mkdtemp(prefix="tracker-inuse-")
        self.addCleanup(shutil.rmtree, directory, True)
        existing = os.path.join(directory, "existing.sqlite3")
        connection = sqlite3.connect(existing)
        connection.execute("PRAGMA journal_mode=WAL").fetchall()
        connection.execute("CREATE TABLE t (x)")
        connection.close()
        before = sorted(os.listdir(directory))
        twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
                  "--pidfile=", "--logfile=-", "tracker"]  # fmt: skip
        twist = [sys.executable, "-m", "twisted", "tracker"]
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            for command in (twistd, twist):
                with socket.socket(socket.AF_INET, kind) as taken:
                    taken.bind(("127.0.0.1", free_port() if kind == socket.SOCK_DGRAM else 0))
                    if kind == socket.SOCK_STREAM:
                        taken.listen()
                    port = taken.getsockname()[1]
                    listen = f"tcp:{port}:interface=127.0.0.1"
                    database = "t.sqlite3" if command is twist else existing
                    result = subprocess.run(
                        command + ["--listen", listen, "--database", database],
                        cwd=directory, capture_output=True, timeout=60,
                    )  # fmt: skip
                    # The other protocol's port on the same number is free again.
                    other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
                    with socket.socket(socket.AF_INET, other) as again:
                        again.bind(("127.0.0.1", port))
                output = (result.stdout + result.stderr).decode(errors="replace")
                refused = "tcp" if kind == socket.SOCK_STREAM else "udp"
                self.assertNotEqual(result.returncode, 0, output)
                self.assertEqual(
                    output.splitlines(),
                    [
                        f"cannot listen on {refused}:{port}:interface=127.0.0.1: address already"
                        " in use (is another tracker running?)"
                    ],
                )
                self.assertEqual(sorted(os.listdir(directory)), before)

    def test_start_lines_say_where_clients_announce(self) -> None:
        """Each listener's start line gives a URL clients can use and says exactly which
        addresses answer there: a listener on every IPv4 address (tcp:) is named by this
        host's name and answers on 127.0.0.1, not on ::1; a dual-stack one answers on both;
        one on an interface is named by its address."""
        directory = tempfile.mkdtemp(prefix="tracker-lines-")
        self.addCleanup(shutil.rmtree, directory, True)
        ipv6 = _has_ipv6()
        listen = ["--listen", "tcp:0", "--listen", "tcp:0:interface=127.0.0.1"]
        if ipv6:
            listen += ["--listen", "tcp6:0:interface=\\:\\:"]
        process = subprocess.Popen(
            [sys.executable, "-m", "twisted", "--log-format=text", "tracker", "--no-udp",
             "--database", "t.sqlite3", *listen],
            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            lines = _read_until(process, "open, serving", time.monotonic() + 30)
            urls = re.findall(r"tracker listening on (\S+)(?: \((.*)\))?$", lines, re.M)
            host = socket.gethostname()
            (every4, every4_reach), (loopback, loopback_reach) = urls[:2]
            port4 = _port_of(every4, rf"http://{re.escape(host)}:(\d+)/announce")
            self.assertEqual(every4_reach, "every IPv4 address of this host")
            self.assertTrue(_answers("127.0.0.1", port4))
            if ipv6:
                self.assertFalse(_answers("::1", port4))
            _port_of(loopback, r"http://127\.0\.0\.1:(\d+)/announce")
            self.assertEqual(loopback_reach, "")
            if ipv6:
                (every6, every6_reach) = urls[2]
                port6 = _port_of(every6, rf"http://{re.escape(host)}:(\d+)/announce")
                self.assertEqual(every6_reach, "every IPv4 and IPv6 address of this host")
                self.assertTrue(_answers("127.0.0.1", port6))
                self.assertTrue(_answers("::1", port6))
            self.assertEqual(len(urls), 3 if ipv6 else 2, lines)
        finally:
            process.terminate()
            process.communicate(timeout=30)

    def test_announce_over_tls(self) -> None:
        """With pyOpenSSL, an ssl: listener serves announces over HTTPS, and WebSocket ones
        over wss://, with the given certificate; without it, asking for one is refused in one
        line."""
        directory = tempfile.mkdtemp(prefix="tracker-tls-")
        self.addCleanup(shutil.rmtree, directory, True)
        port = free_port()
        if not _has_tls():
            result = subprocess.run(
                [sys.executable, "-m", "twisted", "tracker", "--listen",
                 f"ssl:{port}:privateKey=key.pem"],
                cwd=directory, capture_output=True, timeout=60,
            )  # fmt: skip
            output = (result.stdout + result.stderr).decode(errors="replace")
            self.assertNotEqual(result.returncode, 0, output)
            self.assertIn("TLS needs pyOpenSSL: run pip install '.[tls]'", output)
            self.assertNotIn("Traceback", output)
            self.assertEqual(os.listdir(directory), [])
            return
        import ssl

        key, cert = _self_signed(directory)
        process = subprocess.Popen(
            [sys.executable, "-m", "twisted", "--log-format=text", "tracker", "--listen",
             f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
             "--database", os.path.join(directory, "t.sqlite3")],
            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            context = ssl.create_default_context(cafile=cert)
            url = (
                f"https://127.0.0.1:{port}/announce?info_hash={quote_from_bytes(info_hash(1))}"
                f"&peer_id={quote_from_bytes(peer_id(1))}&port=6881&left=0"
            )
            body = _fetch_when_up(url, process, time.monotonic() + 30, context)
            reply = bdecode(body)
            assert isinstance(reply, dict)
            self.assertEqual(reply[b"complete"], 1)
            # wss:// on the same listener: a browser's announce, counted with the HTTPS one.
            browser = WebSocketClient("127.0.0.1", port, context=context)
            browser.send(
                {"action": "announce", "info_hash": info_hash(1).decode("latin-1"),
                 "peer_id": peer_id(2).decode("latin-1"), "left": None, "event": "started"}
            )  # fmt: skip
            answer = browser.receive()
            browser.close()
            self.assertEqual((answer["complete"], answer["incomplete"]), (1, 1))
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        log = output.decode(errors="replace")
        self.assertIn(f"tracker listening on https://127.0.0.1:{port}/announce", log)
        self.assertNotIn("Traceback", log)


def _wait_for_line(path: str, line: str, process: Any, deadline: float) -> str:
    """The log at C{path} once it holds C{line}; fail if the daemon exits or never writes it."""
    while True:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                log = f.read()
        except FileNotFoundError:
            log = ""
        if line in log:
            return log
        if process.poll() is not None:
            raise AssertionError(f"twistd exited early: {log}{process.communicate()[0]!r}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {line!r} in the log: {log}")
        time.sleep(0.1)


class ReusePortTests(TestCase):
    timeout = 120

    def test_option(self) -> None:
        """--reuse-port is off by default, and refused with a listener that cannot share its
        port, in one line naming it."""
        self.assertFalse(parse()["reuse-port"])
        options = parse("--reuse-port", "--listen", "tcp:7000", "--listen", "tcp6:7001")
        self.assertTrue(options["reuse-port"])
        with self.assertRaises(usage.UsageError) as caught:
            parse("--reuse-port", "--listen", "unix:/tmp/tracker.sock")
        self.assertEqual(
            str(caught.exception),
            "--reuse-port: --listen unix:/tmp/tracker.sock cannot share its port:"
            " only tcp:, tcp6: and ssl: listeners can",
        )

    def test_wiring(self) -> None:
        """With --reuse-port every HTTP and UDP listener binds with SO_REUSEPORT; the admin
        API's does not (each daemon has its own lists and passkeys to manage)."""
        directory = tempfile.mkdtemp(prefix="tracker-reuse-")
        self.addCleanup(shutil.rmtree, directory, True)
        token = os.path.join(directory, "admin.token")
        with open(token, "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        for flags, expected in [([], False), (["--reuse-port"], True)]:
            options = parse(
                *flags,
                "--listen", "tcp:7000",
                "--listen", "tcp6:7001",
                "--admin-token-file", token,
                "--database", os.path.join(directory, "t.sqlite3"),
            )  # fmt: skip
            root = makeService(options, _Reactor())
            listeners = [c for c in root if hasattr(c, "reuse_port")]  # type: ignore[attr-defined]
            self.assertEqual(
                [(type(c).__name__, c.reuse_port) for c in listeners],
                [
                    ("ListeningService", expected),
                    ("ListeningService", expected),
                    ("UDPListeningService", expected),
                    ("UDPListeningService", expected),
                    ("AdminListeningService", False),
                ],
            )

    def test_socket_option_set(self) -> None:
        """listen_reusing_port binds its socket with SO_REUSEPORT, so a second listener gets
        the same port; Twisted's own port, asked for the port again, is refused."""
        from twisted.internet import reactor
        from twisted.internet.error import CannotListenError
        from twisted.internet.protocol import Factory

        first = listen_reusing_port(reactor, "tcp:0:interface=127.0.0.1", Factory())
        self.addCleanup(first.stopListening)
        port = first.getHost().port  # type: ignore[attr-defined]
        second = listen_reusing_port(reactor, f"tcp:{port}:interface=127.0.0.1", Factory())
        self.addCleanup(second.stopListening)
        for listening in (first, second):
            sock = listening.socket  # type: ignore[attr-defined]
            self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 1)
        self.assertEqual(second.getHost().port, port)  # type: ignore[attr-defined]
        self.assertRaises(CannotListenError, reactor.listenTCP, port, Factory(), 50, "127.0.0.1")
        six = listen_reusing_port(reactor, "tcp6:0:interface=\\:\\:1", Factory())
        self.addCleanup(six.stopListening)
        self.assertEqual(six.getHost().host, "::1")  # type: ignore[attr-defined]
        sock = six.socket  # type: ignore[attr-defined]
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 1)

    def test_tls_shares_its_port(self) -> None:
        """With pyOpenSSL, an ssl: listener binds with SO_REUSEPORT too and still serves
        HTTPS; without it, asking for one is refused in one line, as without --reuse-port."""
        if not _has_tls():
            with self.assertRaises(usage.UsageError) as caught:
                parse("--reuse-port", "--listen", "ssl:0:privateKey=key.pem")
            self.assertIn("TLS needs pyOpenSSL: run pip install '.[tls]'", str(caught.exception))
            return None
        import ssl

        from twisted.internet import reactor
        from twisted.internet.threads import deferToThread
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        class Hello(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                return b"over TLS"

        directory = tempfile.mkdtemp(prefix="tracker-reuse-tls-")
        self.addCleanup(shutil.rmtree, directory, True)
        key, cert = _self_signed(directory)
        root = Hello()
        endpoint = "ssl:{port}:interface=127.0.0.1:privateKey=" + key + ":certKey=" + cert
        first = listen_reusing_port(reactor, endpoint.format(port=0), Site(root))
        self.addCleanup(first.stopListening)
        port = first.getHost().port  # type: ignore[attr-defined]
        second = listen_reusing_port(reactor, endpoint.format(port=port), Site(root))
        self.addCleanup(second.stopListening)
        sock = second.socket  # type: ignore[attr-defined]
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 1)
        context = ssl.create_default_context(cafile=cert)

        def fetch() -> bytes:
            url = f"https://127.0.0.1:{port}/hello"
            with urllib.request.urlopen(url, timeout=10, context=context) as response:
                return response.read()  # type: ignore[no-any-return]

        return deferToThread(fetch).addCallback(self.assertEqual, b"over TLS")  # type: ignore[no-any-return]

    def test_two_daemons_share_one_port(self) -> None:
        """Two daemons started with --reuse-port on one TCP and UDP port both start, and both
        answer: fresh connections and fresh UDP sockets reach one daemon or the other, each
        with its own swarms. A third daemon without --reuse-port is refused with one line,
        for TCP and for UDP, before it creates its database."""
        directory = tempfile.mkdtemp(prefix="tracker-reuse-daemons-")
        self.addCleanup(shutil.rmtree, directory, True)
        port = free_port()
        listen = f"tcp:{port}:interface=127.0.0.1"
        twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
                  "--pidfile="]  # fmt: skip
        processes = []
        try:
            for n in (1, 2):
                log = os.path.join(directory, f"daemon{n}.log")
                process = subprocess.Popen(
                    twistd + [f"--logfile={log}", "tracker", "--reuse-port", "--listen", listen,
                              "--database", os.path.join(directory, f"daemon{n}.sqlite3")],
                    cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                )  # fmt: skip
                processes.append((process, log))
            for process, log in processes:
                text = _wait_for_line(log, "open, serving", process, time.monotonic() + 60)
                self.assertIn(f"tracker listening on http://127.0.0.1:{port}/announce", text)
                self.assertIn(f"tracker listening on udp://127.0.0.1:{port}/announce", text)

            # Each daemon counts only the seeders that reached it, itself included: two
            # answers of 1 seeder mean two swarms answered, one in each daemon.
            fresh = 40
            seeders = []
            for k in range(fresh):
                url = (
                    f"http://127.0.0.1:{port}/announce?info_hash={quote_from_bytes(info_hash(1))}"
                    f"&peer_id={quote_from_bytes(peer_id(k))}&port={10000 + k}&left=0"
                )
                with urllib.request.urlopen(url, timeout=10) as response:
                    reply = bdecode(response.read())
                assert isinstance(reply, dict), reply
                seeders.append(reply[b"complete"])
            self.assertEqual(seeders.count(1), 2, seeders)
            self.assertLess(max(seeders), fresh, seeders)
            seeders = []
            for k in range(fresh):
                client = Client("127.0.0.1", port)
                try:
                    packet = announce_packet(client.connect(), k, torrent=2, left=0)
                    seeders.append(parse_announce_reply(client.exchange(packet))[2])
                finally:
                    client.close()
            self.assertEqual(seeders.count(1), 2, seeders)
            self.assertLess(max(seeders), fresh, seeders)

            # Without --reuse-port, the port is taken: for TCP, and for UDP.
            udp = f"udp:{port}:interface=127.0.0.1"
            for argv, refused in [
                (["--listen", listen], listen),
                (["--listen", "tcp:0:interface=127.0.0.1", "--listen-udp", udp], udp),
            ]:
                database = os.path.join(directory, "refused.sqlite3")
                result = subprocess.run(
                    twistd + ["--logfile=-", "tracker", *argv, "--database", database],
                    cwd=directory, capture_output=True, timeout=60,
                )  # fmt: skip
                output = (result.stdout + result.stderr).decode(errors="replace")
                self.assertNotEqual(result.returncode, 0, output)
                self.assertIn(f"cannot listen on {refused}: address already in use", output)
                self.assertNotIn("Traceback", output)
                self.assertFalse(os.path.exists(database))

            for process, _ in processes:
                process.send_signal(signal.SIGTERM)
            for process, log in processes:
                process.communicate(timeout=30)
                with open(log, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                self.assertIn(process.returncode, (0, -signal.SIGTERM), text)
                self.assertIn("Server Shut Down.", text)
                self.assertNotIn("Traceback", text)
        finally:
            for process, _ in processes:
                if process.poll() is None:
                    process.kill()
                    process.communicate()
