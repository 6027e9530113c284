"""
The change journal: how the swarm index's changes are written down, and read back.

A journal is a byte string of records, each a tag byte and fixed fields (big-endian):

    K  info_hash(20) peer_id(20) last_seen(8) flags(1) key(4) length(1) address(length)
       a peer's whole state; flags bit 0: seeder, bit 1: its completion was counted; key: the
       key it registered with (0: none)
    P  the same without the key: written by schema version 2, read as a peer without a key
    G  info_hash(20) peer_id(20)         the peer is gone
    D  info_hash(20) downloaded(8)       the torrent's completion count
    S  info_hash(20) downloaded(8)       the swarm as a whole: forget its peers and take this
                                         count; the swarm's B records follow (a checkpoint)
    B  info_hash(20) seeders(1) width(1) count(4), then count peer ids (20 bytes each), count
       addresses (width each), count last-seen times (8 each), count completion bytes (0 or
       1) and count keys (4 each): a run of one group's peers, as a checkpoint writes them;
       each is replayed as a K record would be. Version 4 wrote K records instead.

Replaying records in the order written rebuilds the index. Appending a record costs one
C{struct} pack, so recording a change costs an announce almost nothing; a checkpoint copies a
group's packed arrays, so writing the index costs a few copies per thousand peers.
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import Protocol

PEER = struct.Struct(">c20s20sqBIB")
#: The peer record of schema version 2, before peers had keys; still read, no longer written.
KEYLESS_PEER = struct.Struct(">c20s20sqBB")
GONE = struct.Struct(">c20s20s")
COUNT = struct.Struct(">c20sq")
BULK = struct.Struct(">c20sBBI")
SEEDER = 1
COMPLETED = 2
#: Bytes a peer takes in a B record, besides its address.
_BULK_PEER = 20 + 8 + 1 + 4
_WIDTHS = (6, 18)
#: B records' times and keys are big-endian, as every other field.
_SWAP = sys.byteorder == "little"

_K, _P, _G, _D, _S, _B = b"K"[0], b"P"[0], b"G"[0], b"D"[0], b"S"[0], b"B"[0]


class ReplayTarget(Protocol):
    """
    What a journal is replayed into: the swarm index (L{tracker.core.swarms.SwarmIndex}).
    Named here, not imported, because the index writes its changes with this module's records.
    """

    def load_peer(
        self,
        info_hash: bytes,
        peer_id: bytes,
        address: bytes,
        seeder: int,
        seen: int,
        done: int,
        key: int = 0,
    ) -> None: ...

    def load_gone(self, info_hash: bytes, peer_id: bytes) -> None: ...

    def load_count(self, info_hash: bytes, downloaded: int, reset: bool = False) -> None: ...


def bulk_record(
    info_hash: bytes,
    seeders: int,
    width: int,
    ids: list[bytes],
    addresses: bytes | bytearray,
    seen: array[int],
    completed: bytes | bytearray,
    keys: array[int],
) -> bytes:
    """A B record of a run of peers, given as slices of its group's arrays (C{seen} and
    C{keys} are changed: they must be copies)."""
    if _SWAP:
        seen.byteswap()
        keys.byteswap()
    return b"".join(
        (
            BULK.pack(b"B", info_hash, seeders, width, len(ids)),
            *ids,
            addresses,
            seen.tobytes(),
            completed,
            keys.tobytes(),
        )
    )


def _replay_bulk(journal: bytes, offset: int, index: ReplayTarget) -> int:
    """Load the peers of the B record at C{offset}; the offset past it."""
    _, info_hash, seeders, width, count = BULK.unpack_from(journal, offset)
    if width not in _WIDTHS:
        raise JournalError(f"a B record with {width}-byte addresses at offset {offset}")
    start = offset + BULK.size
    end: int = start + count * (_BULK_PEER + width)
    if end > len(journal):
        raise JournalError("a B record ends early")
    addresses = start + 20 * count
    times = addresses + width * count
    flags = times + 8 * count
    seen = array("q", journal[times:flags])
    keys = array("I", journal[flags + count : end])
    if _SWAP:
        seen.byteswap()
        keys.byteswap()
    load = index.load_peer
    for i in range(count):
        at = addresses + i * width
        load(
            info_hash,
            journal[start + 20 * i : start + 20 * i + 20],
            journal[at : at + width],
            seeders,
            seen[i],
            journal[flags + i],
            keys[i],
        )
    return end


class JournalError(Exception):
    """A journal that is not a sequence of whole records."""


def replay(journal: bytes, index: ReplayTarget) -> None:
    """Apply every record of C{journal} to C{index}, in order."""
    offset = 0
    end = len(journal)
    peer_size = PEER.size
    keyless_size = KEYLESS_PEER.size
    try:
        while offset < end:
            tag = journal[offset]
            if tag in (_K, _P):
                if tag == _K:
                    _, info_hash, peer_id, seen, flags, key, length = PEER.unpack_from(
                        journal, offset
                    )
                    offset += peer_size
                else:
                    _, info_hash, peer_id, seen, flags, length = KEYLESS_PEER.unpack_from(
                        journal, offset
                    )
                    key = 0
                    offset += keyless_size
                if length not in _WIDTHS:
                    # Replayed, it would put a peer of the wrong size among its group's packed
                    # addresses, and every peer after it would be read askew.
                    raise JournalError(f"a peer record with a {length}-byte address at {offset}")
                address = journal[offset : offset + length]
                if len(address) != length:
                    raise JournalError("a peer record ends early")
                offset += length
                index.load_peer(
                    info_hash, peer_id, address, flags & SEEDER, seen, (flags & COMPLETED) >> 1, key
                )
            elif tag == _B:
                offset = _replay_bulk(journal, offset, index)
            elif tag == _G:
                _, info_hash, peer_id = GONE.unpack_from(journal, offset)
                offset += GONE.size
                index.load_gone(info_hash, peer_id)
            elif tag in (_D, _S):
                _, info_hash, downloaded = COUNT.unpack_from(journal, offset)
                offset += COUNT.size
                index.load_count(info_hash, downloaded, reset=tag == _S)
            else:
                raise JournalError(f"unknown record tag {tag!r} at offset {offset}")
    except struct.error:
        raise JournalError("a record ends early") from None
