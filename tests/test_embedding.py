"""The embedding example: a host web application with the tracker mounted under /tracker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote_from_bytes

from twisted.trial.unittest import TestCase

from tests.helpers import info_hash, peer_id
from tracker.core.bencode import bdecode

EXAMPLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "embedded_site.py"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class EmbeddedSiteTests(TestCase):
    timeout = 60

    def run_example(self, stop_with: signal.Signals) -> None:
        directory = tempfile.mkdtemp(prefix="tracker-embedded-")
        self.addCleanup(shutil.rmtree, directory, True)
        database = os.path.join(directory, "embedded.sqlite3")
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, EXAMPLE, str(port), database],
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            status, page = _when_up(base + "/", process, time.monotonic() + 30)
            self.assertEqual(status, 200)
            self.assertIn(b"Hello", page)

            def announce(peer: int, client_port: int) -> dict[bytes, Any]:
                status, body = fetch(
                    f"{base}/tracker/announce?info_hash={quote_from_bytes(info_hash(1))}"
                    f"&peer_id={quote_from_bytes(peer_id(peer))}&port={client_port}&left=10"
                )
                self.assertEqual(status, 200)
                reply = bdecode(body)
                assert isinstance(reply, dict)
                return reply

            self.assertEqual(announce(1, 6001)[b"peers"], b"")
            self.assertEqual(
                announce(2, 6002)[b"peers"],
                socket.inet_aton("127.0.0.1") + (6001).to_bytes(2, "big"),
            )
            status, body = fetch(
                f"{base}/tracker/scrape?info_hash={quote_from_bytes(info_hash(1))}"
            )
            self.assertEqual(status, 200)
            self.assertEqual(
                bdecode(body),
                {b"files": {info_hash(1): {b"complete": 0, b"incomplete": 2, b"downloaded": 0}}},
            )
            # The tracker's figures, counted by the service the example parents.
            status, body = fetch(base + "/tracker/stats.json")
            self.assertEqual(status, 200)
            figures = json.loads(body)
            self.assertEqual((figures["announces"], figures["scrapes"]), (2, 1))
            status, page = fetch(base + "/tracker/stats")
            self.assertEqual(status, 200)
            self.assertIn(b"<svg", page)
            for path in ("/tracker/nothing", "/tracker", "/tracker/"):
                status, body = fetch(base + path)
                self.assertEqual(status, 404)
                # The reason names the endpoints where this site mounted them.
                self.assertEqual(
                    bdecode(body),
                    {
                        b"failure reason": b"not a tracker endpoint: "
                        b"use /tracker/announce or /tracker/scrape"
                    },
                )
            process.send_signal(stop_with)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        log = output.decode(errors="replace")
        self.assertEqual(process.returncode, 0, log)
        self.assertNotIn("Traceback", log)
        self.assertTrue(os.path.exists(database))
        # It tells the terminal where it serves and which database it opened.
        self.assertIn(f"tracker listening on http://127.0.0.1:{port}/tracker/announce", log)
        self.assertIn(f"database {database} open", log)

    def test_serves_and_stops_on_sigint(self) -> None:
        """The example serves its own page and the tracker under /tracker, and Ctrl-C stops it
        cleanly."""
        self.run_example(signal.SIGINT)

    def test_stops_on_sigterm(self) -> None:
        """The example also stops cleanly on SIGTERM."""
        self.run_example(signal.SIGTERM)


def _when_up(url: str, process: Any, deadline: float) -> tuple[int, bytes]:
    """GET C{url}, retrying while the example starts; fail if it exits or never answers."""
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the example exited early: {process.communicate()[0]!r}")
        try:
            return fetch(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class DocumentationTests(TestCase):
    def test_embedding_guide_quotes_the_example_as_it_is(self) -> None:
        """Every program excerpt in docs/embedding.md is in examples/embedded_site.py verbatim."""
        with open(os.path.join(os.path.dirname(EXAMPLE), "..", "docs", "embedding.md")) as f:
            guide = f.read()
        with open(EXAMPLE) as f:
            example = f.read()
        excerpts = guide.split("```python\n")[1:]
        self.assertTrue(excerpts, "docs/embedding.md quotes no part of the example")
        for excerpt in excerpts:
            self.assertIn(excerpt.split("```\n")[0], example)
