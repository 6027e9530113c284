"""
The WebSocket wire format (RFC 6455), server side: the opening handshake's answer, client
frames read with their limits enforced from each frame's header, and the frames a server sends.

A client's frames are read by L{FrameReader}: a frame longer than its limit is refused as soon
as its header has arrived, and a message as soon as its fragments add up to more than its
limit, so a client can never make the tracker hold more than one frame's worth of its input.
No extension is ever agreed (browsers offer compression; the tracker declines it, as
bittorrent-tracker and aquatic do), so the reserved bits must be clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import platform
import sys
from array import array
from collections.abc import Sequence
from typing import NamedTuple, Optional

#: RFC 6455 section 1.3: appended to the client's key before hashing.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA

#: Close codes (RFC 6455 section 7.4.1).
NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
INVALID_DATA = 1007
POLICY = 1008
TOO_BIG = 1009
#: Codes an endpoint may send in a close frame; 1004-1006 and 1015 are reserved for reports
#: made locally, never sent.
_SENDABLE = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))

#: The largest frame and message a client may send by default: aquatic's limits.
MAX_FRAME = 16 * 1024
MAX_MESSAGE = 64 * 1024
#: RFC 6455 section 5.5: control frames carry at most 125 bytes and are never fragmented.
_MAX_CONTROL = 125


class HandshakeError(Exception):
    """An upgrade request that is not a WebSocket opening handshake this server can accept."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class WebSocketError(Exception):
    """A client that broke the protocol or a limit: the connection is closed with C{code}."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Frame(NamedTuple):
    """A whole message (TEXT or BINARY, its fragments joined) or a control frame."""

    opcode: int
    payload: bytes


Values = Optional[Sequence[bytes]]


def _tokens(values: Values) -> set[bytes]:
    """The comma-separated tokens of a header's values, lower-cased."""
    return {token.strip().lower() for value in values or () for token in value.split(b",")}


def accept_key(key: bytes) -> bytes:
    """C{Sec-WebSocket-Accept} for a client's C{Sec-WebSocket-Key}."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def is_upgrade(upgrade: Values) -> bool:
    """Whether an C{Upgrade} header asks for a WebSocket."""
    return b"websocket" in _tokens(upgrade)


def handshake_response(
    method: bytes,
    version: bytes,
    connection: Values,
    upgrade: Values,
    key: Values,
    ws_version: Values,
) -> bytes:
    """
    The C{101 Switching Protocols} answer to an opening handshake, given the request's method,
    HTTP version and header values; raises L{HandshakeError} for a request that is not one.
    No subprotocol or extension is agreed.
    """
    if method != b"GET":
        raise HandshakeError(405, "a WebSocket opens with GET")
    if version != b"HTTP/1.1":
        raise HandshakeError(400, "a WebSocket opens over HTTP/1.1")
    if not is_upgrade(upgrade) or b"upgrade" not in _tokens(connection):
        raise HandshakeError(400, "not a WebSocket upgrade: Upgrade and Connection headers")
    if ws_version is None or len(ws_version) != 1 or ws_version[0].strip() != b"13":
        raise HandshakeError(426, "this server speaks WebSocket version 13")
    if key is None or len(key) != 1:
        raise HandshakeError(400, "one Sec-WebSocket-Key header is needed")
    nonce = key[0].strip()
    try:
        decoded = base64.b64decode(nonce, validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) != 16:
        raise HandshakeError(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept_key(nonce)
    )


def _unmask_whole(payload: bytes, mask: bytes) -> bytes:
    """C{payload} XOR the repeated 4-byte C{mask}, as one operation on two big integers:
    CPython does it in native code, about 3 microseconds a kilobyte."""
    length = len(payload)
    if not length:
        return b""
    key = mask * ((length >> 2) + 1)
    whole = int.from_bytes(payload, "little") ^ int.from_bytes(key[:length], "little")
    return whole.to_bytes(length, "little")


def _unmask_words(payload: bytes, mask: bytes) -> bytes:
    """The same, four bytes at a time in a loop, which PyPy's JIT compiles: about 1
    microsecond a kilobyte, where its big integers take eight."""
    length = len(payload)
    whole = length & ~3
    words = array("I")
    words.frombytes(payload[:whole])
    key = int.from_bytes(mask, sys.byteorder)
    for i in range(len(words)):
        words[i] ^= key
    return words.tobytes() + bytes([payload[i] ^ mask[i & 3] for i in range(whole, length)])


unmask = _unmask_words if platform.python_implementation() == "PyPy" else _unmask_whole


def frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked frame, as a server sends."""
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length < 0x10000:
        return bytes((0x80 | opcode, 126, length >> 8, length & 0xFF)) + payload
    return bytes((0x80 | opcode, 127)) + length.to_bytes(8, "big") + payload


