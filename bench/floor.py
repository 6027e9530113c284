"""The floors: what plain Twisted costs per request, for our figures to be read against.

    python3 bench/floor.py http|udp PORT

HTTP: a twisted.web Site whose one leaf resource returns a fixed compact announce reply of 50
IPv4 peers synchronously: no query parsing, no store, no access log. UDP: a bare
DatagramProtocol on Twisted's own UDP port that answers a connect with a fixed connection ID
and every other datagram with a fixed 50-peer announce reply, through the socket's own sendto
as the tracker does: no parsing, no connection ID check, no store. Whatever the tracker does on
top of these is the tracker's own cost. bench/inprocess.py feeds the same two in process.
"""

from __future__ import annotations

import struct
import sys
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

PEERS = 50
CONNECT = b"\x00\x00\x00\x00"
ANNOUNCE = b"\x00\x00\x00\x01"


def compact_peers() -> bytes:
    return b"".join(bytes((127, 0, 0, 1)) + (10000 + n).to_bytes(2, "big") for n in range(PEERS))


def fixed_reply() -> bytes:
    peers = compact_peers()
    return (
        b"d8:completei15e10:downloadedi3e11:external ip4:\x7f\x00\x00\x01"
        b"10:incompletei35e8:intervali1800e12:min intervali900e"
        b"5:peers%d:%s6:peers60:e" % (len(peers), peers)
    )


class FloorResource(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.body = fixed_reply()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return self.body


def floor_site() -> Site:
    return Site(FloorResource())


class UDPFloor(DatagramProtocol):
    noisy = False

    def __init__(self, sendto: Callable[[bytes, Any], object] | None = None) -> None:
        # Interval, leechers, seeders, then the peers: a reply after its first 8 bytes.
        self._reply = struct.pack("!iii", 1800, 35, 15) + compact_peers()
        self._sendto = sendto

    def startProtocol(self) -> None:
        assert self.transport is not None
        self._sendto = self.transport.getHandle().sendto  # type: ignore[attr-defined]

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        assert self._sendto is not None
        if data[8:12] == CONNECT:
            self._sendto(CONNECT + data[12:16] + b"floor-id", addr)
        else:
            self._sendto(ANNOUNCE + data[12:16] + self._reply, addr)


def main(argv: list[str]) -> None:
    protocol, port = argv[1], int(argv[2])
    if protocol == "http":
        reactor.listenTCP(port, floor_site(), interface="127.0.0.1")  # type: ignore[attr-defined]
    else:
        reactor.listenUDP(port, UDPFloor(), interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv)
