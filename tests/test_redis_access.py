"""Access lists and passkeys in Redis: the access store's contract, and what the nodes share."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.redis_servers import shared_cluster, shared_server
from tests.test_store_access import AccessStoreContract


class RedisAccessStoreTests(AccessStoreContract, TestCase):
    timeout = 30

    def url(self) -> str:
        return shared_server().url

    @inlineCallbacks
    def started(self) -> Any:
        from tracker.store.redis import SCRIPTS
        from tracker.store.redis_access import TRANSFERS, RedisAccessStore
        from tracker.store.redis_client import RedisConnection

        connection = RedisConnection(self.url(), reactor, (*SCRIPTS, TRANSFERS))
        yield connection.start()
        self.addCleanup(connection.stop)
        return RedisAccessStore(connection)


class RedisClusterAccessStoreTests(RedisAccessStoreTests):
    def url(self) -> str:
        return shared_cluster().url
