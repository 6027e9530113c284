"""
WebTorrent's real clients against the tracker: bittorrent-tracker's Node client, and
WebTorrent in headless Chromium, installed from tests/webtorrent/package-lock.json
(C{npm ci --prefix tests/webtorrent --ignore-scripts}).

Chromium gathers no ICE candidates on loopback, and none at all without a default route, so
the browser test runs in a network namespace of its own (C{unshare --net}): loopback, and a
veth pair with a documentation address (198.18.0.1/24, RFC 2544) and a default route on it,
so that Chromium offers a host candidate that nothing outside the namespace can reach. This
module is what runs inside it (C{python -m tests.realclients.webtorrent WORKDIR CHROMIUM}):
it sets up the network, starts the tracker daemon there, runs tests/webtorrent/browser.mjs
against it, reads the tracker's scrape and figures, and prints all of it as one JSON line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .procs import ManagedProcess
from .tracker import REPO_ROOT, http_get, log_problems, start_tracker

PACKAGE = REPO_ROOT / "tests" / "webtorrent"
MODULES = PACKAGE / "node_modules"
#: What the tests need of the npm packages.
NEEDED = (
    MODULES / "bittorrent-tracker" / "client.js",
    MODULES / "@node-datachannel" / "linux-x64-gnu",
    MODULES / "puppeteer-core" / "package.json",
    MODULES / "webtorrent" / "dist" / "webtorrent.min.js",
)
#: The namespace's own address, from a block reserved for benchmarks (RFC 2544).
ADDRESS = "198.18.0.1/24"
#: Bytes the browsers transfer.
SIZE = 200_000
BROWSER_SECONDS = 90


def missing() -> str | None:
    """What is missing to run WebTorrent's clients, in words; None if nothing is."""
    if shutil.which("node") is None:
        return "node (apt-get install nodejs npm)"
    absent = [str(path.relative_to(REPO_ROOT)) for path in NEEDED if not path.exists()]
    if absent:
        return (
            "the npm packages of tests/webtorrent (npm ci --prefix tests/webtorrent"
            f" --ignore-scripts): {', '.join(absent)}"
        )
    return None


def namespace_prefix() -> list[str] | None:
    """The command that runs another in a network namespace of its own (and, for a user who
    is not root, a user namespace in which it is); None where that is not possible."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    prefix = (
        ["unshare", "--net"]
        if os.geteuid() == 0
        else ["unshare", "--user", "--map-root-user", "--net"]
    )
    probe = subprocess.run([*prefix, "ip", "link", "show", "lo"], capture_output=True, timeout=30)
    return prefix if probe.returncode == 0 else None


def _network() -> None:
    for command in (
        "ip link set lo up",
        "ip link add wt0 type veth peer name wt1",
        f"ip addr add {ADDRESS} dev wt0",
        "ip link set wt1 up",
        "ip link set wt0 up",
        "ip route add default dev wt0",
    ):
        subprocess.run(command.split(), check=True, capture_output=True, timeout=30)


def in_namespace(workdir: Path, chromium: str) -> dict[str, Any]:
    """Everything that runs inside the namespace; what the test checks."""
    _network()
    tracker = start_tracker(workdir / "tracker", ("--no-udp",))
    try:
        announce = f"ws://{tracker.host}:{tracker.port}/announce"
        browsers = ManagedProcess(
            "browsers",
            [
                "node",
                str(PACKAGE / "browser.mjs"),
                announce,
                chromium,
                str(BROWSER_SECONDS),
                str(SIZE),
            ],
            workdir / "browser.log",
            cwd=PACKAGE,
            env={**os.environ, "HOME": str(workdir)},
        )
        try:
            browsers.wait(BROWSER_SECONDS + 30)
        finally:
            browsers.stop()
        output = (workdir / "browser.log").read_text(errors="replace")
        lines = [line for line in output.splitlines() if line.startswith("{")]
        result: dict[str, Any] = {
            "browsers": json.loads(lines[-1]) if lines else {"error": output[-4000:]}
        }
        seeded = result["browsers"].get("seeded")
        if seeded:
            result["scrape"] = tracker.scrape(bytes.fromhex(seeded["infoHash"]))
        result["websocket"] = json.loads(http_get(f"{tracker.base_url}/stats.json"))["websocket"]
        result["tracker log"] = log_problems(tracker.process)
        return result
    finally:
        tracker.process.stop()


if __name__ == "__main__":
    print(json.dumps(in_namespace(Path(sys.argv[1]), sys.argv[2])))
