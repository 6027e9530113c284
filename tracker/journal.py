"""
The change journal: how the swarm index's changes are written down, and read back.

A journal is a byte string of records, each a tag byte and fixed fields (big-endian):

    P  info_hash(20) peer_id(20) last_seen(8) flags(1) length(1) address(length)
       a peer's whole state; flags bit 0: seeder, bit 1: its completion was counted
    G  info_hash(20) peer_id(20)         the peer is gone
    D  info_hash(20) downloaded(8)       the torrent's completion count
    S  info_hash(20) downloaded(8)       the swarm as a whole: forget its peers and take this
                                         count; the swarm's P records follow (a checkpoint)

Replaying records in the order written rebuilds the index. Appending a record costs one
C{struct} pack, so recording a change costs an announce almost nothing, and a whole group commit
is one blob in one row however many changes it holds.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tracker.swarms import SwarmIndex

PEER = struct.Struct(">c20s20sqBB")
GONE = struct.Struct(">c20s20s")
COUNT = struct.Struct(">c20sq")
SEEDER = 1
COMPLETED = 2

_P, _G, _D, _S = b"P"[0], b"G"[0], b"D"[0], b"S"[0]


class JournalError(Exception):
    """A journal that is not a sequence of whole records."""


def replay(journal: bytes, index: SwarmIndex) -> None:
    """Apply every record of C{journal} to C{index}, in order."""
    offset = 0
    end = len(journal)
    peer_size = PEER.size
    try:
        while offset < end:
            tag = journal[offset]
            if tag == _P:
                _, info_hash, peer_id, seen, flags, length = PEER.unpack_from(journal, offset)
                offset += peer_size
                address = journal[offset : offset + length]
                if len(address) != length:
                    raise JournalError("a peer record ends early")
                offset += length
                index.load_peer(
                    info_hash, peer_id, address, flags & SEEDER, seen, (flags & COMPLETED) >> 1
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
