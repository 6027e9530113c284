"""What an idle WebSocket connection costs the tracker in Python objects, counted by tracemalloc
(CPython): the tracker's site in this process, COUNT connections from ws_load.mjs's idle mode,
each announcing once and staying open, and the memory allocated meanwhile and still held, over
their number. Prints it as JSON. Run by bench/ws.py:

    python bench/ws_memory.py COUNT
"""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(1, str(BENCH.parent))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.threads import blockingCallFromThread, deferToThread  # noqa: E402

from tracker.http.resource import TrackerResource  # noqa: E402
from tracker.http.site import TrackerSite  # noqa: E402
from tracker.store.memory import MemoryPeerStore  # noqa: E402


def main(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tracker = TrackerResource(MemoryPeerStore(), clock=reactor)
    port = reactor.listenTCP(0, TrackerSite(tracker), interface="127.0.0.1", backlog=1024)  # type: ignore[attr-defined]
    url = f"ws://127.0.0.1:{port.getHost().port}/announce"
    result: dict[str, Any] = {}

    def load(connections: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["node", str(BENCH / "ws_load.mjs"), "idle", url, str(connections), "10"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip

    def opened(process: subprocess.Popen[bytes]) -> dict[str, Any]:
        assert process.stdout is not None
        while True:
            line = process.stdout.readline()
            if not line or line.startswith(b"{"):
                return json.loads(line) if line else {}

    def close(process: subprocess.Popen[bytes]) -> None:
        process.communicate(b"close\n", timeout=60)

    def measure() -> None:
        # A first batch opened and closed: what only the first connections cost (imports,
        # caches) is not counted.
        warm = load(200)
        opened(warm)
        close(warm)
        tracemalloc.start()
        blockingCallFromThread(reactor, gc.collect)
        before = tracemalloc.take_snapshot()
        idle = load(count)
        result.update(opened(idle))
        blockingCallFromThread(reactor, gc.collect)
        after = tracemalloc.take_snapshot()
        result["open"] = len(tracker.websocket.connections)  # type: ignore[union-attr]
        grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        result["bytes_per_connection"] = grown / max(result.get("opened", 0), 1)
        close(idle)

    def done(outcome: object) -> None:
        print(json.dumps(result) if result else repr(outcome), flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: deferToThread(measure).addBoth(done))
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
