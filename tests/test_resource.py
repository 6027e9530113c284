"""The tracker resource as a web client sees it: routing, replies, addresses and lifecycle."""

from __future__ import annotations

import ipaddress
import random
from typing import Any
from urllib.parse import quote_from_bytes

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from tests.helpers import info_hash, peer_id
from tracker.core.announce import AnnounceRequest
from tracker.core.bencode import bdecode
from tracker.core.config import TrackerConfig
from tracker.core.errors import KeyMismatch
from tracker.core.interfaces import AnnounceResult, IPeerStore, StoreStopped, SwarmCounts
from tracker.http.resource import TrackerResource
from tracker.store.memory import MemoryPeerStore

NOW = 1_000_000


def announce_query(
    peer: int, torrent: int = 1, port: int | None = None, **extra: str | int
) -> bytes:
    """The query string a client sends for a plain announce, with C{extra} parameters."""
    params = {
        "info_hash": quote_from_bytes(info_hash(torrent)),
        "peer_id": quote_from_bytes(peer_id(peer)),
        "port": str(port if port is not None else 10000 + peer),
        "uploaded": "0",
        "downloaded": "0",
        "left": "100",
        "compact": "1",
    }
    params.update({name: str(value) for name, value in extra.items()})
    return "&".join(f"{name}={value}" for name, value in params.items()).encode("ascii")


def scrape_query(*torrents: int) -> bytes:
    return b"&".join(b"info_hash=" + quote_from_bytes(info_hash(t)).encode() for t in torrents)


class LogCapture:
    """Every event logged while installed, so a test can count failures."""

    def __init__(self, test: TestCase) -> None:
        self.events: list[LogEvent] = []
        observer = implementer(ILogObserver)(_Append)(self.events)
        globalLogPublisher.addObserver(observer)
        test.addCleanup(globalLogPublisher.removeObserver, observer)

    def failures(self) -> list[Failure]:
        return [e["log_failure"] for e in self.events if "log_failure" in e]


class _Append:
    def __init__(self, events: list[LogEvent]) -> None:
        self._events = events

    def __call__(self, event: LogEvent) -> None:
        self._events.append(event)


@implementer(IPeerStore)
class ControlledStore:
    """A store that leaves every call pending for the test to answer, or fails every call."""

    def __init__(self) -> None:
        self.real = MemoryPeerStore(random.Random(1))
        self.pending: list[Deferred[Any]] = []
        self.mode = "pending"
        self.calls: list[AnnounceRequest] = []

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def _answer(self, real: Any) -> Any:
        if self.mode == "fail":
            return fail(RuntimeError("the disk is on fire"))
        if self.mode == "stopping":
            raise StoreStopped("the tracker store is stopping")
        if self.mode == "refuse":
            return fail(KeyMismatch())
        return real

    def announce(self, request: AnnounceRequest, now: int) -> Deferred[AnnounceResult]:
        self.calls.append(request)
        if self.mode == "pending":
            # Nothing is recorded until the test lets the store answer.
            later: Deferred[AnnounceResult] = Deferred()
            self.pending.append(later)
            return later
        return self._answer(self.real.announce(request, now))

    def scrape(self, info_hashes: Any) -> Deferred[dict[bytes, SwarmCounts]]:
        if self.mode == "pending":
            later: Deferred[dict[bytes, SwarmCounts]] = Deferred()
            self.pending.append(later)
            return later
        return self._answer(self.real.scrape(info_hashes))

    def count_completion(self, info_hash: bytes, now: int) -> Any:
        return self._answer(self.real.count_completion(info_hash, now))

    def expire(self, cutoff: int) -> Deferred[int]:
        return self.real.expire(cutoff)


class Rendered:
    """One request rendered through the resource tree, and what came back."""

    def __init__(self, request: DummyRequest, finished: Deferred[None]) -> None:
        self.request = request
        self.finished = finished

    @property
    def code(self) -> int:
        return self.request.responseCode or 200

    @property
    def body(self) -> bytes:
        return b"".join(self.request.written)

    def decoded(self) -> dict[bytes, Any]:
        value = bdecode(self.body)
        assert isinstance(value, dict)
        return value

    def header(self, name: bytes) -> bytes | None:
        values = self.request.responseHeaders.getRawHeaders(name)
        return values[-1] if values else None


