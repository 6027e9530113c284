"""The HTTP site the daemon serves: the tracker resource with guards against abusive clients."""

from __future__ import annotations

from typing import Any

from twisted.web import http
from twisted.web.http import parse_qs
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from tracker.http.requestline import line_reader
from tracker.http.response import failure_body

#: No BitTorrent client sends a request body; anything larger than this is refused unread.
MAX_BODY = 1024


def refusal(status: bytes, reason: str) -> bytes:
    """A whole response refusing a request that HTTP itself cannot serve, with the reason
    bencoded as for any refusal; the connection closes after it."""
    body = failure_body(reason)
    return (
        b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (status, len(body), body)
    )


_TOO_LARGE = refusal(b"413 Payload Too Large", "request body too large")
_MALFORMED_BODY = refusal(b"400 Bad Request", "the request's Content-Type cannot be read")


_QUERY_ONLY = frozenset((b"GET", b"HEAD"))
#: Twisted's HTTPChannel.lineReceived, reading request lines faster (L{tracker.http.requestline}).
_read_line = line_reader(http.HTTPChannel.lineReceived)


class TrackerRequest(Request):
    """
    A request that refuses large or unbounded bodies before buffering them, and parses its
    query into C{args} only if something asks for C{args}: the tracker reads C{uri} itself
    (C{args} turns C{+} into a space and splits on C{;}), and parsing it for nothing was a tenth
    of the cost of an announce.
    """

    _refused = False
    _args: dict[bytes, list[bytes]] | None = None

    @property
    def args(self) -> dict[bytes, list[bytes]]:
        if self._args is None:
            query = self.uri.partition(b"?")[2]
            self._args = parse_qs(query, 1) if query else {}
        return self._args

    @args.setter
    def args(self, value: dict[bytes, list[bytes]]) -> None:
        self._args = value

    def gotLength(self, length: int | None) -> None:
        if length is None or length > MAX_BODY:
            self._refuse(_TOO_LARGE)
            return
        super().gotLength(length)

    def _refuse(self, response: bytes) -> None:
        self._refused = True
        transport = self.channel.transport
        assert transport is not None
        transport.write(response)
        transport.loseConnection()

    def handleContentChunk(self, data: bytes) -> None:
        if not self._refused:
            super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._refused:
            return
        if command not in _QUERY_ONLY:
            # Anything with a body (a form POST, say) gets Twisted's own handling, for the host
            # application's resources beside the tracker.
            try:
                super().requestReceived(command, path, version)
            except ValueError:
                # Twisted reads a POST's Content-Type with the email package, which raises for
                # bytes it takes for line breaks (\x0b, \x0c, \x1c to \x1e): out of the
                # connection, which would close without an answer and log a traceback.
                self._refuse(_MALFORMED_BODY)
            return
        # What Request.requestReceived does for a request without a body, but for args.
        assert self.content is not None
        self.content.seek(0, 0)
        self.method, self.uri = command, path
        self.clientproto = version
        self.path = path.partition(b"?")[0]
        self._args = None
        self.process()


class TrackerChannel(http.HTTPChannel):
    """
    An HTTP connection that answers a line too long to read (Twisted's limit is 16 KiB) with a
    status and a bencoded reason before closing: 414 for the request line (a scrape of a great
    many hashes, say), 431 for a header. Twisted would close the connection without a word.
    Request lines are read as in L{tracker.http.requestline}.
    """

    _in_headers = False

    def lineReceived(self, line: bytes) -> None:
        if line:
            # The request line has been read; what follows until the blank line are headers.
            self._in_headers = True
        _read_line(self, line)

    def allHeadersReceived(self) -> None:
        self._in_headers = False
        super().allHeadersReceived()

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._in_headers:
            status, what = b"431 Request Header Fields Too Large", "a header line"
        else:
            status, what = b"414 URI Too Long", "the request line"
        transport = self.transport
        assert transport is not None
        transport.write(refusal(status, f"{what} is longer than {self.MAX_LENGTH} bytes"))
        transport.loseConnection()


class TrackerSite(Site):
    """
    A L{Site} whose idle connections close after C{timeout} seconds (Twisted's default is 12
    hours, which lets half-sent requests pile up) and which keeps no access log: one line per
    announce would cost more than the announce.
    """

    requestFactory = TrackerRequest
    # Twisted types this as the factory of its own wrapper channel; a channel class serves.
    protocol = TrackerChannel  # type: ignore[assignment]

    def __init__(self, resource: IResource, timeout: float = 30, **kwargs: Any) -> None:
        super().__init__(resource, timeout=timeout, **kwargs)

    def log(self, request: http.Request) -> None:
        pass
