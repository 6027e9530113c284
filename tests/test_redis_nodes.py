"""
Several tracker daemons (C{twistd tracker --redis URL}, real processes on 127.0.0.1) sharing
their swarms through one Redis or one Redis Cluster that the tests start themselves.
"""

from __future__ import annotations

import json
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

from twisted.trial.unittest import TestCase

from tests.helpers import info_hash, peer_id
from tests.realclients.procs import free_port
from tests.redis_servers import RedisServer, require_redis, shared_cluster, shared_server
from tests.test_udp import Client, announce_packet, error_message, parse_announce_reply
from tests.test_websocket import announce as browser_announce
from tests.test_websocket import answer, ih, oid, pid
from tests.wsclient import WebSocketClient
from tracker.core.bencode import bdecode
from tracker.udp.connection_ids import WINDOW

HOST = "127.0.0.1"
#: The issue's bound on an answer while Redis is down.
ANSWER_WITHIN = 3.0


class Node:
    """One tracker daemon on Redis, HTTP and UDP on one port of 127.0.0.1."""

    def __init__(self, url: str, *extra: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="tracker-node-")
        self.port = free_port(HOST)
        self.log_path = os.path.join(self.directory, "twistd.log")
        command = [
            sys.executable, "-m", "twisted", "--log-format=text", "tracker",
            "--listen", f"tcp:{self.port}:interface={HOST}", "--redis", url,
            "--database", os.path.join(self.directory, "unused.sqlite3"), *extra,
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_until_serving(self, timeout: float = 60) -> Node:
        deadline = time.monotonic() + timeout
        while "open, serving" not in self.log():
            if self.process.poll() is not None:
                raise AssertionError(f"the tracker exited: {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the tracker did not start: {self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def get(self, target: str) -> tuple[int, dict[bytes, Any]]:
        return get(self.port, target)

    def announce(self, peer: int, torrent: int = 1, **params: Any) -> dict[bytes, Any]:
        status, body = self.get(announce_target(peer, torrent, **params))
        assert status == 200
        return body

    def scrape(self, *torrents: int) -> dict[bytes, Any]:
        query = "&".join(f"info_hash={quote_from_bytes(info_hash(t))}" for t in torrents)
        status, body = self.get(f"/scrape?{query}")
        assert status == 200
        return body

    def udp(self) -> Client:
        return Client(HOST, self.port)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.directory, True)


def get(port: int, target: str) -> tuple[int, dict[bytes, Any]]:
    """A bencoded answer from the HTTP port C{port}, over a connection of its own."""
    with urllib.request.urlopen(f"http://{HOST}:{port}{target}", timeout=10) as reply:
        body = bdecode(reply.read())
        assert isinstance(body, dict)
        return reply.status, body


def announce_target(peer: int, torrent: int = 1, **params: Any) -> str:
    query = {
        "info_hash": quote_from_bytes(info_hash(torrent)),
        "peer_id": quote_from_bytes(peer_id(peer)),
        "port": str(10000 + peer),
        "left": "100",
        "compact": "1",
    }
    query.update({name: str(value) for name, value in params.items()})
    return "/announce?" + "&".join(f"{name}={value}" for name, value in query.items())


def ports(peers: bytes) -> set[int]:
    """The ports of a compact IPv4 peer list."""
    return {int.from_bytes(peers[k + 4 : k + 6], "big") for k in range(0, len(peers), 6)}


class NodesTestCase(TestCase):
    timeout = 120

    def nodes(self, url: str, count: int, *extra: str) -> list[Node]:
        started = [Node(url, *extra) for _ in range(count)]
        for node in started:
            self.addCleanup(node.stop)
        for node in started:
            node.wait_until_serving()
        return started

    def until(self, check: Any, seconds: float = 15) -> Any:
        """C{check()}'s value once it is true, asking every 0.2 s for C{seconds} at most."""
        deadline = time.monotonic() + seconds
        while True:
            value = check()
            if value:
                return value
            self.assertLess(time.monotonic(), deadline, "not within the time allowed")
            time.sleep(0.2)

    def stats(self, node: Node) -> Any:
        with urllib.request.urlopen(f"http://{HOST}:{node.port}/stats.json", timeout=10) as reply:
            return json.loads(reply.read())


class RefusedStartTests(NodesTestCase):
    def test_unreachable_redis_or_wrong_password_refuses_to_start(self) -> None:
        """A Redis that cannot be reached, or that refuses the password, ends the start with
        one line naming the URL (not the password) and the reason, a non-zero exit, and
        nothing listening."""
        require_redis()
        server = RedisServer(password="right-password").start()
        self.addCleanup(server.destroy)
        closed = free_port(HOST)
        for url, shown, reason in [
            (
                f"redis://{HOST}:{closed}/0",
                f"redis://{HOST}:{closed}/0",
                "Connection refused",
            ),
            (
                f"redis://:wrong-password@{HOST}:{server.port}/0",
                f"redis://***@{HOST}:{server.port}/0",
                "refused the password",
            ),
        ]:
            port = free_port(HOST)
            directory = tempfile.mkdtemp(prefix="tracker-refused-")
            self.addCleanup(shutil.rmtree, directory, True)
            result = subprocess.run(
                [sys.executable, "-m", "twisted", "tracker", "--redis", url,
                 "--listen", f"tcp:{port}:interface={HOST}"],
                cwd=directory, capture_output=True, timeout=60,
            )  # fmt: skip
            output = (result.stdout + result.stderr).decode(errors="replace")
            self.assertNotEqual(result.returncode, 0, output)
            self.assertEqual(len(output.strip().splitlines()), 1, output)
            self.assertIn(f"cannot use Redis at {shown}: ", output)
            self.assertIn(reason, output)
            self.assertNotIn("wrong-password", output)
            with socket.socket() as sock:
                self.assertNotEqual(sock.connect_ex((HOST, port)), 0)
            self.assertEqual(os.listdir(directory), [])


class UrlFormsTests(NodesTestCase):
    def test_password_tls_and_unix_socket(self) -> None:
        """Daemons given one Redis by each form of URL, with its password: redis://, rediss://
        (TLS, trusting the server's certificate) and unix:// (its socket), say where their
        swarms are and serve the same ones."""
        require_redis()
        server = RedisServer(password="pass-word", tls=True).start()
        self.addCleanup(server.destroy)
        urls = [server.url, server.tls_url, server.socket_url]
        nodes = self.nodes(urls[0], 1) + self.nodes(urls[1], 1) + self.nodes(urls[2], 1)
        shown = [
            f"Redis at {HOST}:{server.port} database 0 open, serving",
            f"Redis at {HOST}:{server.tls_port} over TLS database 0 open, serving",
            f"Redis at unix://{server.socket} database 0 open, serving",
        ]
        for peer, (node, line) in enumerate(zip(nodes, shown), 1):
            self.assertIn(line, node.log())
            self.assertNotIn("pass-word", node.log())
            node.announce(peer)
        for node in nodes:
            files = node.scrape(1)[b"files"]
            self.assertEqual(files[info_hash(1)][b"incomplete"], 3)


class TwoNodesTests(NodesTestCase):
    """Two daemons on one Redis."""

    def setUp(self) -> None:
        self.redis = shared_server()

    def test_one_swarm_over_http_and_udp(self) -> None:
        """A peer announcing over HTTP to one node and one announcing over UDP to the other
        are given each other."""
        first, second = self.nodes(self.redis.url, 2)
        first.announce(1)
        client = second.udp()
        self.addCleanup(client.close)
        reply = client.exchange(announce_packet(client.connect(), 2))
        _, leechers, seeders, peers = parse_announce_reply(reply)
        self.assertEqual((leechers, seeders), (2, 0))
        self.assertEqual([p[4:] for p in peers], [(10001).to_bytes(2, "big")])
        again = first.announce(1)
        self.assertEqual(ports(again[b"peers"]), {10002})

    def test_udp_connection_id_from_one_node_works_at_the_other(self) -> None:
        """A client that connected to one node announces to the other with that connection
        ID (clients go round the nodes by DNS) and is answered, not told to connect again."""
        first, second = self.nodes(self.redis.url, 2)
        to_first, to_second = first.udp(), second.udp()
        self.addCleanup(to_first.close)
        self.addCleanup(to_second.close)
        # The nodes fetch the shared secrets once Redis is open: within a second or so.
        deadline = time.monotonic() + 10
        while True:
            reply = to_second.exchange(announce_packet(to_first.connect(), 1))
            if reply[:4] == b"\x00\x00\x00\x01":
                break
            self.assertLess(time.monotonic(), deadline, error_message(reply))
            time.sleep(0.2)
        _, leechers, _, _ = parse_announce_reply(reply)
        self.assertEqual(leechers, 1)
        reply = to_first.exchange(announce_packet(to_second.connect(), 1))
        self.assertEqual(parse_announce_reply(reply)[1], 1)

    def test_completion_counted_once_across_nodes(self) -> None:
        """A peer that reports its completion to one node and again to the other is counted
        once, and both nodes scrape the same count."""
        first, second = self.nodes(self.redis.url, 2)
        first.announce(1, event="started")
        first.announce(1, left=0, event="completed")
        second.announce(1, left=0, event="completed")
        for node in (first, second):
            entry = node.scrape(1)[b"files"][info_hash(1)]
            self.assertEqual((entry[b"complete"], entry[b"downloaded"]), (1, 1))

    def test_killed_node_loses_nothing(self) -> None:
        """kill -9 of a node loses none of what its peers announced: the other node serves
        them."""
        first, second = self.nodes(self.redis.url, 2)
        for peer in range(1, 6):
            first.announce(peer, left=peer % 2, event="completed")
        first.kill()
        body = second.announce(99)
        self.assertEqual(ports(body[b"peers"]), {10001, 10002, 10003, 10004, 10005})
        self.assertEqual((body[b"complete"], body[b"incomplete"]), (2, 4))
        self.assertEqual(second.scrape(1)[b"files"][info_hash(1)][b"downloaded"], 2)


def answered(node: Node, protocol: str) -> int:
    """The announces C{node} has answered ok over C{protocol}, from its /stats.json on its own
    port (one the other daemons do not share)."""
    with urllib.request.urlopen(f"http://{HOST}:{node.port}/stats.json", timeout=10) as reply:
        stats = json.loads(reply.read())
    return int(stats["requests"][protocol]["announce"]["ok"])


def clear_of_window_turn() -> None:
    """Return once the UDP connection IDs' window is not about to turn. Past a turn, a daemon
    makes a secret of its own at its next datagram and adopts the one Redis kept when Redis
    answers: an ID it issued meanwhile is refused afterwards (the client connects again, as
    BEP 15 allows), which would upset these tests' counts."""
    left = WINDOW - time.time() % WINDOW
    if left < 10:
        time.sleep(left + 1)


class SharedPortTests(NodesTestCase):
    """
    Two daemons on one machine sharing one HTTP and one UDP port (C{--reuse-port}) and one
    Redis, as the instances of contrib/systemd/tracker@.service do. Each also listens on a port
    of its own, where its /stats.json tells what it answered itself.
    """

    def shared(self) -> tuple[int, list[Node]]:
        """The shared port, and the two daemons listening on it."""
        redis = shared_server()
        port = free_port(HOST)
        listen = f"tcp:{port}:interface={HOST}"
        started = self.nodes(redis.url, 2, "--reuse-port", "--listen", listen)
        for node in started:
            log = node.log()
            self.assertIn(f"tracker listening on http://{HOST}:{port}/announce", log)
            self.assertIn(f"tracker listening on udp://{HOST}:{port}/announce", log)
        return port, started

    def spread(self, nodes: list[Node], protocol: str, before: list[int]) -> list[int]:
        """The announces each node answered over C{protocol} since C{before}."""
        return [answered(node, protocol) - then for node, then in zip(nodes, before)]

    def test_http_connections_spread_over_one_swarm(self) -> None:
        """Announces on new connections to the shared port are answered by both daemons, and
        from one swarm: each answer counts every peer announced so far, whichever daemon
        answered it, and a last announce is given all of them."""
        port, nodes = self.shared()
        before = [answered(node, "http") for node in nodes]
        fresh = 40
        for peer in range(1, fresh + 1):
            status, body = get(port, announce_target(peer, left=peer % 2))
            self.assertEqual(status, 200)
            seeders = peer // 2
            self.assertEqual((body[b"complete"], body[b"incomplete"]), (seeders, peer - seeders))
        spread = self.spread(nodes, "http", before)
        self.assertEqual(sum(spread), fresh)
        self.assertNotIn(0, spread)
        _, body = get(port, announce_target(99))
        self.assertEqual(ports(body[b"peers"]), {10000 + peer for peer in range(1, fresh + 1)})
        self.assertEqual((body[b"complete"], body[b"incomplete"]), (fresh // 2, fresh // 2 + 1))

    def test_udp_clients_spread_with_ids_good_at_both(self) -> None:
        """UDP clients on sockets of their own connect and announce through the shared port,
        each answered by one daemon or the other, all with the one ID both daemons issue to
        their address, into one swarm, the one HTTP sees."""
        port, nodes = self.shared()
        clear_of_window_turn()
        # Each daemon adopts the secret Redis keeps once it has read it: within a second or so
        # of its start, or of its first datagram past a turn of the window.
        own = [node.udp() for node in nodes]
        for client in own:
            self.addCleanup(client.close)
        deadline = time.monotonic() + 10
        while own[0].connect() != own[1].connect():
            self.assertLess(time.monotonic(), deadline, "the daemons issue different IDs")
            time.sleep(0.2)
        before = [answered(node, "udp") for node in nodes]
        clients = [Client(HOST, port) for _ in range(20)]
        for client in clients:
            self.addCleanup(client.close)
        for k, client in enumerate(clients, 1):
            connection = client.connect()
            reply = client.exchange(announce_packet(connection, k, left=0))
            self.assertEqual(reply[:4], b"\x00\x00\x00\x01", reply)
            _, leechers, seeders, _ = parse_announce_reply(reply)
            self.assertEqual((leechers, seeders), (0, k))
        self.assertEqual({client.connect() for client in clients}, {own[0].connect()})
        spread = self.spread(nodes, "udp", before)
        self.assertEqual(sum(spread), len(clients))
        self.assertNotIn(0, spread)
        _, body = get(port, f"/scrape?info_hash={quote_from_bytes(info_hash(1))}")
        self.assertEqual(body[b"files"][info_hash(1)][b"complete"], len(clients))

    def test_port_serves_on_when_one_daemon_stops(self) -> None:
        """Once one daemon has stopped (SIGTERM), every new connection and every UDP client on
        the shared port is answered by the other, in the same swarm."""
        port, (first, second) = self.shared()
        for peer in range(1, 11):
            get(port, announce_target(peer))
        first.process.send_signal(signal.SIGTERM)
        self.assertIn(first.process.wait(30), (0, -signal.SIGTERM), first.log())
        self.assertNotIn("Traceback", first.log())
        before = [answered(second, protocol) for protocol in ("http", "udp")]
        for peer in range(11, 31):
            status, body = get(port, announce_target(peer))
            self.assertEqual((status, body[b"incomplete"]), (200, peer))
        for peer in range(31, 41):
            client = Client(HOST, port)
            self.addCleanup(client.close)
            reply = client.exchange(announce_packet(client.connect(), peer))
            self.assertEqual(parse_announce_reply(reply)[1], peer)
        after = [answered(second, protocol) for protocol in ("http", "udp")]
        self.assertEqual([a - b for a, b in zip(after, before)], [20, 10])


class SharedStatsTests(NodesTestCase):
    def test_stats_count_every_node_swarms(self) -> None:
        """Each node's /stats.json shows the swarms of every node, as one node's sweep counted
        them, and its /metrics the round trips to Redis."""
        redis = shared_server()
        first, second = self.nodes(redis.url, 2, "--expire-every", "1")
        first.announce(1, 1, left=0, event="completed")
        second.announce(2, 1)
        second.announce(3, 2)
        expected = {"torrents": 2, "peers": 3, "seeders": 1, "leechers": 2, "downloaded": 1}
        deadline = time.monotonic() + 30
        for node in (first, second):
            while True:
                with urllib.request.urlopen(f"http://{HOST}:{node.port}/stats.json") as reply:
                    stats = json.loads(reply.read())
                if {name: stats[name] for name in expected} == expected:
                    break
                self.assertLess(time.monotonic(), deadline, stats)
                time.sleep(0.5)
            self.assertEqual(
                stats["top_torrents"][0],
                {"info_hash": info_hash(1).hex(), "peers": 2, "seeders": 1, "leechers": 1,
                 "downloaded": 1},
            )  # fmt: skip
            with urllib.request.urlopen(f"http://{HOST}:{node.port}/metrics") as reply:
                metrics = reply.read().decode()
            self.assertIn("tracker_redis_roundtrip_seconds_count", metrics)
            self.assertIn("tracker_redis_errors_total 0.0", metrics)


class BrowsersTests(NodesTestCase):
    """Browsers (WebSocket peers) at nodes on one Redis: they meet the browsers of their own
    node, and are counted with the peers Redis holds."""

    def browser(self, node: Node) -> WebSocketClient:
        client = WebSocketClient(HOST, node.port)
        self.addCleanup(client.close)
        return client

    def test_browsers_at_a_node_on_redis(self) -> None:
        """Two browsers at one node exchange an offer and its answer; the node's announce and
        scrape replies, and its full scrape, count them with an HTTP peer kept in Redis; a
        browser's completion goes to Redis, counted once, and the other node scrapes it (and
        none of the first node's browsers); the first node's /stats.json shows its browsers."""
        redis = shared_server()
        first, second = self.nodes(redis.url, 2, "--full-scrape", "--expire-every", "1")
        a, b = self.browser(first), self.browser(first)
        a.send(browser_announce(1))
        self.assertEqual(a.receive()["incomplete"], 1)
        b.send(browser_announce(2, offers=1, first_offer=5))
        self.assertEqual((b.receive()["incomplete"]), 2)
        offer = a.receive()
        self.assertEqual((offer["peer_id"], offer["offer_id"]), (pid(2), oid(5)))
        a.send(answer(1, to=2, offer=5))
        self.assertEqual(
            b.receive(),
            {
                "action": "announce",
                "info_hash": ih(1),
                "peer_id": pid(1),
                "offer_id": oid(5),
                "answer": {"type": "answer", "sdp": "v=0 answer to 5"},
            },
        )
        # An HTTP peer, kept in Redis: counted with the browsers, never given them.
        http = first.announce(3)
        self.assertEqual((http[b"complete"], http[b"incomplete"], http[b"peers"]), (0, 3, b""))
        self.assertEqual(
            first.scrape(1)[b"files"][info_hash(1)],
            {b"complete": 0, b"incomplete": 3, b"downloaded": 0},
        )
        # A torrent only a browser announces to, and a browser's completion, sent twice.
        a.send(browser_announce(1, torrent=9))
        a.send(browser_announce(1, left=0, event="completed"))
        a.send(browser_announce(1, left=0, event="completed"))
        replies = a.receive_all(3)
        self.assertEqual(
            [(r["complete"], r["incomplete"]) for r in replies], [(0, 1), (1, 2), (1, 2)]
        )
        at_second = {b"complete": 0, b"incomplete": 1, b"downloaded": 1}
        self.until(lambda: second.scrape(1)[b"files"][info_hash(1)] == at_second)
        self.assertEqual(
            first.scrape(1, 9)[b"files"],
            {
                info_hash(1): {b"complete": 1, b"incomplete": 2, b"downloaded": 1},
                info_hash(9): {b"complete": 0, b"incomplete": 1, b"downloaded": 0},
            },
        )
        for node, expected in [
            (first, {info_hash(1): (1, 2, 1), info_hash(9): (0, 1, 0)}),
            (second, {info_hash(1): (0, 1, 1)}),
        ]:
            status, body = node.get("/scrape")
            self.assertEqual(status, 200)
            files = body[b"files"]
            self.assertEqual(
                {h: (e[b"complete"], e[b"incomplete"], e[b"downloaded"]) for h, e in files.items()},
                expected,
            )
        # Redis's census (1 torrent, the HTTP leecher, 1 completion) and each node's browsers.
        figures = {"torrents": 1, "seeders": 1, "leechers": 3, "downloaded": 1, "browsers": 3}
        stats = self.stats_showing(first, figures)
        websocket = stats["websocket"]
        self.assertEqual((websocket["connections"], websocket["connections_opened"]), (2, 2))
        self.assertEqual(websocket["relayed"], {"offer": 1, "answer": 1})
        self.assertEqual(websocket["messages"]["announce"], 5)
        self.assertEqual(stats["requests"]["websocket"]["announce"]["ok"], 5)
        figures.update(seeders=0, leechers=1, browsers=0)
        self.assertEqual(self.stats_showing(second, figures)["websocket"]["connections"], 0)

    def stats_showing(self, node: Node, figures: dict[str, int]) -> Any:
        """The node's /stats.json once it shows C{figures} (C{browsers}: its WebSocket
        peers), which it does once it has read the census a node's sweep left in Redis."""

        def shown() -> Any:
            stats = self.stats(node)
            found = {name: stats[name] for name in figures if name != "browsers"}
            found["browsers"] = stats["websocket"]["peers"]
            return stats if found == figures else None

        return self.until(shown, 30)


ADMIN_TOKEN = "admin-token-0123456789abcdef"


class SharedAccessTests(NodesTestCase):
    """Access lists and passkeys in Redis: the admin API of one node changes them for all."""

    def admin_nodes(self, *extra: str) -> list[tuple[Node, int]]:
        redis = shared_server()
        directory = tempfile.mkdtemp(prefix="tracker-admin-")
        self.addCleanup(shutil.rmtree, directory, True)
        token = os.path.join(directory, "token")
        with open(token, "w") as f:
            f.write(ADMIN_TOKEN)
        nodes = []
        for _ in range(2):
            admin = free_port(HOST)
            argv = [
                *extra,
                "--admin-token-file",
                token,
                "--admin-listen",
                f"tcp:{admin}:interface={HOST}",
            ]
            nodes.append(argv)
        started = [(Node(redis.url, *argv), int(argv[-1].split(":")[1])) for argv in nodes]
        for node, _ in started:
            self.addCleanup(node.stop)
        for node, _ in started:
            node.wait_until_serving()
        return started

    def admin(self, port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        from tests.test_admin import call

        deadline = time.monotonic() + 30
        while True:
            status, reply = call(port, method, path, body, ADMIN_TOKEN.encode())
            # 503 while the stored lists and passkeys are still being read, as documented.
            if status != 503 or time.monotonic() > deadline:
                return status, reply
            time.sleep(0.1)

    def test_whitelist_changed_through_one_node_serves_at_the_other(self) -> None:
        """A torrent added to the whitelist through one node's admin API is served by the
        other node within seconds; removed, it is refused by both again."""
        directory = tempfile.mkdtemp(prefix="tracker-list-")
        self.addCleanup(shutil.rmtree, directory, True)
        listing = os.path.join(directory, "whitelist.txt")
        with open(listing, "w") as f:
            f.write("")
        (first, first_admin), (second, _) = self.admin_nodes("--whitelist", listing)
        self.assertIn(b"unregistered torrent", second.announce(1)[b"failure reason"])
        status, _ = self.admin(first_admin, "POST", "/torrents", {"info_hash": info_hash(1).hex()})
        self.assertEqual(status, 201)
        self.until(lambda: b"failure reason" not in second.announce(1))
        status, _ = self.admin(first_admin, "DELETE", f"/torrents/{info_hash(1).hex()}")
        self.assertEqual(status, 200)
        self.until(lambda: b"failure reason" in second.announce(1))
        self.assertIn(b"failure reason", first.announce(1))

    def test_passkey_added_at_one_node_credited_across_both(self) -> None:
        """A passkey added through one node's admin API announces at the other; a peer whose
        announces go to either node is credited with what it moved between them, once, and
        both nodes' admin APIs come to show the same totals."""
        (first, first_admin), (second, second_admin) = self.admin_nodes("--private")
        status, added = self.admin(first_admin, "POST", "/passkeys", {"label": "alice"})
        self.assertEqual(status, 201)
        prefix = "/" + added["passkey"]
        # The peer's first announce, at 0 bytes, is its baseline.
        self.until(lambda: b"failure reason" not in second.get(prefix + announce_target(1))[1])
        for node, uploaded in ((first, 100), (second, 600), (first, 1600), (second, 1700)):
            status, body = node.get(prefix + announce_target(1, uploaded=uploaded))
            self.assertNotIn(b"failure reason", body)

        def totals() -> Any:
            shown = [
                self.admin(port, "GET", "/passkeys")[1]["passkeys"]
                for port in (first_admin, second_admin)
            ]
            uploaded = [[p["uploaded"] for p in listing] for listing in shown]
            return uploaded == [[1700], [1700]]

        self.until(totals, seconds=30)


class RedisOutageTests(NodesTestCase):
    def test_redis_stopped_and_started(self) -> None:
        """While Redis is down every announce and scrape is answered within 3 seconds: over
        HTTP with status 200, a failure reason and BEP 31's retry in, over UDP with an error;
        once Redis is back the node serves again by itself. The outage is logged once, not
        at every request or periodic task that failed."""
        require_redis()
        server = RedisServer().start()
        self.addCleanup(server.destroy)
        (node,) = self.nodes(server.url, 1, "--expire-every", "1")
        node.announce(1)
        client = node.udp()
        self.addCleanup(client.close)
        connection = client.connect()
        server.stop()
        for target in (announce_target(2), f"/scrape?info_hash={quote_from_bytes(info_hash(1))}"):
            for _ in range(3):
                began = time.monotonic()
                status, body = node.get(target)
                self.assertLess(time.monotonic() - began, ANSWER_WITHIN)
                self.assertEqual(status, 200)
                self.assertIn(b"storage is unavailable", body[b"failure reason"])
                self.assertEqual(body[b"retry in"], 5)
        began = time.monotonic()
        reply = client.exchange(announce_packet(connection, 3), wait=ANSWER_WITHIN)
        self.assertLess(time.monotonic() - began, ANSWER_WITHIN)
        self.assertIn(b"storage is unavailable", error_message(reply))
        # Long enough for the node's expiry to fail too.
        time.sleep(2)
        server.start()
        deadline = time.monotonic() + 15
        while True:
            status, body = node.get(announce_target(2))
            if b"failure reason" not in body:
                break
            self.assertLess(time.monotonic(), deadline, body)
            time.sleep(0.2)
        self.assertEqual(status, 200)
        self.assertEqual(body[b"incomplete"], 1)
        log = node.log()
        self.assertEqual(log.count("failed: "), 1, log)
        self.assertIn("answers again", log)
        self.assertNotIn("Traceback", log)


class ClusterNodeTests(NodesTestCase):
    def test_scrape_spanning_cluster_slots(self) -> None:
        """On a 3-primary cluster, one scrape of torrents kept by every primary is answered
        with each torrent's counts."""
        cluster = shared_cluster()
        (node,) = self.nodes(cluster.url, 1)
        torrents = range(1, 41)
        for torrent in torrents:
            node.announce(torrent, torrent, left=torrent % 2)
        files = node.scrape(*torrents)[b"files"]
        self.assertEqual(
            {h: (e[b"complete"], e[b"incomplete"]) for h, e in files.items()},
            {info_hash(t): (1 - t % 2, t % 2) for t in torrents},
        )
        self.assertIn("Redis Cluster of 3 primaries", node.log())

    def test_full_scrape_on_a_cluster(self) -> None:
        """With --full-scrape, /scrape without info_hash answers every torrent of every
        primary."""
        cluster = shared_cluster()
        (node,) = self.nodes(cluster.url, 1, "--full-scrape")
        for torrent in range(1, 21):
            node.announce(torrent, torrent, left=torrent % 2)
        status, body = node.get("/scrape")
        self.assertEqual(status, 200)
        self.assertEqual(
            {h: (e[b"complete"], e[b"incomplete"]) for h, e in body[b"files"].items()},
            {info_hash(t): (1 - t % 2, t % 2) for t in range(1, 21)},
        )
