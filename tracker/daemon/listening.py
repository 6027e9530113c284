"""
The daemon's listening sockets: C{--listen} endpoints checked while the options are read, every
port bound before anything starts (or the daemon stopped with one line saying why), and the
start-up line that says where clients reach each one; before them, the service that takes the
database for the daemon alone, or stops it the same way.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import abstract, endpoints
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from tracker.daemon.errors import StartError
from tracker.store.lock import SUFFIX, DatabaseInUse
from tracker.store.sqlite import SQLitePeerStore
from tracker.udp.port import listen_udp

log = Logger()


#: The endpoints L{listen_reusing_port} can bind with C{SO_REUSEPORT}.
_REUSABLE = (
    endpoints.TCP4ServerEndpoint,
    endpoints.TCP6ServerEndpoint,
    endpoints.SSL4ServerEndpoint,
)


def check_listen(
    description: str, reactor: Any, option: str = "--listen", reuse_port: bool = False
) -> None:
    """
    Parse one C{--listen} endpoint (or another C{option}'s) now, so that a typo, a missing
    certificate file or a missing TLS library ends in one line before anything starts, not in a
    traceback once it has. With C{reuse_port}, an endpoint that cannot share its port (a UNIX
    socket, say) is refused the same way.
    """
    try:
        endpoint = endpoints.serverFromString(reactor, description)
    except ImportError:
        raise StartError(
            f"{option} {description}: TLS needs pyOpenSSL: run pip install '.[tls]'"
            " in the tracker's folder"
        ) from None
    except OSError as e:
        raise StartError(
            f"{option} {description}: cannot read {e.filename or 'a file'}: {e.strerror}"
        ) from None
    except (ValueError, TypeError, KeyError) as e:
        # What Twisted's parsers raise for a description they cannot read.
        raise usage.UsageError(f"{option} {description}: not a valid endpoint ({e})") from None
    except Exception as e:
        # OpenSSL's own errors, for a file that is not a key or a certificate.
        raise StartError(f"{option} {description}: not a valid endpoint ({e})") from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise usage.UsageError(f"{option} {description}: port {port} is out of range 0-65535")
    if reuse_port and not isinstance(endpoint, _REUSABLE):
        raise usage.UsageError(
            f"--reuse-port: {option} {description} cannot share its port:"
            " only tcp:, tcp6: and ssl: listeners can"
        )


def listen_reusing_port(reactor: Any, description: str, factory: Any) -> IListeningPort:
    """
    Listen on a C{tcp:}, C{tcp6:} or C{ssl:} endpoint as C{endpoint.listen(factory)} does, on a
    socket bound with C{SO_REUSEPORT}: several daemons that all ask for it share the port, and
    Linux spreads incoming connections over them. Twisted's endpoints cannot set the option
    before they bind, so the socket is made here and handed to the reactor. Raises
    L{CannotListenError} as C{listenTCP} does.
    """
    endpoint = endpoints.serverFromString(reactor, description)
    if not isinstance(endpoint, _REUSABLE):
        raise ValueError(f"{description}: not a tcp:, tcp6: or ssl: endpoint")
    port: int = endpoint._port
    interface: str = endpoint._interface
    if isinstance(endpoint, endpoints.SSL4ServerEndpoint):
        # What listenSSL does: TLS in memory over a plain TCP port.
        from twisted.protocols.tls import TLSMemoryBIOFactory

        factory = TLSMemoryBIOFactory(endpoint._sslContextFactory, False, factory)
    family = socket.AF_INET6 if abstract.isIPv6Address(interface) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR as Twisted's own TCP ports set it: a restart need not wait for the
        # connections of the last run to leave TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # Resolves a scope (fe80::1%eth0) as Twisted does.
            address = socket.getaddrinfo(interface, port, family, 0, 0, socket.AI_NUMERICHOST)
            sock.bind(address[0][4])
        else:
            sock.bind((interface, port))
        sock.listen(endpoint._backlog)
        sock.setblocking(False)
        # The reactor's port works on a duplicate of the descriptor: this one is closed below.
        listening: IListeningPort = reactor.adoptStreamPort(sock.fileno(), family, factory)
        return listening
    except OSError as e:
        raise CannotListenError(interface, port, e) from None
    finally:
        sock.close()


def parse_udp(description: str) -> tuple[int, str]:
    """
    C{udp:PORT} or C{udp:PORT:interface=ADDRESS}, written like Twisted's TCP endpoints (an IPv6
    address's colons escaped, C{udp:6969:interface=\\:\\:}, or not): the port and the
    interface. Raises L{usage.UsageError} with the reason.
    """
    # An IPv6 interface may also be written unescaped: everything after "interface=" is it.
    fields = [field.replace("\\:", ":") for field in re.split(r"(?<!\\):", description, maxsplit=2)]
    if fields[0] != "udp" or len(fields) not in (2, 3):
        raise usage.UsageError(
            f"--listen-udp {description}: not udp:PORT or udp:PORT:interface=ADDRESS"
        )
    if not fields[1].isdigit() or int(fields[1]) > 65535:
        raise usage.UsageError(f"--listen-udp {description}: port must be a number 0-65535")
    interface = ""
    if len(fields) == 3:
        name, _, interface = fields[2].partition("=")
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            interface = ""
        if name != "interface" or not interface:
            raise usage.UsageError(
                f"--listen-udp {description}: interface= must be an IPv4 or IPv6 address"
            )
    return int(fields[1]), interface


def udp_twin(description: str, reactor: Any) -> str | None:
    """
    The UDP listener beside a TCP one, on the same port and interface, so that one address
    serves C{http://} and C{udp://} announces alike; None for other endpoints (TLS, UNIX
    sockets) and for port 0, whose TCP and UDP ports would differ.
    """
    endpoint = endpoints.serverFromString(reactor, description)
    if not isinstance(endpoint, (endpoints.TCP4ServerEndpoint, endpoints.TCP6ServerEndpoint)):
        return None
    port, interface = endpoint._port, endpoint._interface
    if not port:
        return None
    if not interface:
        return f"udp:{port}"
    escaped = interface.replace(":", "\\:")
    return f"udp:{port}:interface={escaped}"


def url_of(description: str, port: IListeningPort, path: str = "/announce") -> str:
    """
    Where clients announce to, for the start-up log: C{http://127.0.0.1:6969/announce} for a
    listener on one address; for one on every address, this host's name and which addresses
    answer, C{http://tracker1:6969/announce (every IPv4 and IPv6 address of this host)}.
    """
    address = port.getHost()
    host = getattr(address, "host", None)
    if host is None:
        return f"{description} (path {getattr(address, 'name', '?')!r})"
    kind = description.split(":", 1)[0]
    scheme = {"ssl": "https", "tls": "https", "udp": "udp"}.get(kind, "http")
    port_number = getattr(address, "port", "?")
    if host in ("0.0.0.0", "::"):
        name = host_name()
        if ":" in name:
            name = f"[{name}]"
        return f"{scheme}://{name}:{port_number}{path} ({_every_address(port, host)})"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port_number}{path}"


def host_name() -> str:
    """
    This host's name, for URLs that other machines can use: the kernel's own
    (C{gethostname}, a system call, not a DNS query that could hold up the start);
    C{localhost} when it has none.
    """
    return socket.gethostname() or "localhost"


def _every_address(port: IListeningPort, host: str) -> str:
    """Which addresses a port bound to the wildcard C{host} answers on: an IPv6 socket serves
    IPv4 too unless it is IPv6-only (C{IPV6_V6ONLY}, or the system's default for it)."""
    if host == "0.0.0.0":
        return "every IPv4 address of this host"
    sock = getattr(port, "socket", None)
    v6_only = True
    if isinstance(sock, socket.socket):
        v6_only = bool(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
    if v6_only:
        return "every IPv6 address of this host"
    return "every IPv4 and IPv6 address of this host"


def why_not(failure: Failure) -> str:
    """A refused listen, in the words a user acts on."""
    error = failure.value
    socket_error = getattr(error, "socketError", None)
    if isinstance(error, CannotListenError) and isinstance(socket_error, OSError):
        if socket_error.errno == errno.EADDRINUSE:
            return "address already in use (is another tracker running?)"
        if socket_error.errno == errno.EACCES:
            return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        if socket_error.errno == errno.EADDRNOTAVAIL:
            return "this machine has no such address"
        return (socket_error.strerror or str(socket_error)).lower()
    return str(error)


class DatabaseLockService(Service):
    """
    Takes the store's database for this daemon alone (L{SQLitePeerStore.lock}), as early as
    the daemon allows: parent it before the listeners. A database another tracker is using
    ends the start with one line naming it and that tracker's pid, before anything listens.
    The store lets go of the lock when it stops; a start that ends before, when the process
    exits.
    """

    def __init__(self, store: SQLitePeerStore) -> None:
        self._store = store

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._lock()

    def startService(self) -> None:
        # twist starts services without privilegedStartService; taking it again does nothing.
        self._lock()
        super().startService()

    def _lock(self) -> None:
        path = self._store.path
        try:
            self._store.lock()
        except DatabaseInUse as e:
            raise SystemExit(str(e)) from None
        except OSError as e:
            raise SystemExit(
                f"cannot use the database {path!r}: cannot lock {path + SUFFIX}: {e.strerror}"
            ) from None


class ListeningService(Service):
    """
    Listens on one endpoint. The daemon binds every listener before it starts anything
    (L{listen_all}); otherwise the port is bound as early as the service allows (in
    C{privilegedStartService} under twistd, so a port below 1024 can be bound before privileges
    are dropped). A refused listen raises C{SystemExit} with one line, before any later service
    (the store) has started. The line saying where it listens is logged once it starts.
    """

    #: What listens, and the path of its URL, for the start-up log line.
    what = "tracker"
    path = "/announce"

    #: Bind with C{SO_REUSEPORT} (C{--reuse-port}), so that other daemons can share the port.
    reuse_port = False

    def __init__(self, description: str, factory: Any, reactor: Any) -> None:
        self.description = description
        self._factory = factory
        self._reactor = reactor
        self._port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self._port is None:
            self.listen()

    def startService(self) -> None:
        if self._port is None:
            self.listen()
        super().startService()
        assert self._port is not None
        log.info(
            "{what} listening on {url}",
            what=self.what,
            url=url_of(self.description, self._port, self.path),
        )

    def _open(self) -> Deferred[IListeningPort]:
        if self.reuse_port:
            reusing: Deferred[IListeningPort] = maybeDeferred(
                listen_reusing_port, self._reactor, self.description, self._factory
            )
            return reusing
        endpoint = endpoints.serverFromString(self._reactor, self.description)
        listening: Deferred[IListeningPort] = endpoint.listen(self._factory)
        return listening

    def listen(self) -> None:
        """Bind the port now; C{SystemExit} with one line saying why not."""
        outcome: list[Any] = []
        self._open().addBoth(outcome.append)
        if not outcome:
            raise SystemExit(f"cannot listen on {self.description}: the endpoint did not answer")
        if isinstance(outcome[0], Failure):
            raise SystemExit(f"cannot listen on {self.description}: {why_not(outcome[0])}")
        self._port = outcome[0]

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.close()

    def close(self) -> Deferred[None]:
        """Stop listening, if it listens."""
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        stopped: Deferred[None] = maybeDeferred(port.stopListening)  # type: ignore[call-overload]
        return stopped


def listen_all(listeners: list[ListeningService]) -> None:
    """
    Bind every listener now, before anything starts or says it listens: when one port is
    refused (a UDP port taken while its TCP twin is free, say), the ports already bound are
    closed and C{SystemExit} says which, so the daemon ends with one line and nothing
    listening. Under twistd this runs before its logging starts, so that line is all it prints.
    """
    bound: list[ListeningService] = []
    try:
        for listener in listeners:
            listener.listen()
            bound.append(listener)
    except BaseException:
        for listener in bound:
            listener.close()
        raise


class AdminListeningService(ListeningService):
    """L{ListeningService} for the admin API."""

    what = "admin API"
    path = "/"


#: A receive buffer that rides out a burst of announces (the kernel caps it at rmem_max).
_UDP_RECEIVE_BUFFER = 4 * 1024 * 1024


class UDPListeningService(ListeningService):
    """
    L{ListeningService} for a C{udp:PORT[:interface=ADDRESS]} listener of a protocol. Given
    C{ready}, the port is bound at once but read only once C{ready()} has fired: the
    protocol's connection IDs are loaded by then (L{tracker.udp.connection_ids.ConnectionIds}).
    """

    def __init__(
        self,
        description: str,
        factory: Any,
        reactor: Any,
        ready: Callable[[], Deferred[None]] | None = None,
    ) -> None:
        super().__init__(description, factory, reactor)
        self._ready = ready

    def _open(self) -> Deferred[IListeningPort]:
        port, interface = parse_udp(self.description)
        listening: Deferred[IListeningPort] = maybeDeferred(
            listen_udp, self._reactor, port, self._factory, interface, self.reuse_port
        )
        return listening.addCallback(_with_large_buffer).addCallback(self._read_when_ready)

    def _read_when_ready(self, port: Any) -> Any:
        if self._ready is None:
            return port
        ready = self._ready()
        if not ready.called:
            # Datagrams wait in the socket's receive buffer meanwhile: a few milliseconds at a
            # start, the connection IDs' secrets being read before the swarms.
            port.stopReading()
            ready.addCallback(self._resume, port)
        return port

    def _resume(self, _: None, port: Any) -> None:
        still_listening = self._port is port
        if still_listening:
            port.startReading()


def _with_large_buffer(port: Any) -> Any:
    # Reactors whose ports have no socket of their own (test reactors) keep their buffer.
    sock = getattr(port, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RECEIVE_BUFFER)
    return port
