"""Command-line options and the service tree, for C{twistd tracker} and C{tracker.tac}."""

from __future__ import annotations

import importlib.metadata
import ipaddress
import os
import platform
import socket
from collections.abc import Sequence
from typing import Any, NamedTuple

from twisted.application.service import IService, MultiService
from twisted.logger import Logger
from twisted.python import usage

from tracker.core.config import IPNetwork, TrackerConfig
from tracker.core.interfaces import IPeerStore
from tracker.daemon.errors import StartError
from tracker.daemon.listening import (
    AdminListeningService,
    DatabaseLockService,
    ListeningService,
    UDPListeningService,
    check_listen,
    listen_all,
    parse_udp,
    udp_twin,
)
from tracker.daemon.service import TrackerService
from tracker.http.private import PrivateTrackerResource
from tracker.http.resource import TrackerResource
from tracker.http.site import TrackerSite
from tracker.ops.access import AccessControlledStore, AccessList, AccessListError, read_hash_list
from tracker.ops.admin import (
    DEFAULT_ADMIN_LISTEN,
    MIN_TOKEN_LENGTH,
    AdminResource,
    AdminSite,
)
from tracker.ops.control import AccessService, HangupService, exit_zero_on_sigterm
from tracker.ops.passkeys import Passkeys
from tracker.store.access import BLACKLIST, WHITELIST, IAccessStore, SQLiteAccessStore
from tracker.store.schema import check_usable
from tracker.store.secrets import SQLiteConnectionSecrets
from tracker.store.sqlite import UNWRITTEN_LIMIT, SQLitePeerStore
from tracker.udp.connection_ids import ConnectionIds, ConnectionIdsService
from tracker.udp.private import PrivateUDPTracker
from tracker.udp.protocol import UDPTracker

log = Logger()

DEFAULT_PORT = 6969
DEFAULT_DATABASE = "tracker.sqlite3"
_DEFAULTS = TrackerConfig()
#: Bytes in a mebibyte, the unit of --unwritten-limit.
MIB = 1024 * 1024


class AccessListFile(NamedTuple):
    """A C{--whitelist} or C{--blacklist}, with the hashes its file held at start."""

    list_name: str
    path: str
    file_hashes: frozenset[bytes]


def default_listen() -> list[str]:
    """
    Port 6969 for IPv4 and IPv6. One dual-stack IPv6 socket serves both (IPv4 clients appear as
    IPv4-mapped addresses, which the tracker stores as plain IPv4); a host without IPv6 gets IPv4.
    """
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    except OSError:
        return [f"tcp:{DEFAULT_PORT}"]
    return [f"tcp6:{DEFAULT_PORT}:interface=\\:\\:"]


