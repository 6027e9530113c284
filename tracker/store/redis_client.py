"""
The tracker's connection to a Redis or a Redis Cluster, which every store kept in Redis shares.

redis-py's clients block, so they run only on a thread pool of this connection's own; the
reactor queues commands and takes the replies in callbacks (the card's shape, as the SQLite
store's database thread). Commands queued within a millisecond go out together, in one
pipeline per primary: a round trip per batch, not per announce. A cluster's slot map is kept
on the reactor side, so that commands are grouped by primary as they are queued; redis-py 7.0
(the last for Python 3.9 and PyPy) refuses EVALSHA in its cluster pipelines, and the grouping
is what its later versions do anyway.

Faults: a command waits at most L{DEADLINE} seconds, then fails with L{StoreUnavailable}; when
Redis cannot be reached, every command fails at once for L{PAUSE} seconds before the next try,
so requests are answered with a failure quickly and nothing piles up. The outage is logged
once, and its end. Scripts are loaded on every primary at start and again after C{NOSCRIPT}
(a restarted or promoted node has none); a C{MOVED} reply, or a node that stopped answering,
makes the next round trip read the cluster's slots again, so the connection follows a
failover without a restart.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, NamedTuple, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)
from redis.retry import Retry
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from tracker.core.interfaces import StoreStopped, StoreUnavailable
from tracker.core.meters import RoundTripMeter

log = Logger()

T = TypeVar("T")

URL_SCHEMES = ("redis", "rediss", "unix")
#: Seconds a connection, or a reply, may take before Redis counts as unreachable.
TIMEOUT = 1.0
#: Seconds a queued command may wait for its reply, all told: then it fails, and the request
#: waiting for it is answered with a failure (the issue's bound is 3 seconds).
DEADLINE = 2.0
#: Seconds during which, after a failed round trip, commands fail at once without trying.
PAUSE = 1.0
#: Round trips in flight to one node at a time; more commands wait and go in the next batch.
IN_FLIGHT = 2
#: Seconds a command waits for others to go in its batch. A millisecond gathers the requests
#: of several turns of the reactor: fewer, larger round trips, each a hand-over to a thread and
#: back; under PyPy that cut a node's processor time per announce by a third (bench/redis.py).
FLUSH_AFTER = 0.001
#: Most commands in one pipeline.
BATCH = 1024
#: Most script calls made one (L{Batched}): a script holds Redis for its whole run, and a
#: hundred announces take it some 2.5 ms, which other clients wait.
CALL_MOST = 100
#: Most commands waiting to be sent: beyond, new ones fail at once (Redis is too slow).
QUEUED = 20000
#: Seconds between two reads of a cluster's slots.
REFRESH_EVERY = 1.0

_SLOTS = 16384
#: The oldest Redis whose scripts may say what they do (swarm.lua's first line): 7.0.
MAJOR = 7


class RedisStartError(Exception):
    """Redis could not be used at start; the message is one line, the URL without password."""


def redacted(url: str) -> str:
    """C{url} without its password, to be shown."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" if user else f"***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_url(url: str) -> None:
    """Raise C{ValueError} naming what is wrong with C{url}, which is not contacted."""
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise ValueError("a Redis URL starts with redis://, rediss:// or unix://")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL names the socket: unix:///path/to/redis.sock")
        return
    if not parts.hostname:
        raise ValueError("a Redis URL names a host: redis://HOST:PORT/DB")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError("the port is not a number between 0 and 65535") from None
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"the database is a number, not {database!r}")


class Batched(NamedTuple):
    """
    How a script call written out in RESP goes in one call of the same script for many: that
    script's batch mode, C{EVALSHA sha 1 KEY b PARTS...}, whose reply is each part's reply.
    A part is the end of the call's own command, from its key on; KEY is the first part's key,
    which routes the call; the script runs each part as the call it stands for.
    """

    script: Script
    #: The part's arguments, its key the first.
    arguments: int
    #: Where the part starts in the call's command.
    start: int


class Command(NamedTuple):
    """One command and the key that says which node it goes to (None: any, on one Redis)."""

    key: bytes | None
    #: Its arguments; or the command already written out in Redis's protocol (RESP).
    args: tuple[Any, ...] | bytes
    #: For a script call that may go in one call with others of the same script: its part.
    batched: Batched | None = None


