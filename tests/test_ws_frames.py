"""The WebSocket codec alone: unmasking, reading frames however the bytes are cut, and never
failing on bad input but by closing (tracker/ws/frames.py)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.wsclient import BINARY, CLOSE, PING, TEXT, client_frame
from tracker.ws.frames import (
    PROTOCOL_ERROR,
    TOO_BIG,
    Frame,
    FrameReader,
    _unmask_whole,
    _unmask_words,
    accept_key,
)


def naive(payload: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class UnmaskTests(SynchronousTestCase):
    def test_both_ways_agree_with_the_definition(self) -> None:
        """Both ways of unmasking (one per interpreter) give payload XOR the repeated mask,
        whatever the length, a multiple of four or not."""
        for length in (*range(0, 12), 125, 126, 127, 1000, 3001, 16 * 1024):
            payload, mask = os.urandom(length), os.urandom(4)
            expected = naive(payload, mask)
            self.assertEqual(_unmask_whole(payload, mask), expected, length)
            self.assertEqual(_unmask_words(payload, mask), expected, length)


class ReaderTests(SynchronousTestCase):
    def test_accept_key(self) -> None:
        """Sec-WebSocket-Accept is RFC 6455's own example for its example key."""
        self.assertEqual(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.binary(max_size=300), min_size=1, max_size=6),
        st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=40),
    )
    def test_cut_anywhere(self, payloads: list[bytes], cuts: list[int]) -> None:
        """Frames read from bytes cut anywhere, into pieces of any size, are the frames read
        from the bytes whole: messages joined from their fragments, pings in between."""
        data = b""
        expected = []
        for n, payload in enumerate(payloads):
            if n % 3 == 2 and len(payload) > 1:
                half = len(payload) // 2
                data += client_frame(BINARY, payload[:half], final=False)
                data += client_frame(PING, b"p")
                data += client_frame(0, payload[half:])
                expected += [Frame(PING, b"p"), Frame(BINARY, payload)]
            else:
                data += client_frame(TEXT, payload)
                expected.append(Frame(TEXT, payload))
        reader = FrameReader()
        got: list[Frame] = []
        offset = 0
        for cut in cuts * (len(data) // sum(cuts) + 1):
            got += reader.feed(data[offset : offset + cut])
            offset += cut
            if offset >= len(data):
                break
        self.assertIsNone(reader.error)
        self.assertEqual(got, expected)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
    def test_any_bytes_read_or_refused(self, data: bytes, size: int) -> None:
        """Whatever bytes arrive, the reader returns frames or keeps an error (a close code
        and a reason); it never raises and never holds more than one frame's worth."""
        reader = FrameReader(max_frame=256, max_message=1024)
        for start in range(0, len(data), size):
            for frame in reader.feed(data[start : start + size]):
                self.assertLessEqual(len(frame.payload), 1024)
            buffered = sum(map(len, reader._chunks or ()))
            self.assertLessEqual(buffered, 14 + 256 + size)
        if reader.error is not None:
            self.assertIn(reader.error.code, (PROTOCOL_ERROR, TOO_BIG))
            self.assertTrue(reader.error.reason)

    def test_nothing_read_after_close(self) -> None:
        """Bytes after a close frame are not read."""
        reader = FrameReader()
        frames = reader.feed(client_frame(CLOSE, b"\x03\xe8") + client_frame(TEXT, b"late"))
        self.assertEqual(frames, [Frame(CLOSE, b"\x03\xe8")])
