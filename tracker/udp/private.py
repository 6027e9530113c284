"""
Private mode over UDP: an announce carries C{/<passkey>/announce} in BEP 41's URL data. An
unknown passkey, or none, gets an error; a known one is credited as over HTTP
(L{tracker.ops.passkeys}).
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from tracker.core.errors import TrackerError
from tracker.core.interfaces import IPeerStore
from tracker.core.meters import TIMED
from tracker.ops.passkeys import Passkeys, wait_or_refuse
from tracker.udp.protocol import _ANNOUNCE_SIZE, UDPTracker, short_announce, url_data

_PRIVATE_UDP = "this tracker is private: announce to udp://HOST:PORT/<your passkey>/announce"
_NO_UDP_SCRAPE = "this tracker is private: scrape over HTTP, at /<your passkey>/scrape"


class PrivateUDPTracker(UDPTracker):
    """
    L{UDPTracker} in private mode: an announce carries C{/<passkey>/announce} as its BEP 41 URL
    data. A UDP scrape cannot carry a passkey (BEP 41 options follow announces only), so
    scrapes are refused.
    """

    def __init__(self, store: IPeerStore, passkeys: Passkeys, *args: Any, **kwargs: Any) -> None:
        super().__init__(store, *args, **kwargs)
        self._passkeys = passkeys

    def _announce(self, data: bytes, transaction: bytes, addr: Any, now: int) -> None:
        started = perf_counter() if self._announces.ok & TIMED == TIMED else 0.0
        passkeys = self._passkeys
        ledger = passkeys.ledgers.get(_udp_passkey(data))
        if ledger is None:
            waited = wait_or_refuse(passkeys, lambda: self._announce(data, transaction, addr, now))
            self._answer_later(waited, data, addr)
            return
        # The fixed fields alone: the URL data is read here, not by the public tracker's check.
        request = self._parse_announce(data[:_ANNOUNCE_SIZE], addr[0], ledger)
        self._answer_announce(request, data, transaction, addr, now, started)

    def _scrape(self, data: bytes, transaction: bytes, addr: Any) -> None:
        raise TrackerError(_NO_UDP_SCRAPE)


def _udp_passkey(data: bytes) -> bytes:
    """The passkey of an announce's URL data, C{/<passkey>/announce[?...]}."""
    if len(data) < _ANNOUNCE_SIZE:
        raise short_announce(len(data))
    path = url_data(data, _ANNOUNCE_SIZE).partition(b"?")[0] if len(data) > _ANNOUNCE_SIZE else b""
    parts = path.split(b"/")
    if len(parts) != 3 or parts[0] or parts[2] != b"announce" or not parts[1]:
        raise TrackerError(_PRIVATE_UDP)
    return parts[1]
