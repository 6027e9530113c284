"""
Access lists and passkeys kept in Redis, shared by every tracker node on it: the admin API of
any node changes them for all.

Everything lives under one hash tag, C{{tracker}}, so on a cluster it is one slot and every
change is one script or one pipeline: the lists' torrents (C{{tracker}:whitelist},
C{{tracker}:blacklist}, sets of raw info hashes), the passkeys (C{{tracker}:passkeys}, a hash
from passkey to its label and creation time), their totals (C{{tracker}:uploaded} and
C{{tracker}:downloaded}, hashes from passkey to bytes) and a version (C{{tracker}:version})
that every change of a list or of the passkeys increments, so that the other nodes, which
look at it every few seconds (L{tracker.ops.shared.SharedAccess}), know to read them again.
None of it is on the path of an announce, which is answered from each node's memory.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred
from zope.interface import implementer

from tracker.core.interfaces import StoreUnavailable
from tracker.store.access import (
    BLACKLIST,
    WHITELIST,
    Account,
    IAccessStore,
    StoredAccess,
    Totals,
)
from tracker.store.redis_client import Command, RedisConnection, Script

T = TypeVar("T")

_TAG = b"{tracker}"
LISTS = {WHITELIST: _TAG + b":whitelist", BLACKLIST: _TAG + b":blacklist"}
PASSKEYS = _TAG + b":passkeys"
UPLOADED = _TAG + b":uploaded"
DOWNLOADED = _TAG + b":downloaded"
VERSION = _TAG + b":version"

#: Adds each passkey's transfers to its totals, skipping a passkey removed meanwhile.
#: ARGV: passkey, uploaded, downloaded, passkey, ...
TRANSFERS = Script(
    b"""
local passkeys, uploaded, downloaded = KEYS[1], KEYS[2], KEYS[3]
for at = 1, #ARGV, 3 do
  local passkey = ARGV[at]
  if redis.call('HEXISTS', passkeys, passkey) == 1 then
    redis.call('HINCRBY', uploaded, passkey, ARGV[at + 1])
    redis.call('HINCRBY', downloaded, passkey, ARGV[at + 2])
  end
end
return 0
"""
)


def _replies(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise StoreUnavailable(f"Redis refused an access-control command: {reply}")
    return replies


@implementer(IAccessStore)
class RedisAccessStore:
    """The access lists and passkeys of every node on C{connection} (made with L{TRANSFERS})."""

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        #: The highest version this node has seen, from its own changes or a load: a load
        #: older than that would undo a change this node has just made.
        self.latest = 0

    def _saw(self, version: int) -> int:
        self.latest = max(self.latest, version)
        return version

    def _run(
        self, commands: list[tuple[Any, ...]], decode: Callable[[list[Any]], T]
    ) -> Deferred[T]:
        return self._connection.run(
            [Command(_TAG, args) for args in commands], lambda replies: decode(_replies(replies))
        )

    def version(self) -> Deferred[int]:
        """How many changes the lists and passkeys have seen: another node's change shows."""
        return self._run([("GET", VERSION)], lambda replies: int(replies[0] or 0))

    def load(self) -> Deferred[StoredAccess]:
        return self.load_versioned().addCallback(lambda loaded: loaded[0])

    def load_versioned(self) -> Deferred[tuple[StoredAccess, int]]:
        """Everything stored, and the version it is."""
        commands = [("SMEMBERS", LISTS[WHITELIST]), ("SMEMBERS", LISTS[BLACKLIST])]
        commands += [("HGETALL", PASSKEYS), ("HGETALL", UPLOADED), ("HGETALL", DOWNLOADED)]
        commands.append(("GET", VERSION))

        def decode(replies: list[Any]) -> tuple[StoredAccess, int]:
            return _stored(replies[:5]), int(replies[5] or 0)

        def seen(loaded: tuple[StoredAccess, int]) -> tuple[StoredAccess, int]:
            self._saw(loaded[1])
            return loaded

        return self._run(commands, decode).addCallback(seen)

    def totals(self) -> Deferred[dict[bytes, tuple[int, int]]]:
        """Every passkey's totals as stored, all nodes' transfers added."""
        commands = [("HGETALL", UPLOADED), ("HGETALL", DOWNLOADED)]

        def decode(replies: list[Any]) -> dict[bytes, tuple[int, int]]:
            up, down = (_pairs(reply) for reply in replies)
            return {key: (int(value), int(down.get(key, 0))) for key, value in up.items()}

        return self._run(commands, decode)

    def _change(self, commands: list[tuple[Any, ...]]) -> Deferred[bool]:
        """Run C{commands}, then increment the version; fires with whether the first changed
        anything."""

        def decode(replies: list[Any]) -> tuple[bool, int]:
            return replies[0] == 1, int(replies[-1])

        def seen(changed: tuple[bool, int]) -> bool:
            self._saw(changed[1])
            return changed[0]

        return self._run([*commands, ("INCR", VERSION)], decode).addCallback(seen)

    def list_torrent(self, list_name: str, info_hash: bytes) -> Deferred[bool]:
        return self._change([("SADD", LISTS[list_name], info_hash)])

    def unlist_torrent(self, list_name: str, info_hash: bytes) -> Deferred[bool]:
        return self._change([("SREM", LISTS[list_name], info_hash)])

    def add_passkey(self, passkey: bytes, label: str, created: int) -> Deferred[bool]:
        about = b"%d:" % created + label.encode("utf-8")
        return self._change([("HSETNX", PASSKEYS, passkey, about)])

    def remove_passkey(self, passkey: bytes) -> Deferred[bool]:
        return self._change(
            [
                ("HDEL", PASSKEYS, passkey),
                ("HDEL", UPLOADED, passkey),
                ("HDEL", DOWNLOADED, passkey),
            ]
        )

    def write_totals(self, totals: Totals, credited: Totals) -> Deferred[None]:
        # Every node credits its own announces: adding them keeps the others'.
        args: list[Any] = []
        for passkey, (up, down) in credited.items():
            args += [passkey, up, down]
        command = ("EVALSHA", TRANSFERS.sha, 3, PASSKEYS, UPLOADED, DOWNLOADED, *args)
        return self._run([command], lambda replies: None)


def _pairs(reply: list[bytes]) -> dict[bytes, bytes]:
    """HGETALL's reply, a field then its value, as a dict."""
    return dict(zip(reply[::2], reply[1::2]))


def _stored(replies: list[Any]) -> StoredAccess:
    whitelist, blacklist = replies[:2]
    passkeys, uploaded, downloaded = (_pairs(reply) for reply in replies[2:])
    accounts = {}
    for passkey, about in passkeys.items():
        created, _, label = about.partition(b":")
        accounts[passkey] = Account(
            label.decode("utf-8", "replace"),
            int(created),
            int(uploaded.get(passkey, 0)),
            int(downloaded.get(passkey, 0)),
        )
    return StoredAccess(
        {WHITELIST: frozenset(whitelist), BLACKLIST: frozenset(blacklist)}, accounts
    )