class ResourceTestCase(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store: Any = MemoryPeerStore(random.Random(7))
        self.config = TrackerConfig()
        self.rng = random.Random(3)

    def root(self) -> TrackerResource:
        return TrackerResource(self.store, self.config, self.clock, self.rng)

    def get(
        self,
        uri: bytes,
        client: Any = None,
        method: bytes = b"GET",
        headers: dict[bytes, list[bytes]] | None = None,
        root: TrackerResource | None = None,
    ) -> Rendered:
        path = uri.partition(b"?")[0]
        request = DummyRequest(path.split(b"/")[1:])
        request.method = method
        request.uri = uri
        # DummyRequest's constructor accepts client= but does not keep it.
        request.client = client or IPv4Address("TCP", "10.0.0.1", 51413)
        for name, values in (headers or {}).items():
            request.requestHeaders.setRawHeaders(name, values)
        finished = request.notifyFinish()
        resource = getChildForRequest(root or self.root(), request)
        request.render(resource)
        return Rendered(request, finished)

    def announce(self, peer: int, host: str = "10.0.0.1", **kwargs: Any) -> Rendered:
        client = IPv6Address("TCP", host, 6881) if ":" in host else IPv4Address("TCP", host, 6881)
        headers = kwargs.pop("headers", None)
        return self.get(b"/announce?" + announce_query(peer, **kwargs), client, headers=headers)

    def scrape(self, *torrents: int) -> dict[bytes, Any]:
        files = self.get(b"/scrape?" + scrape_query(*torrents)).decoded()[b"files"]
        assert isinstance(files, dict)
        return files

    def assertTrackerFailure(self, rendered: Rendered, code: int = 200) -> bytes:
        """The reply is a bencoded failure with the given status; returns the reason."""
        self.assertEqual(rendered.code, code)
        decoded = rendered.decoded()
        self.assertEqual(list(decoded), [b"failure reason"])
        reason = decoded[b"failure reason"]
        assert isinstance(reason, bytes)
        self.assertTrue(reason)
        return reason


class AnnounceThroughResourceTests(ResourceTestCase):
    def test_second_peer_gets_first_in_compact_form(self) -> None:
        """An announce is answered with a bencoded reply listing the other peer, compact."""
        first = self.announce(1, "10.0.0.1", port=6881)
        self.assertEqual(first.decoded()[b"peers"], b"")
        second = self.announce(2, "10.0.0.2", port=6882).decoded()
        self.assertEqual(second[b"peers"], b"\x0a\x00\x00\x01" + (6881).to_bytes(2, "big"))
        self.assertEqual(second[b"peers6"], b"")
        self.assertEqual((second[b"complete"], second[b"incomplete"]), (0, 2))
        self.assertEqual(second[b"min interval"], self.config.min_interval)

    def test_reply_headers(self) -> None:
        """A reply is HTTP 200 and text/plain, finished at once. (Its Content-Length is added by
        Twisted's Request.render, which DummyRequest lacks: test_network checks it.)"""
        rendered = self.announce(1)
        self.assertEqual(rendered.code, 200)
        self.assertEqual(rendered.header(b"content-type"), b"text/plain")
        self.assertIsNone(self.successResultOf(rendered.finished))
        self.assertEqual(rendered.request.finished, 1)

    def test_invalid_announces_fail_with_200(self) -> None:
        """A missing or invalid parameter is a bencoded failure reason with HTTP 200, and the
        announce is not recorded."""
        good = announce_query(1).decode()
        bad = {
            "missing info_hash": "peer_id=" + quote_from_bytes(peer_id(1)) + "&port=1",
            "missing peer_id": "info_hash=" + quote_from_bytes(info_hash(1)) + "&port=1",
            "short info_hash": good.replace(quote_from_bytes(info_hash(1)), "abc"),
            "port zero": good.replace("port=10001", "port=0"),
            "port too big": good.replace("port=10001", "port=70000"),
            "left not a number": good.replace("left=100", "left=-5"),
            "bad escape": good + "&key=%zz",
            "repeated peer_id": good + "&peer_id=" + quote_from_bytes(peer_id(2)),
            "bad compact": good.replace("compact=1", "compact=yes"),
        }
        for name, query in bad.items():
            reason = self.assertTrackerFailure(self.get(b"/announce?" + query.encode()))
            self.assertNotIn(b"Traceback", reason, name)
        self.assertEqual(self.scrape(1)[info_hash(1)][b"incomplete"], 0)

    def test_unsupported_methods_get_405(self) -> None:
        """POST, PUT and DELETE get 405 with an Allow header and a bencoded failure, and are not
        recorded."""
        for method in (b"POST", b"PUT", b"DELETE", b"PATCH"):
            for path in (b"/announce?" + announce_query(1), b"/scrape?" + scrape_query(1)):
                rendered = self.get(path, method=method)
                self.assertTrackerFailure(rendered, code=405)
                self.assertEqual(rendered.header(b"allow"), b"GET, HEAD")
        self.assertEqual(self.scrape(1)[info_hash(1)][b"incomplete"], 0)

    def test_unknown_paths_get_404(self) -> None:
        """Paths other than announce and scrape get 404 with a bencoded failure reason."""
        for path in (b"/", b"/favicon.ico", b"/statistics", b"/Announce?" + announce_query(1)):
            rendered = self.get(path)
            self.assertTrackerFailure(rendered, code=404)
            self.assertEqual(rendered.header(b"content-type"), b"text/plain")
            self.assertIn(b"use /announce or /scrape", rendered.body)

    def test_external_ip_is_socket_address(self) -> None:
        """BEP 24: the reply carries the address the tracker saw, packed."""
        self.assertEqual(
            self.announce(1, "192.0.2.33").decoded()[b"external ip"], b"\xc0\x00\x02\x21"
        )
        self.assertEqual(
            self.announce(2, "2001:db8::5").decoded()[b"external ip"],
            ipaddress.IPv6Address("2001:db8::5").packed,
        )

    def test_ipv4_mapped_client_stored_as_ipv4(self) -> None:
        """A client on a dual-stack socket (::ffff:1.2.3.4) is handed out as a 6-byte IPv4 peer."""
        self.announce(1, "::ffff:1.2.3.4", port=7000)
        reply = self.announce(2, "10.0.0.2").decoded()
        self.assertEqual(reply[b"peers"], b"\x01\x02\x03\x04" + (7000).to_bytes(2, "big"))
        self.assertEqual(reply[b"peers6"], b"")

    def test_ipv6_client_in_peers6(self) -> None:
        """An IPv6 client is handed out as an 18-byte entry in peers6."""
        self.announce(1, "2001:db8::1", port=7000)
        reply = self.announce(2, "10.0.0.2").decoded()
        self.assertEqual(
            reply[b"peers6"],
            ipaddress.IPv6Address("2001:db8::1").packed + (7000).to_bytes(2, "big"),
        )
        self.assertEqual(reply[b"peers"], b"")

    def test_ip_param_ignored_by_default(self) -> None:
        """ip= cannot point the swarm at another host unless the operator allows it."""
        reply = self.announce(1, "10.0.0.1", ip="203.0.113.9").decoded()
        self.assertEqual(reply[b"external ip"], b"\x0a\x00\x00\x01")

    def test_ip_param_honoured_when_allowed(self) -> None:
        """With allow_ip_param, the ip= address is the one stored and handed to peers."""
        self.config = TrackerConfig(allow_ip_param=True)
        self.announce(1, "10.0.0.1", ip="203.0.113.9", port=7000)
        reply = self.announce(2, "10.0.0.2").decoded()
        self.assertEqual(reply[b"peers"], b"\xcb\x00\x71\x09" + (7000).to_bytes(2, "big"))


class ForwardedForTests(ResourceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.config = TrackerConfig(
            trusted_proxies=(
                ipaddress.ip_network("10.9.0.0/16"),
                ipaddress.ip_network("fd00::/8"),
            )
        )

    def external(self, host: str, forwarded: list[bytes], peer: int = 1) -> bytes:
        reply = self.announce(peer, host, headers={b"x-forwarded-for": forwarded}).decoded()
        value = reply[b"external ip"]
        assert isinstance(value, bytes)
        return value

    def test_trusted_proxy_right_most_untrusted_hop(self) -> None:
        """From a trusted proxy, the client is the right-most hop that is not a trusted proxy;
        hops to its left are the client's own claims and are ignored."""
        self.assertEqual(
            self.external("10.9.0.1", [b"6.6.6.6, 203.0.113.7, 10.9.0.2"]), b"\xcb\x00\x71\x07"
        )

    def test_trusted_proxy_several_headers(self) -> None:
        """Several X-Forwarded-For headers count as one list, in order."""
        self.assertEqual(
            self.external("fd00::1", [b"6.6.6.6", b"203.0.113.8, 10.9.1.1"]), b"\xcb\x00\x71\x08"
        )

    def test_untrusted_sender_header_ignored(self) -> None:
        """X-Forwarded-For from an address that is not a trusted proxy is ignored."""
        self.assertEqual(self.external("198.51.100.1", [b"203.0.113.7"]), b"\xc6\x33\x64\x01")

    def test_header_ignored_without_trusted_proxies(self) -> None:
        """With no trusted proxies configured, X-Forwarded-For never changes the address."""
        self.config = TrackerConfig()
        self.assertEqual(self.external("10.9.0.1", [b"203.0.113.7"]), b"\x0a\x09\x00\x01")

    def test_malformed_header_from_trusted_proxy_fails(self) -> None:
        """A garbled X-Forwarded-For from a trusted proxy is refused with a failure reason."""
        rendered = self.announce(1, "10.9.0.1", headers={b"x-forwarded-for": [b"not-an-ip"]})
        self.assertTrackerFailure(rendered)


class IntervalTests(ResourceTestCase):
    def intervals(self, count: int) -> list[int]:
        values = []
        for n in range(count):
            reply = self.announce(n, f"10.1.{n // 250}.{n % 250 + 1}").decoded()
            values.append(reply[b"interval"])
        return values

    def test_interval_jittered_within_five_percent(self) -> None:
        """The interval handed out varies but stays within 5% of the configured interval."""
        self.config = TrackerConfig(interval=2000, min_interval=100, peer_timeout=3000)
        values = self.intervals(200)
        self.assertTrue(all(1900 <= v <= 2100 for v in values), (min(values), max(values)))
        self.assertGreater(len(set(values)), 10)

    def test_interval_never_below_min_interval(self) -> None:
        """Jitter never takes the interval below the min interval."""
        self.config = TrackerConfig(interval=1000, min_interval=990)
        values = self.intervals(200)
        self.assertGreaterEqual(min(values), 990)
        self.assertLessEqual(max(values), 1050)


class ScrapeThroughResourceTests(ResourceTestCase):
    def test_single_scrape(self) -> None:
        """A scrape of one torrent reports its seeders and leechers."""
        self.announce(1, left=0)
        self.announce(2)
        self.announce(3)
        files = self.scrape(1)
        self.assertEqual(
            files, {info_hash(1): {b"complete": 1, b"incomplete": 2, b"downloaded": 0}}
        )

    def test_multi_scrape(self) -> None:
        """A scrape with repeated info_hash reports every torrent asked for."""
        self.announce(1, torrent=1)
        self.announce(2, torrent=2, left=0)
        files = self.scrape(1, 2)
        self.assertEqual(set(files), {info_hash(1), info_hash(2)})
        self.assertEqual(files[info_hash(1)][b"incomplete"], 1)
        self.assertEqual(files[info_hash(2)][b"complete"], 1)

    def test_unknown_torrent_scrapes_as_zeros(self) -> None:
        """A torrent nobody announced scrapes as all zeros."""
        self.assertEqual(
            self.scrape(9), {info_hash(9): {b"complete": 0, b"incomplete": 0, b"downloaded": 0}}
        )

    def test_scrape_without_hash_fails(self) -> None:
        """A full scrape (no info_hash) is refused with a failure reason."""
        self.assertTrackerFailure(self.get(b"/scrape"))


class LifecycleTests(ResourceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = ControlledStore()
        self.logged = LogCapture(self)

    def test_client_gone_before_store_answers(self) -> None:
        """When the client disconnects while the store is working, the late answer is dropped:
        nothing is written, the request is not finished again, and nothing is logged as an
        error."""
        rendered = self.announce(1)
        self.assertEqual(rendered.request.written, [])
        self.assertEqual(len(self.store.pending), 1)
        rendered.request.processingFailed(Failure(ConnectionDone("client went away")))
        self.failureResultOf(rendered.finished, ConnectionDone)
        self.store.pending[0].callback(AnnounceResult(SwarmCounts(0, 1, 0)))
        self.assertEqual(rendered.request.written, [])
        self.assertEqual(rendered.request.finished, 0)
        self.assertEqual(self.logged.failures(), [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_client_gone_before_store_fails(self) -> None:
        """A store failure after the client left is still logged once but not written."""
        rendered = self.get(b"/scrape?" + scrape_query(1))
        rendered.request.processingFailed(Failure(ConnectionDone("client went away")))
        self.failureResultOf(rendered.finished, ConnectionDone)
        self.store.pending[0].errback(RuntimeError("the disk is on fire"))
        self.assertEqual(rendered.request.written, [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_slow_store_answer_finishes_request(self) -> None:
        """A request waiting on the store gets its reply and finishes once the store answers."""
        rendered = self.announce(1)
        self.assertNoResult(rendered.finished)
        self.store.pending[0].callback(AnnounceResult(SwarmCounts(0, 1, 0)))
        self.assertIsNone(self.successResultOf(rendered.finished))
        self.assertEqual(rendered.decoded()[b"incomplete"], 1)
        self.assertEqual(rendered.header(b"content-length"), b"%d" % len(rendered.body))

    def test_store_failure_is_retry_later(self) -> None:
        """A failing store gives the client a bencoded failure with 'retry in', finishes the
        request, and logs the error exactly once."""
        self.store.mode = "fail"
        for rendered in (self.announce(1), self.get(b"/scrape?" + scrape_query(1))):
            self.assertIsNone(self.successResultOf(rendered.finished))
            decoded = rendered.decoded()
            self.assertEqual(rendered.code, 200)
            self.assertIn(b"failure reason", decoded)
            self.assertNotIn(b"fire", decoded[b"failure reason"])
            self.assertIsInstance(decoded[b"retry in"], int)
            self.assertGreater(decoded[b"retry in"], 0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertEqual(len(self.logged.failures()), 2)

    def test_stopping_store_asks_to_retry(self) -> None:
        """Requests still arriving while the tracker shuts down get a bencoded failure with
        'retry in', and nothing is logged as an error."""
        self.store.mode = "stopping"
        for rendered in (self.announce(1), self.get(b"/scrape?" + scrape_query(1))):
            decoded = rendered.decoded()
            self.assertIn(b"restarting", decoded[b"failure reason"])
            self.assertGreater(decoded[b"retry in"], 0)
        self.assertEqual(self.logged.failures(), [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_late_key_refusal_is_a_failure_reason(self) -> None:
        """A store that refuses an announce's key after it had to wait (a SQLite store still
        loading) gives the client that reason, not an internal error, and logs no error."""
        self.store.mode = "refuse"
        rendered = self.announce(1)
        self.assertIsNone(self.successResultOf(rendered.finished))
        decoded = rendered.decoded()
        self.assertEqual(decoded[b"failure reason"], KeyMismatch().reason.encode())
        self.assertNotIn(b"retry in", decoded)
        self.assertEqual(self.logged.failures(), [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_refusal_is_not_logged_as_error(self) -> None:
        """A client's bad request is answered without logging an error."""
        self.assertTrackerFailure(self.get(b"/announce?info_hash=x"))
        self.assertEqual(self.logged.failures(), [])
        self.assertEqual(self.store.calls, [])
