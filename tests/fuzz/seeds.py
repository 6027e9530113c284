"""
Writes the seed inputs of each fuzz target into C{tests/fuzz/corpus/<target>/seed-*}: requests
recorded from real clients (C{tests/vectors/client_announces.txt}), the UDP packets the tests
build, and journals written by the swarm index. Inputs the fuzzer found are kept beside them.

    python -m tests.fuzz.seeds
"""

from __future__ import annotations

import json
import random
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_from_bytes

from tests.fuzz.targets import PASSKEY, TOKEN, WS_OTHER, WS_TORRENT, masked
from tests.helpers import announce, info_hash, peer_id
from tracker.core.announce import COMPLETED, STARTED, STOPPED
from tracker.core.bencode import bencode
from tracker.core.interfaces import AnnounceResult, SwarmCounts
from tracker.core.journal import KEYLESS_PEER, SEEDER
from tracker.core.swarms import SwarmIndex
from tracker.http.response import announce_body, failure_body, scrape_body
from tracker.udp.protocol import PROTOCOL_ID

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent / "vectors" / "client_announces.txt"

_CLIENT = re.compile(rb"^CLIENT: (\S+)")
_HEADERS = re.compile(rb"^\s*headers:\s+(.*)$")
_SAMPLE = re.compile(rb"^\s*\[(?P<tag>[^\]]+)\] GET (?P<uri>/\S*)\s*$")


class Client:
    def __init__(self, name: str) -> None:
        self.name = name
        self.headers: list[bytes] = []
        self.uris: list[bytes] = []

    def request(self, uri: bytes, method: bytes = b"GET") -> bytes:
        """The request as the client sent it: its request line and headers."""
        lines = [b"%s %s HTTP/1.1" % (method, uri), *self.headers]
        return b"\r\n".join(lines) + b"\r\n\r\n"


def clients() -> list[Client]:
    found: list[Client] = []
    for line in VECTORS.read_bytes().splitlines():
        client = _CLIENT.match(line)
        if client:
            found.append(Client(client[1].decode("ascii").split("/")[0].lower()))
            continue
        headers = _HEADERS.match(line)
        if headers and found:
            found[-1].headers = [h.strip() for h in headers[1].split(b" | ")]
            continue
        sample = _SAMPLE.match(line)
        if sample and found:
            found[-1].uris.append(sample["uri"])
    return found


def private(uri: bytes) -> bytes:
    return b"/" + PASSKEY + uri


def http_seeds() -> Iterator[tuple[str, bytes]]:
    for client in clients():
        for n, uri in enumerate(client.uris):
            yield f"{client.name}-{n}", client.request(uri)
            yield f"{client.name}-{n}-private", client.request(private(uri))
        # The client's whole session on one connection: started, completed, stopped.
        yield f"{client.name}-session", b"".join(client.request(uri) for uri in client.uris)
        yield (
            f"{client.name}-session-private",
            b"".join(client.request(private(uri)) for uri in client.uris),
        )
    aria2 = clients()[0]
    first = aria2.uris[0]
    yield "head", aria2.request(first, b"HEAD")
    yield "head-http10", b"HEAD %s HTTP/1.0\r\n\r\n" % first
    yield "post", b"POST /announce HTTP/1.1\r\nContent-Length: 3\r\n\r\na=b"
    yield "post-too-large", b"POST /announce HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"
    yield "post-chunked", b"POST /announce HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"
    yield "put", b"PUT /scrape HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    yield (
        "figures",
        (
            aria2.request(first) + aria2.request(private(first)) + b"GET /stats HTTP/1.1\r\n\r\n"
            b"GET /stats.json HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n"
        ),
    )
    yield "not-found", b"GET /x/y?z HTTP/1.1\r\n\r\nGET / HTTP/1.0\r\n\r\n"
    yield (
        "forwarded",
        aria2.request(first).replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 10.0.0.1, ::1\r\n\r\n"),
    )
    yield "expect", aria2.request(first).replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
    yield "bad-line", b"GET /announce\r\n\r\n"
    yield "long-line", b"GET /scrape?" + b"info_hash=" * 1700 + b" HTTP/1.1\r\n\r\n"
    yield "long-header", b"GET /scrape HTTP/1.1\r\nX: " + b"y" * 17000 + b"\r\n\r\n"
    yield (
        "wrong-key",
        (
            b"GET /announce?info_hash=%s&peer_id=%s&port=1&key=1 HTTP/1.1\r\n\r\n"
            b"GET /announce?info_hash=%s&peer_id=%s&port=2&key=2&event=stopped HTTP/1.1\r\n\r\n"
        )
        % ((quote_from_bytes(info_hash(1)).encode(), quote_from_bytes(peer_id(1)).encode()) * 2),
    )


