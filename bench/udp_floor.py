"""The UDP floor: what a bare Twisted DatagramProtocol costs per announce, for the tracker's UDP
figures to be read against.

    python bench/udp_floor.py PORT

Answers a connect with a fixed connection ID and every other datagram with a fixed announce
reply of 50 IPv4 peers, through the socket's own sendto as the tracker does: no parsing, no
connection ID check, no store. Whatever the tracker does on top of this is its own cost.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol

PEERS = 50
CONNECT = b"\x00\x00\x00\x00"
ANNOUNCE = b"\x00\x00\x00\x01"


def fixed_reply() -> bytes:
    """Interval, leechers, seeders, then the peers: an announce reply after its first 8 bytes."""
    peers = b"".join(bytes((127, 0, 0, 1)) + (10000 + n).to_bytes(2, "big") for n in range(PEERS))
    return struct.pack("!iii", 1800, 35, 15) + peers


class Floor(DatagramProtocol):
    noisy = False

    def __init__(self) -> None:
        self._reply = fixed_reply()
        self._sendto: Any = None

    def startProtocol(self) -> None:
        assert self.transport is not None
        self._sendto = self.transport.getHandle().sendto  # type: ignore[attr-defined]

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if data[8:12] == CONNECT:
            self._sendto(CONNECT + data[12:16] + b"floor-id", addr)
        else:
            self._sendto(ANNOUNCE + data[12:16] + self._reply, addr)


if __name__ == "__main__":
    reactor.listenUDP(int(sys.argv[1]), Floor(), interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
