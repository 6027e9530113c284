"""
The service files in contrib/: the systemd units pass `systemd-analyze verify` and their command
lines parse with the tracker's own options (and run it), the settings shown anywhere in
contrib/ are valid options, the nginx site passes `nginx -t` and carries requests to a tracker,
and the logrotate file rotates a running twistd's log without ending any process.

The tools come from Debian packages (systemd, nginx, logrotate; .ci/run installs them). A tool
that is missing skips its test with a loud message, or fails it when CI=true or
REALCLIENTS_REQUIRED=1 (as in CI).
"""

from __future__ import annotations

import grp
import http.client
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SkipTest, TestCase

from tests.helpers import certificate
from tests.redis_servers import shared_server
from tests.test_tap import _fetch_when_up, _wait_for_line, free_port
from tests.wsclient import WebSocketClient

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTRIB = os.path.join(REPOSITORY, "contrib")
UNITS = os.path.join(CONTRIB, "systemd")
#: Where the units expect the tracker's virtual environment, and its state.
INSTALLED_TWISTD = "/opt/tracker/venv/bin/twistd"
STATE = "/var/lib/tracker"
#: twistd beside the Python running the tests, which has the tracker installed.
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
#: The Redis the examples name, on the machine itself: a Redis the tests start takes its place.
EXAMPLE_REDIS = "redis://127.0.0.1:6379/0"


def tool(name: str) -> str:
    """The path of a system tool; skips the test (fails it in CI) when there is none."""
    path = shutil.which(
        name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    )
    if path:
        return path
    message = (
        f"!!! CONTRIB TEST NOT RUN: {name} is not installed. Run apt-get install"
        " systemd nginx logrotate as root to install the tools these tests use. !!!"
    )
    if os.environ.get("REALCLIENTS_REQUIRED") == "1" or os.environ.get("CI") == "true":
        raise AssertionError(message)
    raise SkipTest(message)


def tracker_options() -> usage.Options:
    """The options of `twistd tracker`, found as twistd finds them: through its plugin."""
    [maker] = [m for m in getPlugins(IServiceMaker) if m.tapname == "tracker"]
    options: usage.Options = maker.options()
    return options


def read(*path: str) -> str:
    with open(os.path.join(CONTRIB, *path), encoding="utf-8") as f:
        return f.read()


def directives(unit: str) -> dict[str, list[str]]:
    """A unit file's settings, each with the values it is given, in order."""
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def command_line(
    unit: str, instance: str, state: str, arguments: dict[str, list[str]]
) -> list[str]:
    """
    The unit's ExecStart as systemd runs it: %i is the instance, each unquoted $VARIABLE becomes
    the words C{arguments} gives it (none if not given), and the state directory is C{state}.
    """
    [exec_start] = directives(unit)["ExecStart"]
    words = []
    for word in shlex.split(exec_start.replace("%i", instance)):
        if word.startswith("$"):
            words.extend(arguments.get(word[1:], []))
        else:
            words.append(word.replace(STATE, state))
    return words


def redis_example() -> list[str]:
    """tracker.default's TRACKER_ARGS with --redis, split as systemd splits it, the Redis it
    names replaced by one the tests started (parsing the options reaches it)."""
    [example] = re.findall(
        r"^#TRACKER_ARGS='(--redis [^']*)'$", read("systemd", "tracker.default"), re.M
    )
    assert EXAMPLE_REDIS in example, example
    return example.replace(EXAMPLE_REDIS, shared_server().url).split()


def tempdir(case: TestCase, prefix: str) -> str:
    directory = tempfile.mkdtemp(prefix=prefix)
    case.addCleanup(shutil.rmtree, directory, True)
    return directory


def stop(process: Any) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate()