def request_line_seeds() -> Iterator[tuple[str, bytes]]:
    for client in clients():
        for n, uri in enumerate(client.uris):
            yield f"{client.name}-{n}", client.request(uri).split(b"\r\n")[0]
    for n, line in enumerate(
        [
            b"HEAD /scrape HTTP/1.0",
            b"GET / HTTP/1.1",
            b"PUT /x HTTP/1.1",
            b"GET /a b HTTP/1.1",
            b"GET /\xb0 HTTP/1.1",
            b"GET /\xb1 HTTP/1.1",
            b"GET  /announce HTTP/1.1",
            b"GET /announce HTTP/2.0",
            b"get /announce HTTP/1.1",
        ]
    ):
        yield f"line-{n}", line


def query_seeds() -> Iterator[tuple[str, bytes]]:
    for client in clients():
        for n, uri in enumerate(client.uris):
            yield f"{client.name}-{n}", uri
    hashes = b"&".join(b"info_hash=" + quote_from_bytes(info_hash(n)).encode() for n in range(3))
    yield "multi-scrape", b"/scrape?" + hashes
    yield "malformed", b"/announce?a=%4&b=%zz&%41=%61%62+c;d#frag"
    yield "ip", b"/announce?ip=::1&ip=1.2.3.4&numwant=999999999999999999999&port=0"


def bencode_seeds() -> Iterator[tuple[str, bytes]]:
    result = AnnounceResult(SwarmCounts(2, 3, 4), bytes(12), bytes(18), [peer_id(1), peer_id(2)])
    yield "compact", announce_body(announce(1), result, 1800, 900)
    yield "dict", announce_body(announce(1, compact=False), result, 1800, 900)
    yield "scrape", scrape_body({info_hash(1): SwarmCounts(1, 2, 3)})
    yield "failure", failure_body("unknown passkey", retry_in=60)
    yield "nested", bencode([[[b"x", -7, {b"a": [], b"b": {}}]], 0, 10**30])
    yield "deep", b"l" * 70 + b"e" * 70


def _datagrams(*datagrams: bytes) -> bytes:
    return b"".join(struct.pack("!H", len(d)) + d for d in datagrams)


def _udp_announce(
    peer: int, *, left: int = 100, event: int = 0, key: int = 0, options: bytes = b""
) -> bytes:
    return (
        b"\x00" * 8
        + b"\x00\x00\x00\x01TXID"
        + struct.pack(
            "!20s20sqqqi4sIiH",
            info_hash(1),
            peer_id(peer),
            0,
            left,
            0,
            event,
            b"\x00" * 4,
            key,
            -1,
            10000 + peer,
        )
        + options
    )


def udp_seeds() -> Iterator[tuple[str, bytes]]:
    connect = PROTOCOL_ID + b"\x00\x00\x00\x00CONN"
    scrape = b"\x00" * 8 + b"\x00\x00\x00\x02SCRP" + info_hash(1) + info_hash(2)
    session = [
        connect,
        _udp_announce(1, event=2, key=5),
        _udp_announce(2, left=0, event=2),
        _udp_announce(1, left=0, event=1, key=5),
        _udp_announce(1, left=0, event=3, key=6),
        scrape,
        _udp_announce(1, event=3, key=5),
    ]
    path = b"/" + PASSKEY + b"/announce"
    url = b"\x02" + bytes((len(path),)) + path
    for flags, name in ((0b001, "ipv4"), (0b011, "ipv6"), (0b000, "unknown-id")):
        yield f"session-{name}", bytes((flags,)) + _datagrams(*session)
    yield (
        "private",
        b"\x05"
        + _datagrams(_udp_announce(1, event=2, options=url), _udp_announce(2, options=url), scrape),
    )
    yield (
        "bep41",
        b"\x01"
        + _datagrams(
            _udp_announce(1, options=b"\x01\x02\x05/anno\x02\x04unce\x00junk"),
            _udp_announce(2, options=b"\x07\x01x\x02\x0d/announce?a=b"),
            _udp_announce(3, options=b"\x02\x06/other"),
            _udp_announce(4, options=b"\x02\x30/announce"),
        ),
    )
    yield "short", b"\x01" + _datagrams(b"", b"\x00" * 15, connect[:16].replace(b"\x00", b"\x01"))
    unknown_action = b"\x00" * 8 + b"\x00\x00\x00\x07" + b"T" * 4 + b"x" * 40
    yield "bad-action", b"\x01" + _datagrams(unknown_action)


def journal_seeds() -> Iterator[tuple[str, bytes]]:
    rng = random.Random(5)
    index = SwarmIndex(random.Random(1), journal=True)
    for step in range(60):
        peer = rng.randrange(8)
        request = announce(
            peer,
            rng.randrange(3),
            ip=bytes(15) + b"\x01" if rng.random() < 0.3 else b"\x7f\x00\x00\x01",
            left=rng.choice([0, 10]),
            event=rng.choice(["", STARTED, COMPLETED, STOPPED]),
            key=peer + 1,
        )
        index.announce(request, 1000 + step)
    yield "announces", b"".join(index.take_changes())
    for _ in index.expire(1030, [0]):
        pass
    yield "expiry", b"".join(index.take_changes())
    for _ in index.checkpoint([0], chunk=3):
        pass
    yield "checkpoint", b"".join(index.take_changes())
    address = b"\x7f\x00\x00\x01\x00\x01"
    yield (
        "version-2",
        KEYLESS_PEER.pack(b"P", info_hash(1), peer_id(1), 900, SEEDER, len(address)) + address,
    )


