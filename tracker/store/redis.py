"""
Swarms in Redis or a Redis Cluster, shared by every tracker node given the same one.

Each swarm is a few keys under the hash tag of its info hash in hex, C{{hex}}, so that a
cluster shards by torrent and every script touches one slot, laid out as the swarm index in
memory lays out a swarm (L{tracker.core.swarms}): a hash from peer id to the peer's place, and
per group (leechers and seeders, IPv4 and IPv6) a string of fixed-size records, one per peer;
and its completion count (see C{swarm.lua}). An announce is one script call that records the
peer, counts the swarm, chooses the peers to give in one or two ranges of a group's string
and drops a silent peer it came across: a few commands whatever the size of the swarm, with
the same rules as the index in memory. A swarm's keys expire by themselves a peer timeout
after its last announce, so nothing has to walk every swarm to forget the dead ones.

Announces and scrapes made in one turn of the reactor go to Redis together, one pipeline per
primary (L{tracker.store.redis_client}). Once a minute one node (whichever takes the lease
first) sweeps every swarm a slice at a time (C{SCAN}, then C{swarm.lua} per swarm): it drops
the silent peers that announces left behind and counts the swarms, and leaves the totals in
Redis for every node's statistics.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import random
import struct
import time
from binascii import hexlify
from collections.abc import Sequence
from importlib import resources
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tracker.core.addresses import pack_peer
from tracker.core.announce import PAUSED, STARTED, STOPPED, AnnounceRequest
from tracker.core.errors import KeyMismatch
from tracker.core.interfaces import (
    NO_COUNTS,
    AnnounceResult,
    IPeerStore,
    ISharedStore,
    StoreUnavailable,
    SwarmCounts,
    SwarmTotals,
)
from tracker.store.redis_client import Batched, Command, RedisConnection, Script

log = Logger()


def _script(name: str) -> Script:
    return Script(resources.files("tracker.store").joinpath(name).read_bytes())


SWARM = _script("swarm.lua")
SCRIPTS = (SWARM,)

#: The flags of swarm.lua's announce.
_SEEDER, _COMPLETES, _STOPPED, _LEECHERS_ONLY, _OWN_FAMILY = 1, 2, 4, 8, 16
_STARTED, _ACCOUNT, _WITH_IDS = 32, 64, 128
#: Keys the sweep asks for per SCAN, and peers it looks at per script call.
SWEEP_SLICE = 100
SWEEP_MOST = 2000
#: Seconds the sweep rests between slices, so that Redis serves announces meanwhile.
SWEEP_REST = 0.001
#: The last sweep's totals, and the lease of the node sweeping.
CENSUS_KEY = b"tracker:census"
LEASE_KEY = b"tracker:sweep"
#: Seconds the totals are kept: a tracker whose nodes all stopped shows none after this.
CENSUS_KEPT = 3600
#: Torrents listed as the largest.
TOP = 20
_MAX_SEED = 2147483646


#: A swarm's first bucket of peers (which holds its own field), and its completions.
_SUFFIXES = (b"}:h", b"}:d")
#: The sizes of a swarm's groups, at the start of its own field (swarm.lua's SWARM_FIELDS).
_SIZES = struct.Struct(">IIII")
_NONE = (0, 0, 0, 0)
#: An announce's numbers, as swarm.lua unpacks them.
_NUMBERS = struct.Struct(">qqIIIIIIdd")
#: An announce's EVALSHA, written out in Redis's protocol: this is the command almost every
#: request sends, and redis-py would build it an argument at a time. Its head, then its part
#: in a batch of announces: the swarm's first bucket, "a", the peer id and address, the numbers.
_ANNOUNCE_HEAD = b"*7\r\n$7\r\nEVALSHA\r\n$40\r\n" + SWARM.sha.encode("ascii") + b"\r\n$1\r\n1\r\n"
_ANNOUNCE = _ANNOUNCE_HEAD + b"$44\r\n{%s}:h\r\n$1\r\na\r\n$%d\r\n%s%s\r\n$56\r\n%s\r\n"
_BATCHED = Batched(SWARM, 4, len(_ANNOUNCE_HEAD))


def swarm_keys(info_hash: bytes) -> list[bytes]:
    """The keys of a swarm that the node reads: its first bucket of peers (its own field, and
    the key that routes the swarm's commands) and its completions."""
    tag = b"{" + hexlify(info_hash)
    return [tag + suffix for suffix in _SUFFIXES]


@implementer(IPeerStore, ISharedStore)
class RedisPeerStore:
    """
    Swarms kept in the Redis (or Redis Cluster) at C{url}, or on C{connection} if given (then
    it must have been made with L{SCRIPTS}). Peers silent for C{peer_timeout} seconds are
    forgotten. C{sweep_every}: the seconds between two sweeps by any node (0: every call of
    L{expire} sweeps, as a single node's tests want).
    """

    def __init__(
        self,
        url: str = "",
        reactor: Any = None,
        peer_timeout: int = 2700,
        sweep_every: float = 60,
        rng: random.Random | None = None,
        connection: RedisConnection | None = None,
    ) -> None:
        if connection is None:
            connection = RedisConnection(url, reactor, SCRIPTS)
        self.connection = connection
        self.roundtrips = connection.roundtrips
        self._peer_timeout = peer_timeout
        self._ttl = (peer_timeout + 1) * 1000
        self._sweep_every = sweep_every
        self._random = (rng or random.Random()).random
        self._node = hexlify(os.urandom(8))
        self._accounts: dict[bytes, int] = {}

    def start(self) -> Deferred[None]:
        return self.connection.start()

    def stop(self) -> Deferred[None]:
        return self.connection.stop()

    # Announces and scrapes.

    def announce(self, request: AnnounceRequest, now: int) -> Deferred[AnnounceResult]:
        tag = hexlify(request.info_hash)
        flags = 0
        if request.left == 0:
            flags = _SEEDER | _LEECHERS_ONLY
            if request.completes:
                flags |= _COMPLETES
        event = request.event
        if event == STOPPED:
            flags |= _STOPPED
        elif event == PAUSED:
            flags |= _LEECHERS_ONLY
        if request.own_family:
            flags |= _OWN_FAMILY
        if not request.compact:
            flags |= _WITH_IDS
        ledger = request.account
        account = 0
        if ledger is not None:
            flags |= _ACCOUNT
            if event == STARTED:
                flags |= _STARTED
            account = self._account(ledger.passkey)
        address = pack_peer(request.ip, request.port)
        numbers = _NUMBERS.pack(
            now, now - self._peer_timeout, flags, request.key, request.numwant, self._ttl,
            int(self._random() * _MAX_SEED) + 1, account, request.uploaded, request.downloaded,
        )  # fmt: skip
        packed = _ANNOUNCE % (tag, 20 + len(address), request.peer_id, address, numbers)
        decode = _decode_compact if request.compact else _decode_with_ids
        command = (Command(b"{" + tag + b"}:h", packed, _BATCHED),)
        if ledger is None:
            return self.connection.run(command, decode)

        def with_credit(replies: list[Any]) -> tuple[AnnounceResult, int, int]:
            reply = _answer(replies)
            return decode(replies), reply[3], reply[4]

        def credit(answered: tuple[AnnounceResult, int, int]) -> AnnounceResult:
            # Here, on the reactor's thread, where the ledgers live.
            result, up, down = answered
            if up or down:
                ledger.credit(up, down)
            return result

        return self.connection.run(command, with_credit).addCallback(credit)

    def _account(self, passkey: bytes) -> int:
        """The number a passkey's peers' reports carry, the same on every node."""
        account = self._accounts.get(passkey)
        if account is None:
            digest = hashlib.sha1(passkey).digest()
            account = self._accounts[passkey] = int.from_bytes(digest[:4], "big") or 1
        return account

    def scrape(self, info_hashes: Sequence[bytes]) -> Deferred[dict[bytes, SwarmCounts]]:
        # One job per primary, so each gets one pipeline whatever the number of hashes.
        by_node: dict[str | None, list[bytes]] = {}
        for info_hash in dict.fromkeys(info_hashes):
            node = self.connection.node_of(swarm_keys(info_hash)[0])
            by_node.setdefault(node, []).append(info_hash)
        if not by_node:
            return succeed({})
        jobs = []
        for hashes in by_node.values():
            commands = []
            for info_hash in hashes:
                keys = swarm_keys(info_hash)
                commands += [
                    Command(keys[0], ("HGET", keys[0], b"s")),
                    Command(keys[0], ("GET", keys[1])),
                ]
            jobs.append(self.connection.run(commands, _counts_decoder(hashes)))
        if len(jobs) == 1:
            return jobs[0]
        return DeferredList(jobs, consumeErrors=True).addCallback(_merge_counts)

    def count_completion(self, info_hash: bytes, now: int) -> Deferred[None]:
        peers = swarm_keys(info_hash)[0]
        command = Command(peers, ("EVALSHA", SWARM.sha, 1, peers, b"c"))
        counted: Deferred[None] = self.connection.run([command], _completion_counted)
        return counted

    # The sweep.

    def expire(self, cutoff: int) -> Deferred[int]:
        """
        Sweep every swarm: drop the peers last seen before C{cutoff} and count the swarms. Only
        one node sweeps per C{sweep_every} seconds: the one whose call takes the lease; the
        others' calls fire with 0 at once.
        """
        if not self._sweep_every:
            return self.connection.call(self._thd_sweep, cutoff)
        lease = int(max(self._sweep_every - 1, 1) * 1000)
        taken = self.connection.run(
            (Command(LEASE_KEY, ("SET", LEASE_KEY, self._node, "NX", "PX", lease)),),
            _first,
        )

        def sweep_if_ours(reply: Any) -> Deferred[int] | int:
            if reply is None:
                return 0
            return self.connection.call(self._thd_sweep, cutoff)

        return taken.addCallback(sweep_if_ours)

    def _thd_sweep(self, cutoff: int) -> int:
        began = time.thread_time()
        connection = self.connection
        removed = torrents = seeders = leechers = downloaded = 0
        largest: list[tuple[int, bytes, int, int, int]] = []
        for node in connection.thd_primaries():
            cursor = b"0"
            while True:
                scan = ("SCAN", cursor, "MATCH", "{*}:[hd]", "COUNT", SWEEP_SLICE)
                cursor, found = _raise(connection.thd_execute(node, [Command(None, scan)])[0])
                calls = [_sweep_command(key, cutoff) for key in found if len(key) == 44]
                while calls:
                    replies = connection.thd_execute(node, calls)
                    again = []
                    for call, reply in zip(calls, replies):
                        counted = _raise(reply)
                        if not counted:
                            continue
                        dropped, complete, incomplete, done = counted[:4]
                        removed += dropped
                        walks = counted[4:]
                        if any(walks):
                            # A large swarm: looked at a slice at a time, counted at the end.
                            again.append(_sweep_command(_swarm_key(call), cutoff, walks))
                            continue
                        if not (complete or incomplete or done):
                            continue  # the sweep dropped its last peers: gone
                        torrents += 1
                        seeders += complete
                        leechers += incomplete
                        downloaded += done
                        peers = complete + incomplete
                        if peers:
                            tag = _swarm_key(call)[1:41]
                            entry = (peers, tag, complete, incomplete, done)
                            if len(largest) < TOP:
                                heapq.heappush(largest, entry)
                            elif peers > largest[0][0]:
                                heapq.heapreplace(largest, entry)
                    calls = again
                if cursor in (b"0", 0):
                    break
                time.sleep(SWEEP_REST)
        ranked = sorted(largest, key=lambda entry: (-entry[0], entry[1]))
        census = {
            "torrents": torrents,
            "seeders": seeders,
            "leechers": leechers,
            "downloaded": downloaded,
            "top": [[h.decode("ascii"), s, le, d] for _, h, s, le, d in ranked],
            "counted_at": time.time(),
            "work_seconds": time.thread_time() - began,
        }
        publish = ("SET", CENSUS_KEY, json.dumps(census), "EX", CENSUS_KEPT)
        node = connection.thd_node_for(CENSUS_KEY)
        _raise(connection.thd_execute(node, [Command(CENSUS_KEY, publish)])[0])
        return removed

    def every_count(self) -> Deferred[dict[bytes, SwarmCounts]]:
        return self.connection.call(self._thd_every_count)

    def _thd_every_count(self) -> dict[bytes, SwarmCounts]:
        """Every torrent's counts, a slice of keys at a time, resting between slices."""
        connection = self.connection
        counts: dict[bytes, SwarmCounts] = {}
        for node in connection.thd_primaries():
            cursor = b"0"
            while True:
                scan = ("SCAN", cursor, "MATCH", "{*}:[hd]", "COUNT", SWEEP_SLICE)
                cursor, found = _raise(connection.thd_execute(node, [Command(None, scan)])[0])
                tags = list(dict.fromkeys(key[:41] for key in found if len(key) == 44))
                commands = []
                for tag in tags:
                    peers = tag + b"}:h"
                    commands += [
                        Command(peers, ("HGET", peers, b"s")),
                        Command(peers, ("GET", tag + b"}:d")),
                    ]
                if commands:
                    replies = connection.thd_execute(node, commands)
                    decoded = _counts_decoder([bytes.fromhex(t[1:].decode()) for t in tags])
                    for info_hash, torrent in decoded(replies).items():
                        if torrent is not NO_COUNTS:
                            counts[info_hash] = torrent
                if cursor in (b"0", 0):
                    break
                time.sleep(SWEEP_REST)
        return counts

    def swarm_totals(self) -> Deferred[SwarmTotals | None]:
        return self.connection.run((Command(CENSUS_KEY, ("GET", CENSUS_KEY)),), _decode_census)


def _sweep_command(key: bytes, cutoff: int, walks: Sequence[int] = (-1, -1, -1, -1)) -> Command:
    """
    The sweep of the swarm whose key C{key} the SCAN found ({hex}:h or {hex}:d), going on
    with each group's walk where C{walks} says (-1: from its end).
    """
    peers = key[:41] + b"}:h"
    mode = b"d" if key.endswith(b":d") else b""
    args = ("EVALSHA", SWARM.sha, 1, peers, b"s", cutoff, SWEEP_MOST, mode, *walks)
    return Command(peers, args)


def _swarm_key(call: Command) -> bytes:
    """The swarm's hash key, which a sweep's command is routed by."""
    assert call.key is not None
    return call.key


def _raise(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


def _first(replies: list[Any]) -> Any:
    return _raise(replies[0])


def _answer(replies: list[Any]) -> list[Any]:
    reply = replies[0]
    if isinstance(reply, Exception):
        raise StoreUnavailable(f"Redis refused the announce: {reply}")
    if reply[0] == -1:
        raise KeyMismatch()
    return reply  # type: ignore[no-any-return]


#: A record of a group's second string: a peer id and the time it was last seen.
_RECORD = 24


def _runs(reply: list[Any], first: int, width: int) -> tuple[bytes, bytes]:
    """
    What C{reply}'s runs from C{first} on hold, IPv4 then IPv6, less the requester's own
    record that the script points at: C{width} bytes a record (0: an address, 6 or 18).
    """
    runs = reply[first : first + 4]
    own_slot, own = reply[5], reply[6]
    if own_slot >= 0:
        size = width or (6, 18, 6, 18)[own_slot]
        run = runs[own_slot]
        runs[own_slot] = run[: own * size] + run[(own + 1) * size :]
    return runs[0] + runs[2], runs[1] + runs[3]


def _decode_compact(replies: list[Any]) -> AnnounceResult:
    reply = _answer(replies)
    counts = SwarmCounts(reply[0], reply[1], reply[2])
    if len(reply) <= 5:
        return AnnounceResult(counts)
    v4, v6 = _runs(reply, 7, 0)
    return AnnounceResult(counts, v4, v6)


def _decode_with_ids(replies: list[Any]) -> AnnounceResult:
    result = _decode_compact(replies)
    reply = replies[0]
    if len(reply) <= 5:
        return result
    ids4, ids6 = _runs(reply, 11, _RECORD)
    ids = ids4 + ids6
    return result._replace(peer_ids=[ids[k : k + 20] for k in range(0, len(ids), _RECORD)])


def _completion_counted(replies: list[Any]) -> None:
    if isinstance(replies[0], Exception):
        raise StoreUnavailable(f"Redis refused a completion: {replies[0]}")


def _counts_decoder(hashes: list[bytes]) -> Any:
    def decode(replies: list[Any]) -> dict[bytes, SwarmCounts]:
        counts = {}
        for at, info_hash in enumerate(hashes):
            own, done = replies[2 * at : 2 * at + 2]
            for reply in (own, done):
                if isinstance(reply, Exception):
                    raise StoreUnavailable(f"Redis refused the scrape: {reply}")
            leechers4, leechers6, seeders4, seeders6 = _SIZES.unpack_from(own) if own else _NONE
            complete = seeders4 + seeders6
            incomplete = leechers4 + leechers6
            counts[info_hash] = (
                SwarmCounts(complete, incomplete, int(done or 0))
                if complete or incomplete or done
                else NO_COUNTS
            )
        return counts

    return decode


def _merge_counts(results: list[tuple[bool, Any]]) -> dict[bytes, SwarmCounts] | Failure:
    merged: dict[bytes, SwarmCounts] = {}
    for ok, value in results:
        if not ok:
            return value  # type: ignore[no-any-return]
        merged.update(value)
    return merged


def _decode_census(replies: list[Any]) -> SwarmTotals | None:
    reply = _raise(replies[0])
    if reply is None:
        return None
    census = json.loads(reply)
    return SwarmTotals(
        census["torrents"],
        census["seeders"],
        census["leechers"],
        census["downloaded"],
        tuple((bytes.fromhex(h), s, le, d) for h, s, le, d in census["top"]),
        census["counted_at"],
        census["work_seconds"],
    )
