"""
UDP connection-ID secrets shared through Redis, so that an ID one node issued is good at every
other node on the same Redis (clients go round the nodes by DNS).

The secret of window N (time // WINDOW) lives under C{tracker:udp-secret:N}: the first node to
want it stores a random one with C{SET NX} and every node then reads whichever was stored
first, so all agree. It expires a few windows later. Nodes fetch a window's secret ahead of
time, so that the UDP port, which asks for it synchronously, finds it here
(L{tracker.udp.connection_ids.ConnectionIds} with C{shared=}).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from tracker.core.interfaces import StoreStopped, StoreUnavailable
from tracker.store.redis_client import Command, RedisConnection

#: Seconds between two looks at which windows' secrets are missing here.
LOOK_EVERY = 1.0
_PREFIX = b"tracker:udp-secret:"


def secret_key(window: int) -> bytes:
    return _PREFIX + b"%d" % window


class RedisSecrets(Service):
    """
    The shared secrets of the window before the current one to the one after, kept here and
    fetched from Redis ahead of need; a service, so that its fetching stops with the daemon.
    """

    def __init__(
        self,
        connection: RedisConnection,
        clock: IReactorTime,
        window: int,
        look_every: float = LOOK_EVERY,
    ) -> None:
        self._connection = connection
        self._clock = clock
        self._window = window
        self._known: dict[int, bytes] = {}
        self._fetching: set[int] = set()
        self._looking = LoopingCall(self.look)
        self._looking.clock = clock
        self._look_every = look_every

    def secret(self, window: int) -> bytes | None:
        return self._known.get(window)

    def startService(self) -> None:
        super().startService()
        self._looking.start(self._look_every, now=True)

    def stopService(self) -> Any:
        if self._looking.running:
            self._looking.stop()
        return super().stopService()

    def look(self) -> None:
        """Fetch the secrets of the last, this and the next window that are not here yet, and
        forget older ones. Quiet until the connection is open, and while Redis is down."""
        if not self._connection.ready:
            return
        now = int(self._clock.seconds()) // self._window
        for window in list(self._known):
            if window < now - 1:
                del self._known[window]
        for window in (now - 1, now, now + 1):
            if window not in self._known and window not in self._fetching:
                self._fetch(window)

    def _fetch(self, window: int) -> None:
        key = secret_key(window)
        # Kept past the last window that accepts its IDs.
        seconds = 3 * self._window + 60
        commands = (
            Command(key, ("SET", key, os.urandom(16), "NX", "EX", seconds)),
            Command(key, ("GET", key)),
        )
        self._fetching.add(window)
        fetched = self._connection.run(commands, _stored_secret)
        fetched.addCallbacks(
            self._fetched, self._not_fetched, callbackArgs=(window,), errbackArgs=(window,)
        )

    def _fetched(self, secret: bytes, window: int) -> None:
        self._fetching.discard(window)
        self._known[window] = secret

    def _not_fetched(self, failure: Failure, window: int) -> None:
        self._fetching.discard(window)
        # The connection logs an outage; the next look tries again.
        failure.trap(StoreUnavailable, StoreStopped)


def _stored_secret(replies: list[Any]) -> bytes:
    for reply in replies:
        if isinstance(reply, Exception):
            raise StoreUnavailable(f"Redis refused the connection-ID secret: {reply}")
    secret = replies[1]
    if not isinstance(secret, bytes) or len(secret) < 16:
        raise StoreUnavailable("Redis holds no usable connection-ID secret")
    return secret
