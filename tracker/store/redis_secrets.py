"""
UDP connection-ID secrets kept in Redis (L{tracker.core.interfaces.IConnectionSecrets}), so that
an ID one node issued is good at every other node on the same Redis (clients go round the nodes
by DNS), and after any node's restart.

The secret of window N (time // WINDOW) is field N of the hash C{tracker:udp-secrets}: the
first node to keep one stores it with C{HSETNX}, and every node then reads whichever was stored
first, so all agree (L{tracker.udp.connection_ids.ConnectionIds} adopts the kept one). Keeping
a window's forgets the older ones, and the hash expires once no window accepts its IDs.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from tracker.core.interfaces import IConnectionSecrets, StoreUnavailable
from tracker.store.redis_client import Command, RedisConnection
from tracker.udp.connection_ids import WINDOW

#: One hash of window number -> secret, a few fields at most; one key, so one cluster slot.
KEY = b"tracker:udp-secrets"
#: Kept past the last window that accepts its IDs: a tracker silent longer starts afresh.
_LIFETIME = 3 * WINDOW + 60
#: Windows before the one before a new one whose secrets keeping it forgets.
_FORGOTTEN = 10


@implementer(IConnectionSecrets)
class RedisConnectionSecrets:
    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection

    def load_secrets(self, first_window: int) -> Deferred[dict[int, bytes]]:
        def found(replies: list[Any]) -> dict[int, bytes]:
            _refused(replies)
            kept = _as_dict(replies[0])
            return {w: s for w, s in kept.items() if w >= first_window}

        loaded: Deferred[dict[int, bytes]] = self._connection.run(
            [Command(KEY, ("HGETALL", KEY))], found
        )
        return loaded

    def keep_secret(self, window: int, secret: bytes) -> Deferred[bytes]:
        old = [b"%d" % w for w in range(window - 1 - _FORGOTTEN, window - 1)]
        commands = (
            Command(KEY, ("HSETNX", KEY, b"%d" % window, secret)),
            Command(KEY, ("HGET", KEY, b"%d" % window)),
            Command(KEY, ("HDEL", KEY, *old)),
            Command(KEY, ("EXPIRE", KEY, _LIFETIME)),
        )
        kept: Deferred[bytes] = self._connection.run(commands, _kept)
        return kept


def _as_dict(reply: Any) -> dict[int, bytes]:
    """HGETALL's reply, a dict or a flat list of fields and values, as window -> secret."""
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])
    return {int(field): value for field, value in pairs}


def _refused(replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise StoreUnavailable(f"Redis refused the connection-ID secret: {reply}")


def _kept(replies: list[Any]) -> bytes:
    _refused(replies)
    secret = replies[1]
    if not isinstance(secret, bytes) or len(secret) < 16:
        raise StoreUnavailable("Redis holds no usable connection-ID secret")
    return secret
