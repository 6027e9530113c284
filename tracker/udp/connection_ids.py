"""
UDP connection IDs (BEP 15) that cost no state per client: a keyed hash of the client's address
and the current time window, under a secret that is replaced every window.

A UDP source address is trivially forged; the connection ID proves that the client can receive
at the address it claims, so the tracker never sends a peer list toward a spoofed victim.

Given a store of secrets (L{IConnectionSecrets}), the secrets outlive the process: an ID issued
before a restart is still accepted after it, within its lifetime, so a client's announces go on
without a new connect (libtorrent's would fail for up to a minute). Without one, as with the
in-memory store, every start has new secrets.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tracker.core.interfaces import IConnectionSecrets, StoreStopped

log = Logger()

#: BEP 15: a client uses an ID for up to a minute after receiving it; the tracker accepts it for
#: at least two. An ID is accepted in its own window and the next, so for 120 to 240 seconds.
WINDOW = 120


#: IDs remembered per window, so that a client's next datagrams cost a lookup rather than a
#: hash; past this many clients in one window the memory starts again empty.
REMEMBERED = 65536


class ConnectionIds:
    """
    IDs for one tracker's UDP listeners. With C{secrets}, call L{load} once their store has
    started (L{ConnectionIdsService} does) and answer datagrams only after it has fired
    (L{when_loaded}): until then an ID issued before a restart would be refused. Trackers
    sharing a store of secrets (Redis) agree on each window's: an ID from one is good at all.
    """

    def __init__(
        self,
        clock: IReactorTime,
        window: int = WINDOW,
        secret: Callable[[], bytes] = lambda: os.urandom(16),
        remembered: int = REMEMBERED,
        secrets: IConnectionSecrets | None = None,
    ) -> None:
        self._clock = clock
        self._remembered = remembered
        self._window = window
        self._new_secret = secret
        self._current_window = int(clock.seconds()) // window
        self._window_ends: float = (self._current_window + 1) * window
        self._current = secret()
        self._previous = secret()
        #: Client address -> its ID in the current window.
        self._issued: dict[str, bytes] = {}
        self._secrets = secrets
        #: The kept secrets are in force (at once when there is no store of them).
        self.loaded = secrets is None
        #: The store has said which secret the current window has (it may be another tracker's).
        self._confirmed = True
        self._waiting: list[Deferred[None]] = []

    def issue(self, host: str, now: float | None = None) -> bytes:
        """The 8-byte ID for a client at C{host} (its address as text); C{now} saves asking the
        clock when the caller has asked it already."""
        self._rotate(self._clock.seconds() if now is None else now)
        connection_id = self._issued.get(host)
        if connection_id is None:
            if not self._confirmed:
                # Until the store says which secret this window has, the last window's, which
                # every tracker sharing the store agrees on: its ID is good at all of them
                # until this window ends.
                return _digest(self._previous, host)
            connection_id = self._remember(host, _digest(self._current, host))
        return connection_id

    def valid(self, connection_id: bytes, host: str, now: float | None = None) -> bool:
        self._rotate(self._clock.seconds() if now is None else now)
        if self._issued.get(host) == connection_id:
            return True
        if connection_id == _digest(self._current, host):
            self._remember(host, connection_id)
            return True
        return connection_id == _digest(self._previous, host)

    def when_loaded(self) -> Deferred[None]:
        """Fires once the kept secrets are in force, or it is known that they cannot be."""
        if self.loaded:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def load(self) -> Deferred[None]:
        """
        Put the kept secrets of the current window and the one before in force, and keep the
        current window's if none was. A store that fails is logged, and the secrets of this
        process stay in force. Fires when done, never with a failure.
        """
        if self._secrets is None:
            return succeed(None)
        self._rotate(self._clock.seconds())
        loading = self._secrets.load_secrets(self._current_window - 1)
        return loading.addCallbacks(self._loaded, self._not_loaded).addBoth(self._now_loaded)

    def _loaded(self, kept: dict[int, bytes]) -> None:
        # The window as it is now: it may have turned while the store was read.
        window = self._current_window
        self._previous = kept.get(window - 1, self._previous)
        current = kept.get(window)
        if current is None:
            self._keep(window, self._current)
        elif current != self._current:
            self._current = current
            self._issued = {}

    def _not_loaded(self, failure: Failure) -> None:
        if not failure.check(StoreStopped):
            log.failure(
                "could not read the UDP connection IDs' secrets: IDs issued before this start"
                " are refused, and clients connect again",
                failure,
            )

    def _now_loaded(self, _: object) -> None:
        self.loaded = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def _keep(self, window: int, secret: bytes) -> None:
        assert self._secrets is not None
        keeping = self._secrets.keep_secret(window, secret)
        keeping.addCallbacks(self._kept, self._not_kept, callbackArgs=(window,))

    def _kept(self, kept: bytes, window: int) -> None:
        # Another tracker sharing the store kept a secret for this window first: use it too,
        # so that an ID from either is good at both.
        if window == self._current_window:
            self._confirmed = True
            if kept != self._current:
                self._current = kept
                self._issued = {}
        elif window == self._current_window - 1:
            self._previous = kept

    def _not_kept(self, failure: Failure) -> None:
        # This process's secret, then: the store cannot say otherwise.
        self._confirmed = True
        if not failure.check(StoreStopped):
            log.failure(
                "could not keep the UDP connection IDs' secret: IDs issued in this window will"
                " not outlive a restart",
                failure,
            )

    def _remember(self, host: str, connection_id: bytes) -> bytes:
        if len(self._issued) >= self._remembered:
            self._issued = {}
        self._issued[host] = connection_id
        return connection_id

    def _rotate(self, now: float) -> None:
        if now < self._window_ends:
            return
        window = int(now) // self._window
        # After a silence of more than a window, the last secret's IDs are too old as well.
        self._previous = self._current if window == self._current_window + 1 else self._new_secret()
        self._current = self._new_secret()
        self._current_window = window
        self._window_ends = (window + 1) * self._window
        self._issued = {}
        if self.loaded and self._secrets is not None:
            # Before the kept secrets are loaded, loading decides what to keep.
            self._confirmed = False
            self._keep(window, self._current)


def _digest(secret: bytes, host: str) -> bytes:
    return hashlib.blake2b(host.encode("ascii"), key=secret, digest_size=8).digest()


class ConnectionIdsService(Service):
    """
    Loads the kept secrets of L{ConnectionIds} when the tracker starts. Parent it after the
    service that starts their store (L{tracker.daemon.service.TrackerService}): its read then queues
    behind the store's opening, ahead of the journal's replay.
    """

    def __init__(self, connection_ids: ConnectionIds) -> None:
        self._ids = connection_ids

    def startService(self) -> None:
        super().startService()
        self._ids.load()
