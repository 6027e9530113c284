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
                                         count; the swarm's K records follow (a checkpoint)

Replaying records in the order written rebuilds the index. Appending a record costs one
C{struct} pack, so recording a change costs an announce almost nothing, and a whole group commit
is one blob in one row however many changes it holds.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracker.swarms import SwarmIndex

PEER = struct.Struct(">c20s20sqBIB")
#: The peer record of schema version 2, before peers had keys; still read, no longer written.
KEYLESS_PEER = struct.Struct(">c20s20sqBB")
GONE = struct.Struct(">c20s20s")
COUNT = struct.Struct(">c20sq")
SEEDER = 1
COMPLETED = 2

_K, _P, _G, _D, _S = b"K"[0], b"P"[0], b"G"[0], b"D"[0], b"S"[0]


class JournalError(Exception):
    """A journal that is not a sequence of whole records."""


def replay(journal: bytes, index: SwarmIndex) -> None:
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
                address = journal[offset : offset + length]
                if len(address) != length:
                    raise JournalError("a peer record ends early")
                offset += length
                index.load_peer(
                    info_hash, peer_id, address, flags & SEEDER, seen, (flags & COMPLETED) >> 1, key
                )
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
