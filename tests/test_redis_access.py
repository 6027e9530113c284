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
    totals_set = False

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


class RefreshTests(TestCase):
    def test_refresh_takes_other_nodes_changes(self) -> None:
        """Passkeys read again from a shared store: one added elsewhere is put in force, one
        removed elsewhere is dropped, and each total is the stored one plus what this node
        credited and has not written yet."""
        from twisted.internet.task import Clock

        from tracker.ops.passkeys import Passkeys
        from tracker.store.access import Account, MemoryAccessStore

        passkeys = Passkeys(MemoryAccessStore(), Clock())
        passkeys.load_stored({b"a" * 32: Account("", 1, 10, 20), b"b" * 32: Account("", 2, 0, 0)})
        passkeys.ledgers[b"a" * 32].credit(5, 6)
        passkeys.refresh(
            {b"a" * 32: Account("", 1, 100, 200), b"c" * 32: Account("carol", 3, 7, 8)}
        )
        self.assertEqual(
            {key: (led.uploaded, led.downloaded) for key, led in passkeys.ledgers.items()},
            {b"a" * 32: (105, 206), b"c" * 32: (7, 8)},
        )
        self.assertEqual([row.label for row in passkeys.listing()], ["", "carol"])
        passkeys.refresh_totals({b"a" * 32: (1000, 2000)})
        self.assertEqual(passkeys.ledgers[b"a" * 32].uploaded, 1005)
