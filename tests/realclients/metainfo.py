"""A BEP 3 metainfo (.torrent) file for one file, written without any BitTorrent library.

The real-client tests need a torrent before any client runs; building it here lets the
aria2 and Transmission pairs run where libtorrent's Python bindings are not installed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, NamedTuple

from tracker.core.bencode import bdecode, bencode


class Metainfo(NamedTuple):
    """A torrent's bencoded bytes and its v1 info hash."""

    data: bytes
    info_hash: bytes


def piece_hashes(path: Path, piece_length: int) -> bytes:
    """The SHA-1 of each C{piece_length} bytes of the file (the last piece may be shorter),
    end to end: the info dictionary's C{pieces}."""
    hashes = []
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(piece_length), b""):
            hashes.append(hashlib.sha1(piece).digest())
    return b"".join(hashes)


def single_file_torrent(
    path: Path, announce_url: str, piece_length: int, private: bool = True
) -> Metainfo:
    """
    The metainfo of the one file at C{path}: an C{info} dictionary with its name, length, piece
    length and piece hashes (BEP 3), C{private} set as BEP 27 says, and C{announce_url} as the
    only tracker (no C{announce-list}).
    """
    info: dict[bytes, Any] = {
        b"name": path.name.encode("utf-8"),
        b"length": path.stat().st_size,
        b"piece length": piece_length,
        b"pieces": piece_hashes(path, piece_length),
    }
    if private:
        info[b"private"] = 1
    meta = {
        b"announce": announce_url.encode("utf-8"),
        b"created by": b"tracker real-client tests",
        b"info": info,
    }
    return Metainfo(bencode(meta), hashlib.sha1(bencode(info)).digest())


def announcing_to(data: bytes, announce_url: str) -> Metainfo:
    """
    The torrent C{data} with C{announce_url} as its only tracker instead of its own: the same
    C{info} dictionary, so the same info hash. (Re-encoding gives back the bytes it was decoded
    from because bencoding is canonical: sorted keys, no choice of number formats.)
    """
    meta = bdecode(data)
    meta[b"announce"] = announce_url.encode("utf-8")
    meta.pop(b"announce-list", None)
    return Metainfo(bencode(meta), hashlib.sha1(bencode(meta[b"info"])).digest())