def _admin(method: bytes, path: bytes, body: bytes = b"", token: bytes = TOKEN) -> bytes:
    return (
        b"%s %s HTTP/1.1\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (method, path, token, len(body), body)
    )


def admin_seeds() -> Iterator[tuple[str, bytes]]:
    hex1 = info_hash(1).hex().encode()
    yield "stats", _admin(b"GET", b"/stats")
    yield (
        "torrents",
        _admin(b"GET", b"/torrents")
        + _admin(b"POST", b"/torrents", b'{"info_hash": "%s"}' % hex1)
        + _admin(b"DELETE", b"/torrents/" + hex1)
        + _admin(b"POST", b"/reload"),
    )
    yield (
        "passkeys",
        _admin(b"GET", b"/passkeys")
        + _admin(b"POST", b"/passkeys", b'{"passkey": "abcdefghijklmnopq", "label": "x"}')
        + _admin(b"POST", b"/passkeys", b"{}")
        + _admin(b"DELETE", b"/passkeys/" + PASSKEY),
    )
    yield (
        "wrong-token",
        _admin(b"GET", b"/stats", token=b"nope")
        + _admin(b"POST", b"/torrents", b'{"info_hash": "%s"}' % hex1, token=TOKEN[:-1]),
    )
    yield "no-token", b"GET /passkeys HTTP/1.1\r\n\r\n"
    yield (
        "bad-bodies",
        _admin(b"POST", b"/passkeys", b"[1]")
        + _admin(b"POST", b"/torrents", b'{"info_hash": 5}')
        + _admin(b"POST", b"/passkeys", b'{"label": "\\u00e9", "passkey": "a b"}')
        + _admin(b"PUT", b"/stats")
        + _admin(b"GET", b"/nowhere"),
    )


def websocket_seeds() -> Iterator[tuple[str, bytes]]:
    """What a browser sends on its WebSocket after the handshake: WebTorrent's messages, then
    frames of every kind, whole and in fragments, and a few a tracker must refuse."""

    def text(message: object) -> bytes:
        return masked(json.dumps(message).encode())

    offers = [{"offer": {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n"},
               "offer_id": chr(0x41 + n) * 20} for n in range(3)]  # fmt: skip
    announce = {"numwant": 3, "uploaded": 0, "downloaded": 0, "left": None,
                "event": "started", "action": "announce", "info_hash": WS_TORRENT,
                "peer_id": "-WW0208-" + "\x01" * 12, "offers": offers}  # fmt: skip
    yield "announce", text(announce)
    yield "seeder", text({**announce, "left": 0, "event": "completed", "offers": []})
    answer = {"action": "announce", "info_hash": WS_TORRENT, "peer_id": "-WW0208-" + "\x01" * 12,
              "to_peer_id": WS_OTHER, "offer_id": "A" * 20,
              "answer": {"type": "answer", "sdp": "v=0\r\n"}}  # fmt: skip
    yield "answer", text(announce) + text(answer)
    yield "scrape", text({"action": "scrape", "info_hash": [WS_TORRENT, "b" * 20]})
    yield "stopped", text(announce) + text({**announce, "event": "stopped", "offers": []})
    whole = json.dumps(announce).encode()
    yield "fragments", (
        masked(whole[:40], final=False) + masked(b"ping", opcode=9)
        + masked(whole[40:], opcode=0)
    )  # fmt: skip
    yield "close", text(announce) + masked((1000).to_bytes(2, "big") + b"bye", opcode=8)
    yield "binary", masked(whole, opcode=2)
    yield "not-utf8", masked(b'{"action": "\xff"}')
    yield "too-big", bytes([0x81, 0xFF]) + (1 << 20).to_bytes(8, "big") + b"\x00" * 4
    yield "unmasked", bytes([0x81, len(whole[:100])]) + whole[:100]


SEEDS = {
    "request_line": request_line_seeds,
    "query": query_seeds,
    "http": http_seeds,
    "bencode": bencode_seeds,
    "udp": udp_seeds,
    "journal": journal_seeds,
    "admin": admin_seeds,
    "websocket": websocket_seeds,
}


def main() -> None:
    for target, seeds in SEEDS.items():
        folder = HERE / "corpus" / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        count = 0
        for name, data in seeds():
            (folder / f"seed-{name}").write_bytes(data)
            count += 1
        print(f"{target}: {count} seeds")


if __name__ == "__main__":
    main()
