"""
The embeddable tracker: a plain L{IResource} with C{announce} and C{scrape} children.

It owns no port and no thread; mount it anywhere in a site and give it a started store.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from tracker.addresses import client_ip
from tracker.announce import AnnounceRequest, parse_announce, parse_scrape
from tracker.config import TrackerConfig
from tracker.errors import TrackerError
from tracker.interfaces import IPeerStore, StoreStopped
from tracker.query import Params, parse_query, split_query
from tracker.response import announce_body, failure_body, scrape_body

log = Logger()

_ALLOWED_METHODS = (b"GET", b"HEAD")
#: BEP 31: how long a client should wait after the tracker itself failed.
_RETRY_AFTER_ERROR = 60


class _Endpoint(Resource):
    """Shared request lifecycle: parse, hand to the store, answer once, never after a disconnect."""

    isLeaf = True

    def __init__(self, store: IPeerStore, config: TrackerConfig, clock: IReactorTime) -> None:
        super().__init__()
        self._store = store
        self._config = config
        self._clock = clock

    def render(self, request: Request) -> Any:
        request.setHeader(b"content-type", b"text/plain")
        if request.method not in _ALLOWED_METHODS:
            # Plain twisted.web answers unknown methods with 501, which monitors read as an outage.
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return _body(request, failure_body("method not allowed: use GET"))
        try:
            answer = self.answer(request, parse_query(split_query(request.uri)))
        except TrackerError as e:
            log.debug("refused {uri!r}: {reason}", uri=request.uri, reason=e.reason)
            return _send(request, failure_body(e.reason))
        except StoreStopped:
            return _send(request, _shutting_down())
        except Exception:
            log.failure("unexpected error handling {uri!r}", uri=request.uri)
            return _send(request, _internal_error())
        if isinstance(answer, Deferred):
            _finish_later(request, answer)
            return NOT_DONE_YET
        return _send(request, answer)

    def answer(self, request: Request, params: Params) -> bytes | Deferred[bytes]:
        raise NotImplementedError

    def _now(self) -> int:
        return int(self._clock.seconds())


class AnnounceResource(_Endpoint):
    """C{/announce} (BEP 3, 23, 7, 24)."""

    def __init__(
        self,
        store: IPeerStore,
        config: TrackerConfig,
        clock: IReactorTime,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(store, config, clock)
        self._random = (rng or random.Random()).random

    def answer(self, request: Request, params: Params) -> bytes | Deferred[bytes]:
        address = request.getClientAddress()
        ip = client_ip(
            getattr(address, "host", ""),
            request.requestHeaders.getRawHeaders(b"x-forwarded-for"),
            self._config,
        )
        announce = parse_announce(params, ip, self._config)
        interval = self._config.jittered_interval(self._random())
        min_interval = self._config.min_interval
        result = self._store.announce(announce, self._now())
        if isinstance(result, Deferred):
            return result.addCallback(
                lambda later: announce_body(announce, later, interval, min_interval)
            )
        return announce_body(announce, result, interval, min_interval)

    def parse(self, request: Request, params: Params) -> AnnounceRequest:
        """
        The announce a request makes, for subclasses that look at it (private mode). With
        L{respond}, what L{answer} does written out: the two calls cost about 1 % of the time
        of every public announce.
        """
        address = request.getClientAddress()
        ip = client_ip(
            getattr(address, "host", ""),
            request.requestHeaders.getRawHeaders(b"x-forwarded-for"),
            self._config,
        )
        return parse_announce(params, ip, self._config)

    def respond(self, announce: AnnounceRequest) -> bytes | Deferred[bytes]:
        """Record C{announce} in the store and answer it."""
        interval = self._config.jittered_interval(self._random())
        min_interval = self._config.min_interval
        result = self._store.announce(announce, self._now())
        if isinstance(result, Deferred):
            return result.addCallback(
                lambda later: announce_body(announce, later, interval, min_interval)
            )
        return announce_body(announce, result, interval, min_interval)


class ScrapeResource(_Endpoint):
    """C{/scrape} (BEP 48): one or many C{info_hash}."""

    def answer(self, request: Request, params: Params) -> bytes | Deferred[bytes]:
        scrape = parse_scrape(params, self._config)
        counts = self._store.scrape(scrape.info_hashes)
        if isinstance(counts, Deferred):
            return counts.addCallback(scrape_body)
        return scrape_body(counts)


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
    finds the scrape URL by replacing C{announce} in the announce URL).
    """

    def __init__(
        self,
        store: IPeerStore,
        config: TrackerConfig | None = None,
        clock: IReactorTime | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        if clock is None:
            from twisted.internet import reactor as default_reactor

            clock = default_reactor
        assert clock is not None
        config = config or TrackerConfig()
        self.putChild(b"announce", AnnounceResource(store, config, clock, rng))
        self.putChild(b"scrape", ScrapeResource(store, config, clock))
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


def _body(request: Request, body: bytes) -> bytes:
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def _internal_error() -> bytes:
    return failure_body("internal tracker error; try again later", retry_in=_RETRY_AFTER_ERROR)


def _shutting_down() -> bytes:
    # Requests still arriving on open connections while the daemon stops.
    return failure_body("the tracker is restarting; try again shortly", retry_in=_RETRY_AFTER_ERROR)


def _finish_later(request: Request, answer: Deferred[bytes]) -> None:
    """Write C{answer} when it arrives, unless the client has gone; log any failure once."""
    gone: list[Failure] = []
    # Registered before anything async happens, so a disconnect is always seen.
    request.notifyFinish().addErrback(gone.append)

    def write(body: bytes) -> None:
        if gone:
            return
        request.write(_body(request, body))
        request.finish()

    def failed(failure: Failure) -> bytes:
        if failure.check(TrackerError):
            # Refused once the store could decide (an access list still loading, say).
            return failure_body(failure.getErrorMessage())
        if failure.check(StoreStopped):
            return _shutting_down()
        log.failure("announce or scrape failed in the store", failure)
        return _internal_error()

    answer.addErrback(failed).addCallback(write).addErrback(
        lambda f: log.failure("could not send a tracker response", f)
    )
