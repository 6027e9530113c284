"""The HTTP site the daemon serves: the tracker resource with guards against abusive clients."""

from __future__ import annotations

from typing import Any

from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

#: No BitTorrent client sends a request body; anything larger than this is refused unread.
MAX_BODY = 1024
_TOO_LARGE = (
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\nContent-Length: 44\r\n"
    b"Connection: close\r\n\r\nd14:failure reason22:request body too largee"
)


class TrackerRequest(Request):
    """A request that refuses large or unbounded bodies before buffering them."""

    _refused = False

    def gotLength(self, length: int | None) -> None:
        if length is None or length > MAX_BODY:
            self._refused = True
            transport = self.channel.transport
            assert transport is not None
            transport.write(_TOO_LARGE)
            transport.loseConnection()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if not self._refused:
            super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self._refused:
            super().requestReceived(command, path, version)


class TrackerSite(Site):
    """
    A L{Site} whose idle connections close after C{timeout} seconds (Twisted's default is 12
    hours, which lets half-sent requests pile up) and which keeps no access log: one line per
    announce would cost more than the announce.
    """

    requestFactory = TrackerRequest

    def __init__(self, resource: IResource, timeout: float = 30, **kwargs: Any) -> None:
        super().__init__(resource, timeout=timeout, **kwargs)

    def log(self, request: http.Request) -> None:
        pass
