"""UDP connection IDs under secrets shared by several nodes, and those secrets kept in Redis."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase

from tests.redis_servers import shared_server
from tracker.udp.connection_ids import ASK_AGAIN, WINDOW, ConnectionIds


class Secrets:
    """Shared secrets as a dict the test fills."""

    def __init__(self) -> None:
        self.known: dict[int, bytes] = {}

    def secret(self, window: int) -> bytes | None:
        return self.known.get(window)


def _secrets_for(*windows: int) -> Secrets:
    secrets = Secrets()
    for window in windows:
        secrets.known[window] = b"%016d" % window
    return secrets


class SharedConnectionIdTests(TestCase):
    def test_id_from_one_node_good_at_another(self) -> None:
        """Two nodes with the same shared secrets accept each other's IDs, in the window they
        were issued and the next, and not after."""
        clock = Clock()
        clock.advance(100 * WINDOW)
        secrets = _secrets_for(99, 100, 101, 102)
        first = ConnectionIds(clock, shared=secrets)
        second = ConnectionIds(clock, shared=secrets)
        issued = first.issue("192.0.2.7")
        self.assertTrue(second.valid(issued, "192.0.2.7"))
        self.assertFalse(second.valid(issued, "192.0.2.8"))
        clock.advance(WINDOW)
        self.assertTrue(second.valid(issued, "192.0.2.7"))
        clock.advance(WINDOW)
        self.assertFalse(second.valid(issued, "192.0.2.7"))

    def test_own_secret_until_the_shared_one_is_known(self) -> None:
        """A node that does not have a window's shared secret yet issues IDs of its own, and
        takes the shared one once it is there, within ASK_AGAIN seconds."""
        clock = Clock()
        clock.advance(100 * WINDOW)
        secrets = Secrets()
        node = ConnectionIds(clock, shared=secrets)
        own = node.issue("192.0.2.7")
        self.assertTrue(node.valid(own, "192.0.2.7"))
        secrets.known.update(_secrets_for(99, 100).known)
        other = ConnectionIds(clock, shared=secrets)
        clock.advance(ASK_AGAIN)
        self.assertEqual(node.issue("192.0.2.7"), other.issue("192.0.2.7"))
        self.assertNotEqual(own, other.issue("192.0.2.7"))


class RedisSecretsTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_nodes_on_one_redis_agree(self) -> Any:
        """Two nodes on one Redis fetch the same secret for each window, the next one ahead
        of time, and issue the same IDs."""
        from tracker.store.redis import SCRIPTS
        from tracker.store.redis_client import RedisConnection
        from tracker.store.redis_secrets import RedisSecrets

        url = shared_server().url
        nodes = []
        for _ in range(2):
            connection = RedisConnection(url, reactor, SCRIPTS)
            yield connection.start()
            self.addCleanup(connection.stop)
            secrets = RedisSecrets(connection, reactor, WINDOW, look_every=0.05)
            secrets.startService()
            self.addCleanup(secrets.stopService)
            nodes.append(secrets)
        now = int(reactor.seconds()) // WINDOW
        for _ in range(100):
            if all(node.secret(now + 1) for node in nodes):
                break
            yield deferLater(reactor, 0.05, lambda: None)
        for window in (now - 1, now, now + 1):
            self.assertEqual(len(nodes[0].secret(window) or b""), 16)
            self.assertEqual(nodes[0].secret(window), nodes[1].secret(window))
        first, second = (ConnectionIds(reactor, shared=node) for node in nodes)
        self.assertEqual(first.issue("192.0.2.7"), second.issue("192.0.2.7"))
