"""Builders shared by the tests."""

from __future__ import annotations

from tracker.core.announce import NONE, AnnounceRequest
from tracker.ops.passkeys import Passkeys


def info_hash(n: int) -> bytes:
    return b"H" * 16 + n.to_bytes(4, "big")


def peer_id(n: int) -> bytes:
    return b"-TT0001-" + n.to_bytes(12, "big")


def announce(
    peer: int = 1,
    torrent: int = 1,
    *,
    ip: bytes = b"\x7f\x00\x00\x01",
    port: int | None = None,
    left: int = 100,
    event: str = NONE,
    numwant: int = 50,
    compact: bool = True,
    no_peer_id: bool = False,
    key: int = 0,
    own_family: bool = False,
) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=info_hash(torrent),
        peer_id=peer_id(peer),
        ip=ip,
        port=port if port is not None else 10000 + peer,
        uploaded=0,
        downloaded=0,
        left=left,
        event=event,
        numwant=numwant,
        compact=compact,
        no_peer_id=no_peer_id,
        key=key,
        own_family=own_family,
    )


def totals(passkeys: Passkeys, passkey: bytes) -> list[int]:
    """A passkey's [uploaded, downloaded] as credited so far."""
    ledger = passkeys.ledgers[passkey]
    return [ledger.uploaded, ledger.downloaded]
