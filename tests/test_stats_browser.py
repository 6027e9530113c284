"""/stats in a real browser: Debian's chromium, headless, loads the page from a tracker
listening on 127.0.0.1 after real HTTP and UDP announces; the figures it shows are checked
against the store, and its screenshot is decoded to check that the chart has lines in it.

chromium comes from `apt-get install chromium` (.ci/run installs it). Without it the test is
skipped with a loud reason, or fails when CI=true or REALCLIENTS_REQUIRED=1 (as in CI).
Set TRACKER_SCREENSHOT_DIR to keep the screenshot.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest

from tests.png import Image, decode
from tests.test_network import announce_target, get
from tests.test_stats_network import HOST, LiveTracker
from tests.test_udp import Client, announce_packet
from tracker.daemon.service import TrackerService
from tracker.ops.stats import SAMPLE_EVERY, TrackerStats
from tracker.ops.statspage import ANNOUNCE_COLOUR, SCRAPE_COLOUR

#: The flags a root user in a container needs, and none of chromium's own network chatter.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
#: Samples of history the test makes, SAMPLE_EVERY seconds apart on the stats' clock.
SAMPLES = 30
#: The plot's background in the page's chart.
PLOT = (250, 250, 250)


def chromium() -> str:
    """chromium's path; skips the test (fails it in CI) when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = (
        "!!! BROWSER TEST NOT RUN: chromium is not installed. "
        "Run apt-get install chromium as root to install it. !!!"
    )
    if os.environ.get("REALCLIENTS_REQUIRED") == "1" or os.environ.get("CI") == "true":
        raise AssertionError(message)
    raise SkipTest(message)


class ShiftedClock:
    """The reactor's clock moved by C{shift} seconds: the test's history spreads over minutes
    of the stats' time in a few seconds of real time. Delayed calls go to the reactor."""

    def __init__(self, shift: float) -> None:
        self.shift = shift

    def seconds(self) -> float:
        return float(reactor.seconds()) + self.shift  # type: ignore[attr-defined]

    def callLater(self, delay: float, f: Any, *args: Any, **kwargs: Any) -> IDelayedCall:
        return reactor.callLater(delay, f, *args, **kwargs)  # type: ignore[attr-defined, no-any-return]


def run_chromium(browser: str, profile: str, *arguments: str) -> bytes:
    """Run chromium once (blocking: call in a thread) with a fresh profile; its stdout."""
    result = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
        capture_output=True,
        timeout=90,
    )
    if result.returncode != 0:
        raise AssertionError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]!r}")
    return result.stdout


def figures(dom: str) -> dict[str, float]:
    return {
        key: float(value) for key, value in re.findall(r'id="([\w-]+)" data-value="([\d.]+)"', dom)
    }


def top_rows(dom: str) -> list[tuple[str, int, int, int]]:
    rows = re.findall(
        r'<td class="hash">([0-9a-f]{40})</td><td>([\d,]+)</td><td>([\d,]+)</td><td>([\d,]+)</td>',
        dom,
    )
    return [(h, *(int(n.replace(",", "")) for n in numbers)) for h, *numbers in rows]


def colour_near(pixel: tuple[int, int, int], colour: str, tolerance: int = 40) -> bool:
    target = tuple(int(colour[k : k + 2], 16) for k in (1, 3, 5))
    return sum(abs(a - b) for a, b in zip(pixel, target)) <= tolerance


def plot_area(image: Image) -> tuple[int, int, int, int]:
    """The bounding box (left, top, right, bottom) of the chart's plot background."""
    xs, ys = [], []
    for y in range(0, image.height, 2):
        for x in range(0, image.width, 2):
            if image.pixel(x, y) == PLOT:
                xs.append(x)
                ys.append(y)
    if not xs:
        raise AssertionError("no chart on the screenshot")
    return min(xs), min(ys), max(xs), max(ys)


