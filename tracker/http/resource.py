"""
The embeddable tracker: a plain L{IResource} with C{announce} and C{scrape} children, and the
tracker's figures at C{stats}, C{stats.json} and C{metrics}.

It owns no port and no thread; mount it anywhere in a site and give it a started store.
"""

from __future__ import annotations

import random
from time import perf_counter
from typing import Any, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tracker.core.addresses import client_ip
from tracker.core.announce import AnnounceRequest, parse_announce, parse_scrape
from tracker.core.config import TrackerConfig
from tracker.core.errors import TrackerError
from tracker.core.groups import GroupCountingStore
from tracker.core.interfaces import IPeerStore, StoreStopped, StoreUnavailable
from tracker.core.ledger import Ledger
from tracker.core.meters import TIMED, RequestMeter
from tracker.core.query import Params, parse_query, split_query
from tracker.http.fullscrape import Bodies, FullScrape, accepts_gzip
from tracker.http.response import announce_body, failure_body, scrape_body
from tracker.ops.metrics import MetricsResource
from tracker.ops.passkeys import Passkeys
from tracker.ops.stats import TrackerStats
from tracker.ops.statspage import StatsJSONResource, StatsPageResource
from tracker.ws.frames import is_upgrade
from tracker.ws.tracker import WebSocketTracker

log = Logger()

_ALLOWED_METHODS = (b"GET", b"HEAD")
#: BEP 31: how long a client should wait after the tracker itself failed.
_RETRY_AFTER_ERROR = 60
#: BEP 31's minutes to wait when the store cannot be reached (Redis down): soon, since the
#: tracker recovers by itself once it is back.
RETRY_UNAVAILABLE = 5
#: A reply body: one string, or pieces written one after another (a full scrape's).
Body = Union[bytes, tuple[bytes, ...]]


class _Endpoint(Resource):
    """Shared request lifecycle: parse, hand to the store, answer once, never after a disconnect."""

    isLeaf = True

    def __init__(
        self,
        store: IPeerStore,
        config: TrackerConfig,
        clock: IReactorTime,
        stats: TrackerStats,
        meter: RequestMeter,
    ) -> None:
        super().__init__()
        self._store = store
        self._config = config
        self._clock = clock
        self._stats = stats
        #: Where this endpoint counts its requests: a few integer increments per request.
        self._meter = meter

    def render(self, request: Request) -> Any:
        started = perf_counter()
        request.setHeader(b"content-type", b"text/plain")
        meter = self._meter
        if request.method not in _ALLOWED_METHODS:
            # Plain twisted.web answers unknown methods with 501, which monitors read as an outage.
            meter.refused += 1
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return _body(request, failure_body("method not allowed: use GET"))
        try:
            answer = self.answer(request, parse_query(split_query(request.uri)))
        except TrackerError as e:
            meter.refused += 1
            self._stats.refusals.add("http", e.reason)
            log.debug("refused {uri!r}: {reason}", uri=self.logged_uri(request), reason=e.reason)
            return _send(request, failure_body(e.reason))
        except StoreStopped:
            meter.errors += 1
            return _send(request, _shutting_down())
        except StoreUnavailable:
            meter.errors += 1
            return _send(request, _unavailable())
        except Exception:
            meter.errors += 1
            log.failure("unexpected error handling {uri!r}", uri=self.logged_uri(request))
            return _send(request, _internal_error())
        # Asked as "is it the answer" rather than "is it a Deferred", an ABC and so a slow check.
        if isinstance(answer, bytes):
            meter.ok += 1
            if not meter.ok & TIMED:
                meter.latency.observe(perf_counter() - started)
            return _send(request, answer)
        if isinstance(answer, tuple):
            # A full scrape, in pieces.
            meter.ok += 1
            return _send_pieces(request, answer)
        _finish_later(request, answer, meter, started)
        return NOT_DONE_YET

    def answer(self, request: Request, params: Params) -> Body | Deferred[Body]:
        raise NotImplementedError

    def logged_uri(self, request: Request) -> bytes:
        """The request's URI as the log shows it."""
        return request.uri

    def _now(self) -> int:
        return int(self._clock.seconds())


