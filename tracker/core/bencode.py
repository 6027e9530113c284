"""Bencoding (BEP 3): integers, byte strings, lists and dicts with byte-string keys."""

from __future__ import annotations

from typing import Any, Callable, Union

Bencodable = Union[int, bytes, list[Any], tuple[Any, ...], dict[bytes, Any]]


class BencodeError(ValueError):
    """Raised for input that is not exactly one well-formed bencoded value."""


def bencode(value: Bencodable) -> bytes:
    """Encode C{value}; dict keys are sorted as raw bytes, as BEP 3 requires."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Any, out: list[bytes]) -> None:
    # bool is an int subclass: refuse it rather than emitting i1e by accident.
    if isinstance(value, bool):
        raise TypeError("cannot bencode a bool")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, bytes):
        out.append(b"%d:" % len(value))
        out.append(value)
    elif isinstance(value, (list, tuple)):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        out.append(b"d")
        for key in sorted(value):
            if not isinstance(key, bytes):
                raise TypeError(f"bencoded dict keys must be bytes, not {type(key).__name__}")
            out.append(b"%d:" % len(key))
            out.append(key)
            _encode(value[key], out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    """Decode exactly one bencoded value; anything trailing or malformed raises L{BencodeError}."""
    try:
        value, end = _decode(data, 0)
    except (IndexError, ValueError) as e:
        raise BencodeError(f"malformed bencoding: {e}") from None
    if end != len(data):
        raise BencodeError("trailing data after bencoded value")
    return value


def _decode_int(data: bytes, start: int, depth: int) -> tuple[int, int]:
    end = data.index(b"e", start)
    digits = data[start + 1 : end]
    # Canonical form only: no leading zeros, no negative zero, no empty number.
    if digits[:1] == b"-":
        if digits[1:2] in (b"", b"0"):
            raise BencodeError("invalid integer")
        magnitude = digits[1:]
    else:
        magnitude = digits
    if not magnitude.isdigit() or (len(magnitude) > 1 and magnitude[:1] == b"0"):
        raise BencodeError("invalid integer")
    return int(digits), end + 1


def _decode_bytes(data: bytes, start: int, depth: int = 0) -> tuple[bytes, int]:
    colon = data.index(b":", start)
    length_digits = data[start:colon]
    if not length_digits.isdigit() or (len(length_digits) > 1 and length_digits[:1] == b"0"):
        raise BencodeError("invalid string length")
    end = colon + 1 + int(length_digits)
    if end > len(data):
        raise BencodeError("string runs past the end of the data")
    return data[colon + 1 : end], end


#: Deeper nesting than any real tracker reply; refusing it keeps recursion far from the stack's
#: limit (PyPy can abort rather than raise RecursionError).
MAX_DEPTH = 64


def _decode_list(data: bytes, start: int, depth: int) -> tuple[list[Any], int]:
    items = []
    position = start + 1
    while data[position : position + 1] != b"e":
        item, position = _decode(data, position, depth + 1)
        items.append(item)
    return items, position + 1


def _decode_dict(data: bytes, start: int, depth: int) -> tuple[dict[bytes, Any], int]:
    result: dict[bytes, Any] = {}
    position = start + 1
    previous: bytes | None = None
    while data[position : position + 1] != b"e":
        key, position = _decode_bytes(data, position)
        if previous is not None and key <= previous:
            raise BencodeError("dict keys not sorted or duplicated")
        previous = key
        result[key], position = _decode(data, position, depth + 1)
    return result, position + 1


_DECODERS: dict[int, Callable[[bytes, int, int], tuple[Any, int]]] = {
    ord("i"): _decode_int,
    ord("l"): _decode_list,
    ord("d"): _decode_dict,
}
for _digit in b"0123456789":
    _DECODERS[_digit] = _decode_bytes


def _decode(data: bytes, start: int, depth: int = 0) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise BencodeError("nested too deeply")
    if start >= len(data):
        raise BencodeError("unexpected end of data")
    decoder = _DECODERS.get(data[start])
    if decoder is None:
        raise BencodeError(f"unexpected byte {data[start : start + 1]!r} at {start}")
    return decoder(data, start, depth)
