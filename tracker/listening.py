"""
The daemon's listening sockets: C{--listen} endpoints checked before anything starts, and a
service that either listens or stops the daemon with one line saying why.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

log = Logger()


def check_listen(description: str, reactor: Any) -> None:
    """
    Parse one C{--listen} endpoint now, so that a typo, a missing certificate file or a missing
    TLS library ends in one line before anything starts, not in a traceback once it has.
    """
    try:
        endpoint = endpoints.serverFromString(reactor, description)
    except ImportError:
        raise usage.UsageError(
            f"--listen {description}: TLS needs pyOpenSSL: run pip install '.[tls]'"
            " in the tracker's folder"
        ) from None
    except OSError as e:
        raise usage.UsageError(
            f"--listen {description}: cannot read {e.filename or 'a file'}: {e.strerror}"
        ) from None
    except Exception as e:
        # Twisted's parsers raise ValueError, TypeError or KeyError, and OpenSSL its own errors
        # for a file that is not a key or a certificate.
        raise usage.UsageError(f"--listen {description}: not a valid endpoint ({e})") from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise usage.UsageError(f"--listen {description}: port {port} is out of range 0-65535")


def url_of(description: str, port: IListeningPort) -> str:
    """Where clients announce to, for the start-up log: C{http://127.0.0.1:6969/announce}."""
    address = port.getHost()
    host = getattr(address, "host", None)
    if host is None:
        return f"{description} (path {getattr(address, 'name', '?')!r})"
    scheme = "https" if description.split(":", 1)[0] in ("ssl", "tls") else "http"
    port_number = getattr(address, "port", "?")
    if host in ("0.0.0.0", "::"):
        return f"{scheme}://localhost:{port_number}/announce (every address of this host)"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port_number}/announce"


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


class ListeningService(Service):
    """
    Listens on one endpoint, as early as the daemon allows (in C{privilegedStartService} under
    twistd, so a port below 1024 can be bound before privileges are dropped). A refused listen
    raises C{SystemExit} with one line, before any later service (the store) has started.
    """

    def __init__(self, description: str, factory: Any, reactor: Any) -> None:
        self.description = description
        self._factory = factory
        self._reactor = reactor
        self._port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        if self._port is None:
            self._listen()
        super().startService()

    def _listen(self) -> None:
        endpoint = endpoints.serverFromString(self._reactor, self.description)
        outcome: list[Any] = []
        listening: Deferred[IListeningPort] = endpoint.listen(self._factory)
        listening.addBoth(outcome.append)
        if not outcome:
            raise SystemExit(f"cannot listen on {self.description}: the endpoint did not answer")
        if isinstance(outcome[0], Failure):
            raise SystemExit(f"cannot listen on {self.description}: {why_not(outcome[0])}")
        self._port = outcome[0]
        log.info("tracker listening on {url}", url=url_of(self.description, outcome[0]))

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        stopped: Deferred[None] = maybeDeferred(port.stopListening)  # type: ignore[call-overload]
        return stopped