class AnnounceResource(_Endpoint):
    """C{/announce} (BEP 3, 23, 7, 24); a request to upgrade to a WebSocket is handed to
    C{websocket}, if there is one (L{tracker.ws})."""

    def __init__(
        self,
        store: IPeerStore,
        config: TrackerConfig,
        clock: IReactorTime,
        stats: TrackerStats,
        rng: random.Random | None = None,
        websocket: WebSocketTracker | None = None,
    ) -> None:
        super().__init__(store, config, clock, stats, stats.http_announce)
        self._random = (rng or random.Random()).random
        self._websocket = websocket

    def render(self, request: Request) -> Any:
        if self._websocket is not None and request.requestHeaders.hasHeader(b"upgrade"):
            upgrade = request.requestHeaders.getRawHeaders(b"upgrade")
            if is_upgrade(upgrade):
                return self.upgrade(self._websocket, request)
        return super().render(request)

    def upgrade(self, websocket: WebSocketTracker, request: Request) -> Any:
        """Make C{request}'s connection a WebSocket of C{websocket}."""
        return websocket.upgrade(request)

    def answer(self, request: Request, params: Params) -> Body | Deferred[Body]:
        return self.respond(self.parse(request, params))

    def parse(
        self, request: Request, params: Params, account: Ledger | None = None
    ) -> AnnounceRequest:
        """The announce a request makes; in private mode, C{account} is its passkey's ledger."""
        address = request.getClientAddress()
        ip = client_ip(
            getattr(address, "host", ""),
            request.requestHeaders.getRawHeaders(b"x-forwarded-for"),
            self._config,
        )
        return parse_announce(params, ip, self._config, account)

    def respond(self, announce: AnnounceRequest) -> Body | Deferred[Body]:
        """Record C{announce} in the store and answer it."""
        interval = self._config.jittered_interval(self._random())
        min_interval = self._config.min_interval
        result = self._store.announce(announce, self._now())
        if isinstance(result, tuple):
            return announce_body(announce, result, interval, min_interval)
        return result.addCallback(
            lambda later: announce_body(announce, later, interval, min_interval)
        )


class ScrapeResource(_Endpoint):
    """C{/scrape} (BEP 48): one or many C{info_hash}; with none, every torrent if the full
    scrape is on."""

    def __init__(
        self,
        store: IPeerStore,
        config: TrackerConfig,
        clock: IReactorTime,
        stats: TrackerStats,
    ) -> None:
        super().__init__(store, config, clock, stats, stats.http_scrape)
        self._full = FullScrape(store, clock, stats.groups) if config.full_scrape else None

    def answer(self, request: Request, params: Params) -> Body | Deferred[Body]:
        if self._full is not None and b"info_hash" not in params:
            return self._full_scrape(request, self._full)
        scrape = parse_scrape(params, self._config)
        counts = self._store.scrape(scrape.info_hashes)
        if isinstance(counts, dict):
            return scrape_body(counts)
        return counts.addCallback(scrape_body)

    def _full_scrape(self, request: Request, full: FullScrape) -> Body | Deferred[Body]:
        self._stats.full_scrapes += 1
        gzip = accepts_gzip(request.getHeader(b"accept-encoding"))
        # Whichever encoding this one gets, a cache between here and the client must ask again.
        request.setHeader(b"vary", b"Accept-Encoding")

        def pick(bodies: Bodies) -> Body:
            if gzip:
                request.setHeader(b"content-encoding", b"gzip")
                return bodies.gzipped
            return bodies.plain

        bodies = full.bodies()
        if isinstance(bodies, Deferred):
            return bodies.addCallback(pick)
        return pick(bodies)


class _NotFound(Resource):
    """A path under the tracker that is neither endpoint; the reply names both where mounted."""

    isLeaf = True

    def __init__(self, mount: list[bytes]) -> None:
        super().__init__()
        segments = [segment.decode("ascii", "replace") for segment in mount if segment]
        base = "".join(f"/{segment}" for segment in segments)
        self._body = failure_body(f"not a tracker endpoint: use {base}/announce or {base}/scrape")

    def render(self, request: Request) -> Any:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain")
        return _send(request, self._body)


