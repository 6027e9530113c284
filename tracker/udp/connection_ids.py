"""
UDP connection IDs (BEP 15) that cost no state per client: a keyed hash of the client's address
and the current time window, under a secret that is replaced every window.

A UDP source address is trivially forged; the connection ID proves that the client can receive
at the address it claims, so the tracker never sends a peer list toward a spoofed victim.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Protocol

from twisted.internet.interfaces import IReactorTime

#: BEP 15: a client uses an ID for up to a minute after receiving it; the tracker accepts it for
#: at least two. An ID is accepted in its own window and the next, so for 120 to 240 seconds.
WINDOW = 120


#: IDs remembered per window, so that a client's next datagrams cost a lookup rather than a
#: hash; past this many clients in one window the memory starts again empty.
REMEMBERED = 65536


#: Seconds before a node that does not have a window's shared secret yet asks again.
ASK_AGAIN = 1


class SharedSecrets(Protocol):
    """Secrets that every tracker node sharing a store agrees on, a window at a time."""

    def secret(self, window: int) -> bytes | None:
        """The secret of C{window} (time // L{WINDOW}), or None if not known here yet."""


class ConnectionIds:
    """
    IDs under a secret of this process's own; with C{shared}, under the secrets that every
    node sharing them agrees on (so an ID from one node is good at every other), and under
    secrets of its own only while a window's shared secret is not known yet.
    """

    def __init__(
        self,
        clock: IReactorTime,
        window: int = WINDOW,
        secret: Callable[[], bytes] = lambda: os.urandom(16),
        remembered: int = REMEMBERED,
        shared: SharedSecrets | None = None,
    ) -> None:
        self._clock = clock
        self._remembered = remembered
        self._window = window
        self._new_secret = secret
        self._shared = shared
        self._current_window = int(clock.seconds()) // window
        self._window_ends: float = (self._current_window + 1) * window
        self._current = secret()
        self._previous = secret()
        #: Client address -> its ID in the current window.
        self._issued: dict[str, bytes] = {}
        if shared is not None:
            self._take_shared(clock.seconds())

    def issue(self, host: str, now: float | None = None) -> bytes:
        """The 8-byte ID for a client at C{host} (its address as text); C{now} saves asking the
        clock when the caller has asked it already."""
        self._rotate(self._clock.seconds() if now is None else now)
        connection_id = self._issued.get(host)
        if connection_id is None:
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

    def _remember(self, host: str, connection_id: bytes) -> bytes:
        if len(self._issued) >= self._remembered:
            self._issued = {}
        self._issued[host] = connection_id
        return connection_id

    def _rotate(self, now: float) -> None:
        if now < self._window_ends:
            return
        if self._shared is not None:
            self._take_shared(now)
            return
        window = int(now) // self._window
        # After a silence of more than a window, the last secret's IDs are too old as well.
        self._previous = self._current if window == self._current_window + 1 else self._new_secret()
        self._current = self._new_secret()
        self._current_window = window
        self._window_ends = (window + 1) * self._window
        self._issued = {}

    def _take_shared(self, now: float) -> None:
        """The shared secrets of this window and the last, if known; while they are not, this
        process's own, and ask again in L{ASK_AGAIN} seconds."""
        assert self._shared is not None
        window = int(now) // self._window
        current = self._shared.secret(window)
        previous = self._shared.secret(window - 1)
        if current is None:
            if window != self._current_window:
                # As without shared secrets: the last window's is kept if it was the last.
                last = window == self._current_window + 1
                self._previous = self._current if last else self._new_secret()
                self._current = self._new_secret()
                self._issued = {}
            self._window_ends = min((window + 1) * self._window, now + ASK_AGAIN)
        else:
            if current != self._current:
                self._issued = {}
            self._current = current
            # Unknown: IDs of the last window fail once and their clients connect again.
            self._previous = previous if previous is not None else self._new_secret()
            self._window_ends = (window + 1) * self._window
        self._current_window = window


def _digest(secret: bytes, host: str) -> bytes:
    return hashlib.blake2b(host.encode("ascii"), key=secret, digest_size=8).digest()
