"""
A small blocking WebSocket client for the tests: the opening handshake, masked frames of any
shape (including the ones a server must refuse), and reading what the server sends. It runs in
a thread while the reactor serves (C{deferToThread}).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
from typing import Any

CLIENT_TIMEOUT = 5.0
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeRefused(Exception):
    def __init__(self, status: int, head: bytes, body: bytes) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.head = head
        self.headers = _headers(head)
        self.body = body


def client_frame(
    opcode: int,
    payload: bytes,
    final: bool = True,
    masked: bool = True,
    rsv: int = 0,
) -> bytes:
    """A frame as a client sends it (masked, unless told otherwise)."""
    head = bytes([(0x80 if final else 0) | rsv << 4 | opcode])
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 0x10000:
        head += bytes([mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + length.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def frame_header(opcode: int, length: int) -> bytes:
    """The header (with its mask) of a masked final frame of C{length} bytes, alone."""
    if length < 126:
        head = bytes([0x80 | opcode, 0x80 | length])
    elif length < 0x10000:
        head = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00"


class WebSocketClient:
    """One connection: C{path} on C{host}:C{port}, upgraded to a WebSocket."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/announce",
        extra: bytes = b"",
        version: bytes = b"13",
        first: bytes = b"",
        timeout: float = CLIENT_TIMEOUT,
        context: ssl.SSLContext | None = None,
    ) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        if context is not None:
            # wss://: the same, over TLS.
            sock = context.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.sock.settimeout(timeout)
        self._buffer = b""
        key = base64.b64encode(os.urandom(16))
        request = (
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: %s\r\n%s\r\n"
            % (path.encode(), host.encode(), port, key, version, extra)
        )
        # Whatever the test wants sent at once after the handshake, in the same packet.
        self.sock.sendall(request + first)
        head = self._read_until(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            self.headers = _headers(head)
            length = int(self.headers.get(b"content-length", b"0"))
            body = self._read_exactly(length)
            self.sock.close()
            raise HandshakeRefused(status, head, body)
        self.headers = _headers(head)
        expected = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        if self.headers.get(b"sec-websocket-accept") != expected:
            raise AssertionError(f"wrong Sec-WebSocket-Accept in {head!r}")

    # Sending.

    def send(self, message: Any) -> None:
        """A JSON message in a text frame."""
        self.send_text(json.dumps(message).encode("utf-8"))

    def send_text(self, payload: bytes) -> None:
        self.sock.sendall(client_frame(TEXT, payload))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # Receiving.

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            if not self._fill():
                raise EOFError(f"closed before {marker!r}: {self._buffer!r}")
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            if not self._fill():
                raise EOFError(f"closed {count - len(self._buffer)} bytes early")
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def receive_frame(self) -> tuple[int, bytes]:
        """The next frame from the server, which must be final and unmasked."""
        first, second = self._read_exactly(2)
        if second & 0x80:
            raise AssertionError("a server's frames must not be masked")
        if not first & 0x80:
            raise AssertionError("the tracker sends every message in one frame")
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(self._read_exactly(2), "big")
        elif length == 127:
            length = int.from_bytes(self._read_exactly(8), "big")
        return first & 0x0F, self._read_exactly(length)

    def receive(self) -> dict[str, Any]:
        """The next message, which must be JSON in a text frame."""
        opcode, payload = self.receive_frame()
        if opcode != TEXT:
            raise AssertionError(f"expected a text frame, got opcode {opcode}: {payload!r}")
        message = json.loads(payload.decode("ascii"))
        assert isinstance(message, dict)
        return message

    def receive_all(self, count: int) -> list[dict[str, Any]]:
        return [self.receive() for _ in range(count)]

    def expect_close(self) -> tuple[int, str]:
        """Read up to the server's close frame; its code and reason. The server must then
        close the connection."""
        while True:
            opcode, payload = self.receive_frame()
            if opcode == CLOSE:
                break
        code = int.from_bytes(payload[:2], "big")
        if self._fill():
            raise AssertionError(f"data after the close frame: {self._buffer!r}")
        return code, payload[2:].decode("utf-8")

    def expect_silence(self, seconds: float = 0.3) -> None:
        """Nothing arrives for C{seconds}."""
        if self._buffer:
            raise AssertionError(f"unexpected data: {self._buffer!r}")
        self.sock.settimeout(seconds)
        try:
            received = self._fill()
        except socket.timeout:
            return
        finally:
            self.sock.settimeout(CLIENT_TIMEOUT)
        if received:
            raise AssertionError(f"unexpected data: {self._buffer!r}")
        raise AssertionError("the server closed the connection")

    def close(self) -> None:
        self.sock.close()


def _headers(head: bytes) -> dict[bytes, bytes]:
    lines = head.split(b"\r\n")[1:]
    return {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in lines)
    }
