"""The binary-safe query parser: only & separates, + is literal, %XX in either case."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.core.errors import TrackerError
from tracker.core.query import parse_query, percent_decode, split_query

#: RFC 3986 characters a client may leave unescaped in a query value (& is the separator, %
#: starts an escape and # ends the query, so those three are not here).
LITERAL_VALUE_BYTES = sorted(
    set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$'()*+,;=:@/?")
)


def _escape(data: bytes, upper: list[bool]) -> bytes:
    """Percent-encode every byte of C{data}, choosing the case of each escape."""
    return b"".join(
        (b"%%%02X" if is_upper else b"%%%02x") % byte for byte, is_upper in zip(data, upper)
    )


@pytest.mark.parametrize("byte", range(256))
def test_every_byte_decodes_from_uppercase_escape(byte: int) -> None:
    """Each byte 0..255 written as %XX with uppercase hex reaches the tracker unchanged."""
    escaped = b"%%%02X" % byte
    assert percent_decode(escaped) == bytes([byte])
    assert parse_query(b"info_hash=" + escaped) == {b"info_hash": [bytes([byte])]}


@pytest.mark.parametrize("byte", range(256))
def test_every_byte_decodes_from_lowercase_escape(byte: int) -> None:
    """Each byte 0..255 written as %xx with lowercase hex reaches the tracker unchanged."""
    escaped = b"%%%02x" % byte
    assert percent_decode(escaped) == bytes([byte])
    assert parse_query(b"info_hash=" + escaped) == {b"info_hash": [bytes([byte])]}


@pytest.mark.parametrize("byte", range(256))
def test_every_byte_decodes_from_mixed_case_escape(byte: int) -> None:
    """Escapes with one uppercase and one lowercase hex digit decode like any other."""
    for escaped in (b"%%%X%x" % (byte >> 4, byte & 15), b"%%%x%X" % (byte >> 4, byte & 15)):
        assert percent_decode(escaped) == bytes([byte])


@pytest.mark.parametrize("byte", LITERAL_VALUE_BYTES)
def test_unescaped_legal_bytes_pass_through(byte: int) -> None:
    """Characters that may appear unescaped in a query value are taken literally."""
    value = bytes([byte])
    assert percent_decode(value) == value
    assert parse_query(b"k=" + value) == {b"k": [value]}
    assert parse_query(b"k=a" + value + b"b&z=1") == {b"k": [b"a" + value + b"b"], b"z": [b"1"]}


@settings(deadline=None)
@given(st.binary(max_size=64), st.data())
def test_any_bytes_round_trip_with_random_escape_case(data: bytes, draw: st.DataObject) -> None:
    """Any binary value, every byte escaped with a random hex case, decodes to itself."""
    upper = draw.draw(st.lists(st.booleans(), min_size=len(data), max_size=len(data)))
    escaped = _escape(data, upper)
    assert percent_decode(escaped) == data
    assert parse_query(b"info_hash=" + escaped + b"&port=1") == {
        b"info_hash": [data],
        b"port": [b"1"],
    }


@settings(deadline=None)
@given(st.lists(st.sampled_from(range(256)), max_size=40), st.data())
def test_mixed_literal_and_escaped_bytes_round_trip(data: list[int], draw: st.DataObject) -> None:
    """Values mixing literal characters with escapes of either case decode to the raw bytes."""
    pieces = []
    for byte in data:
        choices = ["upper", "lower"] + (["literal"] if byte in LITERAL_VALUE_BYTES else [])
        choice = draw.draw(st.sampled_from(choices))
        if choice == "literal":
            pieces.append(bytes([byte]))
        else:
            pieces.append(_escape(bytes([byte]), [choice == "upper"]))
    assert parse_query(b"v=" + b"".join(pieces)) == {b"v": [bytes(data)]}


def test_plus_is_literal() -> None:
    """A + in a query stays a plus sign; it is never turned into a space."""
    assert parse_query(b"peer_id=-AB1234-a+b+c") == {b"peer_id": [b"-AB1234-a+b+c"]}
    assert percent_decode(b"+") == b"+"


def test_escaped_plus_and_space_are_distinct() -> None:
    """%2B decodes to +, %20 to a space, and neither is confused with a literal +."""
    assert parse_query(b"a=%2B&b=%2b&c=%20&d=+") == {
        b"a": [b"+"],
        b"b": [b"+"],
        b"c": [b" "],
        b"d": [b"+"],
    }


def test_only_ampersand_separates() -> None:
    """A semicolon is part of the value, not a second separator."""
    assert parse_query(b"a=1;b=2&c=3") == {b"a": [b"1;b=2"], b"c": [b"3"]}


def test_escaped_separators_stay_in_the_value() -> None:
    """%26 and %3D decode to & and = inside a value without splitting it."""
    assert parse_query(b"a=x%26y%3Dz&b=1") == {b"a": [b"x&y=z"], b"b": [b"1"]}


def test_equals_sign_in_value() -> None:
    """Only the first = separates name from value."""
    assert parse_query(b"a=b=c") == {b"a": [b"b=c"]}


def test_empty_value() -> None:
    """A parameter with = and nothing after has an empty value."""
    assert parse_query(b"event=&port=1") == {b"event": [b""], b"port": [b"1"]}


def test_parameter_without_equals() -> None:
    """A parameter with no = at all is present with an empty value."""
    assert parse_query(b"compact&port=1") == {b"compact": [b""], b"port": [b"1"]}


def test_empty_name() -> None:
    """A pair that starts with = is kept under the empty name."""
    assert parse_query(b"=x") == {b"": [b"x"]}


def test_empty_pairs_skipped() -> None:
    """Doubled, leading and trailing ampersands produce no parameters."""
    assert parse_query(b"&a=1&&b=2&") == {b"a": [b"1"], b"b": [b"2"]}
    assert parse_query(b"&&&") == {}


def test_empty_query() -> None:
    """An empty query string yields no parameters."""
    assert parse_query(b"") == {}


def test_repeated_parameters_kept_in_order() -> None:
    """A repeated name collects every value in the order given."""
    assert parse_query(b"info_hash=a&x=1&info_hash=b&info_hash=a") == {
        b"info_hash": [b"a", b"b", b"a"],
        b"x": [b"1"],
    }


def test_names_are_percent_decoded() -> None:
    """Parameter names are decoded like values, so info%5Fhash is info_hash."""
    assert parse_query(b"info%5Fhash=1&peer%5fid=2") == {b"info_hash": [b"1"], b"peer_id": [b"2"]}


def test_escape_followed_by_literal_text() -> None:
    """Characters after a two-digit escape are kept literally, even if they look like hex."""
    assert percent_decode(b"%41BC%4a1") == b"ABCJ1"


@pytest.mark.parametrize(
    "query",
    [
        b"info_hash=%G1",
        b"info_hash=%1G",
        b"info_hash=%4",
        b"info_hash=%4&port=1",
        b"info_hash=abc%",
        b"info_hash=%",
        b"info_hash=%%41",
        b"info_hash=% 1",
        b"info_hash=%+1",
        b"info_hash=%-1",
        b"info_hash=%\xc3\xa9",
        b"info_%zzhash=1",
        b"%=1",
    ],
)
def test_malformed_escapes_refused(query: bytes) -> None:
    """A % not followed by exactly two hex digits, in a name or a value, is refused."""
    with pytest.raises(TrackerError) as caught:
        parse_query(query)
    assert caught.value.reason


@pytest.mark.parametrize(
    ("uri", "query"),
    [
        (b"/announce?info_hash=abc&port=1", b"info_hash=abc&port=1"),
        (b"/announce?a=1#fragment", b"a=1"),
        (b"/announce?a=1?b=2", b"a=1?b=2"),
        (b"/announce", b""),
        (b"/announce?", b""),
        (b"/scrape?info_hash=%41", b"info_hash=%41"),
    ],
)
def test_split_query(uri: bytes, query: bytes) -> None:
    """The query is everything after the first ? up to any # fragment, still encoded."""
    assert split_query(uri) == query
