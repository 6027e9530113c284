"""
Peers of a torrent that the store does not hold, counted with those it does.

WebSocket peers (L{tracker.ws}) have no address to hand out and live exactly as long as their
connection, so they are kept beside the store rather than in it, never written down and never
given to an HTTP or UDP client. They are still peers of the same torrents: every count the
tracker reports (announce and scrape replies over any protocol, the full scrape, the
statistics) is the store's count plus theirs. L{PeerGroups} is where they are counted.
"""

from __future__ import annotations

from typing import Protocol

from tracker.core.interfaces import SwarmCounts

_new_tuple = tuple.__new__


class PeerGroup(Protocol):
    """One torrent's peers held outside the store."""

    @property
    def complete(self) -> int: ...

    @property
    def incomplete(self) -> int: ...


class PeerGroups:
    """The groups of peers held outside the store, by raw 20-byte info hash."""

    def __init__(self) -> None:
        #: Kept up to date by whoever holds the peers: a torrent is here while it has some.
        self.torrents: dict[bytes, PeerGroup] = {}

    def counts(self, info_hash: bytes, counts: SwarmCounts) -> SwarmCounts:
        """C{counts} (the store's, for C{info_hash}) with this torrent's group added."""
        group = self.torrents.get(info_hash)
        if group is None:
            return counts
        return _new_tuple(
            SwarmCounts,
            (
                counts.complete + group.complete,
                counts.incomplete + group.incomplete,
                counts.downloaded,
            ),
        )
