"""Announce and scrape requests: validated, typed values built from raw query parameters."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, NamedTuple

from tracker.core.addresses import pack_ip
from tracker.core.config import TrackerConfig
from tracker.core.errors import TrackerError
from tracker.core.query import Params

if TYPE_CHECKING:
    from tracker.core.ledger import Ledger

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
    #: The client's key as a 32-bit number (BEP 15's key field; see L{parse_key}), 0 for none.
    #: A known peer's announces from elsewhere must carry the key it registered with (see
    #: L{tracker.core.interfaces.IPeerStore.announce}).
    key: int = 0
    #: Whether the peers wanted are of the announcing peer's own address family only (UDP,
    #: whose reply carries one family), rather than of both (HTTP: BEP 7's peers and peers6).
    own_family: bool = False
    #: Private mode: the ledger of the passkey the announce was made with, which the store
    #: credits with what the peer moved (see L{tracker.core.ledger}); None on a public tracker.
    account: Ledger | None = None

    @property
    def is_seeder(self) -> bool:
        return self.left == 0

    @property
    def completes(self) -> bool:
        """Whether this announce reports a finished download (counted once per peer)."""
        return self.event == COMPLETED and self.left == 0


class ScrapeRequest(NamedTuple):
    info_hashes: tuple[bytes, ...]


#: Parameters an announce may carry once at most.
_SINGLE_VALUED = frozenset(
    (b"info_hash", b"peer_id", b"port", b"uploaded", b"downloaded", b"left", b"event")
    + (b"numwant", b"compact", b"no_peer_id", b"ip")
)


def _single_values(params: Params) -> dict[bytes, bytes]:
    """Each parameter's one value; a known parameter given twice is refused."""
    for name, values in params.items():
        if len(values) > 1 and name in _SINGLE_VALUED:
            raise TrackerError(f"parameter '{name.decode()}' given more than once")
    return {name: values[0] for name, values in params.items()}


def _twenty_bytes(value: bytes | None, name: str) -> bytes:
    if value is None:
        raise TrackerError(f"missing parameter '{name}'")
    if len(value) != 20:
        # BEP 52 v2 hashes arrive truncated to 20 bytes, so exactly 20 is the one valid length.
        raise TrackerError(f"'{name}' must be 20 bytes, not {len(value)}")
    return value


def _integer(value: bytes | None, name: str, default: int, maximum: int = _MAX_COUNT) -> int:
    if not value:
        # Real clients omit uploaded/downloaded; trackers that insisted were delisted.
        return default
    if len(value) <= _MAX_DIGITS and value.isdigit():
        number = int(value)
        if number <= maximum:
            return number
    raise TrackerError(f"'{name}' must be a whole number between 0 and {maximum}")


def _flag(value: bytes | None, name: str, default: bool) -> bool:
    if not value:
        return default
    if value == b"1":
        return True
    if value == b"0":
        return False
    raise TrackerError(f"'{name}' must be 0 or 1")


def parse_key(value: bytes) -> int:
    """
    An HTTP C{key} as the number a UDP announce would carry for it. libtorrent, qBittorrent
    and Transmission send their 32-bit key as 8 hex digits over HTTP and as the number itself
    over UDP, so the hex is read as that number: a client's HTTP and UDP announces then carry
    the same key. Anything else (aria2 sends 8 raw bytes) is hashed to 32 bits, which keeps a
    peer's stored key at 4 bytes whatever a client sends. 0 means no key.
    """
    if len(value) <= 8:
        try:
            number = int(value, 16)
        except ValueError:
            pass
        else:
            if number >= 0:
                return number
    # CRC-32 is cheap and stable across restarts, where hash() is not; that it is easy to
    # invert does not matter: a stored key is never shown, so there is nothing to invert.
    return zlib.crc32(value)


def _peer_ip(claimed: bytes | None, socket_ip: bytes, config: TrackerConfig) -> bytes:
    if not config.allow_ip_param or not claimed:
        # ip= lets anyone point a swarm at a third party: ignored unless the operator opts in.
        return socket_ip
    try:
        return pack_ip(claimed.decode("ascii"))
    except (UnicodeDecodeError, OSError, ValueError):
        raise TrackerError("'ip' must be an IPv4 or IPv6 address") from None


def parse_announce(
    params: Params, socket_ip: bytes, config: TrackerConfig, account: Ledger | None = None
) -> AnnounceRequest:
    """Validate an announce; C{socket_ip} is the packed address the request came from, and
    C{account} the ledger of its passkey in private mode."""
    one = _single_values(params)
    get = one.get
    info_hash = _twenty_bytes(get(b"info_hash"), "info_hash")
    peer_id = _twenty_bytes(get(b"peer_id"), "peer_id")
    port = _integer(get(b"port"), "port", default=-1, maximum=65535)
    if port < 1:
        raise TrackerError("'port' must be between 1 and 65535")
    numwant = _integer(get(b"numwant"), "numwant", default=config.numwant_default)
    key = get(b"key")
    # Positional: building a named tuple from keywords costs more than the rest of this.
    return AnnounceRequest(
        info_hash,
        peer_id,
        _peer_ip(get(b"ip"), socket_ip, config),
        port,
        _integer(get(b"uploaded"), "uploaded", 0),
        _integer(get(b"downloaded"), "downloaded", 0),
        _integer(get(b"left"), "left", 0),
        # Unknown events are treated as a regular announce, as the field does.
        _EVENTS.get(get(b"event") or b"", NONE),
        min(numwant, config.numwant_max),
        _flag(get(b"compact"), "compact", default=True),
        _flag(get(b"no_peer_id"), "no_peer_id", default=False),
        parse_key(key) if key else 0,
        False,
        account,
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