class _Job(NamedTuple):
    commands: Sequence[Command]
    #: Turns the replies of C{commands} into the job's result, on the thread; raising fails it.
    decode: Callable[[list[Any]], Any]
    result: Deferred[Any]


class Script:
    """A Lua script, known to Redis by its SHA-1 once loaded."""

    def __init__(self, source: bytes) -> None:
        self.source = source
        self.sha = hashlib.sha1(source).hexdigest()


def thd_client(url: str, timeout: float = TIMEOUT) -> Any:
    """
    A blocking client of C{url}: a C{redis.Redis}, or a C{redis.cluster.RedisCluster} when the
    server is part of a cluster. Raises L{RedisStartError} saying why not, in one line.
    """
    shown = redacted(url)
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    try:
        single = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        server: Any = single.info("server")
        version = str(server.get("redis_version", "0"))
        if int(version.split(".")[0]) < MAJOR:
            single.close()
            raise RedisStartError(
                f"cannot use Redis at {shown}: it is version {version}; the tracker's scripts"
                f" need Redis {MAJOR} or later (or Valkey)"
            )
        info: Any = single.info("cluster")
        if not info.get("cluster_enabled"):
            single.ping()
            return single
        single.close()
        cluster = RedisCluster.from_url(url, **options)
        cluster.ping(target_nodes=RedisCluster.PRIMARIES)
        return cluster
    except redis.AuthenticationError as e:
        raise RedisStartError(f"cannot use Redis at {shown}: refused the password ({e})") from None
    except (redis.RedisError, OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RedisStartError(f"cannot use Redis at {shown}: {reason}") from None


def describe(client: Any) -> str:
    """What C{client} is connected to, for the log: the URL, and whether it is a cluster."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        primaries = len(client.get_primaries())
        node = client.get_default_node()
        return f"Redis Cluster of {primaries} primaries at {node.name}"
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"Redis at unix://{kwargs['path']} database {kwargs.get('db', 0)}"
    over = " over TLS" if issubclass(pool.connection_class, redis.SSLConnection) else ""
    where = f"{kwargs.get('host')}:{kwargs.get('port')}"
    return f"Redis at {where}{over} database {kwargs.get('db', 0)}"


class RedisConnection:
    """
    Blocking redis-py clients of one Redis or Redis Cluster, driven from the reactor. C{scripts}
    are loaded on every primary; commands run them by their SHA-1 (see L{Script}).
    """

    def __init__(
        self,
        url: str,
        reactor: Any = None,
        scripts: Sequence[Script] = (),
        timeout: float = TIMEOUT,
        deadline: float = DEADLINE,
        pause: float = PAUSE,
        threads: int = 8,
        flush_after: float = FLUSH_AFTER,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        check_url(url)
        self.url = url
        self.shown = redacted(url)
        self._reactor = reactor
        self._scripts = list(scripts)
        self._timeout = timeout
        self._deadline = deadline
        self._pause = pause
        self._flush_after = flush_after
        self._pool = ThreadPool(1, threads, name="tracker-redis")
        self._client: Any = None
        #: The primary of each slot, by name; None on a single Redis.
        self._slots: list[str] | None = None
        self._refresh_wanted = False
        self._refreshed_at = 0.0
        self._refresh_lock = threading.Lock()
        #: Jobs waiting to be sent, by node (None: the one Redis).
        self._queues: dict[str | None, list[_Job]] = {}
        self._queued = 0
        self._in_flight: dict[str | None, int] = {}
        self._flush_call: IDelayedCall | None = None
        #: Until when commands fail at once (the reactor's clock); 0 while Redis answers.
        self._down_until = 0.0
        self._down_reason: str | None = None
        self._stopping = False
        self._idle: list[Deferred[None]] = []
        #: Commands asked for before the connection was open, which wait for it.
        self._before_open: list[Deferred[None]] = []
        self.roundtrips = RoundTripMeter()

    @property
    def cluster(self) -> bool:
        return self._slots is not None

    @property
    def ready(self) -> bool:
        """Whether commands can be sent: started, and not stopping."""
        return self._client is not None and not self._stopping

    # Life.

    def start(self) -> Deferred[None]:
        """Connect (finding out whether this is a cluster) and load the scripts everywhere."""
        self._pool.start()
        opened = deferToThreadPool(self._reactor, self._pool, self._thd_open)

        def done(_: None) -> None:
            waiting, self._before_open = self._before_open, []
            for d in waiting:
                d.callback(None)

        def failed(failure: Failure) -> Failure:
            self._stopping = True
            self._pool.stop()
            waiting, self._before_open = self._before_open, []
            for d in waiting:
                d.errback(Failure(StoreUnavailable(f"Redis at {self.shown} could not be opened")))
            return failure

        return opened.addCallbacks(done, failed)

    def _thd_open(self) -> None:
        self._client = thd_client(self.url, self._timeout)
        if self._is_cluster(self._client):
            self._slots = self._thd_slot_map()
        for node in self.thd_primaries():
            self._thd_load_scripts(node)

    @staticmethod
    def _is_cluster(client: Any) -> bool:
        return hasattr(client, "nodes_manager")

    def stop(self) -> Deferred[None]:
        """Refuse new commands, wait for those in flight, close the clients and the threads."""
        if self._stopping:
            return succeed(None)
        self._stopping = True
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        queues, self._queues = self._queues, {}
        for jobs in queues.values():
            for job in jobs:
                _fire(job.result, Failure(StoreStopped("the tracker store is stopping")))
        self._queued = 0
        idle: Deferred[None] = succeed(None)
        if any(self._in_flight.values()):
            idle = Deferred()
            self._idle.append(idle)

        def close(_: object) -> Deferred[None]:
            return deferToThreadPool(self._reactor, self._pool, self._thd_close)

        def stop_pool(result: object) -> object:
            self._pool.stop()
            return result

        return idle.addCallback(close).addBoth(stop_pool)

    def _thd_close(self) -> None:
        if self._client is not None:
            self._client.close()

    # Commands, batched.

    def run(self, commands: Sequence[Command], decode: Callable[[list[Any]], T]) -> Deferred[T]:
        """
        Send C{commands} with the next batch (on a cluster, every command to the node of its
        key) and fire with C{decode} of their replies, which runs on a thread of the pool. A
        reply that is an error comes to C{decode} as a C{redis.ResponseError}.
        """
        if self._stopping:
            return fail(StoreStopped("the tracker store is stopping"))
        if self._client is None:
            # Not open yet: sent once it is (as the SQLite store's work waits for its file).
            opened: Deferred[None] = Deferred()
            self._before_open.append(opened)
            return opened.addCallback(lambda _: self.run(commands, decode))
        if self._down_until and self._reactor.seconds() < self._down_until:
            return fail(StoreUnavailable(self._down_reason or "Redis unreachable"))
        if self._queued >= QUEUED:
            return fail(StoreUnavailable("Redis is too slow: too many commands waiting"))
        result: Deferred[T] = Deferred()
        node = self.node_of(commands[0].key)
        queue = self._queues.get(node)
        if queue is None:
            queue = self._queues[node] = []
        queue.append(_Job(commands, decode, result))
        self._queued += 1
        if self._flush_call is None:
            # A millisecond on: whatever else arrives meanwhile goes along.
            self._flush_call = self._reactor.callLater(self._flush_after, self._flush)
        return result

    def node_of(self, key: bytes | None) -> str | None:
        """The primary that holds C{key}'s slot, by name (None on one Redis)."""
        slots = self._slots
        if slots is None:
            return None
        if key is None:
            return slots[0]
        return slots[key_slot(key)]

    def _flush(self) -> None:
        self._flush_call = None
        for node in list(self._queues):
            queue = self._queues[node]
            while queue and self._in_flight.get(node, 0) < IN_FLIGHT:
                batch, self._queues[node] = queue[:BATCH], queue[BATCH:]
                queue = self._queues[node]
                self._queued -= len(batch)
                self._send(node, batch)
            if not queue:
                del self._queues[node]

    def _send(self, node: str | None, batch: list[_Job]) -> None:
        self._in_flight[node] = self._in_flight.get(node, 0) + 1
        sent = deferToThreadPool(self._reactor, self._pool, self._thd_run, node, batch)
        timer = self._reactor.callLater(self._deadline, self._too_late, batch)
        sent.addBoth(self._sent, node, batch, timer)

    def _too_late(self, batch: list[_Job]) -> None:
        late = StoreUnavailable(f"Redis at {self.shown} did not answer in {self._deadline:g} s")
        for job in batch:
            _fire(job.result, Failure(late))

    def _sent(
        self, outcome: list[tuple[bool, Any]] | Failure, node: str | None, batch: list[_Job],
        timer: IDelayedCall,
    ) -> None:  # fmt: skip
        if timer.active():
            timer.cancel()
        self._in_flight[node] -= 1
        if isinstance(outcome, Failure):
            self._failed(outcome, batch)
        else:
            if self._down_until:
                self._down_until = 0.0
                self._down_reason = None
                log.info("Redis at {url} answers again", url=self.shown)
            for (ok, value), job in zip(outcome, batch):
                _fire(job.result, value if ok else Failure(value))
        if self._queues and self._flush_call is None and not self._stopping:
            # Gathered while this batch was away: sent at once.
            self._flush_call = self._reactor.callLater(0, self._flush)
        if self._stopping and not any(self._in_flight.values()):
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def _failed(self, failure: Failure, batch: list[_Job]) -> None:
        """A round trip that failed whole: Redis unreachable, most likely."""
        self.roundtrips.errors += 1
        reason = _reason(failure.value or Exception("failed"))
        unavailable = Failure(StoreUnavailable(f"Redis at {self.shown}: {reason}"))
        for job in batch:
            _fire(job.result, unavailable)
        if self._stopping:
            return
        if not self._down_until:
            log.error(
                "Redis at {url} failed: {reason}; announces and scrapes are answered with a"
                " failure until it answers again",
                url=self.shown,
                reason=reason,
            )
        self._down_reason = f"Redis unreachable: {reason}"
        self._down_until = self._reactor.seconds() + self._pause
        self._refresh_wanted = True

    # On the threads.

    def _thd_run(self, node: str | None, batch: list[_Job]) -> list[tuple[bool, Any]]:
        together = [job for job in batch if _batchable(job)]
        calls = []
        if len(together) > 1:
            calls = [together[at : at + CALL_MOST] for at in range(0, len(together), CALL_MOST)]
        first_of = {id(call[0]): call for call in calls}
        in_calls = {id(job) for call in calls for job in call}
        # Each call of many goes where its first job was: what was sent after sees its writes.
        commands: list[Command] = []
        spans: list[tuple[list[_Job], int, bool]] = []
        for job in batch:
            call = first_of.get(id(job))
            if call is not None:
                spans.append((call, len(commands), True))
                commands.append(_batch_call([each.commands[0] for each in call]))
            elif id(job) not in in_calls:
                spans.append(([job], len(commands), False))
                commands += job.commands
        replies = self.thd_execute(node, commands)
        by_job: dict[int, list[Any]] = {}
        for jobs, at, merged in spans:
            if not merged:
                by_job[id(jobs[0])] = replies[at : at + len(jobs[0].commands)]
                continue
            reply = replies[at]
            if not isinstance(reply, list) or len(reply) != len(jobs):
                # Refused whole (a slot on the move, say): each call on its own, as each
                # knows where it goes and what its error is.
                reply = self.thd_execute(node, [job.commands[0] for job in jobs])
            for job, one in zip(jobs, reply):
                by_job[id(job)] = [one]
        outcomes: list[tuple[bool, Any]] = []
        for job in batch:
            try:
                outcomes.append((True, job.decode(by_job[id(job)])))
            except Exception as e:
                outcomes.append((False, e))
        return outcomes

    def thd_execute(self, node: str | None, commands: Sequence[Command]) -> list[Any]:
        """
        Send C{commands} to C{node} in one pipeline and read their replies (an error reply
        as its exception); scripts missing there are loaded and their calls sent again, and
        commands for slots that moved are sent where they went. On a thread of the pool.
        """
        if self._refresh_wanted and self._slots is not None:
            self._thd_refresh()
        started = time.perf_counter()
        replies = self._thd_pipeline(node, [command.args for command in commands])
        self.roundtrips.latency.observe(time.perf_counter() - started)
        again = [at for at, reply in enumerate(replies) if _is_noscript(reply)]
        if again:
            self._thd_load_scripts(node)
            retried = self._thd_pipeline(node, [commands[at].args for at in again])
            for at, reply in zip(again, retried):
                replies[at] = reply
        moved = [at for at, reply in enumerate(replies) if _is_redirect(reply)]
        if moved and self._slots is not None:
            self._refresh_wanted = True
            self._thd_refresh(force=True)
            for at in moved:
                target = self.thd_node_for(commands[at].key)
                replies[at] = self._thd_pipeline(target, [commands[at].args])[0]
        for reply in replies:
            if isinstance(reply, Exception):
                self.roundtrips.errors += 1
        return replies

    def _thd_pipeline(
        self, node: str | None, commands: Sequence[tuple[Any, ...] | bytes]
    ) -> list[Any]:
        pool = self._thd_redis(node).connection_pool
        connection = pool.get_connection()
        try:
            packed: list[bytes | memoryview] = []
            for command in commands:
                if isinstance(command, bytes):
                    packed.append(command)
                else:
                    packed += connection.pack_command(*command)
            connection.send_packed_command(packed, check_health=False)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except ResponseError as e:
                    replies.append(e)
        except BaseException:
            connection.disconnect()
            if self._slots is not None:
                # A node that does not answer may have been replaced by its replica.
                self._refresh_wanted = True
            raise
        finally:
            pool.release(connection)
        return replies

    def _thd_redis(self, node: str | None) -> Any:
        client = self._client
        if node is None:
            return client
        cluster_node = client.get_node(node_name=node)
        if cluster_node is None:
            raise redis.ConnectionError(f"no cluster node {node}")
        return client.get_redis_connection(cluster_node)

    def thd_node_for(self, key: bytes | None) -> str | None:
        """L{node_of}, on a thread of the pool."""
        return self.node_of(key)

    def thd_primaries(self) -> list[str | None]:
        """Every primary: their names in a cluster, [None] for one Redis."""
        if self._slots is None and not self._is_cluster(self._client):
            return [None]
        return sorted({node.name for node in self._client.get_primaries()})

    def _thd_slot_map(self) -> list[str]:
        cache = self._client.nodes_manager.slots_cache
        slots = []
        for slot in range(_SLOTS):
            nodes = cache.get(slot)
            slots.append(nodes[0].name if nodes else "")
        return slots

    def _thd_refresh(self, force: bool = False) -> None:
        """Read the cluster's slots again, at most every L{REFRESH_EVERY} seconds."""
        with self._refresh_lock:
            now = time.monotonic()
            if not self._refresh_wanted or (not force and now - self._refreshed_at < REFRESH_EVERY):
                return
            self._refreshed_at = now
            self._client.nodes_manager.initialize()
            self._refresh_wanted = False
            # One assignment: the reactor's thread reads whichever map is there.
            self._slots = self._thd_slot_map()
            for node in self.thd_primaries():
                self._thd_load_scripts(node)

    def _thd_load_scripts(self, node: str | None) -> None:
        if self._scripts:
            loads = [("SCRIPT", "LOAD", script.source) for script in self._scripts]
            for reply in self._thd_pipeline(node, loads):
                if isinstance(reply, Exception):
                    raise reply

    def call(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run C{work(*args)} on a thread of the pool (it may use L{thd_execute})."""
        if self._stopping:
            return fail(StoreStopped("the tracker store is stopping"))
        return deferToThreadPool(self._reactor, self._pool, work, *args)


def _batchable(job: _Job) -> bool:
    return len(job.commands) == 1 and job.commands[0].batched is not None


def _batch_call(commands: Sequence[Command]) -> Command:
    """One call of the script that C{commands} (at least one) call, in its batch mode."""
    parts = [command.batched for command in commands]
    first = commands[0]
    assert parts[0] is not None and first.key is not None
    sha = parts[0].script.sha.encode("ascii")
    count = 5 + sum(part.arguments for part in parts if part is not None)
    head = b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n1\r\n$%d\r\n%s\r\n$1\r\nb\r\n" % (
        count, sha, len(first.key), first.key,
    )  # fmt: skip
    tails = []
    for command, part in zip(commands, parts):
        assert part is not None and isinstance(command.args, bytes)
        tails.append(command.args[part.start :])
    return Command(first.key, head + b"".join(tails))


def _fire(result: Deferred[Any], value: Any) -> None:
    if not result.called:
        if isinstance(value, Failure):
            result.errback(value)
        else:
            result.callback(value)


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _is_noscript(reply: Any) -> bool:
    return isinstance(reply, NoScriptError)


def _is_redirect(reply: Any) -> bool:
    return isinstance(reply, (AskError, ClusterDownError, TryAgainError))
