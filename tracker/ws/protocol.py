"""
One WebSocket connection: the HTTP connection a browser upgraded, taken over from
C{twisted.web}'s channel once the tracker has answered its opening handshake.

It reads the client's frames (L{tracker.ws.frames}), hands each text message to the tracker
(L{tracker.ws.tracker.WebSocketTracker}), answers pings and closes, and closes the connection
itself on a broken rule with the code RFC 6455 gives it. It is the transport's producer: while
the client reads too slowly for what is sent to it, nothing more is read from it, and offers
for it are dropped rather than piled up in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IProtocol, IPushProducer, ITransport
from twisted.python.failure import Failure
from zope.interface import implementer

from tracker.ws.frames import (
    BINARY,
    CLOSE,
    INVALID_DATA,
    PING,
    PONG,
    TEXT,
    UNSUPPORTED_DATA,
    FrameReader,
    WebSocketError,
    close_code,
    close_frame,
    frame,
    text,
)

if TYPE_CHECKING:
    from tracker.ws.swarms import Peer
    from tracker.ws.tracker import WebSocketTracker


@implementer(IProtocol, IPushProducer)
class WebSocketConnection:
    """
    The tracker's side of one WebSocket. Slotted and small: an idle browser costs the tracker
    this, its frame reader and the socket (see bench/ws.py for the bytes).
    """

    __slots__ = (
        "tracker",
        "transport",
        "number",
        "reader",
        "peers",
        "seen",
        "passkey",
        "refusal",
        "closing",
        "congested",
    )

    def __init__(
        self,
        tracker: WebSocketTracker,
        number: int,
        reader: FrameReader,
        now: int,
        passkey: bytes | None = None,
        refusal: str | None = None,
    ) -> None:
        self.tracker = tracker
        self.transport: ITransport | None = None
        #: Never reused while the tracker runs: outstanding offers name their recipient's
        #: connection by it.
        self.number = number
        self.reader = reader
        #: Its peers, by info hash: one peer id per torrent per connection. None while none.
        self.peers: dict[str, Peer] | None = None
        #: When it last sent a message; it is closed after the tracker's idle timeout.
        self.seen = now
        #: Private mode: the passkey of the URL it opened, or the refusal every message gets.
        self.passkey = passkey
        self.refusal = refusal
        self.closing = False
        #: The client is not reading what is sent to it fast enough.
        self.congested = False

    # IProtocol

    def makeConnection(self, transport: ITransport) -> None:
        self.transport = transport
        self.connectionMade()

    def connectionMade(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        reader = self.reader
        tracker = self.tracker
        for opcode, payload in reader.feed(data):
            if opcode == TEXT:
                try:
                    message = payload.decode("utf-8")
                except UnicodeDecodeError:
                    tracker.close(self, INVALID_DATA, "text frames must be UTF-8")
                    return
                tracker.received(self, message)
            elif opcode == PING:
                self.write(frame(PONG, payload))
            elif opcode == CLOSE:
                self._close_received(payload)
                return
            elif opcode == BINARY:
                tracker.close(self, UNSUPPORTED_DATA, "messages are JSON in text frames")
                return
            # A pong needs nothing.
            if self.closing:
                return
        error = reader.error
        if error is not None:
            tracker.close(self, error.code, error.reason)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closing = True
        self.tracker.closed(self)

    # IPushProducer, for the transport: it pauses us when its buffer of data to send is full.

    def pauseProducing(self) -> None:
        self.congested = True
        if self.transport is not None:
            # What this client sends makes replies; it waits until it has read what it has.
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        self.congested = False
        if self.transport is not None and not self.closing:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        pass

    # Sending.

    def send(self, payload: bytes) -> None:
        """Send one text message (JSON, in ASCII)."""
        if not self.closing and self.transport is not None:
            self.transport.write(text(payload))

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame with C{code}, then close the connection once it is written."""
        if self.closing:
            return
        self.closing = True
        transport: Any = self.transport
        if transport is None:
            return
        # A transport with a producer closes only once the producer is gone.
        transport.unregisterProducer()
        if self.congested:
            # A client that does not read would never let the close frame out.
            transport.abortConnection()
            return
        transport.write(close_frame(code, reason))
        transport.loseConnection()

    def abort(self) -> None:
        """Drop the connection at once: it was closed and never let go."""
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def _close_received(self, payload: bytes) -> None:
        try:
            code = close_code(payload)
        except WebSocketError as e:
            self.tracker.close(self, e.code, e.reason)
            return
        # Echoed, as RFC 6455 section 5.5.1 has an endpoint do.
        self.close(code)


def take_over(channel: Any, connection: WebSocketConnection) -> None:
    """
    Give C{connection} what C{channel}'s transport receives from now on, as Twisted's own
    WebSocket resource does (C{HTTPChannel._protocolUpgradeForWebsockets}): the channel's
    methods are rebound, since the transport calls them. Bytes the client sent right after
    its handshake, which the channel has read into its raw-mode buffer, go there too. The
    channel's idle timeout is turned off (the tracker has its own) and the request is dropped,
    so that an open WebSocket keeps no HTTP state.
    """
    transport = channel.transport
    channel.setTimeout(None)
    channel.dataReceived = connection.dataReceived
    channel.rawDataReceived = connection.dataReceived
    channel.connectionLost = connection.connectionLost
    del channel.requests[:]
    # The channel is the transport's producer; the connection takes its place.
    transport.unregisterProducer()
    transport.registerProducer(connection, True)
    connection.makeConnection(transport)