def _positive(name: str, text: str, minimum: int = 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise usage.UsageError(f"--{name} must be a whole number, not {text!r}") from None
    if value < minimum:
        raise usage.UsageError(f"--{name} must be at least {minimum}")
    return value


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "A BitTorrent tracker over HTTP (BEP 3, 7, 23, 24, 48), UDP (BEP 15, 41) and WebSocket "
        "(WebTorrent) on an embedded SQLite database, or on Redis shared by many trackers "
        "(--redis)."
    )

    optFlags = [
        ["allow-ip-param", None, "Honour the client's ip= parameter (spoofable; off by default)."],
        ["no-udp", None, "Serve HTTP only: no UDP listener."],
        [
            "no-stats",
            None,
            "Serve no /stats, /stats.json or /metrics (the tracker's figures; on by default).",
        ],
        [
            "full-scrape",
            None,
            "Answer /scrape without info_hash with every torrent (off by default).",
        ],
        [
            "no-websocket",
            None,
            "Serve no WebSocket peers (browsers: WebTorrent) on the announce URL.",
        ],
        [
            "private",
            None,
            "Private mode: announce at /<passkey>/announce; passkeys through the admin API.",
        ],
        [
            "reuse-port",
            None,
            "Bind the HTTP and UDP listeners with SO_REUSEPORT, so that several daemons share"
            " their ports and Linux spreads clients over them (each daemon keeps its own"
            " swarms unless they share one --redis; not the admin API's listener).",
        ],
    ]
    optParameters = [
        [
            "database",
            "d",
            DEFAULT_DATABASE,
            "SQLite database file (created if missing). With --redis it is not used: nothing"
            " is read from it or written to it.",
        ],
        [
            "redis",
            None,
            None,
            "Keep the swarms in the Redis or Redis Cluster at this URL, shared by every tracker"
            " given the same: redis://HOST:PORT/DB, redis://:PASSWORD@HOST:PORT/DB, rediss://"
            " (TLS) or unix:///path/redis.sock; a cluster is found from any one node's URL.",
        ],
        ["interval", None, _DEFAULTS.interval, "Seconds clients wait between announces."],
        [
            "min-interval",
            None,
            None,
            "Minimum seconds between announces [default: half the interval].",
        ],
        [
            "peer-timeout",
            None,
            None,
            "Seconds of silence after which a peer is forgotten [default: 1.5 x interval].",
        ],
        ["expire-every", None, _DEFAULTS.expire_every, "Seconds between expiry runs."],
        [
            "numwant-default",
            None,
            _DEFAULTS.numwant_default,
            "Peers returned when the client does not say how many.",
        ],
        ["numwant-max", None, _DEFAULTS.numwant_max, "Most peers returned to one announce."],
        ["max-scrape", None, _DEFAULTS.max_scrape_hashes, "Most info hashes in one scrape."],
        ["idle-timeout", None, 30, "Seconds before an idle or stalled connection is closed."],
        [
            "unwritten-limit",
            None,
            UNWRITTEN_LIMIT // MIB,
            "MiB of changes kept in memory while the database cannot be written (disk full, I/O"
            " errors); past it they are dropped and the whole index is written once it can.",
        ],
        [
            "whitelist",
            None,
            None,
            "Serve only the torrents in this file (40 hex digits a line); reread on SIGHUP.",
        ],
        ["blacklist", None, None, "Refuse the torrents in this file; reread on SIGHUP."],
        [
            "admin-listen",
            None,
            None,
            f"Endpoint of the admin API [default: {DEFAULT_ADMIN_LISTEN}"
            " once --admin-token-file is given].",
        ],
        [
            "admin-token-file",
            None,
            None,
            "File holding the admin API's bearer token; without it the API is off.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["listen-udp"] = []
        self["trusted-proxy"] = []

    def opt_listen(self, endpoint: str) -> None:
        """Endpoint to listen on, e.g. tcp:6969 (repeatable; default: 6969, IPv4 and IPv6)."""
        self["listen"].append(endpoint)

    def opt_listen_udp(self, description: str) -> None:
        """UDP as udp:PORT[:interface=ADDRESS] (repeatable; default: each tcp --listen's port)."""
        parse_udp(description)
        self["listen-udp"].append(description)

    def opt_trusted_proxy(self, network: str) -> None:
        """Reverse proxy (address or CIDR) whose X-Forwarded-For is believed (repeatable)."""
        try:
            self["trusted-proxy"].append(ipaddress.ip_network(network, strict=False))
        except ValueError:
            raise usage.UsageError(
                f"--trusted-proxy: not an address or network: {network!r}"
            ) from None

    def postOptions(self) -> None:
        # Checked here rather than by a coercer, so that the message names the option.
        self["interval"] = _positive("interval", str(self["interval"]))
        if self["min-interval"] is None:
            # Follows the interval, as the field's 30 / 15 minutes do; only an explicit
            # contradiction is an error.
            self["min-interval"] = max(1, self["interval"] // 2)
        if self["peer-timeout"] is None:
            # The field's rule: a peer that missed about one and a half announces is gone.
            self["peer-timeout"] = self["interval"] * 3 // 2
        for name in (
            "interval",
            "min-interval",
            "peer-timeout",
            "expire-every",
            "numwant-max",
            "max-scrape",
            "idle-timeout",
            "unwritten-limit",
        ):
            self[name] = _positive(name, str(self[name]))
        self["numwant-default"] = _positive("numwant-default", str(self["numwant-default"]), 0)
        if not self["listen"]:
            self["listen"] = default_listen()
        from twisted.internet import reactor

        if self["reuse-port"] and not hasattr(socket, "SO_REUSEPORT"):
            raise usage.UsageError("--reuse-port: this system has no SO_REUSEPORT")
        for description in self["listen"]:
            check_listen(description, reactor, reuse_port=bool(self["reuse-port"]))
        if self["no-udp"]:
            self["listen-udp"] = []
        elif not self["listen-udp"]:
            twins = (udp_twin(description, reactor) for description in self["listen"])
            self["listen-udp"] = [twin for twin in twins if twin]
        self["access-list"] = _access_list(self["whitelist"], self["blacklist"])
        if self["private"] and self["admin-token-file"] is None:
            # Passkeys are made through the admin API only: without it a private tracker would
            # start and refuse every announce.
            raise usage.UsageError(
                "--private needs --admin-token-file FILE: passkeys are added through the admin"
                " API, and without one every announce is refused"
            )
        self["admin-token"] = _admin_token(self["admin-listen"], self["admin-token-file"])
        if self["admin-token"] is not None:
            self["admin-listen"] = self["admin-listen"] or DEFAULT_ADMIN_LISTEN
            check_listen(self["admin-listen"], reactor, "--admin-listen")
        if self["redis"] is not None:
            self["redis-description"] = _check_redis(self)
        else:
            problem = check_usable(self["database"])
            if problem is not None:
                raise StartError(f"cannot use the database {self['database']!r}: {problem}")
        try:
            self["config"] = self.config()
        except ValueError as e:
            raise usage.UsageError(str(e)) from None

    def config(self) -> TrackerConfig:
        proxies: Sequence[IPNetwork] = self["trusted-proxy"]
        return TrackerConfig(
            interval=self["interval"],
            min_interval=self["min-interval"],
            peer_timeout=self["peer-timeout"],
            expire_every=self["expire-every"],
            numwant_default=self["numwant-default"],
            numwant_max=self["numwant-max"],
            max_scrape_hashes=self["max-scrape"],
            trusted_proxies=tuple(proxies),
            allow_ip_param=bool(self["allow-ip-param"]),
            stats=not self["no-stats"],
            full_scrape=bool(self["full-scrape"]),
            websocket=not self["no-websocket"],
        )


def _check_redis(options: Options) -> str:
    """
    Reach the Redis named by --redis now, so that a wrong URL, an unreachable server or a
    wrong password ends the start in one line before anything listens; what it is, to be said
    when serving.
    """
    url = options["redis"]
    try:
        from tracker.store import redis_client
    except ImportError:
        raise StartError("--redis needs redis-py: pip install 'tracker[redis]'") from None
    try:
        redis_client.check_url(url)
    except ValueError as e:
        raise usage.UsageError(f"--redis {redis_client.redacted(url)}: {e}") from None
    try:
        client = redis_client.thd_client(url)
    except redis_client.RedisStartError as e:
        raise StartError(str(e)) from None
    try:
        return redis_client.describe(client)
    finally:
        client.close()


def _access_list(whitelist: str | None, blacklist: str | None) -> AccessListFile | None:
    """The list file named, read now: a mistake in it ends the start in one line."""
    if whitelist is not None and blacklist is not None:
        raise usage.UsageError("--whitelist and --blacklist cannot be used together")
    if whitelist is None and blacklist is None:
        return None
    list_name, path = (WHITELIST, whitelist) if whitelist is not None else (BLACKLIST, blacklist)
    assert path is not None
    try:
        return AccessListFile(list_name, path, read_hash_list(path))
    except OSError as e:
        raise StartError(f"--{list_name} {path}: cannot read it: {e.strerror}") from None
    except AccessListError as e:
        raise StartError(f"--{list_name} {path}: {e}") from None


def _admin_token(listen: str | None, token_file: str | None) -> bytes | None:
    """The admin API's token, or None when the API is off; it never starts without one."""
    if token_file is None:
        if listen is not None:
            raise usage.UsageError(
                "--admin-listen needs --admin-token-file FILE: the admin API does not start"
                " without a bearer token"
            )
        return None
    try:
        with open(token_file, "rb") as f:
            token = f.read().strip()
    except OSError as e:
        raise StartError(f"--admin-token-file {token_file}: cannot read it: {e.strerror}") from None
    if len(token) < MIN_TOKEN_LENGTH or any(c <= 32 or c > 126 for c in token):
        raise StartError(
            f"--admin-token-file {token_file}: the token must be at least {MIN_TOKEN_LENGTH}"
            " printable characters without spaces: python3 -c 'import secrets;"
            " print(secrets.token_hex(32))' makes one"
        )
    return token


def makeService(options: Any, reactor: Any | None = None) -> IService:
    """The whole daemon: the tracker service and one listener per C{--listen}."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    config: TrackerConfig = options["config"]
    store: IPeerStore
    access_store: IAccessStore
    if options.get("redis"):
        store, access_store = _redis_stores(options["redis"], config, reactor)
    else:
        store = SQLitePeerStore(
            options["database"],
            reactor,
            private=bool(options.get("private")),
            unwritten_limit=options["unwritten-limit"] * MIB,
        )
        access_store = SQLiteAccessStore(store)
    # Announces and scrapes go through the access list only when there is one: without, they
    # cost nothing more.
    served: IPeerStore = store
    access_list = None
    listed: AccessListFile | None = options.get("access-list")
    if listed is not None:
        access_list = AccessList(*listed, store=access_store, reactor=reactor)
        served = AccessControlledStore(store, access_list)
    passkeys = None
    if options.get("private"):
        passkeys = Passkeys(access_store, reactor)
    root = MultiService()
    # Made first for its figures, which HTTP and UDP count into; parented last (see below).
    tracker = TrackerService(store, config, reactor)
    stats = tracker.stats
    if passkeys is not None:
        resource: TrackerResource = PrivateTrackerResource(
            served, passkeys, config, reactor, stats=stats
        )
    else:
        resource = TrackerResource(served, config, reactor, stats=stats)
    site = TrackerSite(resource, timeout=options["idle-timeout"])
    if isinstance(store, SQLitePeerStore):
        # The database's lock, then the listeners: a database another tracker is using stops
        # the daemon before it listens, and a refused port before the store has opened anything.
        DatabaseLockService(store).setServiceParent(root)
        # Kept in the database, so that an ID outlives a restart (BEP 15).
        connection_ids = ConnectionIds(reactor, secrets=SQLiteConnectionSecrets(store))
    else:
        connection_ids = _shared_connection_ids(store, reactor)
    reuse_port = bool(options.get("reuse-port"))
    listeners: list[ListeningService] = [
        ListeningService(endpoint, site, reactor) for endpoint in options["listen"]
    ]
    for description in options["listen-udp"]:
        if passkeys is not None:
            udp: UDPTracker = PrivateUDPTracker(
                served, passkeys, config, reactor, connection_ids=connection_ids, stats=stats
            )
        else:
            udp = UDPTracker(served, config, reactor, connection_ids=connection_ids, stats=stats)
        listeners.append(
            UDPListeningService(description, udp, reactor, ready=connection_ids.when_loaded)
        )
    token: bytes | None = options.get("admin-token")
    if token is not None:
        admin = AdminResource(token, stats.snapshot, access_list, passkeys, reactor)
        listeners.append(AdminListeningService(options["admin-listen"], AdminSite(admin), reactor))
    for listener in listeners:
        if not isinstance(listener, AdminListeningService):
            # Each daemon has its own lists and passkeys: the admin API's port is never shared.
            listener.reuse_port = reuse_port
    # Every port bound now, while nothing has started: a refused one (a UDP port taken beside a
    # free TCP one) ends the start in one line, with nothing listening and nothing said to.
    listen_all(listeners)
    for listener in listeners:
        listener.setServiceParent(root)
    tracker.setServiceParent(root)
    if options["listen-udp"]:
        # After the tracker service, so that its read queues behind the store's opening.
        ConnectionIdsService(connection_ids).setServiceParent(root)
    if access_list is not None or passkeys is not None:
        # After the tracker service: its reads queue behind the store's opening, and its last
        # write goes before the store closes.
        AccessService(access_store, access_list, passkeys, reactor).setServiceParent(root)
        if options.get("redis"):
            # Other nodes change the lists and passkeys too: follow them.
            from tracker.ops.shared import SharedAccess

            SharedAccess(access_store, access_list, passkeys, reactor).setServiceParent(root)
    if access_list is None:
        # The access service reloads the list on SIGHUP. Without a list the signal is handled
        # all the same: its default action would end the daemon.
        HangupService(reactor).setServiceParent(root)
    exit_zero_on_sigterm(reactor)
    storage = (
        options.get("redis-description") or options["redis"]
        if options.get("redis")
        else f"database {os.path.abspath(options['database'])}"
    )
    tracker.started.addCallbacks(
        _say_started,
        _stop_on_failure,
        callbackArgs=(storage,),
        errbackArgs=(reactor,),
    )
    return root


def _redis_stores(url: str, config: TrackerConfig, reactor: Any) -> tuple[Any, IAccessStore]:
    """The swarms, and the access lists and passkeys, in the Redis at C{url}."""
    from tracker.store.redis import SCRIPTS, RedisPeerStore
    from tracker.store.redis_access import TRANSFERS, RedisAccessStore
    from tracker.store.redis_client import RedisConnection

    connection = RedisConnection(url, reactor, (*SCRIPTS, TRANSFERS))
    store = RedisPeerStore(
        reactor=reactor,
        peer_timeout=config.peer_timeout,
        sweep_every=config.expire_every,
        connection=connection,
    )
    return store, RedisAccessStore(connection)


def _shared_connection_ids(store: Any, reactor: Any) -> ConnectionIds:
    """Connection IDs under secrets kept in Redis: an ID from one node is good at all."""
    from tracker.store.redis_secrets import RedisConnectionSecrets

    return ConnectionIds(reactor, secrets=RedisConnectionSecrets(store.connection))


def _say_started(_: None, storage: str) -> None:
    log.info(
        "tracker {version} on {interpreter} {python}: {storage} open, serving",
        version=_version(),
        interpreter=platform.python_implementation(),
        python=platform.python_version(),
        storage=storage,
    )


def _version() -> str:
    try:
        return importlib.metadata.version("tracker")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _stop_on_failure(failure: Any, reactor: Any) -> None:
    log.failure("the tracker's storage could not be opened; stopping", failure)
    reactor.stop()