def text(payload: bytes) -> bytes:
    """A text frame of UTF-8 C{payload}."""
    return frame(TEXT, payload)


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with C{code} and a reason cut to fit a control frame."""
    data = reason.encode("utf-8")[: _MAX_CONTROL - 2]
    # A cut in the middle of a character is taken back to its start.
    data = data.decode("utf-8", "ignore").encode("utf-8")
    return frame(CLOSE, code.to_bytes(2, "big") + data)


def close_code(payload: bytes) -> int:
    """
    The code of a client's close frame (L{NORMAL} when it gives none); raises
    L{WebSocketError} for a close frame that is malformed itself.
    """
    if not payload:
        return NORMAL
    if len(payload) == 1:
        raise WebSocketError(PROTOCOL_ERROR, "a close frame's code takes two bytes")
    code = int.from_bytes(payload[:2], "big")
    if code not in _SENDABLE and not 3000 <= code <= 4999:
        raise WebSocketError(PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise WebSocketError(INVALID_DATA, "a close frame's reason must be UTF-8") from None
    return code


class FrameReader:
    """
    A client's frames, from the bytes as they arrive. L{feed} returns the messages and control
    frames completed so far; the first violation is kept in L{error}, after which nothing
    more is read.
    """

    __slots__ = (
        "max_frame",
        "max_message",
        "error",
        "_chunks",
        "_buffered",
        "_wanted",
        "_opcode",
        "_fragments",
        "_fragment_bytes",
    )

    def __init__(self, max_frame: int = MAX_FRAME, max_message: int = MAX_MESSAGE) -> None:
        self.max_frame = max_frame
        self.max_message = max_message
        self.error: WebSocketError | None = None
        #: Bytes received but not read yet, in the pieces they came in, and their total; read
        #: again only once C{_wanted} bytes are there, so a frame trickling in is joined once.
        self._chunks: list[bytes] | None = None
        self._buffered = 0
        self._wanted = 2
        #: A fragmented message being received: its opcode and fragments so far.
        self._opcode = 0
        self._fragments: list[bytes] | None = None
        self._fragment_bytes = 0

    def feed(self, data: bytes) -> list[Frame]:
        if self.error is not None:
            return []
        if self._chunks is not None:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered < self._wanted:
                return []
            data = b"".join(self._chunks)
            self._chunks = None
        frames: list[Frame] = []
        try:
            offset = self._read(data, frames)
        except WebSocketError as e:
            self.error = e
            self._chunks = self._fragments = None
            return frames
        if offset < len(data):
            rest = data[offset:]
            self._chunks = [rest]
            self._buffered = len(rest)
        return frames

    def _read(self, data: bytes, frames: list[Frame]) -> int:
        """Read every whole frame of C{data}; the offset of the first one not whole."""
        offset = 0
        end = len(data)
        max_frame = self.max_frame
        while end - offset >= 2:
            first = data[offset]
            second = data[offset + 1]
            if not second & 0x80:
                raise WebSocketError(PROTOCOL_ERROR, "a client's frames must be masked")
            if first & 0x70:
                raise WebSocketError(PROTOCOL_ERROR, "reserved bits set: no extension agreed")
            length = second & 0x7F
            start = offset + 6
            if length == 126:
                start = offset + 8
                if end < start:
                    self._wanted = start - offset
                    return offset
                length = data[offset + 2] << 8 | data[offset + 3]
            elif length == 127:
                start = offset + 14
                if end < start:
                    self._wanted = start - offset
                    return offset
                length = int.from_bytes(data[offset + 2 : offset + 10], "big")
            opcode = first & 0x0F
            final = first & 0x80
            if opcode >= CLOSE:
                if not final or length > _MAX_CONTROL:
                    raise WebSocketError(
                        PROTOCOL_ERROR, "a control frame is final and at most 125 bytes"
                    )
            elif length > max_frame:
                # Refused from its header: not a byte more of it is kept.
                raise WebSocketError(TOO_BIG, f"frames are limited to {max_frame} bytes")
            if end - start < length:
                self._wanted = start - offset + length
                return offset
            payload = unmask(data[start : start + length], data[start - 4 : start])
            offset = start + length
            if opcode >= CLOSE:
                if opcode > PONG:
                    raise WebSocketError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
                frames.append(Frame(opcode, payload))
                if opcode == CLOSE:
                    # Nothing after a close frame is read.
                    self._wanted = 2
                    return end
            elif opcode == CONTINUATION:
                if self._fragments is None:
                    raise WebSocketError(PROTOCOL_ERROR, "a continuation of no message")
                self._add_fragment(payload)
                if final:
                    frames.append(Frame(self._opcode, b"".join(self._fragments)))
                    self._fragments = None
            elif opcode <= BINARY:
                if self._fragments is not None:
                    raise WebSocketError(PROTOCOL_ERROR, "a new message inside a fragmented one")
                if final:
                    frames.append(Frame(opcode, payload))
                else:
                    self._opcode = opcode
                    self._fragments = []
                    self._fragment_bytes = 0
                    self._add_fragment(payload)
            else:
                raise WebSocketError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
        self._wanted = 2
        return offset

    def _add_fragment(self, payload: bytes) -> None:
        assert self._fragments is not None
        self._fragment_bytes += len(payload)
        if self._fragment_bytes > self.max_message:
            raise WebSocketError(TOO_BIG, f"messages are limited to {self.max_message} bytes")
        self._fragments.append(payload)
