"""The HTTP site the daemon serves: the tracker resource with guards against abusive clients."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
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


#: Requests of one connection answered one after another before the other connections get a
#: turn; the rest of a pipelining client's input waits, unread, for its next turn. A turn costs
#: (connections) x (this many) requests and a newcomer waits about three turns (accepted, read,
#: written out): more serves a pipelining client a little more cheaply (4 answered a 300-
#: connection flood some 10 % faster per CPU second), fewer serves everybody else sooner (2
#: took a newcomer's wait among them from about 0.25 s to 0.15 s, tests/test_flood.py).
REQUESTS_PER_TURN = 2

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

    It also keeps one connection from having more than its share:

      - Pipelined requests are answered at most L{REQUESTS_PER_TURN} in a row; then the
        connection is read no further until the reactor has served every other connection once.
        Twisted answers every request of a read (64 KiB, some 250 announces) before it looks at
        another socket, so that 300 pipelining connections kept a new client waiting for
        seconds.
      - Once the replies waiting to be sent pass the transport's buffer size (64 KiB), nothing
        more is read from the connection, nor parsed, until they have been sent. Twisted stops
        reading then only if it is between requests, and the replies are written while a
        request is being handled: a client that never read its replies made the tracker
        buffer them without end. A client that never reads is closed by the idle timeout.

    Twisted itself handles one request of a connection at a time and stops reading once 16 KiB
    of pipelined input wait behind a request it is still answering.
    """

    _in_headers = False
    #: Requests answered since the connection last got a turn of the reactor.
    _answered = 0
    #: The connection's next turn, once it has had its share of this one.
    _next_turn: IDelayedCall | None = None

    def dataReceived(self, data: bytes) -> None:
        if not self._busyReceiving:
            # Called by the reactor with what it read, or when the connection's turn comes:
            # either way a new turn (calls made while parsing only add to what is buffered).
            self._answered = 0
        super().dataReceived(data)

    def requestDone(self, request: http.Request) -> None:
        self._answered += 1
        if self.persistent and (
            self._waitingForTransport
            or (self._answered >= REQUESTS_PER_TURN and (self._buffer or self._dataBuffer))
        ):
            # LineReceiver parses nothing more while paused; what is left stays buffered.
            self.paused = True
        super().requestDone(request)
        if self.paused:
            self._hold()

    def _hold(self) -> None:
        """Read nothing more until the replies have been sent, or until the next turn."""
        transport = self.transport
        if transport is None or transport.disconnecting:  # type: ignore[attr-defined]
            return
        transport.pauseProducing()  # type: ignore[attr-defined]
        if not self._waitingForTransport and self._next_turn is None:
            self._next_turn = self.callLater(0, self._take_turn)

    def _take_turn(self) -> None:
        self._next_turn = None
        self._release()

    def _release(self) -> None:
        if self._waitingForTransport or self.transport is None:
            # Still held until the replies are sent: resumeProducing releases it then.
            return
        self.paused = False
        if not self._handlingRequest:
            self.transport.resumeProducing()  # type: ignore[attr-defined]
        self.dataReceived(b"")

    def resumeProducing(self) -> None:
        # The transport has sent every reply it held.
        super().resumeProducing()
        if not self.paused:
            return
        if self._next_turn is None:
            self._release()
        else:
            # Twisted resumed reading; this connection's turn is still to come.
            self._hold()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self._next_turn is not None:
            self._next_turn.cancel()
            self._next_turn = None
        super().connectionLost(reason)

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
