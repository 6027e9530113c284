"""
Private mode over HTTP: every announce and scrape names a passkey in its path,
C{/<passkey>/announce} and C{/<passkey>/scrape}. An unknown passkey, or none, gets a bencoded
failure; a known one is credited with what its peers report moving (L{tracker.ops.passkeys}).
UDP's private mode is L{tracker.udp.private}.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request

from tracker.core.config import TrackerConfig
from tracker.core.errors import TrackerError
from tracker.core.interfaces import IPeerStore
from tracker.core.query import Params
from tracker.http.resource import (
    AnnounceResource,
    Body,
    ScrapeResource,
    TrackerResource,
    _Endpoint,
    _send,
)
from tracker.http.response import failure_body
from tracker.ops.passkeys import Passkeys, wait_or_refuse
from tracker.ops.stats import TrackerStats
from tracker.ws.frames import is_upgrade
from tracker.ws.tracker import WebSocketTracker

PRIVATE = "this tracker is private: announce to /<your passkey>/announce"


def _passkey_of(request: Request) -> bytes:
    # The endpoints are leaves below the passkey's segment: it is the one before theirs.
    return request.prepath[-2]  # type: ignore[index]


def _logged(request: Request, passkey: bool) -> bytes:
    """
    What the log shows of a request's URI in private mode: the path to its endpoint, with
    C{<passkey>} in place of the passkey when there is one (C{passkey}), and nothing after. A
    passkey is as good as a password, and a log is read by more people and kept longer than
    the passkey table (Ocelot logs them in clear); a client set up for another tracker's
    scheme may carry its passkey in the query or past the endpoint (C{?passkey=...},
    C{/announce/<passkey>}), so neither is shown. The reason logged says what was wrong.
    """
    prepath: list[bytes] = request.prepath or []
    if passkey:
        prepath = [*prepath[:-2], b"<passkey>", *prepath[-1:]]
    return b"/" + b"/".join(prepath)


class PrivateAnnounceResource(AnnounceResource):
    """C{/<passkey>/announce}; a WebSocket opened there announces with the passkey too."""

    def __init__(
        self,
        store: IPeerStore,
        config: TrackerConfig,
        clock: IReactorTime,
        stats: TrackerStats,
        passkeys: Passkeys,
        rng: random.Random | None = None,
        websocket: WebSocketTracker | None = None,
    ) -> None:
        super().__init__(store, config, clock, stats, rng, websocket)
        self._passkeys = passkeys

    def upgrade(self, websocket: WebSocketTracker, request: Request) -> Any:
        # Its messages are checked against the passkey as they come: passkeys come and go
        # while a WebSocket lasts.
        return websocket.upgrade(request, passkey=_passkey_of(request))

    def answer(self, request: Request, params: Params) -> Body | Deferred[Body]:
        passkeys = self._passkeys
        # This endpoint is a leaf below the passkey's segment: the passkey is the one before.
        ledger = passkeys.ledgers.get(request.prepath[-2])  # type: ignore[index]
        if ledger is None:
            return wait_or_refuse(passkeys, lambda: self.answer(request, params))
        return self.respond(self.parse(request, params, ledger))

    def logged_uri(self, request: Request) -> bytes:
        return _logged(request, passkey=True)


class PrivateScrapeResource(ScrapeResource):
    """C{/<passkey>/scrape}."""

    def __init__(
        self,
        store: IPeerStore,
        config: TrackerConfig,
        clock: IReactorTime,
        stats: TrackerStats,
        passkeys: Passkeys,
    ) -> None:
        super().__init__(store, config, clock, stats)
        self._passkeys = passkeys

    def answer(self, request: Request, params: Params) -> Body | Deferred[Body]:
        if _passkey_of(request) not in self._passkeys.ledgers:
            return wait_or_refuse(self._passkeys, lambda: self.answer(request, params))
        return super().answer(request, params)

    def logged_uri(self, request: Request) -> bytes:
        return _logged(request, passkey=True)


class _Refusal(_Endpoint):
    """The bare C{/announce} and C{/scrape} of a private tracker."""

    def answer(self, request: Request, params: Params) -> bytes:
        raise TrackerError(PRIVATE)

    def logged_uri(self, request: Request) -> bytes:
        return _logged(request, passkey=False)


class _AnnounceRefusal(_Refusal):
    """The bare C{/announce} of a private tracker: a WebSocket opened there has every message
    refused, with the reason, which WebTorrent shows its user; an HTTP error in the handshake
    would only make it try again and again."""

    def __init__(
        self,
        store: IPeerStore,
        config: TrackerConfig,
        clock: IReactorTime,
        stats: TrackerStats,
        websocket: WebSocketTracker | None,
    ) -> None:
        super().__init__(store, config, clock, stats, stats.http_announce)
        self._websocket = websocket

    def render(self, request: Request) -> Any:
        websocket = self._websocket
        if websocket is not None and is_upgrade(request.requestHeaders.getRawHeaders(b"upgrade")):
            return websocket.upgrade(request, refusal=PRIVATE)
        return super().render(request)


class _PrivateNotFound(Resource):
    isLeaf = True
    _body = failure_body(f"not a tracker endpoint: {PRIVATE}")

    def render(self, request: Request) -> Any:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain")
        return _send(request, self._body)


class _PasskeySegment(Resource):
    """What lies below C{/<passkey>}: the private endpoints."""

    def __init__(self, not_found: Resource) -> None:
        super().__init__()
        self._not_found = not_found

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self._not_found

    def render(self, request: Request) -> Any:
        return self._not_found.render(request)


class PrivateTrackerResource(TrackerResource):
    """
    L{TrackerResource} in private mode: C{/<passkey>/announce} and C{/<passkey>/scrape} for
    each passkey in C{passkeys}; the bare C{/announce} and C{/scrape} refuse with a failure
    that says where to announce.
    """

    def __init__(
        self,
        store: IPeerStore,
        passkeys: Passkeys,
        config: TrackerConfig | None = None,
        clock: IReactorTime | None = None,
        rng: random.Random | None = None,
        stats: TrackerStats | None = None,
    ) -> None:
        self._passkeys = passkeys
        super().__init__(store, config, clock, rng, stats)
        if clock is None:
            from twisted.internet import reactor as default_reactor

            clock = default_reactor
        assert clock is not None
        config = config or TrackerConfig()
        stats = self.stats
        store = self.store
        websocket = self.websocket
        self.putChild(b"announce", _AnnounceRefusal(store, config, clock, stats, websocket))
        self.putChild(b"scrape", _Refusal(store, config, clock, stats, stats.http_scrape))
        self._endpoints: dict[bytes, Resource] = {
            b"announce": PrivateAnnounceResource(
                store, config, clock, stats, passkeys, rng, websocket
            ),
            b"scrape": PrivateScrapeResource(store, config, clock, stats, passkeys),
        }
        # The figures pages name the tracker's torrents: a private tracker shows them through
        # its admin API only. /metrics names none, and stays.
        for name in (b"stats", b"stats.json"):
            self.children.pop(name, None)
        self._passkey_segment = _PasskeySegment(_PrivateNotFound())
        for name, endpoint in self._endpoints.items():
            self._passkey_segment.putChild(name, endpoint)

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        postpath = request.postpath
        if path and postpath:
            endpoint: Resource | None = self._endpoints.get(postpath[0])
            if endpoint is not None:
                # /<passkey>/announce, by far the most common path: the passkey's segment
                # and the endpoint's in one step, where Twisted's traversal takes two.
                request.prepath.append(postpath.pop(0))  # type: ignore[union-attr]
                return endpoint
        child: Resource = super().getChildWithDefault(path, request)
        return child

    def getChild(self, path: bytes, request: Request) -> Resource:
        if not path:
            return super().getChild(path, request)
        return self._passkey_segment
