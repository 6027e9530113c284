"""Announce and scrape requests recorded from real BitTorrent clients parse as the clients meant."""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import NamedTuple

import pytest

from tracker.core.announce import COMPLETED, NONE, STARTED, STOPPED, parse_announce, parse_scrape
from tracker.core.config import TrackerConfig
from tracker.core.query import parse_query, split_query
from tracker.store.memory import MemoryPeerStore

_IN_REPO = Path(__file__).resolve().parent / "vectors" / "client_announces.txt"
_SHARED = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "client_announces.txt"
SOCKET_IP = b"\x7f\x00\x00\x01"
CONFIG = TrackerConfig()

_CLIENT = re.compile(rb"^CLIENT: (\S+)")
_SAMPLE = re.compile(rb"^\s*\[(?P<tag>[^\]]+)\] GET (?P<uri>/(?:announce|scrape)\?\S*)\s*$")


class Sample(NamedTuple):
    client: str
    tag: str
    uri: bytes


def _vectors_path() -> Path:
    return _IN_REPO if _IN_REPO.is_file() else _SHARED


def _load_samples() -> list[Sample]:
    samples = []
    client = ""
    for line in _vectors_path().read_bytes().splitlines():
        header = _CLIENT.match(line)
        if header:
            client = header.group(1).decode("ascii")
            continue
        sample = _SAMPLE.match(line)
        if sample:
            samples.append(Sample(client, sample["tag"].decode("ascii"), sample["uri"]))
    return samples


SAMPLES = _load_samples()

#: The torrents the clients were recorded on; aria2 and libtorrent share the first.
SHARED_TORRENT = bytes.fromhex("4019183ccb446db947d7aebf99df1394076bea27")
LT_OTHER_TORRENT = bytes.fromhex("ad519c8374f4ad493f739a263c4dae98e474c9d2")
TR_TORRENT = bytes.fromhex("13369ab1f036224a086c59c334131a8b6820fcca")
QB_TORRENT = bytes.fromhex("98e573b01272c7c478174c9bd6efa92eed28bb00")

ARIA2_PEER = b"A2-1-36-0-\xa3\xb3(\x91\x9d\xbe~\x18W`"
LT_PEER = b"-LT2110-4sej_WR*OGUL"
LT_OTHER_PEER = b"-LT2110-JqR9.r6037(Z"
TR_PEER = b"-TR3000-5kwdxaplswmb"
QB_PEER = b"-qB4520-A6olsli9_k~U"

MIB8 = 8 * 1024 * 1024


class Expected(NamedTuple):
    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int
    downloaded: int
    left: int
    event: str
    numwant: int
    compact: bool
    no_peer_id: bool


#: What each announce sample means, in file order.
EXPECTED_ANNOUNCES = [
    ("aria2/1.36.0", "announce event=started",
     Expected(SHARED_TORRENT, ARIA2_PEER, 41557, 0, 0, 0, STARTED, 50, True, True)),
    ("aria2/1.36.0", "announce event=(none)",
     Expected(SHARED_TORRENT, ARIA2_PEER, 41557, MIB8, 0, 0, NONE, 50, True, True)),
    ("aria2/1.36.0", "announce event=stopped",
     Expected(SHARED_TORRENT, ARIA2_PEER, 41557, MIB8, 0, 0, STOPPED, 0, True, True)),
    ("libtorrent/2.1.1.0", "announce event=started",
     Expected(SHARED_TORRENT, LT_PEER, 33525, 0, 0, MIB8, STARTED, 200, True, True)),
    ("libtorrent/2.1.1.0", "announce event=(none)",
     Expected(LT_OTHER_TORRENT, LT_OTHER_PEER, 38831, 0, 0, 0, NONE, 200, True, True)),
    ("libtorrent/2.1.1.0", "announce event=completed",
     Expected(SHARED_TORRENT, LT_PEER, 33525, 0, MIB8, 0, COMPLETED, 200, True, True)),
    ("libtorrent/2.1.1.0", "announce event=stopped",
     Expected(SHARED_TORRENT, LT_PEER, 33525, 0, MIB8, 0, STOPPED, 0, True, True)),
    ("Transmission/3.00", "announce event=started",
     Expected(TR_TORRENT, TR_PEER, 56103, 0, 0, MIB8, STARTED, 80, True, False)),
    ("Transmission/3.00", "announce event=completed",
     Expected(TR_TORRENT, TR_PEER, 56103, 0, MIB8, 0, COMPLETED, 80, True, False)),
    ("Transmission/3.00", "announce event=stopped",
     Expected(TR_TORRENT, TR_PEER, 56103, 0, 0, MIB8, STOPPED, 0, True, False)),
    ("qBittorrent/4.5.2", "announce event=started",
     Expected(QB_TORRENT, QB_PEER, 33773, 0, 0, MIB8, STARTED, 200, True, True)),
    ("qBittorrent/4.5.2", "announce event=completed",
     Expected(QB_TORRENT, QB_PEER, 33773, 0, MIB8, 0, COMPLETED, 200, True, True)),
    ("qBittorrent/4.5.2", "announce event=stopped",
     Expected(QB_TORRENT, QB_PEER, 33773, 0, MIB8, 0, STOPPED, 0, True, True)),
]  # fmt: skip

