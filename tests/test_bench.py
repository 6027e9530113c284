"""The benchmark's cheapest measurements run to the end in quick mode and record what they
measured, so that bench/ cannot rot unnoticed while the code it measures changes.

Each runs `bench/run.py SUBCOMMAND --quick --out DIR` in a child process under this interpreter,
as a developer does, and reads the results it records in DIR.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"
IMPLEMENTATION = "PyPy" if sys.implementation.name == "pypy" else "CPython"


class QuickRunTests(SynchronousTestCase):
    def bench(self, *argv: str) -> tuple[dict[str, Any], str]:
        """The sections of the results file the run wrote, and its Markdown."""
        with tempfile.TemporaryDirectory(prefix="bench-smoke-") as out:
            done = subprocess.run(
                [sys.executable, str(RUN), *argv, "--quick", "--out", out],
                capture_output=True,
                text=True,
                timeout=120,
            )
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            self.assertEqual(sorted(p.name for p in Path(out).iterdir()), ["http.json", "http.md"])
            document = json.loads((Path(out) / "http.json").read_text())
            return document, (Path(out) / "http.md").read_text()

    def test_inprocess_http(self) -> None:
        """The in-process HTTP measurement times ours and the Twisted floor on the same
        requests, round by round, and records each round's figures in the results files."""
        document, text = self.bench("inprocess", "--protocol", "http")
        key = next(iter(document))
        self.assertTrue(key.startswith(f"inprocess swarms ({IMPLEMENTATION}"), key)
        rounds = document[key]["figures"]["rounds"]
        self.assertEqual([row[0] for row in rounds], [1, 2])
        for _, floor_us, ours_us, ratio in rounds:
            self.assertGreater(floor_us, 0)
            self.assertGreater(ours_us, 0)
            self.assertLess(abs(ratio - floor_us / ours_us), 0.01)
        self.assertIn(f"## {document[key]['title']}", text)
        self.assertIn("| round | floor us | ours us | ours / floor |", text)

    def test_inprocess_udp(self) -> None:
        """The in-process UDP measurement feeds announces to ours and the UDP floor and records
        its rounds under the UDP results, in udp.json and udp.md."""
        with tempfile.TemporaryDirectory(prefix="bench-smoke-") as out:
            done = subprocess.run(
                [sys.executable, str(RUN), "inprocess", "--protocol", "udp", "--quick"]
                + ["--out", out],
                capture_output=True,
                text=True,
                timeout=120,
            )
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            document = json.loads((Path(out) / "udp.json").read_text())
            self.assertIn("## In process, churn", (Path(out) / "udp.md").read_text())
        (section,) = document.values()
        self.assertEqual(len(section["figures"]["rounds"]), 2)

    def test_memory(self) -> None:
        """The memory count finds the bytes the index holds per peer (under CPython also what
        private mode keeps beyond a public site) and records them."""
        document, text = self.bench("memory")
        (section,) = document.values()
        figures = section["figures"]
        self.assertEqual(figures["peers"], 5000)
        self.assertTrue(math.isfinite(figures["index_bytes_per_peer"]))
        if IMPLEMENTATION == "CPython":
            # tracemalloc counts exactly: the index holds at least each peer's 20-byte id.
            self.assertGreater(figures["index_bytes_per_peer"], 20)
            self.assertGreater(figures["private"], figures["public"])
        self.assertIn("| what | bytes per peer |", text)
