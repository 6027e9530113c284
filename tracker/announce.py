"""Announce and scrape requests: validated, typed values built from raw query parameters."""

from __future__ import annotations

from typing import NamedTuple

from tracker.addresses import pack_ip
from tracker.config import TrackerConfig
from tracker.errors import TrackerError
from tracker.query import Params

#: SQLite's integers are signed 64-bit; larger byte counts are nonsense anyway.
_MAX_COUNT = 2**63 - 1
_MAX_DIGITS = len(str(_MAX_COUNT))

STARTED = "started"
COMPLETED = "completed"
STOPPED = "stopped"
#: BEP 21: a partial seed that wants nothing more. libtorrent and qBittorrent send it; a tracker
#: that refuses it breaks their seeding.
PAUSED = "paused"
NONE = ""
_EVENTS = {
    b"": NONE,
    b"started": STARTED,
    b"completed": COMPLETED,
    b"stopped": STOPPED,
    b"paused": PAUSED,
}


class AnnounceRequest(NamedTuple):
    info_hash: bytes
    peer_id: bytes
    #: Packed IP (4 or 16 bytes) of the announcing peer.
    ip: bytes
    port: int
    uploaded: int
    downloaded: int
    left: int
    event: str
    numwant: int
    compact: bool
    no_peer_id: bool

    @property
    def is_seeder(self) -> bool:
        return self.left == 0

    @property
    def wants_only_leechers(self) -> bool:
        """Seeders, and partial seeds that paused (BEP 21), have no use for other seeders."""
        return self.is_seeder or self.event == PAUSED

    @property
    def completes(self) -> bool:
        """Whether this announce reports a finished download (counted once per peer)."""
        return self.event == COMPLETED and self.left == 0


class ScrapeRequest(NamedTuple):
    info_hashes: tuple[bytes, ...]


def _single(params: Params, name: bytes) -> bytes | None:
    values = params.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise TrackerError(f"parameter '{name.decode()}' given more than once")
    return values[0]


def _required(params: Params, name: bytes) -> bytes:
    value = _single(params, name)
    if value is None:
        raise TrackerError(f"missing parameter '{name.decode()}'")
    return value


def _twenty_bytes(params: Params, name: bytes) -> bytes:
    value = _required(params, name)
    if len(value) != 20:
        # BEP 52 v2 hashes arrive truncated to 20 bytes, so exactly 20 is the one valid length.
        raise TrackerError(f"'{name.decode()}' must be 20 bytes, not {len(value)}")
    return value


def _integer(params: Params, name: bytes, default: int, maximum: int = _MAX_COUNT) -> int:
    value = _single(params, name)
    if value is None or value == b"":
        # Real clients omit uploaded/downloaded; trackers that insisted were delisted.
        return default
    if not value.isdigit() or len(value) > _MAX_DIGITS or int(value) > maximum:
        raise TrackerError(f"'{name.decode()}' must be a whole number between 0 and {maximum}")
    return int(value)


def _flag(params: Params, name: bytes, default: bool) -> bool:
    value = _single(params, name)
    if value is None or value == b"":
        return default
    if value not in (b"0", b"1"):
        raise TrackerError(f"'{name.decode()}' must be 0 or 1")
    return value == b"1"


def _peer_ip(params: Params, socket_ip: bytes, config: TrackerConfig) -> bytes:
    claimed = _single(params, b"ip")
    if not config.allow_ip_param or not claimed:
        # ip= lets anyone point a swarm at a third party: ignored unless the operator opts in.
        return socket_ip
    try:
        return pack_ip(claimed.decode("ascii"))
    except (UnicodeDecodeError, OSError, ValueError):
        raise TrackerError("'ip' must be an IPv4 or IPv6 address") from None


def parse_announce(params: Params, socket_ip: bytes, config: TrackerConfig) -> AnnounceRequest:
    """Validate an announce; C{socket_ip} is the packed address the request came from."""
    info_hash = _twenty_bytes(params, b"info_hash")
    peer_id = _twenty_bytes(params, b"peer_id")
    port = _integer(params, b"port", default=-1, maximum=65535)
    if port < 1:
        raise TrackerError("'port' must be between 1 and 65535")
    numwant = _integer(params, b"numwant", default=config.numwant_default)
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id,
        ip=_peer_ip(params, socket_ip, config),
        port=port,
        uploaded=_integer(params, b"uploaded", 0),
        downloaded=_integer(params, b"downloaded", 0),
        left=_integer(params, b"left", 0),
        # Unknown events are treated as a regular announce, as the field does.
        event=_EVENTS.get(_single(params, b"event") or b"", NONE),
        numwant=min(numwant, config.numwant_max),
        compact=_flag(params, b"compact", default=True),
        no_peer_id=_flag(params, b"no_peer_id", default=False),
    )


def parse_scrape(params: Params, config: TrackerConfig) -> ScrapeRequest:
    """Validate a scrape; repeating C{info_hash} is the BEP 48 multi-scrape form."""
    hashes = params.get(b"info_hash")
    if not hashes:
        raise TrackerError("scrape needs at least one 'info_hash'; full scrapes are not served")
    if len(hashes) > config.max_scrape_hashes:
        raise TrackerError(f"at most {config.max_scrape_hashes} info hashes per scrape")
    for info_hash in hashes:
        if len(info_hash) != 20:
            raise TrackerError(f"'info_hash' must be 20 bytes, not {len(info_hash)}")
    return ScrapeRequest(tuple(dict.fromkeys(hashes)))
