"""Bencoding (BEP 3): round trips, canonical output and refusal of malformed input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.core.bencode import BencodeError, bdecode, bencode

#: Any value the decoder can produce: ints, byte strings, lists and byte-keyed dicts, nested.
bencodable: st.SearchStrategy[Any] = st.recursive(
    st.integers() | st.binary(max_size=64),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.binary(max_size=16), children, max_size=6)
    ),
    max_leaves=40,
)


@settings(deadline=None)
@given(bencodable)
def test_round_trip(value: Any) -> None:
    """Any nested value of ints, byte strings, lists and dicts decodes back to itself."""
    assert bdecode(bencode(value)) == value


@settings(deadline=None)
@given(bencodable)
def test_encoding_is_canonical(value: Any) -> None:
    """Re-encoding decoded data reproduces the exact bytes: there is one encoding per value."""
    encoded = bencode(value)
    assert bencode(bdecode(encoded)) == encoded


@settings(deadline=None)
@given(bencodable)
def test_every_proper_prefix_is_refused(value: Any) -> None:
    """A truncated bencoding is never mistaken for a complete value."""
    encoded = bencode(value)
    for end in range(len(encoded)):
        with pytest.raises(BencodeError):
            bdecode(encoded[:end])


@settings(deadline=None)
@given(bencodable, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_refused(value: Any, tail: bytes) -> None:
    """Anything after one complete value makes the whole input invalid."""
    with pytest.raises(BencodeError):
        bdecode(bencode(value) + tail)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"i0e"),
        (42, b"i42e"),
        (-42, b"i-42e"),
        (2**70, b"i1180591620717411303424e"),
        (b"", b"0:"),
        (b"spam", b"4:spam"),
        (b"\x00\xff", b"2:\x00\xff"),
        ([], b"le"),
        ([b"spam", 7], b"l4:spami7ee"),
        ({}, b"de"),
        ({b"cow": b"moo", b"spam": [b"a", {b"x": 1}]}, b"d3:cow3:moo4:spaml1:ad1:xi1eeee"),
    ],
)
def test_known_encodings(value: Any, encoded: bytes) -> None:
    """Values encode to the BEP 3 bytes and those bytes decode back to the value."""
    assert bencode(value) == encoded
    assert bdecode(encoded) == value


def test_tuples_encode_as_lists() -> None:
    """A tuple is written as a bencoded list and so reads back as a list."""
    assert bencode((1, b"a")) == b"li1e1:ae"
    assert bdecode(bencode((1, b"a"))) == [1, b"a"]


def test_dict_keys_sorted_as_raw_bytes() -> None:
    """Dict keys are written in raw byte order, not insertion, length or text order."""
    value = {b"\xff": 3, b"b": 1, b"aa": 5, b"a": 2, b"Z": 4, b"\x80": 6}
    assert bencode(value) == b"d1:Zi4e1:ai2e2:aai5e1:bi1e1:\x80i6e1:\xffi3ee"


def test_nested_dict_keys_sorted() -> None:
    """Key order is canonical at every level of nesting."""
    value = {b"z": {b"y": 1, b"x": 2}, b"a": [{b"d": 0, b"c": 0}]}
    assert bencode(value) == b"d1:ald1:ci0e1:di0eee1:zd1:xi2e1:yi1eee"


def test_decoded_dict_keeps_stream_order() -> None:
    """A decoded dict lists its keys in the (sorted) order they appear in the input."""
    decoded = bdecode(b"d1:Ai1e1:ai2e1:bi3ee")
    assert list(decoded) == [b"A", b"a", b"b"]


@pytest.mark.parametrize(
    "data",
    [
        b"i01e",
        b"i00e",
        b"i-0e",
        b"i-00e",
        b"i-01e",
        b"ie",
        b"i-e",
        b"i+1e",
        b"i 1e",
        b"i1 e",
        b"i1.0e",
        b"i0x1e",
        b"i\xd9\xa1e",
    ],
)
def test_non_canonical_integers_refused(data: bytes) -> None:
    """Integers with leading zeros, negative zero, signs, spaces or no digits are refused."""
    with pytest.raises(BencodeError):
        bdecode(data)


@pytest.mark.parametrize(
    "data",
    [b"01:a", b"00:", b"-1:a", b"+1:a", b" 1:a", b"5:spam", b"4spam", b"1\xd9\xa1:a"],
)
def test_malformed_string_lengths_refused(data: bytes) -> None:
    """String lengths with leading zeros, signs or too few following bytes are refused."""
    with pytest.raises(BencodeError):
        bdecode(data)


@pytest.mark.parametrize(
    "data",
    [b"i1ei2e", b"4:spamx", b"lee", b"dee", b"0:0:", b"i1e\n", b"le\x00"],
)
def test_trailing_data_refused(data: bytes) -> None:
    """Input must be exactly one value: trailing bytes are an error, not ignored."""
    with pytest.raises(BencodeError):
        bdecode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"d1:bi1e1:ai2ee",
        b"d1:ai1e1:ai2ee",
        b"d2:aai1e1:ai2ee",
        b"d1:\xffi1e1:\x80i2ee",
        b"d1:ad1:yi1e1:xi2eee",
    ],
)
def test_unsorted_or_duplicate_keys_refused(data: bytes) -> None:
    """Dicts whose keys are out of raw byte order or repeated, at any depth, are refused."""
    with pytest.raises(BencodeError):
        bdecode(data)


@pytest.mark.parametrize("data", [b"di1ei2ee", b"dli1ee1:ae", b"dde1:ae"])
def test_non_string_dict_keys_refused(data: bytes) -> None:
    """Dict keys must be byte strings."""
    with pytest.raises(BencodeError):
        bdecode(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"i", b"i12", b"4:spa", b"l", b"li1e", b"d", b"d1:a", b"d1:ai1e", b"l4:spam", b"12"],
)
def test_truncated_input_refused(data: bytes) -> None:
    """Input that stops before its value is complete is refused."""
    with pytest.raises(BencodeError):
        bdecode(data)


@pytest.mark.parametrize("data", [b"x", b"s4:spam", b"e", b"\x00", b"I1e", b"L", b"D"])
def test_unknown_type_byte_refused(data: bytes) -> None:
    """A value starting with anything but i, l, d or a digit is refused."""
    with pytest.raises(BencodeError):
        bdecode(data)


@pytest.mark.parametrize("depth", [100_000, 1_000_000])
def test_deep_list_nesting_refused(depth: int) -> None:
    """Pathologically deep nesting is refused with BencodeError instead of crashing."""
    with pytest.raises(BencodeError):
        bdecode(b"l" * depth + b"e" * depth)


def test_deep_dict_nesting_refused() -> None:
    """Pathologically deep dict nesting is refused with BencodeError instead of crashing."""
    depth = 100_000
    with pytest.raises(BencodeError):
        bdecode(b"d1:a" * depth + b"i0e" + b"e" * depth)


def test_unterminated_deep_nesting_refused() -> None:
    """Deep nesting that is also truncated is refused with BencodeError."""
    with pytest.raises(BencodeError):
        bdecode(b"l" * 100_000)


def _nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_moderate_nesting_decodes() -> None:
    """Realistic nesting depths decode normally."""
    depth = 50
    assert bdecode(b"l" * depth + b"e" * depth) == _nested_list(depth)


def test_bencode_error_is_a_value_error() -> None:
    """Callers catching ValueError also catch malformed bencoding."""
    with pytest.raises(ValueError):
        bdecode(b"i01e")


@pytest.mark.parametrize("value", [True, False, "text", 1.5, None, {1, 2}, {b"k": None}, [None]])
def test_unencodable_values_refused(value: Any) -> None:
    """Bools, text, floats, None and sets cannot be encoded, even nested."""
    with pytest.raises(TypeError):
        bencode(value)


@pytest.mark.parametrize("value", [{"text": 1}, {1: 1}, {b"a": {"b": 1}}])
def test_non_bytes_dict_keys_refused_on_encode(value: Any) -> None:
    """Dict keys must be bytes when encoding."""
    with pytest.raises(TypeError):
        bencode(value)
