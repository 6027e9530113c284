"""The tracker's figures and the full scrape over real sockets: HTTP and UDP clients on
127.0.0.1, /metrics read back by Prometheus' own parser."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.helpers import info_hash
from tests.test_network import announce_target, exchange, get
from tests.test_udp import Client, announce_packet, scrape_packet
from tracker.core.bencode import bdecode
from tracker.core.config import TrackerConfig
from tracker.daemon.service import TrackerService
from tracker.http.resource import TrackerResource
from tracker.http.site import TrackerSite
from tracker.ops.stats import TrackerStats
from tracker.store.sqlite import COMMIT_EVERY, SQLitePeerStore
from tracker.udp.protocol import UDPTracker

HOST = "127.0.0.1"


class LiveTracker(TestCase):
    """A tracker as the daemon wires it: one service, HTTP and UDP on 127.0.0.1, one database
    file, every part counting into the service's stats."""

    timeout = 60
    config = TrackerConfig(full_scrape=True)

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        directory = tempfile.mkdtemp(prefix="tracker-stats-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.store = SQLitePeerStore(os.path.join(directory, "tracker.sqlite3"))
        self.service = self.make_service()
        self.stats: TrackerStats = self.service.stats
        self.service.startService()
        self.addCleanup(self.service.stopService)
        yield self.service.started
        resource = TrackerResource(self.store, self.config, reactor, stats=self.stats)
        tcp = reactor.listenTCP(0, TrackerSite(resource), interface=HOST)  # type: ignore[attr-defined]
        self.addCleanup(tcp.stopListening)
        self.port = int(tcp.getHost().port)
        udp = UDPTracker(self.store, self.config, reactor, stats=self.stats)
        listening = reactor.listenUDP(0, udp, interface=HOST)  # type: ignore[attr-defined]
        self.addCleanup(listening.stopListening)
        self.udp_port = int(listening.getHost().port)

    def make_service(self) -> TrackerService:
        return TrackerService(self.store, self.config, reactor)

    def get(self, target: bytes, headers: bytes = b"") -> Any:
        if not headers:
            return deferToThread(get, HOST, self.port, target)
        request = b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n" % (target, headers)
        return deferToThread(exchange, HOST, self.port, request)

    def udp_client(self) -> Client:
        client = Client(HOST, self.udp_port)
        self.addCleanup(client.close)
        return client


class MetricsOverNetworkTests(LiveTracker):
    @inlineCallbacks
    def test_metrics_match_what_was_sent(self) -> Any:
        """/metrics, parsed by prometheus_client's parser, counts the HTTP and UDP announces,
        scrapes and refusals sent, the swarms they made and the group commits that saved them."""
        for peer in range(1, 6):
            reply = yield self.get(announce_target(peer, 6000 + peer, left=0 if peer < 3 else 9))
            self.assertEqual(reply.status, 200)
        yield self.get(b"/announce?info_hash=x")
        yield self.get(b"/scrape?info_hash=" + b"%41" * 20)
        client = self.udp_client()
        connection = yield deferToThread(client.connect)
        for peer in range(6, 22):
            yield deferToThread(client.exchange, announce_packet(connection, peer, torrent=2))
        yield deferToThread(client.exchange, scrape_packet(connection, info_hash(1)))
        yield deferToThread(client.exchange, announce_packet(b"\x00" * 8, 30))
        # Past a group commit, and the swarms counted afresh.
        yield deferLater(reactor, COMMIT_EVERY * 3, lambda: None)
        yield self.stats.count_swarms()
        reply = yield self.get(b"/metrics")
        self.assertEqual(reply.status, 200)
        self.assertTrue(reply.headers[b"content-type"].startswith(b"text/plain; version="))
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(reply.body.decode())
            for sample in family.samples
        }

        def requests(protocol: str, kind: str, result: str) -> float:
            key = (("kind", kind), ("protocol", protocol), ("result", result))
            return samples[("tracker_requests_total", key)]

        self.assertEqual(requests("http", "announce", "ok"), 5)
        self.assertEqual(requests("http", "announce", "refused"), 1)
        self.assertEqual(requests("http", "scrape", "ok"), 1)
        self.assertEqual(requests("udp", "announce", "ok"), 16)
        self.assertEqual(requests("udp", "announce", "refused"), 1)
        self.assertEqual(requests("udp", "scrape", "ok"), 1)
        count = (
            "tracker_request_duration_seconds_count",
            (("kind", "announce"), ("protocol", "udp")),
        )
        # One answer in 16 is timed.
        self.assertEqual(samples[count], 1)
        self.assertEqual(samples[("tracker_torrents", ())], 2)
        self.assertEqual(samples[("tracker_peers", (("kind", "seeder"),))], 2)
        self.assertEqual(samples[("tracker_peers", (("kind", "leecher"),))], 19)
        reason = (
            ("protocol", "udp"),
            ("reason", "connection ID expired or unknown; connect again"),
        )
        self.assertEqual(samples[("tracker_refusals_total", reason)], 1)
        self.assertGreaterEqual(samples[("tracker_db_commit_bytes_count", ())], 1)
        self.assertGreater(samples[("tracker_db_commit_bytes_sum", ())], 0)
        self.assertGreaterEqual(samples[("tracker_db_commit_duration_seconds_count", ())], 1)


class FullScrapeOverNetworkTests(LiveTracker):
    @inlineCallbacks
    def test_full_scrape_gzipped(self) -> Any:
        """Over a real connection, a full scrape names every torrent; gzipped when asked."""
        for torrent in range(1, 40):
            yield self.get(announce_target(1, 6001, torrent=torrent))
        plain = yield self.get(b"/scrape")
        zipped = yield self.get(b"/scrape", b"Accept-Encoding: gzip, deflate\r\n")
        self.assertEqual(zipped.headers[b"content-encoding"], b"gzip")
        self.assertNotIn(b"content-encoding", plain.headers)
        self.assertEqual(gzip.decompress(zipped.body), plain.body)
        files = bdecode(plain.body)[b"files"]  # type: ignore[index]
        self.assertEqual(sorted(files), sorted(info_hash(t) for t in range(1, 40)))


class FiguresMethodsTests(LiveTracker):
    @inlineCallbacks
    def test_other_methods_get_405(self) -> Any:
        """/stats, /stats.json and /metrics answer any method but GET and HEAD with 405 and an
        Allow header, never plain twisted.web's 501, which monitors read as an outage; the
        figures are still served after."""
        for path in (b"/stats", b"/stats.json", b"/metrics"):
            for method in (b"PUT", b"DELETE", b"OPTIONS", b"POST", b"G#ET"):
                request = b"%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" % (method, path)
                reply = yield deferToThread(
                    exchange, HOST, self.port, request + b"Content-Length: 0\r\n\r\n"
                )
                self.assertEqual((reply.status, method, path), (405, method, path))
                self.assertEqual(reply.headers[b"allow"], b"GET, HEAD")
            served = yield self.get(path)
            self.assertEqual(served.status, 200)
