"""
WebTorrent's own clients through the tracker's WebSocket front end: two bittorrent-tracker
Clients (Node, on node-datachannel) open a WebRTC data channel, and two WebTorrent instances
in headless Chromium transfer a file, checked by SHA-256.

The clients come from tests/webtorrent/package-lock.json (`npm ci --prefix tests/webtorrent
--ignore-scripts`, which .ci/run does); the browser test also needs chromium, unshare and ip
(see tests/realclients/webtorrent.py). Without them a test is skipped with a loud reason,
or fails when CI=true or REALCLIENTS_REQUIRED=1 (as in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from tests.realclients.tracker import REPO_ROOT
from tests.realclients.webtorrent import PACKAGE, SIZE, missing, namespace_prefix
from tests.test_stats_browser import chromium
from tracker.http.resource import TrackerResource
from tracker.http.site import TrackerSite
from tracker.store.memory import MemoryPeerStore

HOST = "127.0.0.1"
CLIENT_SECONDS = 60


def require(problem: str | None) -> None:
    """Skip (fail in CI) when something the test needs is missing."""
    if problem is None:
        return
    message = f"!!! WEBTORRENT TEST NOT RUN: {problem} is missing. !!!"
    if os.environ.get("REALCLIENTS_REQUIRED") == "1" or os.environ.get("CI") == "true":
        raise AssertionError(message)
    raise SkipTest(message)


class NodeClientTests(TestCase):
    timeout = CLIENT_SECONDS + 30

    @inlineCallbacks
    def test_two_clients_open_a_data_channel(self) -> Any:
        """Two bittorrent-tracker Clients, a seeder and a leecher in two processes, find each
        other through the tracker: one's offer is relayed to the other and its answer back,
        a WebRTC data channel opens between them and each reads the other's hello on it."""
        require(missing())
        store = MemoryPeerStore()
        resource = TrackerResource(store, clock=reactor)
        port = reactor.listenTCP(0, TrackerSite(resource), interface=HOST)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        announce = f"ws://{HOST}:{port.getHost().port}/announce"
        folder = tempfile.mkdtemp(prefix="tracker-webtorrent-")
        self.addCleanup(shutil.rmtree, folder, True)
        processes = [
            subprocess.Popen(
                ["node", "client.mjs", announce, "ab" * 20, role, str(CLIENT_SECONDS)],
                cwd=PACKAGE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "HOME": folder},
            )
            for role in ("seeder", "leecher")
        ]

        def wait() -> list[str]:
            outputs = []
            for process in processes:
                try:
                    output, _ = process.communicate(timeout=CLIENT_SECONDS + 15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    output, _ = process.communicate()
                outputs.append(output.decode(errors="replace"))
            return outputs

        outputs = yield deferToThread(wait)
        results = {}
        for output in outputs:
            lines = [line for line in output.splitlines() if line.startswith("{")]
            self.assertTrue(lines, output[-3000:])
            result = json.loads(lines[-1])
            results[result["role"]] = result
        self.assertEqual(results["seeder"]["received"], "hello from the leecher", results)
        self.assertEqual(results["leecher"]["received"], "hello from the seeder", results)
        self.assertEqual(
            results["seeder"]["warnings"] + results["leecher"]["warnings"], [], results
        )
        websocket = resource.stats.websocket
        self.assertGreaterEqual(websocket.relayed["offer"], 1, websocket.relayed)
        self.assertGreaterEqual(websocket.relayed["answer"], 1, websocket.relayed)
        yield _until_closed(resource)


@inlineCallbacks
def _until_closed(resource: TrackerResource) -> Any:
    """Wait for the clients' connections to be gone, so that the test leaves nothing behind."""
    from twisted.internet.task import deferLater

    websocket = resource.websocket
    assert websocket is not None
    for _ in range(500):
        if not websocket.connections:
            return
        yield deferLater(reactor, 0.01, lambda: None)
    for connection in list(websocket.connections.values()):
        connection.abort()


@pytest.mark.realclient
def test_browsers_transfer_a_file(tmp_path: Path) -> None:
    """Two WebTorrent instances, each in a Chromium page of its own, find each other through
    the tracker daemon's WebSocket URL: one seeds 200,000 random bytes, the other adds the
    magnet link and downloads them, byte for byte (SHA-256). The tracker relayed the offers
    and answers, and counted the completions in the torrent's scrape."""
    try:
        require(missing())
        browser = chromium()
        prefix = namespace_prefix()
        require(None if prefix else "a network namespace of the test's own (unshare, ip)")
    except SkipTest as skip:
        pytest.skip(str(skip))
    assert prefix is not None
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "tests.realclients.webtorrent", str(tmp_path), browser],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=240,
    )
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, output[-3000:] + result.stderr.decode(errors="replace")[-3000:]
    got = json.loads(output.splitlines()[-1])
    browsers = got["browsers"]
    assert "error" not in browsers, got
    seeded, fetched = browsers["seeded"], browsers["fetched"]
    assert (fetched["size"], fetched["sha256"]) == (SIZE, seeded["sha256"]), got
    assert seeded["magnet"].count("tr=") == 1, seeded["magnet"]
    websocket = got["websocket"]
    assert websocket["relayed"]["offer"] >= 1 and websocket["relayed"]["answer"] >= 1, got
    # The seeder's first announce is "completed" (WebTorrent's way), and the leecher's last.
    assert got["scrape"]["downloaded"] >= 1, got
    assert got["tracker log"] == "(no warnings or errors)", got["tracker log"]
