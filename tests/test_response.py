"""The bencoded bodies clients receive: announce, scrape and failure."""

from __future__ import annotations

from typing import Any

import pytest

from tracker.core.addresses import pack_ip, pack_peer
from tracker.core.announce import AnnounceRequest
from tracker.core.bencode import bdecode
from tracker.core.interfaces import AnnounceResult, Peer, SwarmCounts
from tracker.http.response import announce_body, failure_body, scrape_body

V4_REQUESTER = b"\x7f\x00\x00\x01"
V6_REQUESTER = pack_ip("2001:db8::42")

PEER_V4_A = Peer(b"-AA0001-aaaaaaaaaaaa", b"\xc0\x00\x02\x01\x1a\xe1")  # 192.0.2.1:6881
PEER_V4_B = Peer(b"-BB0001-bbbbbbbbbbbb", b"\xc6\x33\x64\xfe\x00\x01")  # 198.51.100.254:1
PEER_V6 = Peer(
    b"-CC0001-cccccccccccc", b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01" + b"\xff\xff"
)  # [2001:db8::1]:65535


def request(
    *, ip: bytes = V4_REQUESTER, compact: bool = True, no_peer_id: bool = False
) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=bytes(20),
        peer_id=b"-ZZ0001-zzzzzzzzzzzz",
        ip=ip,
        port=6881,
        uploaded=0,
        downloaded=0,
        left=0,
        event="",
        numwant=50,
        compact=compact,
        no_peer_id=no_peer_id,
    )


COUNTS = SwarmCounts(1, 2, 3)


def result(*peers: Peer, counts: SwarmCounts = COUNTS) -> AnnounceResult:
    return AnnounceResult.of(counts, list(peers))


def decoded_announce(
    req: AnnounceRequest, res: AnnounceResult, interval: int = 1800, min_interval: int = 900
) -> dict[bytes, Any]:
    body: dict[bytes, Any] = bdecode(announce_body(req, res, interval, min_interval))
    return body


def test_compact_announce_exact_bytes() -> None:
    """A compact announce reply is exactly the canonical bencoding with keys in byte order."""
    body = announce_body(request(), result(PEER_V4_A), 1800, 900)
    assert body == (
        b"d8:completei1e10:downloadedi3e11:external ip4:\x7f\x00\x00\x01"
        b"10:incompletei2e8:intervali1800e12:min intervali900e"
        b"5:peers6:\xc0\x00\x02\x01\x1a\xe16:peers60:e"
    )


def test_counts_and_intervals() -> None:
    """complete, incomplete, downloaded, interval and min interval carry the given values."""
    body = decoded_announce(request(), result(counts=SwarmCounts(7, 11, 13)), 3600, 600)
    assert body[b"complete"] == 7
    assert body[b"incomplete"] == 11
    assert body[b"downloaded"] == 13
    assert body[b"interval"] == 3600
    assert body[b"min interval"] == 600


def test_compact_ipv4_peers_are_six_bytes_each() -> None:
    """IPv4 peers go in `peers` as 4 address bytes then the port big-endian, back to back."""
    body = decoded_announce(request(), result(PEER_V4_A, PEER_V4_B))
    assert body[b"peers"] == b"\xc0\x00\x02\x01\x1a\xe1\xc6\x33\x64\xfe\x00\x01"
    assert len(body[b"peers"]) == 12
    assert body[b"peers"] == pack_peer(pack_ip("192.0.2.1"), 6881) + pack_peer(
        pack_ip("198.51.100.254"), 1
    )


def test_compact_ipv6_peers_go_in_peers6() -> None:
    """IPv6 peers go in `peers6` as 18 bytes each (BEP 7), never in `peers`."""
    body = decoded_announce(request(), result(PEER_V4_A, PEER_V6, PEER_V4_B))
    assert body[b"peers"] == PEER_V4_A.address + PEER_V4_B.address
    assert body[b"peers6"] == PEER_V6.address
    assert len(body[b"peers6"]) == 18
    assert body[b"peers6"][-2:] == b"\xff\xff"


def test_compact_only_ipv6_peers_still_has_empty_peers() -> None:
    """With only IPv6 peers, `peers` is still present and empty."""
    body = decoded_announce(request(ip=V6_REQUESTER), result(PEER_V6))
    assert body[b"peers"] == b""
    assert body[b"peers6"] == PEER_V6.address


def test_compact_empty_swarm_has_peers_key() -> None:
    """An empty compact peer list is still sent as an empty `peers` string."""
    body = decoded_announce(request(), result())
    assert body[b"peers"] == b""
    assert body.get(b"peers6", b"") == b""


def test_dict_form_peers() -> None:
    """compact=0 clients get a list of dicts with text ip, integer port and peer id."""
    body = decoded_announce(request(compact=False), result(PEER_V4_A, PEER_V6))
    assert body[b"peers"] == [
        {b"ip": b"192.0.2.1", b"peer id": PEER_V4_A.peer_id, b"port": 6881},
        {b"ip": b"2001:db8::1", b"peer id": PEER_V6.peer_id, b"port": 65535},
    ]
    assert b"peers6" not in body