class StatsPageInBrowserTests(LiveTracker):
    timeout = 180

    def make_service(self) -> TrackerService:
        # The history starts SAMPLES periods in the past and is brought up to now below.
        self.clock = ShiftedClock(-SAMPLES * SAMPLE_EVERY)
        stats = TrackerStats(self.store, self.clock)  # type: ignore[arg-type]
        return TrackerService(self.store, self.config, reactor, stats=stats)

    @inlineCallbacks
    def test_page_shows_the_store(self) -> Any:
        """After announces over HTTP and UDP, the page chromium shows has the store's torrent,
        peer, seeder, leecher and download counts and its largest torrents, and the chart in
        its screenshot has both lines drawn."""
        browser = chromium()
        client = Client(HOST, self.udp_port)
        self.addCleanup(client.close)
        connection = yield deferToThread(client.connect)
        peer = 0
        for step in range(SAMPLES):
            # A rising and falling load, as a day's would, so the chart has a shape.
            load = 4 + int(3 * math.sin(step / 4))
            targets = []
            for _ in range(load):
                peer += 1
                torrent = 1 + peer % 7
                left = 0 if peer % 4 == 0 else 500
                targets.append(announce_target(peer, 10000 + peer % 50000, torrent, left))
            targets.append(b"/scrape?info_hash=" + b"%41" * 20)
            yield deferToThread(lambda ts=targets: [get(HOST, self.port, t) for t in ts])
            peer += 1
            packet = announce_packet(connection, peer, torrent=1 + peer % 3, left=peer % 2)
            yield deferToThread(client.exchange, packet)
            self.clock.shift += SAMPLE_EVERY
            self.stats.sample()
        completed = announce_target(1, 10001, 2, 0) + b"&event=completed"
        yield deferToThread(get, HOST, self.port, completed)
        yield self.stats.count_swarms()

        folder = tempfile.mkdtemp(prefix="tracker-browser-")
        self.addCleanup(shutil.rmtree, folder, True)
        url = f"http://{HOST}:{self.port}/stats"
        dom = yield deferToThread(
            run_chromium, browser, os.path.join(folder, "dom"), "--dump-dom", url
        )
        shown = figures(dom.decode("utf-8"))
        index = self.store.index
        assert index is not None
        counts = [swarm.counts() for swarm in index.swarms.values()]
        self.assertEqual(shown["torrents"], len(index.swarms))
        self.assertEqual(shown["peers"], index.peer_count())
        self.assertEqual(shown["seeders"], sum(c.complete for c in counts))
        self.assertEqual(shown["leechers"], sum(c.incomplete for c in counts))
        self.assertEqual(shown["downloaded"], sum(c.downloaded for c in counts))
        self.assertEqual(shown["downloaded"], 1)
        rows = top_rows(dom.decode("utf-8"))
        self.assertEqual(len(rows), len(index.swarms))
        for info_hash, seeders, leechers, downloaded in rows:
            swarm = index.swarms[bytes.fromhex(info_hash)].counts()
            self.assertEqual((seeders, leechers, downloaded), swarm)
        peers = [seeders + leechers for _, seeders, leechers, _ in rows]
        self.assertEqual(peers, sorted(peers, reverse=True))

        screenshot = os.path.join(folder, "stats.png")
        yield deferToThread(
            run_chromium,
            browser,
            os.path.join(folder, "shot"),
            f"--screenshot={screenshot}",
            "--window-size=1280,1000",
            url,
        )
        with open(screenshot, "rb") as png:
            image = decode(png.read())
        keep = os.environ.get("TRACKER_SCREENSHOT_DIR")
        if keep:
            shutil.copy(screenshot, keep)
        left, top, right, bottom = plot_area(image)
        self.assertGreater(right - left, 600)
        self.assertGreater(bottom - top, 150)
        announce_pixels = scrape_pixels = drawn = 0
        for y in range(top, bottom + 1):
            for x in range(left, right + 1):
                pixel = image.pixel(x, y)
                if pixel != PLOT:
                    drawn += 1
                announce_pixels += colour_near(pixel, ANNOUNCE_COLOUR)
                scrape_pixels += colour_near(pixel, SCRAPE_COLOUR)
        # Lines 2.5 px wide across several minutes of the hour: hundreds of pixels each.
        self.assertGreater(announce_pixels, 300)
        self.assertGreater(scrape_pixels, 150)
        self.assertGreater(drawn, 2000)
