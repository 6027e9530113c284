"""
Floods a tracker with pipelined announces: C{python flooder.py PORT CONNECTIONS SECONDS}.

Opens CONNECTIONS connections to 127.0.0.1:PORT, then for SECONDS writes announces down every
one of them as fast as the tracker takes them, without waiting for replies, and reads and
throws away whatever comes back (SIGTERM ends it sooner). It prints C{ready} once every
connection is open and, at the end, C{replies N} (about how many replies came back), C{closed N}
(connections the tracker closed) and C{milliseconds N} (how long it flooded). The standard
library alone, so that it runs under any interpreter the tests use.
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys
import time
from urllib.parse import quote_from_bytes

#: Swarms the flood announces into, and peers per connection.
SWARMS = 100
PEERS = 200


def announce(connection: int, n: int) -> bytes:
    info_hash = b"FLOOD" + (n % SWARMS).to_bytes(15, "big")
    peer_id = b"-FL0001-" + connection.to_bytes(6, "big") + (n % PEERS).to_bytes(6, "big")
    return (
        b"GET /announce?info_hash=%s&peer_id=%s&port=%d&left=%d&compact=1&numwant=50"
        b" HTTP/1.1\r\nHost: tracker\r\n\r\n"
        % (
            quote_from_bytes(info_hash).encode(),
            quote_from_bytes(peer_id).encode(),
            1024 + n % PEERS,
            n % 3,
        )
    )


def block(connection: int, size: int = 65536) -> bytes:
    """Pipelined announces of one connection's peers, about C{size} bytes of them."""
    requests = []
    total = n = 0
    while total < size:
        request = announce(connection, n)
        requests.append(request)
        total += len(request)
        n += 1
    return b"".join(requests)


def flood(port: int, connections: int, seconds: float, out: object = sys.stdout) -> None:
    selector = selectors.DefaultSelector()
    blocks = {}
    for k in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setblocking(False)
        blocks[sock] = block(k)
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, [b""])
    stopped = []
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
    print("ready", file=out, flush=True)  # type: ignore[call-overload]
    replies = closed = 0
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline and selector.get_map() and not stopped:
        for key, events in selector.select(timeout=0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            pending = key.data
            try:
                if events & selectors.EVENT_READ:
                    data = sock.recv(262144)
                    if not data:
                        raise ConnectionResetError
                    replies += data.count(b"HTTP/1.1 200")
                if events & selectors.EVENT_WRITE:
                    if not pending[0]:
                        pending[0] = blocks[sock]
                    sent = sock.send(pending[0])
                    pending[0] = pending[0][sent:]
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
                selector.unregister(sock)
                sock.close()
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    print(f"replies {replies}", file=out, flush=True)  # type: ignore[call-overload]
    print(f"closed {closed}", file=out, flush=True)  # type: ignore[call-overload]
    elapsed = round((time.monotonic() - started) * 1000)
    print(f"milliseconds {elapsed}", file=out, flush=True)  # type: ignore[call-overload]


if __name__ == "__main__":
    flood(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