EXPECTED_SCRAPES = [("Transmission/3.00", "scrape", (TR_TORRENT,))]

ANNOUNCE_SAMPLES = [s for s in SAMPLES if s.uri.startswith(b"/announce?")]
SCRAPE_SAMPLES = [s for s in SAMPLES if s.uri.startswith(b"/scrape?")]


def _sample_id(sample: Sample) -> str:
    return f"{sample.client} {sample.tag}"


def _announce(sample: Sample) -> Expected:
    request = parse_announce(parse_query(split_query(sample.uri)), SOCKET_IP, CONFIG)
    return Expected(
        request.info_hash,
        request.peer_id,
        request.port,
        request.uploaded,
        request.downloaded,
        request.left,
        request.event,
        request.numwant,
        request.compact,
        request.no_peer_id,
    )


def test_vectors_file_is_in_the_repository() -> None:
    """The recorded client requests ship with the tests, so a clean checkout can run them."""
    assert _IN_REPO.is_file()


def test_every_sample_is_accounted_for() -> None:
    """Every recorded announce and scrape line is checked against what it should mean."""
    assert [(s.client, s.tag) for s in ANNOUNCE_SAMPLES] == [
        (client, tag) for client, tag, _ in EXPECTED_ANNOUNCES
    ]
    assert [(s.client, s.tag) for s in SCRAPE_SAMPLES] == [
        (client, tag) for client, tag, _ in EXPECTED_SCRAPES
    ]
    assert len(SAMPLES) == len(ANNOUNCE_SAMPLES) + len(SCRAPE_SAMPLES) == 14


@pytest.mark.parametrize(
    ("sample", "expected"),
    [(s, e) for s, (_, _, e) in zip(ANNOUNCE_SAMPLES, EXPECTED_ANNOUNCES)],
    ids=[_sample_id(s) for s in ANNOUNCE_SAMPLES],
)
def test_client_announce_parses(sample: Sample, expected: Expected) -> None:
    """A real client's announce yields its 20-byte info_hash and peer_id and the values it sent."""
    parsed = _announce(sample)
    assert len(parsed.info_hash) == 20
    assert len(parsed.peer_id) == 20
    assert parsed == expected


@pytest.mark.parametrize(
    ("sample", "expected"),
    [(s, e) for s, (_, _, e) in zip(SCRAPE_SAMPLES, EXPECTED_SCRAPES)],
    ids=[_sample_id(s) for s in SCRAPE_SAMPLES],
)
def test_client_scrape_parses(sample: Sample, expected: tuple[bytes, ...]) -> None:
    """A real client's scrape yields the raw 20-byte hashes it asked about."""
    request = parse_scrape(parse_query(split_query(sample.uri)), CONFIG)
    assert all(len(h) == 20 for h in request.info_hashes)
    assert request.info_hashes == expected


