"""
Reading an HTTP request line in one regular-expression match.

Twisted (from 24.7 on) checks each byte of a request's target in a Python loop: about 4 % of
what an announce costs the tracker on CPython, 3 % on PyPy (bench/ab.py). L{line_reader} gives
L{twisted.web.http.HTTPChannel.lineReceived} back with that check done by a regular expression
for the lines every client sends (C{GET} or C{HEAD} of a printable target over HTTP/1.0 or 1.1).
Any other line is left to Twisted's own parser, so that what is accepted and what is refused
stays Twisted's decision.
"""

from __future__ import annotations

import re
from types import FunctionType
from typing import Any, Callable, TypeVar, cast

_Parser = Callable[[bytes], "tuple[bytes, bytes, bytes]"]
_Method = TypeVar("_Method", bound=Callable[..., Any])

#: What Twisted's parser accepts of the common lines: a request target of bytes 33 to 176 (its
#: bound, kept as it is), one space on either side.
_COMMON = re.compile(rb"(GET|HEAD) ([!-\xb0]+) (HTTP/1\.[01])")


def _parser(twisted_parser: _Parser) -> _Parser:
    def parse(line: bytes) -> tuple[bytes, bytes, bytes]:
        match = _COMMON.fullmatch(line)
        if match is None:
            return twisted_parser(line)
        method, target, version = match.groups()
        return method, target, version

    return parse


def line_reader(line_received: _Method) -> _Method:
    """
    C{line_received} (Twisted's C{HTTPChannel.lineReceived}) reading request lines through
    L{_COMMON}; C{line_received} itself where Twisted parses request lines another way.
    """
    if not isinstance(line_received, FunctionType):
        return line_received
    names = line_received.__globals__
    code = line_received.__code__
    if "_parseRequestLine" not in code.co_names or "_parseRequestLine" not in names:
        return line_received
    # The same code over a copy of its module's names, where the parser is ours: Twisted's
    # method is not copied out, so what a new Twisted changes in it applies here too. (A name
    # rebound in twisted.web.http after this runs, by a test patching it say, is not seen.)
    namespace = dict(names)
    namespace["_parseRequestLine"] = _parser(names["_parseRequestLine"])
    reader = FunctionType(
        code,
        namespace,
        line_received.__name__,
        line_received.__defaults__,
        line_received.__closure__,
    )
    return cast(_Method, reader)
