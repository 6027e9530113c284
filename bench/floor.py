"""The Twisted floor: what plain twisted.web costs per request, for our figures to be read against.

    python bench/floor.py PORT

A Site whose one leaf resource returns a fixed compact announce reply of 50 IPv4 peers
synchronously: no query parsing, no store, no access log. Whatever the tracker does on top of
this is the tracker's own cost; this is the most any tracker on twisted.web could do here.
"""

from __future__ import annotations

import sys

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

PEERS = 50


def fixed_reply() -> bytes:
    peers = b"".join(bytes((127, 0, 0, 1)) + (10000 + n).to_bytes(2, "big") for n in range(PEERS))
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


def main(argv: list[str]) -> None:
    port = int(argv[1])
    reactor.listenTCP(port, floor_site(), interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv)
