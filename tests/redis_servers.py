"""
Redis servers the tests start themselves: Debian's C{redis-server} on free loopback ports, each
in a fresh temporary folder, never the system's service. One single server and one 3-primary
cluster are shared by the whole run (a cluster takes about 3 seconds to form) and emptied
before each test; tests that stop or kill a server start their own.

Under CI (the C{CI} environment variable set) a missing C{redis-server} fails the tests that
need it; elsewhere they are skipped, saying why.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

from twisted.trial.unittest import SkipTest

from tests.helpers import certificate

HOST = "127.0.0.1"
_STARTED: dict[str, Any] = {}


def require_redis() -> None:
    """Skip (or, under CI, fail) a test when redis-server or redis-py is not installed."""
    missing = []
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        missing.append("redis-server and redis-cli (apt-get install redis-server redis-tools)")
    try:
        import redis  # noqa: F401
    except ImportError:
        missing.append("redis-py (pip install '.[redis]')")
    if not missing:
        return
    message = "the Redis tests need " + " and ".join(missing)
    if os.environ.get("CI"):
        raise AssertionError(message + ": CI must run them")
    raise SkipTest(message + "; SKIPPED")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(with_bus: bool = False) -> int:
    """A free port; with C{with_bus}, one whose cluster bus (port + 10000) is free too."""
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if not with_bus:
            return port
        if port + 10000 < 65536 and _port_free(port + 10000):
            return port


class RedisServer:
    """One redis-server process on 127.0.0.1, in a folder of its own."""

    def __init__(
        self,
        cluster: bool = False,
        password: str | None = None,
        appendonly: bool = False,
        tls: bool = False,
    ) -> None:
        self.directory = tempfile.mkdtemp(prefix="tracker-redis-")
        self.port = free_port(with_bus=cluster)
        self.cluster = cluster
        self.password = password
        self.appendonly = appendonly
        #: With C{tls}, a second port that speaks TLS, under a certificate of its own.
        self.tls_port = free_port() if tls else None
        self.certificate = ""
        #: Its Unix socket, in its folder.
        self.socket = os.path.join(self.directory, "redis.sock")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    @property
    def tls_url(self) -> str:
        """Its TLS port's URL, which trusts its certificate."""
        auth = f":{self.password}@" if self.password else ""
        return f"rediss://{auth}{HOST}:{self.tls_port}/0?ssl_ca_certs={self.certificate}"

    @property
    def socket_url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"unix://{auth}{self.socket}?db=0"

    def start(self) -> RedisServer:
        command = [
            "redis-server", "--port", str(self.port), "--bind", HOST, "--dir", self.directory,
            "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning",
            "--logfile", os.path.join(self.directory, "redis.log"),
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        if not self.cluster:
            command += ["--unixsocket", self.socket]
        if self.tls_port is not None:
            key, self.certificate = certificate(self.directory)
            command += [
                "--tls-port", str(self.tls_port), "--tls-cert-file", self.certificate,
                "--tls-key-file", key, "--tls-ca-cert-file", self.certificate,
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        if self.cluster:
            command += [
                "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                # Replicas in sync at once, not after Redis's default 5 seconds' wait.
                "--repl-diskless-sync-delay", "0",
                "--cluster-config-file", os.path.join(self.directory, "nodes.conf"),
            ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.wait_until_up()
        return self

    def cli(self, *args: str, timeout: float = 10) -> str:
        command = ["redis-cli", "-h", HOST, "-p", str(self.port)]
        if self.password:
            command += ["--no-auth-warning", "-a", self.password]
        done = subprocess.run(
            command + list(args), capture_output=True, timeout=timeout, check=True
        )
        return done.stdout.decode()

    def wait_until_up(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log()}")
            try:
                if "PONG" in self.cli("PING", timeout=2):
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            with open(os.path.join(self.directory, "redis.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (SIGTERM) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(15)

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, True)

    def flush(self) -> None:
        self.cli("FLUSHALL")


class RedisCluster:
    """Three redis-server primaries joined by C{redis-cli --cluster create}, and as many
    replicas per primary as asked (none by default)."""

    def __init__(self, primaries: int = 3, replicas: int = 0) -> None:
        self.replicas = replicas
        self.nodes = [RedisServer(cluster=True) for _ in range(primaries * (1 + replicas))]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"{HOST}:{node.port}" for node in self.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas",
             str(self.replicas), "--cluster-yes"],
            capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not all(self._ready(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis cluster did not come up")
            time.sleep(0.1)
        return self

    @staticmethod
    def _ready(node: RedisServer) -> bool:
        """In a cluster that is ok, and, if a replica, in sync with its primary (a replica
        that never was cannot take over)."""
        if "cluster_state:ok" not in node.cli("CLUSTER", "INFO"):
            return False
        replication = node.cli("INFO", "replication")
        return "role:slave" not in replication or "master_link_status:up" in replication

    def flush(self) -> None:
        for node in self.nodes:
            if "role:master" in node.cli("INFO", "replication"):
                node.flush()

    def primary_of(self, key: bytes) -> RedisServer:
        """The node that serves C{key}'s slot now."""
        slot = int(self.nodes[0].cli("CLUSTER", "KEYSLOT", key.decode()).strip())
        for line in self.nodes[0].cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for part in fields[8:]:
                first, _, last = part.partition("-")
                if int(first) <= slot <= int(last or first):
                    port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                    return next(node for node in self.nodes if node.port == port)
        raise RuntimeError(f"no primary serves slot {slot}")

    def destroy(self) -> None:
        for node in self.nodes:
            node.destroy()


def shared_server() -> RedisServer:
    """The run's single Redis, started on first use and emptied for each caller."""
    require_redis()
    server = _STARTED.get("single")
    if server is None:
        server = RedisServer()
        try:
            server.start()
        except BaseException:
            server.destroy()
            raise
        _STARTED["single"] = server
        atexit.register(server.destroy)
    server.flush()
    return server  # type: ignore[no-any-return]


def shared_cluster() -> RedisCluster:
    """The run's 3-primary cluster, started on first use and emptied for each caller."""
    require_redis()
    cluster = _STARTED.get("cluster")
    if cluster is None:
        cluster = RedisCluster()
        try:
            cluster.start()
        except BaseException:
            cluster.destroy()
            raise
        _STARTED["cluster"] = cluster
        atexit.register(cluster.destroy)
    cluster.flush()
    return cluster  # type: ignore[no-any-return]
