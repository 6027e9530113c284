"""An HTTP proxy that turns a client's announces into ``compact=0`` announces.

None of the clients under test can be told to ask for a non-compact peer
list: libtorrent, aria2 and Transmission all hard-code ``compact=1``.  To see
a real client consume the tracker's dictionary-model peer list (BEP 3), the
client's tracker traffic goes through this proxy, which rewrites the
``compact`` parameter and passes the tracker's answer back untouched.
"""

from __future__ import annotations

import ipaddress
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .procs import LOOPBACK


@dataclass(frozen=True)
class Exchange:
    """One proxied request: what the client sent, what went on, what came back."""

    client_url: str
    forwarded_url: str
    status: int
    body: bytes


def force_compact_zero(url: str) -> str:
    """Return ``url`` with every ``compact`` query parameter replaced by ``compact=0``.

    Works on the raw query string so that the percent-encoded binary
    info_hash and peer_id pass through byte for byte.
    """
    parts = urllib.parse.urlsplit(url)
    fields = [f for f in parts.query.split("&") if f and not f.startswith("compact=")]
    fields.append("compact=0")
    return urllib.parse.urlunsplit(parts._replace(query="&".join(fields)))


def _is_loopback(host: str | None) -> bool:
    try:
        return ipaddress.IPv4Address(host or "").is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: _ProxyServer

    def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        target = urllib.parse.urlsplit(self.path)
        # Only ever forward to the tracker on loopback, never anywhere else.
        if target.scheme != "http" or not _is_loopback(target.hostname):
            self.send_error(403, "this proxy only forwards to http:// on 127.0.0.0/8")
            return
        forwarded = force_compact_zero(self.path)
        try:
            with urllib.request.urlopen(forwarded, timeout=10) as response:  # noqa: S310
                status, body = response.status, bytes(response.read())
        except urllib.error.HTTPError as error:
            status, body = error.code, bytes(error.read())
        except OSError as error:
            self.send_error(502, f"tracker unreachable: {error}")
            return
        self.server.record(Exchange(self.path, forwarded, status, body))
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # A client shutting down gives up on its final 'stopped'
            # announce after a short timeout; that is not an error here.
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet; the exchanges are recorded instead."""


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self._lock = threading.Lock()
        self.exchanges: list[Exchange] = []

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)


class CompactZeroProxy:
    """Runs the proxy in a background thread; use as a context manager or call close()."""

    def __init__(self) -> None:
        self._server = _ProxyServer()
        self._thread: threading.Thread | None = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def exchanges(self) -> list[Exchange]:
        with self._server._lock:
            return list(self._server.exchanges)

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> CompactZeroProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
