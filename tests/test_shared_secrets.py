"""UDP connection IDs' secrets kept in Redis: the contract every store of them keeps, and two
nodes on one Redis that accept each other's IDs."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.redis_servers import shared_server
from tests.test_connection_secrets import SecretsContract
from tracker.udp.connection_ids import ConnectionIds


class RedisSecretsTests(SecretsContract, TestCase):
    timeout = 30

    @inlineCallbacks
    def connection(self) -> Any:
        from tracker.store.redis import SCRIPTS
        from tracker.store.redis_client import RedisConnection

        connection = RedisConnection(shared_server().url, reactor, SCRIPTS)
        yield connection.start()
        self.addCleanup(connection.stop)
        return connection

    @inlineCallbacks
    def started(self) -> Any:
        from tracker.store.redis_secrets import KEY, RedisConnectionSecrets

        connection = yield self.connection()
        yield connection.run([_command(KEY, ("DEL", KEY))], lambda replies: None)
        return RedisConnectionSecrets(connection)

    @inlineCallbacks
    def test_nodes_on_one_redis_agree(self) -> Any:
        """Two nodes on one Redis load the same secrets and issue the same IDs: an ID from one
        is good at the other."""
        from tracker.store.redis_secrets import RedisConnectionSecrets

        yield self.started()
        nodes = []
        for _ in range(2):
            connection = yield self.connection()
            ids = ConnectionIds(reactor, secrets=RedisConnectionSecrets(connection))
            yield ids.load()
            nodes.append(ids)
        first, second = nodes
        self.assertEqual(first.issue("192.0.2.7"), second.issue("192.0.2.7"))
        self.assertTrue(second.valid(first.issue("192.0.2.8"), "192.0.2.8"))


def _command(key: bytes, args: tuple[Any, ...]) -> Any:
    from tracker.store.redis_client import Command

    return Command(key, args)
