"""
UDP connection IDs (BEP 15) that cost no state per client: a keyed hash of the client's address
and the current time window, under a secret that is replaced every window.

A UDP source address is trivially forged; the connection ID proves that the client can receive
at the address it claims, so the tracker never sends a peer list toward a spoofed victim.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable

from twisted.internet.interfaces import IReactorTime

#: BEP 15: a client uses an ID for up to a minute after receiving it; the tracker accepts it for
#: at least two. An ID is accepted in its own window and the next, so for 120 to 240 seconds.
WINDOW = 120


#: IDs remembered per window, so that a client's next datagrams cost a lookup rather than a
#: hash; past this many clients in one window the memory starts again empty.
REMEMBERED = 65536


class ConnectionIds:
    def __init__(
        self,
        clock: IReactorTime,
        window: int = WINDOW,
        secret: Callable[[], bytes] = lambda: os.urandom(16),
        remembered: int = REMEMBERED,
    ) -> None:
        self._clock = clock
        self._remembered = remembered
        self._window = window
        self._new_secret = secret
        self._current_window = int(clock.seconds()) // window
        self._window_ends = (self._current_window + 1) * window
        self._current = secret()
        self._previous = secret()
        #: Client address -> its ID in the current window.
        self._issued: dict[str, bytes] = {}

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
        window = int(now) // self._window
        # After a silence of more than a window, the last secret's IDs are too old as well.
        self._previous = self._current if window == self._current_window + 1 else self._new_secret()
        self._current = self._new_secret()
        self._current_window = window
        self._window_ends = (window + 1) * self._window
        self._issued = {}


def _digest(secret: bytes, host: str) -> bytes:
    return hashlib.blake2b(host.encode("ascii"), key=secret, digest_size=8).digest()