def stop_nginx(process: Any) -> None:
    """Stop nginx's master, which stops its workers first (SIGKILL would leave them)."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class SystemdTests(TestCase):
    timeout = 120

    def verify(self, name: str, instance: str = "") -> None:
        """`systemd-analyze verify` of the unit, with its twistd the one of these tests: any
        line it prints is a problem, as is a non-zero exit."""
        analyze = tool("systemd-analyze")
        directory = tempdir(self, "tracker-units-")
        with open(os.path.join(UNITS, name), encoding="utf-8") as f:
            unit = f.read()
        self.assertIn(INSTALLED_TWISTD, unit)
        with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
            f.write(unit.replace(INSTALLED_TWISTD, TWISTD))
        # Only this unit, not the units it names (network.target, ...), where systemd has the
        # option: those belong to the machine the tests run on.
        help_text = subprocess.run([analyze, "--help"], capture_output=True, text=True).stdout
        options = ["--recursive-errors=no"] if "--recursive-errors" in help_text else []
        target = os.path.join(directory, name.replace("@.", f"@{instance}."))
        result = subprocess.run(
            [analyze, "verify", *options, "--man=no", target],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        output = (result.stdout + result.stderr).strip()
        self.assertEqual((result.returncode, output), (0, ""), f"{name}: {output}")

    def test_verify_service(self) -> None:
        """tracker.service passes systemd-analyze verify without a word."""
        self.verify("tracker.service")

    def test_verify_template(self) -> None:
        """tracker@.service, as instance 1, passes systemd-analyze verify without a word."""
        self.verify("tracker@.service", "1")

    def parse_unit(
        self, name: str, instance: str = "1", arguments: dict[str, list[str]] | None = None
    ) -> tuple[ServerOptions, usage.Options, str]:
        """The unit's command line parsed by twistd and the tracker, its state directory a
        temporary one and its variables given by C{arguments}; and the unit's working
        directory, moved there too."""
        unit = read("systemd", name)
        state = tempdir(self, "tracker-state-")
        settings = directives(unit)
        working = settings["WorkingDirectory"][0].replace("%i", instance).replace(STATE, state)
        # The directory systemd makes: StateDirectory= names it below /var/lib.
        made = settings["StateDirectory"][0].replace("%i", instance)
        self.assertEqual(os.path.join("/var/lib", made), working.replace(state, STATE))
        os.makedirs(working, exist_ok=True)
        words = command_line(unit, instance, state, arguments or {})
        self.assertEqual(words[0], INSTALLED_TWISTD)
        config = ServerOptions()
        try:
            config.parseOptions(words[1:])
        except SystemExit as e:
            # The plugin ends a mistake in one line, as twistd would print it.
            self.fail(f"{name}: {e}")
        self.assertEqual(config.subCommand, "tracker")
        tracker = config.subOptions
        self.assertIsInstance(tracker, type(tracker_options()))
        return config, tracker, working

    def test_service_command_line(self) -> None:
        """tracker.service runs twistd in the foreground without a pid file, its database in
        the state directory it works in; the options parse as twistd and the tracker read them,
        so that a renamed option fails here."""
        config, tracker, working = self.parse_unit("tracker.service")
        self.assertTrue(config["nodaemon"])
        self.assertEqual(config["pidfile"], "")
        self.assertEqual(tracker["database"], os.path.join(working, "tracker.sqlite3"))
        self.assertFalse(tracker["reuse-port"])

    def test_template_command_line(self) -> None:
        """Each instance of tracker@.service shares its port (--reuse-port) and has a database
        of its own, in a state directory of its own."""
        databases = []
        for instance in ("1", "2"):
            config, tracker, working = self.parse_unit("tracker@.service", instance)
            self.assertTrue(config["nodaemon"])
            self.assertEqual(config["pidfile"], "")
            self.assertTrue(tracker["reuse-port"])
            self.assertEqual(tracker["database"], os.path.join(working, "tracker.sqlite3"))
            self.assertEqual(os.path.basename(working), instance)
            databases.append(tracker["database"].replace(working, f"<{instance}>"))
        self.assertEqual(databases, ["<1>/tracker.sqlite3", "<2>/tracker.sqlite3"])

    def test_template_command_line_on_redis(self) -> None:
        """With tracker.default's --redis example in TRACKER_ARGS, every instance of
        tracker@.service keeps its swarms in that one Redis, still sharing its port; its own
        database is still named (not used), and its own TRACKER_INSTANCE_ARGS still apply."""
        token = os.path.join(tempdir(self, "tracker-token-"), "admin.token")
        with open(token, "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        shared = redis_example()
        for instance in ("1", "2"):
            admin = f"tcp:697{instance}:interface=127.0.0.1"
            arguments = {
                "TRACKER_ARGS": [*shared, "--admin-token-file", token],
                "TRACKER_INSTANCE_ARGS": ["--admin-listen", admin],
            }
            _, tracker, working = self.parse_unit("tracker@.service", instance, arguments)
            self.assertEqual(tracker["redis"], shared[1])
            self.assertTrue(tracker["reuse-port"])
            self.assertEqual(tracker["database"], os.path.join(working, "tracker.sqlite3"))
            self.assertEqual(tracker["admin-listen"], admin)

    def test_service_command_line_serves(self) -> None:
        """The command line of tracker.service, given a --listen in TRACKER_ARGS, starts the
        tracker, which logs to its standard output (the journal), writes no pid file, creates
        its database where the unit says, answers, and stops cleanly on systemd's SIGTERM."""
        unit = read("systemd", "tracker.service")
        state = tempdir(self, "tracker-state-")
        port = free_port()
        words = command_line(
            unit, "", state, {"TRACKER_ARGS": ["--listen", f"tcp:{port}:interface=127.0.0.1"]}
        )
        words[0] = TWISTD
        process = subprocess.Popen(
            words, cwd=state, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.addCleanup(stop, process)
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.extend(line.decode(errors="replace") for line in process.stdout)
        )
        reader.start()
        serving = f"database {state}/tracker.sqlite3 open, serving"
        deadline = time.monotonic() + 60
        while not any(serving in line for line in lines):
            if process.poll() is not None or time.monotonic() > deadline:
                reader.join(30)
                raise AssertionError(f"the tracker did not start: {''.join(lines)}")
            time.sleep(0.1)
        body = _fetch_when_up(f"http://127.0.0.1:{port}/stats.json", process, deadline)
        self.assertIn(b'"torrents"', body)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        reader.join(30)
        log = "".join(lines)
        self.assertIn(process.returncode, (0, -signal.SIGTERM), log)
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)
        self.assertIn("tracker.sqlite3", os.listdir(state))
        self.assertNotIn("twistd.pid", os.listdir(state))


