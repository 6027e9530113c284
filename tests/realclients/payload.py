"""Test payloads and the .torrent files that describe them."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from .metainfo import announcing_to, single_file_torrent

PAYLOAD_NAME = "payload.bin"
PAYLOAD_SIZE = 4 * 1024 * 1024
# 256 KiB pieces give 16 pieces: enough that a transfer involves many
# requests, few enough that hashing stays instant.
PIECE_SIZE = 256 * 1024


@dataclass(frozen=True)
class Payload:
    """A generated file, its digest, and a torrent for it."""

    path: Path
    sha256: str
    torrent: Path
    info_hash: bytes  # SHA-1 of the bencoded info dictionary (v1)
    announce_url: str  # the torrent's one tracker URL: http:// or udp://

    @property
    def over_udp(self) -> bool:
        """True when peers reach the tracker over BEP 15 (a ``udp://`` announce URL)."""
        return self.announce_url.startswith("udp://")

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, or '' when it does not exist (yet)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        return ""
    return digest.hexdigest()


def make_payload(seed_dir: Path, announce_url: str, size: int = PAYLOAD_SIZE) -> Payload:
    """Write ``size`` random bytes into ``seed_dir`` and build a torrent for them.

    The torrent is v1-only (Transmission 3 and aria2 do not read v2 torrents)
    and private, which makes every client keep DHT, PEX and LSD off for it on
    top of the settings the tests pass.  ``announce_url`` is its only tracker
    (no announce-list), so an ``udp://`` URL leaves clients no HTTP fallback.
    """
    seed_dir.mkdir(parents=True, exist_ok=True)
    path = seed_dir / PAYLOAD_NAME
    path.write_bytes(os.urandom(size))
    meta = single_file_torrent(path, announce_url, PIECE_SIZE)
    torrent = seed_dir.parent / f"{PAYLOAD_NAME}.torrent"
    torrent.write_bytes(meta.data)
    return Payload(
        path=path,
        sha256=sha256_file(path),
        torrent=torrent,
        info_hash=meta.info_hash,
        announce_url=announce_url,
    )


def retargeted(payload: Payload, announce_url: str, torrent: Path) -> Payload:
    """The same file, info hash and all, in a second torrent written to ``torrent`` whose
    only tracker is ``announce_url``: peers of one swarm sent to different trackers."""
    meta = announcing_to(payload.torrent.read_bytes(), announce_url)
    torrent.write_bytes(meta.data)
    return replace(payload, torrent=torrent, info_hash=meta.info_hash, announce_url=announce_url)
