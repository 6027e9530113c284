"""
A newcomer's first contact, walked as the README writes it: in a copy of the repository in a
temporary folder, with a fresh virtualenv, run the quick start, each documented mistake, TLS
and the embedding example, and check what a user sees: one clear line, the exit status, no
traceback, nothing left listening after a refused start, no stray files.

    python3 .ci/first_contact.py

Talks to 127.0.0.1 only; every step is bounded in time. Exits non-zero on the first surprise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANNOUNCE = "/announce?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=6881&left=0"
#: The commands README.md and docs/ show, as written there: tests/test_docs.py finds each one
#: here, so they stay on one line each.
QUICK_START = "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/twistd --pidfile= -ny tracker.tac"  # noqa: E501
MAKE_TORRENT = "transmission-create -o release.torrent -t http://tracker.example.org:6969/announce -t udp://tracker.example.org:6969/announce README.md"  # noqa: E501
SETTINGS = (
    'TRACKER_OPTIONS="--listen tcp:8080 --interval 900" .venv/bin/twistd --pidfile= -ny tracker.tac'  # noqa: E501
)
TOKEN_COMMAND = "python3 -c 'import secrets; print(secrets.token_hex(32))' > admin.token && chmod 600 admin.token"  # noqa: E501
PRIVATE = ".venv/bin/twistd --pidfile= -n tracker --private --admin-token-file admin.token"
ADD_PASSKEY = """curl -H "Authorization: Bearer $(cat admin.token)" -d '{"label": "alice"}' http://127.0.0.1:6970/passkeys"""  # noqa: E501
BACKUP = 'sqlite3 tracker.sqlite3 ".backup tracker-backup.sqlite3"'
REDIS = ".venv/bin/pip install '.[redis]' && .venv/bin/twistd --pidfile= -n tracker --redis redis://127.0.0.1:6379/0"  # noqa: E501
REUSE_PORT = ".venv/bin/twistd --pidfile= -n tracker --redis redis://127.0.0.1:6379/0 --reuse-port"  # noqa: E501
PYPY = "pypy3 -m venv .venv-pypy && .venv-pypy/bin/pip install . && PYPY_GC_NURSERY=64M .venv-pypy/bin/twistd --pidfile= -ny tracker.tac"  # noqa: E501
SKIP = {".git", ".venv", ".venv-pypy", "build", "__pycache__", "tracker.egg-info"}
#: What a mistake on the command line itself ends with, and no other refusal.
HELP_HINT = "(--help lists every option)"


def step(title: str) -> None:
    print(f"== {title}", flush=True)


def fail(message: str) -> None:
    raise SystemExit(f"first contact FAILED: {message}")