def _raw_info_hash(uri: bytes) -> bytes:
    """The still-encoded info_hash value of a recorded request."""
    for pair in split_query(uri).split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"info_hash":
            return value
    raise AssertionError(f"no info_hash in {uri!r}")


def test_uppercase_and_lowercase_escapes_name_the_same_torrent() -> None:
    """aria2's uppercase escapes and libtorrent's lowercase ones decode to one info_hash."""
    aria2 = next(s for s in ANNOUNCE_SAMPLES if s.client.startswith("aria2/"))
    libtorrent = next(s for s in ANNOUNCE_SAMPLES if s.client.startswith("libtorrent/"))
    aria2_raw = _raw_info_hash(aria2.uri)
    libtorrent_raw = _raw_info_hash(libtorrent.uri)
    assert aria2_raw == b"%40%19%18%3C%CBDm%B9G%D7%AE%BF%99%DF%13%94%07k%EA%27"
    assert libtorrent_raw == b"%40%19%18%3c%cbDm%b9G%d7%ae%bf%99%df%13%94%07k%ea%27"
    assert _announce(aria2).info_hash == _announce(libtorrent).info_hash == SHARED_TORRENT


def test_same_torrent_across_a_clients_session() -> None:
    """Each client's started, completed and stopped announces name the same torrent and peer."""
    by_client: dict[str, set[tuple[bytes, bytes]]] = {}
    for sample in ANNOUNCE_SAMPLES:
        if sample.tag == "announce event=(none)" and sample.client.startswith("libtorrent/"):
            continue  # libtorrent's regular announce was for a second torrent
        parsed = _announce(sample)
        by_client.setdefault(sample.client, set()).add((parsed.info_hash, parsed.peer_id))
    assert len(by_client) == 4
    assert all(len(pairs) == 1 for pairs in by_client.values())


#: Each client's key as the 32-bit number it would send over UDP: libtorrent, Transmission and
#: qBittorrent send theirs in hex, which is read as that number; aria2's 8 raw bytes are hashed.
EXPECTED_KEYS = {
    "aria2/1.36.0": zlib.crc32(b"(\x91\x9d\xbe~\x18W`"),
    "libtorrent/2.1.1.0": 0x565E1D1F,
    "Transmission/3.00": 0x10A1814A,
    "qBittorrent/4.5.2": 0x555F8FBB,
}


def test_each_client_sends_one_key_read_as_its_number() -> None:
    """Every announce of a client's session parses to the same 32-bit key, the number its hex
    spells (or aria2's hashed bytes)."""
    keys: dict[str, set[int]] = {}
    for sample in ANNOUNCE_SAMPLES:
        if sample.tag == "announce event=(none)" and sample.client.startswith("libtorrent/"):
            continue  # libtorrent's regular announce was for a second torrent, with its own key
        request = parse_announce(parse_query(split_query(sample.uri)), SOCKET_IP, CONFIG)
        keys.setdefault(sample.client, set()).add(request.key)
    assert keys == {client: {key} for client, key in EXPECTED_KEYS.items()}


def test_client_sessions_pass_the_key_check() -> None:
    """Each client's recorded session, replayed in order into a store, is accepted at every
    step, and its stopped removes it."""
    store = MemoryPeerStore()
    for now, sample in enumerate(ANNOUNCE_SAMPLES):
        request = parse_announce(parse_query(split_query(sample.uri)), SOCKET_IP, CONFIG)
        store.announce(request, 1000 + now)
    hashes = [SHARED_TORRENT, LT_OTHER_TORRENT, TR_TORRENT, QB_TORRENT]
    counts = store.scrape(hashes)
    # Only libtorrent's second torrent, which it did not stop, still has its peer.
    assert [(c.complete, c.incomplete) for c in (counts[h] for h in hashes)] == [
        (0, 0), (1, 0), (0, 0), (0, 0)
    ]  # fmt: skip