class SettingsTests(TestCase):
    def parse(self, argv: list[str]) -> usage.Options:
        options = tracker_options()
        try:
            options.parseOptions(argv)
        except SystemExit as e:
            # The plugin ends a mistake in one line, as twistd would print it.
            self.fail(f"{argv}: {e}")
        return options

    def test_every_example_parses(self) -> None:
        """Every TRACKER_ARGS and TRACKER_INSTANCE_ARGS that contrib/ shows, commented out or
        not, is single-quoted (systemd's parser then keeps a backslash as written) and parses
        as the tracker's options, split at whitespace as systemd splits it."""
        directory = tempdir(self, "tracker-settings-")
        with open(os.path.join(directory, "whitelist.txt"), "w") as f:
            f.write("6a9759bffd5c0af65319979fb7832189f4f3c35d\n")
        with open(os.path.join(directory, "admin.token"), "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        examples = []
        for path in [
            ("README.md",),
            ("systemd", "tracker.default"),
            ("systemd", "tracker.service"),
            ("systemd", "tracker@.service"),
            ("nginx", "tracker.conf"),
        ]:
            text = read(*path)
            assigned = re.findall(r"\bTRACKER_(?:INSTANCE_)?ARGS=(.*)", text)
            quoted = re.findall(r"\bTRACKER_(INSTANCE_)?ARGS='([^'\n]*)'$", text, re.MULTILINE)
            self.assertEqual(len(assigned), len(quoted), f"{path}: {assigned}")
            examples.extend(quoted)
        self.assertGreaterEqual(len(examples), 5)
        redis = [e for _, e in examples if EXAMPLE_REDIS in e]
        self.assertTrue(redis)
        for instance, example in examples:
            example = example.replace(EXAMPLE_REDIS, shared_server().url)
            words = example.replace("/etc/tracker/", directory + "/").split()
            if instance:
                # An instance's own settings go with the shared ones: the admin API's token.
                words += ["--admin-token-file", os.path.join(directory, "admin.token")]
            self.parse([*words, "--database", os.path.join(directory, "t.sqlite3")])
        nginx = [e for _, e in examples if "--trusted-proxy 127.0.0.1" in e]
        self.assertTrue(nginx)
        options = self.parse([*nginx[0].split(), "--database", os.path.join(directory, "n.db")])
        self.assertEqual(options["listen"], ["tcp:6969:interface=127.0.0.1"])
        self.assertEqual(options["listen-udp"], ["udp:6969:interface=::"])


class NginxTests(TestCase):
    timeout = 120

    def site(
        self, directory: str, upstream: int | None = None, ports: tuple[int, int] | None = None
    ) -> str:
        """The nginx site with a certificate of the tests, in a minimal nginx.conf: its path.
        With C{upstream} and C{ports}, the tracker's port and the site's own HTTP and HTTPS
        ports on 127.0.0.1 are moved there."""
        key, cert = certificate(directory, tool("openssl"))
        site = read("nginx", "tracker.conf")
        for path, ours in [
            ("/etc/letsencrypt/live/tracker.example.org/fullchain.pem", cert),
            ("/etc/letsencrypt/live/tracker.example.org/privkey.pem", key),
        ]:
            self.assertIn(path, site)
            site = site.replace(path, ours)
        if upstream is not None:
            self.assertIn("server 127.0.0.1:6969;", site)
            site = site.replace("server 127.0.0.1:6969;", f"server 127.0.0.1:{upstream};")
        if ports is not None:
            site = re.sub(r"\n *listen \[::\]:\d+( ssl)?;", "", site)
            site = site.replace("listen 80;", f"listen 127.0.0.1:{ports[0]};")
            site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{ports[1]} ssl;")
        with open(os.path.join(directory, "tracker.conf"), "w") as f:
            f.write(site)
        conf = os.path.join(directory, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                f"pid {directory}/nginx.pid;\n"
                "error_log stderr;\n"
                "events {}\n"
                f"http {{\n    include {directory}/tracker.conf;\n}}\n"
            )
        # Readable by nginx's workers, which drop root's privileges.
        os.chmod(directory, 0o755)
        return conf

    def test_configuration(self) -> None:
        """nginx -t accepts the site as it is written, certificate paths apart."""
        nginx = tool("nginx")
        directory = tempdir(self, "tracker-nginx-")
        conf = self.site(directory)
        result = subprocess.run(
            [nginx, "-t", "-p", directory, "-c", conf, "-e", "stderr"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output)
        self.assertIn("test is successful", output)
        self.assertNotIn("[warn]", output)

    def test_requests_through_nginx(self) -> None:
        """Through the site, over HTTPS and HTTP, the tracker (run with the options the file
        names) stores each peer at its client's own address, not nginx's nor one the client
        claims in its own X-Forwarded-For; browsers' WebSockets (wss:// and ws://) reach it on
        the announce URL; /metrics answers this host only."""
        nginx = tool("nginx")
        directory = tempdir(self, "tracker-nginx-")
        upstream, http_port, https_port = free_port(), free_port(), free_port()
        conf = self.site(directory, upstream, (http_port, https_port))
        tracker = subprocess.Popen(
            [TWISTD, "--nodaemon", "--pidfile=", "tracker", "--no-udp",
             "--listen", f"tcp:{upstream}:interface=127.0.0.1", "--trusted-proxy", "127.0.0.1",
             "--database", os.path.join(directory, "t.sqlite3")],
            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.addCleanup(stop, tracker)
        _fetch_when_up(f"http://127.0.0.1:{upstream}/stats.json", tracker, time.monotonic() + 60)
        # Its output into a file: its workers, not only the process started here, hold it.
        output = os.open(os.path.join(directory, "nginx.out"), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            server = subprocess.Popen(
                [nginx, "-p", directory, "-c", conf, "-e", "stderr", "-g", "daemon off;"],
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        finally:
            os.close(output)
        self.addCleanup(stop_nginx, server)
        context = ssl.create_default_context(cafile=os.path.join(directory, "cert.pem"))

        def get(path: str, source: str, tls: bool = True) -> tuple[int, bytes]:
            deadline = time.monotonic() + 30
            while True:
                if tls:
                    connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                        "127.0.0.1", https_port, timeout=10, source_address=(source, 0),
                        context=context,
                    )  # fmt: skip
                else:
                    connection = http.client.HTTPConnection(
                        "127.0.0.1", http_port, timeout=10, source_address=(source, 0)
                    )
                try:
                    connection.request("GET", path, headers={"X-Forwarded-For": "203.0.113.9"})
                    response = connection.getresponse()
                    return response.status, response.read()
                except ConnectionRefusedError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        with open(os.path.join(directory, "nginx.out"), "rb") as f:
                            said = f.read()
                        raise AssertionError(f"nginx did not start: {said!r}") from None
                    time.sleep(0.1)
                finally:
                    connection.close()

        def announce(peer: str, port: int, source: str, tls: bool = True, left: int = 0) -> bytes:
            status, body = get(
                f"/announce?info_hash={'%41' * 20}&peer_id={peer * 20}&port={port}&left={left}",
                source, tls,
            )  # fmt: skip
            self.assertEqual(status, 200, body)
            return body

        def peer(address: str, port: int) -> bytes:
            return socket.inet_aton(address) + port.to_bytes(2, "big")

        # The bencoded replies are read as bytes: BEP 24's external ip (the address the tracker
        # saw), the swarm's seeders, and compact peers (BEP 23).
        first = announce("A", 6881, "127.0.0.5")
        self.assertIn(b"11:external ip4:" + socket.inet_aton("127.0.0.5"), first)
        second = announce("B", 6882, "127.0.0.6", tls=False)
        self.assertIn(b"11:external ip4:" + socket.inet_aton("127.0.0.6"), second)
        self.assertIn(b"8:completei2e", second)
        leecher = announce("C", 6883, "127.0.0.7", left=1)
        self.assertIn(b"5:peers12:", leecher)
        self.assertIn(peer("127.0.0.5", 6881), leecher)
        self.assertIn(peer("127.0.0.6", 6882), leecher)
        # A browser's WebSocket, over wss:// and ws://, on the same announce URL: counted in
        # the same swarm.
        for tls, peer_id in [(True, "D"), (False, "E")]:
            browser = WebSocketClient(
                "127.0.0.1", https_port if tls else http_port, context=context if tls else None
            )
            browser.send(
                {"action": "announce", "info_hash": "A" * 20, "peer_id": peer_id * 20,
                 "left": None, "event": "started"}
            )  # fmt: skip
            reply = browser.receive()
            self.addCleanup(browser.close)
        self.assertEqual((reply["complete"], reply["incomplete"]), (2, 3))
        status, body = get("/metrics", "127.0.0.1")
        self.assertEqual(status, 200)
        self.assertIn(b"tracker_requests_total", body)
        self.assertEqual(get("/metrics", "127.0.0.5")[0], 403)
        self.assertEqual(get("/stats.json", "127.0.0.5")[0], 200)


class LogrotateTests(TestCase):
    timeout = 120

    def test_rotation(self) -> None:
        """logrotate with the contrib file (its folder moved to a temporary one) has a running
        twistd rotate its log: the old lines in twistd.log.1, new ones in a new twistd.log,
        rotated files older than two weeks deleted, the tracker still serving. A process that
        does not catch SIGUSR1, named in twistd.pid, is left alive."""
        logrotate = tool("logrotate")
        directory = tempdir(self, "tracker-logrotate-")
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        rules = read("logrotate", "tracker")
        self.assertIn("su tracker tracker", rules)
        rules = rules.replace(STATE, directory).replace("su tracker tracker", f"su {user} {group}")
        conf = os.path.join(directory, "logrotate.conf")
        with open(conf, "w") as f:
            f.write(rules)
        os.chmod(conf, 0o644)
        whitelist = os.path.join(directory, "whitelist.txt")
        open(whitelist, "w").close()
        log = os.path.join(directory, "twistd.log")
        # twistd in the foreground, logging to a file: it rotates on SIGUSR1 as a daemon does.
        tracker = subprocess.Popen(
            [TWISTD, "--nodaemon", f"--logfile={log}", f"--pidfile={directory}/twistd.pid",
             "tracker", "--no-udp", "--listen", "tcp:0:interface=127.0.0.1",
             "--whitelist", whitelist, "--database", os.path.join(directory, "t.sqlite3")],
            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.addCleanup(stop, tracker)
        _wait_for_line(log, "open, serving", tracker, time.monotonic() + 60)
        for name, text, age in [("twistd.log.2", "recent\n", 0), ("twistd.log.3", "old\n", 30)]:
            path = os.path.join(directory, name)
            with open(path, "w") as f:
                f.write(text)
            then = time.time() - age * 86400
            os.utime(path, (then, then))

        def rotate() -> None:
            result = subprocess.run(
                [logrotate, "-f", "-s", os.path.join(directory, "state"), conf],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertNotIn("error", (result.stdout + result.stderr).lower())

        rotate()
        rotated = os.path.join(directory, "twistd.log.1")
        _wait_for_line(rotated, "open, serving", tracker, time.monotonic() + 30)
        tracker.send_signal(signal.SIGHUP)  # logs a line: it rereads its whitelist
        _wait_for_line(log, "SIGHUP: reloading", tracker, time.monotonic() + 30)
        with open(log) as f:
            self.assertNotIn("open, serving", f.read())
        kept = {}
        for name in os.listdir(directory):
            if name.startswith("twistd.log."):
                with open(os.path.join(directory, name)) as f:
                    kept[name] = f.read()
        self.assertIn("recent\n", kept.values())
        self.assertNotIn("old\n", kept.values())
        self.assertNotIn("twistd.log-", " ".join(os.listdir(directory)))

        # twistd.pid naming a process that would die of SIGUSR1: it is not sent.
        bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        self.addCleanup(stop, bystander)
        with open(os.path.join(directory, "twistd.pid"), "w") as f:
            f.write(f"{bystander.pid}\n")
        rotate()
        time.sleep(0.5)
        self.assertIsNone(bystander.poll())
        self.assertIsNone(tracker.poll())
