"""
Splitting a raw query string into binary-safe parameters.

C{request.args} is unusable for BitTorrent: it turns C{+} into a space and splits on C{;}, both of
which corrupt a binary C{info_hash}. Here only C{&} separates parameters, C{+} stays literal, and
every percent escape must be exactly two hex digits of either case.
"""

from __future__ import annotations

from tracker.errors import TrackerError

Params = dict[bytes, list[bytes]]

_HEX = b"0123456789abcdefABCDEF"
# Every two-character hex escape body, mapped to the byte it stands for.
_ESCAPES = {
    bytes((high, low)): bytes((int(bytes((high, low)), 16),)) for high in _HEX for low in _HEX
}


def split_query(uri: bytes) -> bytes:
    """The query part of a request URI, without the fragment."""
    _, _, query = uri.partition(b"?")
    return query.partition(b"#")[0]


def percent_decode(value: bytes) -> bytes:
    """Decode C{%XX} escapes; a malformed escape raises L{TrackerError}."""
    if b"%" not in value:
        return value
    head, *pieces = value.split(b"%")
    decoded = [head]
    for piece in pieces:
        byte = _ESCAPES.get(piece[:2])
        if byte is None:
            raise TrackerError("malformed percent-encoding")
        decoded.append(byte)
        decoded.append(piece[2:])
    return b"".join(decoded)


def parse_query(query: bytes) -> Params:
    """Map each decoded parameter name to its decoded values, in order of appearance."""
    params: Params = {}
    if not query:
        return params
    for pair in query.split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        params.setdefault(percent_decode(name), []).append(percent_decode(value))
    return params