def shell(command: str, cwd: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def fetch(url: str | urllib.request.Request, context: Any = None) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.read()  # type: ignore[no-any-return]
    except urllib.error.HTTPError as e:
        return e.read()


def add_passkey(cwd: str) -> dict[str, Any]:
    """The README's curl that makes a passkey, waiting out the 503 that docs/operating.md
    documents for the moment after a start while the stored passkeys are read."""
    deadline = time.monotonic() + 10
    while True:
        result = shell(ADD_PASSKEY, cwd, timeout=30)
        try:
            answer = json.loads(result.stdout)
        except ValueError:
            answer = {}
        if "passkey" in answer:
            return answer  # type: ignore[no-any-return]
        if time.monotonic() > deadline or "starting" not in result.stdout:
            fail(f"{ADD_PASSKEY!r} answered: {result.stdout}{result.stderr}")
        time.sleep(0.1)


class Daemon:
    """A long-running command from the README, stopped as a user would: Ctrl-C."""

    running: list[Daemon] = []

    def __init__(self, command: str, cwd: str, env: dict[str, str] | None = None) -> None:
        self.command = command
        Daemon.running.append(self)
        self.process = subprocess.Popen(
            command, shell=True, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip

    def wait_for(self, url: str, context: Any = None, seconds: float = 60) -> bytes:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                fail(f"{self.command!r} exited early:\n{self.process.communicate()[0]}")
            try:
                return fetch(url, context)
            except OSError:
                time.sleep(0.2)
        self.stop()
        fail(f"{self.command!r} never answered {url}")
        raise AssertionError  # unreachable

    @classmethod
    def kill_all(cls) -> None:
        """After a failed step: nothing this script started outlives it."""
        for daemon in cls.running:
            if daemon.process.poll() is None:
                os.killpg(daemon.process.pid, signal.SIGKILL)
                daemon.process.communicate()

    def stop(self) -> str:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            output, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            output, _ = self.process.communicate()
            fail(f"{self.command!r} did not stop on Ctrl-C within 30 s:\n{output}")
        if "Traceback" in output:
            fail(f"{self.command!r} logged a traceback:\n{output}")
        return output


def refused(
    command: str, cwd: str, expected: str, port: int | None = None, hint: bool | None = None
) -> None:
    """A mistake: one line naming it, a non-zero exit, nothing new on disk or on the port;
    with C{hint} given, whether that line points at --help (for options mistyped, not for a
    file's content)."""
    before = sorted(os.listdir(cwd))
    result = shell(command, cwd, timeout=60)
    output = result.stdout + result.stderr
    if result.returncode == 0:
        fail(f"{command!r} exited 0:\n{output}")
    if expected not in output:
        fail(f"{command!r} did not say {expected!r}:\n{output}")
    if len(output.strip().splitlines()) != 1:
        fail(f"{command!r} said more than one line:\n{output}")
    if hint is not None and (HELP_HINT in output) != hint:
        fail(f"{command!r} {'did not point' if hint else 'pointed'} at --help:\n{output}")
    if "Traceback" in output:
        fail(f"{command!r} printed a traceback:\n{output}")
    if sorted(os.listdir(cwd)) != before:
        fail(f"{command!r} left files behind: {sorted(set(os.listdir(cwd)) - set(before))}")
    if port is not None and listening(port):
        fail(f"{command!r} left port {port} listening")
    print(f"   refused as it should: {expected}")


def self_signed(venv_python: str, cwd: str) -> None:
    """key.pem and cert.pem for 127.0.0.1, made with the venv's own cryptography."""
    code = (
        "import datetime, ipaddress\n"
        "from cryptography import x509\n"
        "from cryptography.hazmat.primitives import hashes, serialization\n"
        "from cryptography.hazmat.primitives.asymmetric import ec\n"
        "from cryptography.x509.oid import NameOID\n"
        "key = ec.generate_private_key(ec.SECP256R1())\n"
        "name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, '127.0.0.1')])\n"
        "now = datetime.datetime.now(datetime.timezone.utc)\n"
        "cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)\n"
        "    .public_key(key.public_key()).serial_number(x509.random_serial_number())\n"
        "    .not_valid_before(now - datetime.timedelta(minutes=5))\n"
        "    .not_valid_after(now + datetime.timedelta(days=1))\n"
        "    .add_extension(x509.SubjectAlternativeName(\n"
        "        [x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]), critical=False)\n"
        "    .sign(key, hashes.SHA256()))\n"
        "open('key.pem', 'wb').write(key.private_bytes(serialization.Encoding.PEM,\n"
        "    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))\n"
        "open('cert.pem', 'wb').write(cert.public_bytes(serialization.Encoding.PEM))\n"
    )
    result = subprocess.run([venv_python, "-c", code], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"could not make a test certificate:\n{result.stderr}")


def main() -> None:
    home = tempfile.mkdtemp(prefix="tracker-first-contact-")
    try:
        walk(os.path.join(home, "tracker"))
    finally:
        Daemon.kill_all()
        shutil.rmtree(home, ignore_errors=True)
    print("first contact: every step as the README says")


def walk(copy: str) -> None:
    shutil.copytree(REPOSITORY, copy, ignore=lambda _, names: [n for n in names if n in SKIP])
    if listening(6969):
        fail("port 6969 is already in use on this machine; the quick start needs it")

    step("quick start: install and start on the embedded default")
    daemon = Daemon(QUICK_START, copy)
    body = daemon.wait_for("http://127.0.0.1:6969" + ANNOUNCE, seconds=300)
    if not body.startswith(b"d") or b"interval" not in body:
        fail(f"the quick-start announce was not a tracker reply: {body!r}")
    scrape = fetch("http://127.0.0.1:6969/scrape?info_hash=aaaaaaaaaaaaaaaaaaaa")
    if b"files" not in scrape:
        fail(f"the quick-start scrape was not a scrape reply: {scrape!r}")
    if not os.path.exists(os.path.join(copy, "tracker.sqlite3")):
        fail("the quick start did not create tracker.sqlite3 in the current directory")
    page = fetch("http://127.0.0.1:6969/stats")
    if b"Tracker statistics" not in page or b"<svg" not in page:
        fail(f"the quick start's /stats is not the statistics page: {page[:200]!r}")
    if b"tracker_requests_total" not in fetch("http://127.0.0.1:6969/metrics"):
        fail("the quick start's /metrics has no tracker_requests_total")

    step("mistakes, while the quick-start tracker holds port 6969")
    twistd = ".venv/bin/twistd --pidfile= -n tracker"
    refused(f"{twistd} --database tracker.sqlite3", copy,
            "cannot use the database 'tracker.sqlite3': another tracker (pid", port=None,
            hint=False)  # fmt: skip
    refused(f"{twistd} --database other.sqlite3", copy, "address already in use", port=None)
    refused(f"{twistd} --database nowhere/x.sqlite3 --listen tcp:6971", copy,
            "cannot use the database 'nowhere/x.sqlite3'", port=6971, hint=False)  # fmt: skip
    refused(f"{twistd} --listen tcp:notaport", copy, "--listen tcp:notaport: not a valid endpoint",
            hint=True)  # fmt: skip
    refused(f"{twistd} --listen ssl:6972:privateKey=key.pem:certKey=cert.pem", copy,
            "TLS needs pyOpenSSL: run pip install '.[tls]'", port=6972, hint=False)  # fmt: skip
    refused(".venv/bin/python examples/embedded_site.py 6969 tracker.sqlite3", copy,
            "cannot listen on port 6969", port=None)  # fmt: skip
    output = daemon.stop()
    if "tracker listening on" not in output or "open, serving" not in output:
        fail(f"the quick start never said where it listens and which database:\n{output}")
    reach = "IPv4 and IPv6" if has_ipv6() else "IPv4"
    line = f"tracker listening on http://{socket.gethostname()}:6969/announce (every {reach}"
    if line not in output:
        fail(f"the quick start did not say {line!r}:\n{output}")
    if listening(6969):
        fail("port 6969 still listening after Ctrl-C")

    step("the README's commands from the repository's folder, without activating the venv")
    for command in (
        ".venv/bin/twistd tracker --help",
        ".venv/bin/python -m twisted tracker --help",
    ):
        result = shell(command, copy, timeout=120)
        if result.returncode != 0 or "--admin-token-file" not in result.stdout:
            fail(f"{command!r} did not list the options:\n{result.stdout}{result.stderr}")

    step("a torrent with both announce URLs, made as the README makes it")
    result = shell(MAKE_TORRENT, copy, timeout=60)
    torrent = os.path.join(copy, "release.torrent")
    if result.returncode != 0 or not os.path.exists(torrent):
        fail(f"{MAKE_TORRENT!r} made no torrent:\n{result.stdout}{result.stderr}")
    with open(torrent, "rb") as f:
        metainfo = f.read()
    for url in (
        b"http://tracker.example.org:6969/announce",
        b"udp://tracker.example.org:6969/announce",
    ):
        if url not in metainfo:
            fail(f"release.torrent does not announce to {url.decode()}")

    step("settings through TRACKER_OPTIONS, as the README gives them")
    daemon = Daemon(SETTINGS, copy)
    reply = daemon.wait_for("http://127.0.0.1:8080" + ANNOUNCE)
    interval = re.search(rb"8:intervali(\d+)e", reply)
    # Each reply jitters the interval by up to 5 % (README's settings table).
    if interval is None or not 855 <= int(interval.group(1)) <= 945:
        fail(f"TRACKER_OPTIONS' --interval 900 was not in force: {reply!r}")
    daemon.stop()

    step("a UDP port taken beside a free TCP one: refused before anything says it listens")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 6975))
        refused(f"{twistd} --listen tcp:6975:interface=127.0.0.1", copy,
                "cannot listen on udp:6975:interface=127.0.0.1: address already in use",
                port=6975)  # fmt: skip

    step("TLS: the tls extra, then an announce over HTTPS")
    result = shell(".venv/bin/pip install --quiet '.[tls]'", copy)
    if result.returncode != 0:
        fail(f"pip install '.[tls]' failed:\n{result.stdout}{result.stderr}")
    self_signed(os.path.join(copy, ".venv", "bin", "python"), copy)
    daemon = Daemon(
        f"{twistd} --listen ssl:6973:interface=127.0.0.1:privateKey=key.pem:certKey=cert.pem",
        copy,
    )
    context = ssl.create_default_context(cafile=os.path.join(copy, "cert.pem"))
    body = daemon.wait_for("https://127.0.0.1:6973" + ANNOUNCE, context)
    if b"interval" not in body:
        fail(f"the HTTPS announce was not a tracker reply: {body!r}")
    output = daemon.stop()
    if "https://127.0.0.1:6973/announce" not in output:
        fail(f"the TLS tracker did not log its https URL:\n{output}")

    step("private mode and the admin API, as the README starts them")
    result = shell(TOKEN_COMMAND, copy)
    if result.returncode != 0:
        fail(f"making the admin token failed:\n{result.stdout}{result.stderr}")
    refused(f"{twistd} --admin-listen tcp:6974", copy,
            "--admin-listen needs --admin-token-file FILE", port=6974, hint=True)  # fmt: skip
    refused(f"{twistd} --private --listen tcp:6974", copy,
            "--private needs --admin-token-file FILE", port=6974, hint=True)  # fmt: skip
    refused(f"{twistd} --private --admin-token-file no.token --listen tcp:6974", copy,
            "--admin-token-file no.token: cannot read it", port=6974, hint=False)  # fmt: skip
    daemon = Daemon(PRIVATE, copy)
    body = daemon.wait_for("http://127.0.0.1:6969" + ANNOUNCE)
    if b"this tracker is private" not in body:
        fail(f"the private tracker's bare /announce did not say it is private: {body!r}")
    created = add_passkey(copy)
    body = fetch(f"http://127.0.0.1:6969/{created['passkey']}" + ANNOUNCE)
    if b"interval" not in body:
        fail(f"the announce with the passkey the admin API made was refused: {body!r}")
    step("an online backup while the tracker runs, as the README takes it")
    result = shell(BACKUP, copy, timeout=60)
    if result.returncode != 0:
        fail(f"{BACKUP!r} failed:\n{result.stdout}{result.stderr}")
    backup = sqlite3.connect(os.path.join(copy, "tracker-backup.sqlite3"))
    try:
        passkeys = backup.execute("SELECT count(*) FROM passkeys").fetchall()[0][0]
    finally:
        backup.close()
    if passkeys != 1:
        fail(f"the backup holds {passkeys} passkeys, not the one just made")
    output = daemon.stop()
    if "admin API listening on http://127.0.0.1:6970/" not in output:
        fail(f"the admin API did not say where it listens:\n{output}")
    # The quick start's public run stored a peer in the same database.
    if "was last used by a public tracker: its stored peers (1) are forgotten" not in output:
        fail(f"the private tracker did not say it forgot the public run's peers:\n{output}")

    step("embedding: the example, as the README runs it")
    daemon = Daemon(".venv/bin/python examples/embedded_site.py 8080 tracker.sqlite3", copy)
    body = daemon.wait_for("http://127.0.0.1:8080/tracker" + ANNOUNCE)
    if b"interval" not in body:
        fail(f"the embedded announce was not a tracker reply: {body!r}")
    if b"use /tracker/announce" not in fetch("http://127.0.0.1:8080/tracker/nothing"):
        fail("the embedded tracker's 404 does not name its mount point")
    output = daemon.stop()
    if "tracker listening on http://127.0.0.1:8080/tracker/announce" not in output:
        fail(f"the example did not say where it listens:\n{output}")

    step("many nodes: the Redis the README names, a server of this walk's own on its port")
    if listening(6379):
        fail("port 6379 is already in use on this machine; the Many nodes step needs it")
    redis = subprocess.Popen(
        ["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", "", "--dir", copy],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        daemon = Daemon(REDIS, copy)
        body = daemon.wait_for("http://127.0.0.1:6969" + ANNOUNCE, seconds=300)
        if b"interval" not in body:
            fail(f"the tracker on Redis did not answer an announce: {body!r}")
        output = daemon.stop()
        if "Redis at 127.0.0.1:6379 database 0 open, serving" not in output:
            fail(f"the tracker on Redis did not say where its swarms are:\n{output}")
        step("many nodes: the README's one daemon per core, twice, on one port")
        nodes = [Daemon(REUSE_PORT, copy), Daemon(REUSE_PORT, copy)]
        for node in nodes:
            node.wait_for("http://127.0.0.1:6969" + ANNOUNCE, seconds=120)
        # Both hold the port: new connections reach either, and see the one swarm.
        body = b""
        for _ in range(20):
            body = fetch("http://127.0.0.1:6969/scrape?info_hash=aaaaaaaaaaaaaaaaaaaa")
            if b"completei1e" not in body:
                fail(f"a daemon sharing the port does not see the shared swarm: {body!r}")
        for node in nodes:
            output = node.stop()
            if "http://" not in output or "Traceback" in output:
                fail(f"a daemon sharing the port did not start and stop cleanly:\n{output}")
    finally:
        redis.terminate()
        redis.wait(timeout=30)

    step("PyPy, as docs/performance.md runs it")
    if shutil.which("pypy3") is None:
        if os.environ.get("CI"):
            fail("pypy3 is not installed; CI installs it")
        print("   pypy3 is not installed here: not run")
    else:
        daemon = Daemon(PYPY, copy)
        daemon.wait_for("http://127.0.0.1:6969" + ANNOUNCE, seconds=600)
        if "on PyPy" not in daemon.stop():
            fail("the PyPy tracker did not say it runs on PyPy")

    expected = {"tracker.sqlite3", "key.pem", "cert.pem", ".venv", ".venv-pypy", "build"}
    expected |= {"admin.token", "release.torrent", "tracker-backup.sqlite3"}
    stray = set(os.listdir(copy)) - set(os.listdir(REPOSITORY)) - expected
    stray = {name for name in stray if not name.startswith("tracker.sqlite3")}
    if stray:
        fail(f"files left behind in the working folder: {sorted(stray)}")


if __name__ == "__main__":
    main()