class TrackerResource(Resource):
    """
    The tracker's root: C{announce} and C{scrape} beside each other, as clients expect (libtorrent
    finds the scrape URL by replacing C{announce} in the announce URL). Browsers open a
    WebSocket on the announce URL (unless C{config.websocket} is off).
    """

    #: Private mode's passkeys, which its WebSocket connections are checked against.
    _passkeys: Passkeys | None = None

    def __init__(
        self,
        store: IPeerStore,
        config: TrackerConfig | None = None,
        clock: IReactorTime | None = None,
        rng: random.Random | None = None,
        stats: TrackerStats | None = None,
    ) -> None:
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as default_reactor

            clock = default_reactor
        assert clock is not None
        config = config or TrackerConfig()
        #: The counters this resource's requests feed. Give it the service's
        #: (L{tracker.daemon.service.TrackerService.stats}), so that its history and swarm
        #: totals are kept up to date; one of its own counts requests but never samples them.
        self.stats = stats or TrackerStats(store, clock)
        #: The WebSocket tracker the announce URL upgrades to, or None.
        self.websocket: WebSocketTracker | None = None
        #: What the endpoints answer from: C{store}, with the WebSocket peers counted in.
        self.store = store
        if config.websocket:
            self.websocket = WebSocketTracker(
                store, config, clock, self.stats, rng, passkeys=self._passkeys
            )
            self.store = GroupCountingStore(store, self.stats.groups)
        store = self.store
        self.putChild(
            b"announce", AnnounceResource(store, config, clock, self.stats, rng, self.websocket)
        )
        self.putChild(b"scrape", ScrapeResource(store, config, clock, self.stats))
        if config.stats:
            self.putChild(b"stats", StatsPageResource(self.stats))
            self.putChild(b"stats.json", StatsJSONResource(self.stats))
            self.putChild(b"metrics", MetricsResource(self.stats))
        self._not_found = _NotFound([])

    def getChild(self, path: bytes, request: Request) -> Resource:
        # Twisted has already moved `path` onto prepath: what precedes it is where we are mounted.
        return self._answer_for((request.prepath or [])[:-1])

    def render(self, request: Request) -> Any:
        return self._answer_for(request.prepath or []).render(request)

    def _answer_for(self, mount: list[bytes]) -> Resource:
        # Mounted at the root, as the daemon does, one shared answer; elsewhere one naming
        # the mount point.
        if not any(mount):
            return self._not_found
        return _NotFound(mount)


def _send(request: Request, body: bytes) -> Any:
    """Answer at once. A GET returns the body for Twisted to send with its length; a HEAD is
    written out here, since Twisted logs a warning for each HEAD answered with a body."""
    if request.method != b"HEAD":
        return body
    request.write(_body(request, body))
    request.finish()
    return NOT_DONE_YET


def _send_pieces(request: Request, pieces: tuple[bytes, ...]) -> Any:
    """Answer at once with a body in pieces (a full scrape's), written one after another."""
    request.setHeader(b"content-length", b"%d" % sum(map(len, pieces)))
    if request.method != b"HEAD":
        for piece in pieces:
            request.write(piece)
    request.finish()
    return NOT_DONE_YET


def _body(request: Request, body: bytes) -> bytes:
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def _internal_error() -> bytes:
    return failure_body("internal tracker error; try again later", retry_in=_RETRY_AFTER_ERROR)


def _unavailable() -> bytes:
    return failure_body(
        "the tracker's storage is unavailable; try again later", retry_in=RETRY_UNAVAILABLE
    )


def _shutting_down() -> bytes:
    # Requests still arriving on open connections while the daemon stops.
    return failure_body("the tracker is restarting; try again shortly", retry_in=_RETRY_AFTER_ERROR)


def _finish_later(
    request: Request, answer: Deferred[Body], meter: RequestMeter, started: float
) -> None:
    """Write C{answer} when it arrives, unless the client has gone; log any failure once."""
    gone: list[Failure] = []
    errors: list[Failure] = []
    # Registered before anything async happens, so a disconnect is always seen.
    request.notifyFinish().addErrback(gone.append)

    def write(body: Body) -> None:
        if gone:
            return
        if not errors:
            meter.ok += 1
            if not meter.ok & TIMED:
                meter.latency.observe(perf_counter() - started)
        if isinstance(body, bytes):
            request.write(_body(request, body))
            request.finish()
        else:
            _send_pieces(request, body)

    def failed(failure: Failure) -> bytes:
        errors.append(failure)
        refusal = failure.value
        if isinstance(refusal, TrackerError):
            # Refused once the store could decide: a key that does not match, or an access
            # list that was still loading.
            meter.refused += 1
            return failure_body(refusal.reason)
        meter.errors += 1
        if failure.check(StoreStopped):
            return _shutting_down()
        if failure.check(StoreUnavailable):
            # The store logs the outage once; a line per request would flood the log.
            return _unavailable()
        log.failure("announce or scrape failed in the store", failure)
        return _internal_error()

    answer.addErrback(failed).addCallback(write).addErrback(
        lambda f: log.failure("could not send a tracker response", f)
    )
