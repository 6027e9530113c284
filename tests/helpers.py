"""Builders shared by the tests."""

from __future__ import annotations

import os
import subprocess

from tracker.core.announce import NONE, AnnounceRequest
from tracker.core.swarms import SwarmIndex
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


Peer = tuple[bytes, bytes, int, int, int, int]


def index_state(index: SwarmIndex) -> dict[bytes, tuple[int, set[Peer]]]:
    """
    Everything the index holds, in a form that compares equal whatever the peers' order; checks
    on the way that the index is whole: each group's arrays hold one entry per peer, its
    addresses one address of the group's width per peer, and each swarm's dict of places says
    where every peer is.
    """
    found = {}
    for hash_, swarm in index.swarms.items():
        peers = set()
        places = {}
        for slot, group in enumerate(swarm.groups):
            if group is None:
                continue
            count = len(group.ids)
            assert group.width == (18 if slot & 1 else 6), (hash_, slot, group.width)
            assert len(group.addresses) == count * group.width, (hash_, slot)
            assert len(group.seen) == len(group.completed) == len(group.keys) == count
            for position, member in enumerate(group.ids):
                places[member] = position << 2 | slot
                address = bytes(
                    group.addresses[position * group.width : (position + 1) * group.width]
                )
                peers.add(
                    (
                        member, address, slot, group.seen[position], group.completed[position],
                        group.keys[position],
                    )
                )  # fmt: skip
        assert swarm.places == places
        if peers or swarm.downloaded:
            found[hash_] = (swarm.downloaded, peers)
    return found


def certificate(directory: str, openssl: str = "openssl") -> tuple[str, str]:
    """A self-signed key and certificate for 127.0.0.1 in C{directory}, valid for a day."""
    try:
        from tests.test_tap import _self_signed

        return _self_signed(directory)
    except ImportError:
        # cryptography is not installed under PyPy: the openssl command makes them instead.
        key = os.path.join(directory, "key.pem")
        cert = os.path.join(directory, "cert.pem")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
             "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return key, cert
