"""Request lines read in one match: the tracker accepts and refuses exactly what Twisted does."""

from __future__ import annotations

import random
from typing import Callable

from twisted.trial.unittest import TestCase
from twisted.web import http

from tracker.http.requestline import line_reader

_Parser = Callable[[bytes], "tuple[bytes, bytes, bytes]"]


def outcome(parse: _Parser, line: bytes) -> object:
    try:
        return parse(line)
    except ValueError:
        return ValueError


def some_lines(count: int) -> list[bytes]:
    """Request lines near the common form, each with one thing that may be wrong."""
    rng = random.Random(7)
    methods = [b"GET", b"HEAD", b"POST", b"get", b"G\xc3T", b"", b"GET\t"]
    versions = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 ", b""]
    lines = []
    for _ in range(count):
        target = bytes(rng.randrange(256) for _ in range(rng.randrange(3)))
        target = b"/announce?x=" + target if rng.random() < 0.9 else target
        lines.append(rng.choice(methods) + b" " + target + b" " + rng.choice(versions))
    return lines


class RequestLineTests(TestCase):
    def setUp(self) -> None:
        reader = line_reader(http.HTTPChannel.lineReceived)
        self.twisted: _Parser | None = getattr(http, "_parseRequestLine", None)
        self.ours: _Parser | None = reader.__globals__.get("_parseRequestLine")

    def test_same_outcome_as_twisted(self) -> None:
        """Every line, well formed or not, parses to what Twisted's parser gives or is
        refused as Twisted refuses it."""
        if self.twisted is None or self.ours is None:
            self.assertIs(line_reader(http.HTTPChannel.lineReceived), http.HTTPChannel.lineReceived)
            return
        lines = some_lines(5000) + [
            b"GET /announce?info_hash=%12%34 HTTP/1.1",
            b"HEAD /scrape HTTP/1.0",
            b"GET /a\xb0 HTTP/1.1",
            b"GET /a\xb1 HTTP/1.1",
            b"GET /a\x7f HTTP/1.1",
            b"GET  HTTP/1.1",
            b"GET / HTTP/1.1\n",
        ]
        for line in lines:
            self.assertEqual(outcome(self.ours, line), outcome(self.twisted, line), line)

    def test_common_line_split(self) -> None:
        """A client's announce line is split into its method, target and version."""
        for parse in (self.ours, self.twisted):
            if parse is not None:
                self.assertEqual(
                    parse(b"GET /announce?port=6881 HTTP/1.1"),
                    (b"GET", b"/announce?port=6881", b"HTTP/1.1"),
                )

    def test_without_a_request_line_parser(self) -> None:
        """Where Twisted reads request lines without _parseRequestLine (before 24.7), its
        method is used as it is."""

        def line_received(self: object, line: bytes) -> None:
            line.split()

        self.assertIs(line_reader(line_received), line_received)
