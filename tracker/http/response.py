"""Bencoded reply bodies for announce, scrape and failures."""

from __future__ import annotations

from tracker.core.addresses import unpack_peer
from tracker.core.announce import AnnounceRequest
from tracker.core.bencode import bencode
from tracker.core.interfaces import AnnounceResult, SwarmCounts


def failure_body(reason: str, retry_in: int | None = None) -> bytes:
    """The one shape every refusal takes: HTTP 200 with a bencoded C{failure reason}."""
    body: dict[bytes, object] = {b"failure reason": reason.encode("utf-8", "replace")}
    if retry_in is not None:
        # BEP 31: tells a well-behaved client when to come back.
        body[b"retry in"] = retry_in
    return bencode(body)


#: The compact reply's keys in bencode's sorted order, filled in without the generic encoder:
#: this is the reply almost every announce gets.
_COMPACT = (
    b"d8:completei%de10:downloadedi%de11:external ip%d:%s10:incompletei%de8:intervali%de"
    b"12:min intervali%de5:peers%d:%s6:peers6%d:%se"
)


def announce_body(
    request: AnnounceRequest, result: AnnounceResult, interval: int, min_interval: int
) -> bytes:
    if request.compact:
        return _compact_body(request, result, interval, min_interval)
    counts = result.counts
    body = {
        b"complete": counts.complete,
        b"incomplete": counts.incomplete,
        b"downloaded": counts.downloaded,
        b"interval": interval,
        b"min interval": min_interval,
        # BEP 24: the address the tracker saw, for clients behind NAT.
        b"external ip": request.ip,
    }
    body[b"peers"] = [_peer_dict(p.peer_id, p.address, request.no_peer_id) for p in result.peers()]
    return bencode(body)


def _compact_body(
    request: AnnounceRequest, result: AnnounceResult, interval: int, min_interval: int
) -> bytes:
    # BEP 23 and BEP 7: IPv4 peers in "peers", IPv6 peers in "peers6". "peers" is always
    # present, even empty: some clients fail without it.
    v4 = result.peers4
    v6 = result.peers6
    counts = result.counts
    ip = request.ip
    return _COMPACT % (
        counts.complete,
        counts.downloaded,
        len(ip),
        ip,
        counts.incomplete,
        interval,
        min_interval,
        len(v4),
        v4,
        len(v6),
        v6,
    )


def _peer_dict(peer_id: bytes, address: bytes, no_peer_id: bool) -> dict[bytes, object]:
    ip, port = unpack_peer(address)
    peer: dict[bytes, object] = {b"ip": ip.encode("ascii"), b"port": port}
    if not no_peer_id:
        peer[b"peer id"] = peer_id
    return peer


def scrape_body(counts: dict[bytes, SwarmCounts]) -> bytes:
    files = {
        info_hash: {
            b"complete": c.complete,
            b"incomplete": c.incomplete,
            b"downloaded": c.downloaded,
        }
        for info_hash, c in counts.items()
    }
    return bencode({b"files": files})
