"""
The service files in contrib/: the systemd units pass `systemd-analyze verify` and their command
lines parse with the tracker's own options (and run it), and the settings shown anywhere in
contrib/ are valid options.

The tools come from Debian packages (systemd; .ci/run installs it). A tool that is missing
skips its test with a loud message, or fails it when CI=true or REALCLIENTS_REQUIRED=1 (as in
CI).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SkipTest, TestCase

from tests.test_tap import _fetch_when_up, free_port
from tracker.tap import Options

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTRIB = os.path.join(REPOSITORY, "contrib")
UNITS = os.path.join(CONTRIB, "systemd")
#: Where the units expect the tracker's virtual environment, and its state.
INSTALLED_TWISTD = "/opt/tracker/venv/bin/twistd"
STATE = "/var/lib/tracker"
#: twistd beside the Python running the tests, which has the tracker installed.
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def tool(name: str) -> str:
    """The path of a system tool; skips the test (fails it in CI) when there is none."""
    path = shutil.which(
        name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    )
    if path:
        return path
    message = (
        f"!!! CONTRIB TEST NOT RUN: {name} is not installed. Run apt-get install"
        " systemd as root to install the tools these tests use. !!!"
    )
    if os.environ.get("REALCLIENTS_REQUIRED") == "1" or os.environ.get("CI") == "true":
        raise AssertionError(message)
    raise SkipTest(message)


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


def tempdir(case: TestCase, prefix: str) -> str:
    directory = tempfile.mkdtemp(prefix=prefix)
    case.addCleanup(shutil.rmtree, directory, True)
    return directory


def stop(process: Any) -> None:
    if process.poll() is None:
        process.kill()
    process.communicate()


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

    def parse_unit(self, name: str, instance: str = "1") -> tuple[ServerOptions, Options, str]:
        """The unit's command line parsed by twistd and the tracker, its state directory a
        temporary one; and the unit's working directory, moved there too."""
        unit = read("systemd", name)
        state = tempdir(self, "tracker-state-")
        settings = directives(unit)
        working = settings["WorkingDirectory"][0].replace("%i", instance).replace(STATE, state)
        # The directory systemd makes: StateDirectory= names it below /var/lib.
        made = settings["StateDirectory"][0].replace("%i", instance)
        self.assertEqual(os.path.join("/var/lib", made), working.replace(state, STATE))
        os.makedirs(working, exist_ok=True)
        words = command_line(unit, instance, state, {})
        self.assertEqual(words[0], INSTALLED_TWISTD)
        config = ServerOptions()
        try:
            config.parseOptions(words[1:])
        except SystemExit as e:
            # The plugin ends a mistake in one line, as twistd would print it.
            self.fail(f"{name}: {e}")
        self.assertEqual(config.subCommand, "tracker")
        tracker = config.subOptions
        assert isinstance(tracker, Options)
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
        ]:
            text = read(*path)
            assigned = re.findall(r"\bTRACKER_(?:INSTANCE_)?ARGS=(.*)", text)
            quoted = re.findall(r"\bTRACKER_(INSTANCE_)?ARGS='([^'\n]*)'$", text, re.MULTILINE)
            self.assertEqual(len(assigned), len(quoted), f"{path}: {assigned}")
            examples.extend(quoted)
        self.assertGreaterEqual(len(examples), 4)
        for instance, example in examples:
            words = example.replace("/etc/tracker/", directory + "/").split()
            if instance:
                # An instance's own settings go with the shared ones: the admin API's token.
                words += ["--admin-token-file", os.path.join(directory, "admin.token")]
            options = Options()
            options.parseOptions([*words, "--database", os.path.join(directory, "t.sqlite3")])
