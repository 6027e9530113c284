"""The storage contract against Redis and against a Redis Cluster, plus what only they promise."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.redis_servers import shared_cluster, shared_server
from tests.store_contract import StoreContract


class RedisStoreTests(StoreContract, TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.url = shared_server().url

    def make_store(self) -> Any:
        from tracker.store.redis import RedisPeerStore

        return RedisPeerStore(self.url, reactor, sweep_every=0)


class RedisClusterStoreTests(StoreContract, TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.url = shared_cluster().url

    def make_store(self) -> Any:
        from tracker.store.redis import RedisPeerStore

        return RedisPeerStore(self.url, reactor, sweep_every=0)