def test_dict_form_without_peer_id() -> None:
    """compact=0 with no_peer_id=1 leaves the peer id out of each peer dict."""
    body = decoded_announce(request(compact=False, no_peer_id=True), result(PEER_V4_A, PEER_V4_B))
    assert body[b"peers"] == [
        {b"ip": b"192.0.2.1", b"port": 6881},
        {b"ip": b"198.51.100.254", b"port": 1},
    ]


def test_dict_form_exact_bytes() -> None:
    """A dict-form peer is bencoded with its keys in byte order: ip, peer id, port."""
    body = announce_body(request(compact=False), result(PEER_V4_A), 1800, 900)
    assert b"5:peersld2:ip9:192.0.2.17:peer id20:-AA0001-aaaaaaaaaaaa4:porti6881eee" in body


def test_dict_form_empty_swarm_has_peers_key() -> None:
    """An empty dict-form peer list is still sent as an empty `peers` list."""
    body = decoded_announce(request(compact=False), result())
    assert body[b"peers"] == []


def test_no_peer_id_irrelevant_to_compact() -> None:
    """Compact replies never carry peer ids, whatever no_peer_id says."""
    with_ids = announce_body(request(no_peer_id=False), result(PEER_V4_A), 1800, 900)
    without_ids = announce_body(request(no_peer_id=True), result(PEER_V4_A), 1800, 900)
    assert with_ids == without_ids
    assert PEER_V4_A.peer_id not in with_ids


@pytest.mark.parametrize("compact", [True, False])
def test_keys_sorted(compact: bool) -> None:
    """Announce reply keys appear in raw byte order (the decoder refuses anything else)."""
    body = decoded_announce(request(compact=compact), result(PEER_V4_A, PEER_V6))
    assert list(body) == sorted(body)
    assert {b"complete", b"incomplete", b"downloaded", b"interval", b"min interval"} <= set(body)
    assert {b"external ip", b"peers"} <= set(body)


@pytest.mark.parametrize("requester", [V4_REQUESTER, V6_REQUESTER, pack_ip("::ffff:192.0.2.9")])
def test_external_ip_is_packed_requester_address(requester: bytes) -> None:
    """`external ip` (BEP 24) is the requester's address packed: 4 bytes IPv4, 16 bytes IPv6."""
    body = decoded_announce(request(ip=requester), result())
    assert body[b"external ip"] == requester
    assert len(body[b"external ip"]) in (4, 16)


def test_scrape_body_keyed_by_raw_hash() -> None:
    """Scrape replies key each torrent by its raw 20-byte info_hash, with its three counts."""
    binary_hash = b"\xff\x00" * 10
    text_hash = b"A" * 20
    body = scrape_body({binary_hash: SwarmCounts(5, 6, 7), text_hash: SwarmCounts(0, 0, 0)})
    assert bdecode(body) == {
        b"files": {
            text_hash: {b"complete": 0, b"downloaded": 0, b"incomplete": 0},
            binary_hash: {b"complete": 5, b"downloaded": 7, b"incomplete": 6},
        }
    }


def test_scrape_body_exact_bytes() -> None:
    """A one-torrent scrape reply is exactly the canonical bencoding."""
    info_hash = bytes(range(20))
    body = scrape_body({info_hash: SwarmCounts(1, 2, 3)})
    assert body == (
        b"d5:filesd20:" + info_hash + b"d8:completei1e10:downloadedi3e10:incompletei2eeee"
    )


def test_scrape_body_hashes_sorted_as_raw_bytes() -> None:
    """Torrents in a multi-scrape reply are listed in raw byte order of their hashes."""
    hashes = [b"\xff" * 20, b"\x00" * 20, b"\x80" * 20]
    body = bdecode(scrape_body({h: SwarmCounts(0, 0, 0) for h in hashes}))
    assert list(body[b"files"]) == sorted(hashes)


def test_scrape_body_empty() -> None:
    """A scrape with no torrents to report still has an empty `files` dict."""
    assert scrape_body({}) == b"d5:filesdee"


def test_failure_body() -> None:
    """A refusal is a dict with only `failure reason`."""
    assert (
        failure_body("missing parameter 'port'")
        == b"d14:failure reason24:missing parameter 'port'e"
    )


def test_failure_body_with_retry_in() -> None:
    """A refusal may tell the client how many seconds to wait with `retry in` (BEP 31)."""
    body = failure_body("busy", retry_in=120)
    assert body == b"d14:failure reason4:busy8:retry ini120ee"
    assert bdecode(body) == {b"failure reason": b"busy", b"retry in": 120}


def test_failure_body_without_retry_in_has_no_key() -> None:
    """Without a retry time, no `retry in` key is sent."""
    assert b"retry in" not in bdecode(failure_body("nope"))


def test_failure_body_utf8_reason() -> None:
    """A non-ASCII reason is sent as UTF-8 bytes."""
    assert bdecode(failure_body("café")) == {b"failure reason": "café".encode()}
