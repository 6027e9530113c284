"""
Peers of a torrent that the store does not hold, counted with those it does.

WebSocket peers (L{tracker.ws}) have no address to hand out and live exactly as long as their
connection, so they are kept beside the store rather than in it, never written down and never
given to an HTTP or UDP client. They are still peers of the same torrents: every count the
tracker reports (announce and scrape replies over any protocol, the full scrape, the
statistics) is the store's count plus theirs. L{PeerGroups} is where they are counted, and
L{GroupCountingStore} the store the front ends answer from, which adds them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred
from zope.interface import alsoProvides, implementer

from tracker.core.announce import AnnounceRequest
from tracker.core.interfaces import (
    AnnounceResult,
    Answer,
    IIndexedStore,
    IPeerStore,
    ISharedStore,
    SwarmCounts,
    SwarmTotals,
)

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
        #: A torrent is here while it has peers outside the store (read only: L{add} and
        #: L{remove} change it).
        self.torrents: dict[bytes, PeerGroup] = {}
        #: Called with whether there are groups at all, each time that changes.
        self._watchers: list[Callable[[bool], None]] = []

    def add(self, info_hash: bytes, group: PeerGroup) -> None:
        torrents = self.torrents
        torrents[info_hash] = group
        if len(torrents) == 1:
            for watcher in self._watchers:
                watcher(True)

    def remove(self, info_hash: bytes) -> None:
        torrents = self.torrents
        if torrents.pop(info_hash, None) is not None and not torrents:
            for watcher in self._watchers:
                watcher(False)

    def watch(self, watcher: Callable[[bool], None]) -> None:
        """Have C{watcher} told whether there are groups, now and whenever that changes."""
        self._watchers.append(watcher)
        watcher(bool(self.torrents))

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


@implementer(IPeerStore)
class GroupCountingStore:
    """
    C{store}, with the peers of C{groups} added to the counts of every announce and scrape it
    answers. Reads C{index} and C{commits} through to C{store}, and provides
    L{IIndexedStore} when it does.
    """

    def __init__(self, store: IPeerStore, groups: PeerGroups) -> None:
        self.store = store
        self.groups = groups
        self._torrents = groups.torrents
        if IIndexedStore.providedBy(store):
            alsoProvides(self, IIndexedStore)
        if ISharedStore.providedBy(store):
            alsoProvides(self, ISharedStore)
        groups.watch(self._grouped)

    def _grouped(self, any_groups: bool) -> None:
        # With no peer outside the store (no browser connected: most of a tracker's life),
        # announces and scrapes go to the store's own methods, found on this instance: they
        # cost nothing more than without this class, where a call through it cost a UDP
        # announce 1.7 % (bench/run.py ab). With some, this class's methods add them in.
        if any_groups:
            self.__dict__.pop("announce", None)
            self.__dict__.pop("scrape", None)
        else:
            self.announce = self.store.announce  # type: ignore[method-assign]
            self.scrape = self.store.scrape  # type: ignore[method-assign]

    @property
    def index(self) -> Any:
        return getattr(self.store, "index", None)

    @property
    def roundtrips(self) -> Any:
        return getattr(self.store, "roundtrips", None)

    def swarm_totals(self) -> Deferred[SwarmTotals | None]:
        totals: Deferred[SwarmTotals | None] = self.store.swarm_totals()  # type: ignore[attr-defined]
        return totals

    def every_count(self) -> Deferred[dict[bytes, SwarmCounts]]:
        """The store's own counts: the full scrape adds the groups in as it encodes them
        (L{tracker.http.fullscrape.build_counts}), as it does a swarm index's."""
        counts: Deferred[dict[bytes, SwarmCounts]] = self.store.every_count()  # type: ignore[attr-defined]
        return counts

    @property
    def commits(self) -> Any:
        return getattr(self.store, "commits", None)

    def start(self) -> Deferred[None]:
        return self.store.start()

    def stop(self) -> Deferred[None]:
        return self.store.stop()

    def expire(self, cutoff: int) -> Deferred[int]:
        return self.store.expire(cutoff)

    def count_completion(self, info_hash: bytes, now: int) -> Answer[None]:
        return self.store.count_completion(info_hash, now)

    def announce(self, request: AnnounceRequest, now: int) -> Answer[AnnounceResult]:
        result = self.store.announce(request, now)
        if isinstance(result, tuple):
            return self._with_group(result, request.info_hash)
        return result.addCallback(self._with_group, request.info_hash)

    def _with_group(self, result: AnnounceResult, info_hash: bytes) -> AnnounceResult:
        group = self._torrents.get(info_hash)
        if group is None:
            return result
        counts = result.counts
        return _new_tuple(
            AnnounceResult,
            (
                _new_tuple(
                    SwarmCounts,
                    (
                        counts.complete + group.complete,
                        counts.incomplete + group.incomplete,
                        counts.downloaded,
                    ),
                ),
                result.peers4,
                result.peers6,
                result.peer_ids,
            ),
        )

    def scrape(self, info_hashes: Sequence[bytes]) -> Answer[dict[bytes, SwarmCounts]]:
        counts = self.store.scrape(info_hashes)
        if isinstance(counts, dict):
            return self._with_groups(counts)
        return counts.addCallback(self._with_groups)

    def _with_groups(self, counts: dict[bytes, SwarmCounts]) -> dict[bytes, SwarmCounts]:
        add = self.groups.counts
        return {info_hash: add(info_hash, c) for info_hash, c in counts.items()}
