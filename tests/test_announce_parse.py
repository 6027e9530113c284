"""Announce and scrape validation, and working out which address a client announces from."""

from __future__ import annotations

import ipaddress
import zlib

import pytest

from tracker.core.addresses import client_ip, pack_ip, pack_peer, unpack_ip, unpack_peer
from tracker.core.announce import (
    COMPLETED,
    NONE,
    PAUSED,
    STARTED,
    STOPPED,
    AnnounceRequest,
    parse_announce,
    parse_key,
    parse_scrape,
)
from tracker.core.config import TrackerConfig
from tracker.core.errors import TrackerError
from tracker.core.query import Params, parse_query

INFO_HASH = bytes(range(20))
PEER_ID = b"-XX0001-abcdefghijkl"
SOCKET_IP = b"\xc0\x00\x02\x07"  # 192.0.2.7
DEFAULT = TrackerConfig()
ALLOW_IP = TrackerConfig(allow_ip_param=True)

_BASE: Params = {
    b"info_hash": [INFO_HASH],
    b"peer_id": [PEER_ID],
    b"port": [b"6881"],
    b"uploaded": [b"0"],
    b"downloaded": [b"0"],
    b"left": [b"1000"],
}


def params(*, drop: tuple[bytes, ...] = (), **values: bytes | list[bytes]) -> Params:
    """A valid announce's parameters, with some replaced (a list means repeated) or dropped."""
    result = {name: list(value) for name, value in _BASE.items() if name not in drop}
    for name, value in values.items():
        result[name.encode()] = value if isinstance(value, list) else [value]
    return result


def announce(config: TrackerConfig = DEFAULT, **values: bytes | list[bytes]) -> AnnounceRequest:
    return parse_announce(params(**values), SOCKET_IP, config)


def refused(param_set: Params, config: TrackerConfig = DEFAULT) -> TrackerError:
    with pytest.raises(TrackerError) as caught:
        parse_announce(param_set, SOCKET_IP, config)
    assert caught.value.reason
    return caught.value


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


# --- parse_announce: the happy path ---------------------------------------------------------


def test_valid_announce_fields() -> None:
    """A complete announce yields exactly the values the client sent."""
    request = parse_announce(
        params(uploaded=b"123", downloaded=b"456", left=b"789", event=b"started", numwant=b"30"),
        SOCKET_IP,
        DEFAULT,
    )
    assert request == AnnounceRequest(
        info_hash=INFO_HASH,
        peer_id=PEER_ID,
        ip=SOCKET_IP,
        port=6881,
        uploaded=123,
        downloaded=456,
        left=789,
        event=STARTED,
        numwant=30,
        compact=True,
        no_peer_id=False,
    )


def test_announce_from_raw_query() -> None:
    """A raw query with binary escapes and literal + parses into the announce it encodes."""
    query = (
        b"info_hash=%00%01%02%03%04%05%06%07%08%09%0a%0B%0c%0D%0e%0F%10%11%12%13"
        b"&peer_id=-XX0001-ab%2Bd+fghijkl&port=51413&left=0&event=completed&compact=1"
    )
    request = parse_announce(parse_query(query), SOCKET_IP, DEFAULT)
    assert request.info_hash == INFO_HASH
    assert request.peer_id == b"-XX0001-ab+d+fghijkl"
    assert request.port == 51413
    assert request.left == 0
    assert request.event == COMPLETED


def test_unknown_parameters_ignored() -> None:
    """Extra parameters real clients send (key, corrupt, supportcrypto...) do not matter."""
    request = announce(key=b"565E1D1F", corrupt=b"0", supportcrypto=b"1", redundant=b"0")
    assert request.port == 6881


# --- required parameters ----------------------------------------------------------------------


@pytest.mark.parametrize("name", [b"info_hash", b"peer_id", b"port"])
def test_missing_required_parameter(name: bytes) -> None:
    """An announce without info_hash, peer_id or port is refused, naming the parameter."""
    error = refused(params(drop=(name,)))
    assert name.decode() in error.reason


@pytest.mark.parametrize("name", ["info_hash", "peer_id"])
@pytest.mark.parametrize("length", [0, 1, 19, 21, 40])
def test_wrong_length_ids_refused(name: str, length: int) -> None:
    """info_hash and peer_id must be exactly 20 bytes after decoding."""
    error = refused(params(**{name: b"x" * length}))
    assert name in error.reason


@pytest.mark.parametrize("name", ["info_hash", "peer_id"])
def test_twenty_binary_bytes_accepted(name: str) -> None:
    """Any 20 bytes, including NUL and high bytes, are a valid info_hash or peer_id."""
    value = b"\x00\xff" * 10
    assert getattr(announce(**{name: value}), name) == value


@pytest.mark.parametrize(
    "name", ["info_hash", "peer_id", "port", "left", "event", "numwant", "compact", "ip"]
)
def test_duplicated_parameter_refused(name: str) -> None:
    """A parameter that may appear once is refused when repeated, even with equal values."""
    value = {"info_hash": INFO_HASH, "peer_id": PEER_ID, "ip": b"198.51.100.1"}.get(name, b"1")
    error = refused(params(**{name: [value, value]}))
    assert name in error.reason


def test_duplicated_info_hash_with_different_values_refused() -> None:
    """An announce naming two torrents at once is refused."""
    refused(params(info_hash=[INFO_HASH, bytes(20)]))


# --- port -------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [b"1", b"80", b"6881", b"65535"])
def test_valid_ports(port: bytes) -> None:
    """Ports 1 to 65535 are accepted."""
    assert announce(port=port).port == int(port)


@pytest.mark.parametrize(
    "port",
    [b"0", b"65536", b"99999999999999999999999", b"-1", b"", b"http", b"80a", b" 80", b"8.0"],
)
def test_invalid_ports_refused(port: bytes) -> None:
    """Port 0, ports above 65535, empty and non-numeric ports are refused."""
    error = refused(params(port=port))
    assert "port" in error.reason


# --- byte counters ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["uploaded", "downloaded", "left"])
@pytest.mark.parametrize(
    "value", [b"-1", b"-0", b"abc", b"1.5", b"1e3", b"+5", b" 5", b"0x10", b"\xd9\xa1"]
)
def test_invalid_counters_refused(name: str, value: bytes) -> None:
    """uploaded, downloaded and left must be non-negative whole numbers in ASCII digits."""
    error = refused(params(**{name: value}))
    assert name in error.reason


@pytest.mark.parametrize("name", ["uploaded", "downloaded", "left"])
def test_counters_default_to_zero_when_absent(name: str) -> None:
    """A client that omits uploaded, downloaded or left is taken to have sent 0."""
    request = parse_announce(params(drop=(name.encode(),)), SOCKET_IP, DEFAULT)
    assert getattr(request, name) == 0


@pytest.mark.parametrize("name", ["uploaded", "downloaded", "left"])
def test_counters_default_to_zero_when_empty(name: str) -> None:
    """An empty uploaded, downloaded or left counts as 0."""
    assert getattr(announce(**{name: b""}), name) == 0


@pytest.mark.parametrize("name", ["uploaded", "downloaded", "left"])
def test_counters_accept_large_values(name: str) -> None:
    """Counters up to the signed 64-bit maximum are accepted; one more is refused."""
    assert getattr(announce(**{name: b"9223372036854775807"}), name) == 2**63 - 1
    refused(params(**{name: b"9223372036854775808"}))


def test_seeder_and_completion_flags() -> None:
    """left=0 marks a seeder; only a completed event with left=0 counts as a completion."""
    assert announce(left=b"0").is_seeder
    assert not announce(left=b"1").is_seeder
    assert announce(left=b"0", event=b"completed").completes
    assert not announce(left=b"5", event=b"completed").completes
    assert not announce(left=b"0", event=b"started").completes


# --- numwant ----------------------------------------------------------------------------------


def test_numwant_default() -> None:
    """Without numwant the client gets the configured default of 50 peers."""
    assert DEFAULT.numwant_default == 50
    assert announce().numwant == 50
    assert announce(numwant=b"").numwant == 50


def test_numwant_default_follows_config() -> None:
    """The operator's numwant default applies when the client does not ask."""
    assert announce(TrackerConfig(numwant_default=7)).numwant == 7


def test_numwant_capped() -> None:
    """A client asking for more than the cap gets the cap."""
    assert announce(numwant=b"1000").numwant == DEFAULT.numwant_max
    assert announce(numwant=b"9223372036854775807").numwant == DEFAULT.numwant_max
    assert announce(TrackerConfig(numwant_max=60), numwant=b"61").numwant == 60


def test_numwant_within_cap_kept() -> None:
    """A numwant at or below the cap is kept as asked."""
    assert announce(numwant=b"200").numwant == 200
    assert announce(numwant=b"80").numwant == 80


def test_numwant_zero_kept() -> None:
    """numwant=0 (sent with stopped events) asks for no peers and is not replaced by a default."""
    assert announce(numwant=b"0").numwant == 0


@pytest.mark.parametrize("value", [b"-1", b"lots", b"1.5"])
def test_invalid_numwant_refused(value: bytes) -> None:
    """A negative or non-numeric numwant is refused."""
    error = refused(params(numwant=value))
    assert "numwant" in error.reason


# --- compact and no_peer_id -------------------------------------------------------------------


def test_compact_defaults_to_true() -> None:
    """Compact peer lists are used unless the client opts out."""
    assert announce().compact is True
    assert announce(compact=b"").compact is True


def test_compact_flags() -> None:
    """compact=1 asks for compact peers, compact=0 for the dictionary form."""
    assert announce(compact=b"1").compact is True
    assert announce(compact=b"0").compact is False


def test_no_peer_id_flags() -> None:
    """no_peer_id defaults to false and no_peer_id=1 turns it on."""
    assert announce().no_peer_id is False
    assert announce(no_peer_id=b"0").no_peer_id is False
    assert announce(no_peer_id=b"1").no_peer_id is True


@pytest.mark.parametrize("name", ["compact", "no_peer_id"])
@pytest.mark.parametrize("value", [b"2", b"true", b"yes", b"-1", b"01", b" 1"])
def test_invalid_flags_refused(name: str, value: bytes) -> None:
    """compact and no_peer_id accept only 0 or 1."""
    error = refused(params(**{name: value}))
    assert name in error.reason


# --- event ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "event"),
    [
        (b"started", STARTED),
        (b"completed", COMPLETED),
        (b"stopped", STOPPED),
        (b"paused", PAUSED),
        (b"", NONE),
        (b"update", NONE),
        (b"Started", NONE),
        (b"\xff", NONE),
    ],
)
def test_events(raw: bytes, event: str) -> None:
    """Known events are recognised; empty and unknown events are a regular announce."""
    assert announce(event=raw).event == event


def test_event_names() -> None:
    """Events are reported by their BEP 3 / BEP 21 names; no event is the empty string."""
    assert (STARTED, COMPLETED, STOPPED, PAUSED, NONE) == (
        "started",
        "completed",
        "stopped",
        "paused",
        "",
    )


def test_missing_event_is_regular_announce() -> None:
    """An announce with no event parameter is a regular announce."""
    assert announce().event == NONE


# --- ip= --------------------------------------------------------------------------------------


def test_ip_param_ignored_by_default() -> None:
    """Without the operator's opt-in, ip= is ignored and the socket address is used."""
    assert announce(ip=b"198.51.100.1").ip == SOCKET_IP


def test_invalid_ip_param_ignored_by_default() -> None:
    """Without the opt-in even a nonsense ip= is harmless."""
    assert announce(ip=b"not an address").ip == SOCKET_IP


def test_socket_address_used_as_given() -> None:
    """The announcing peer's address is the packed socket address, IPv4 or IPv6."""
    v6 = pack_ip("2001:db8::7")
    assert parse_announce(params(), v6, DEFAULT).ip == v6


@pytest.mark.parametrize(
    ("text", "packed"),
    [
        (b"198.51.100.1", b"\xc6\x33\x64\x01"),
        (b"2001:db8::1", b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01"),
        (b"::ffff:198.51.100.1", b"\xc6\x33\x64\x01"),
        (b"::FFFF:198.51.100.1", b"\xc6\x33\x64\x01"),
        (b"::ffff:c633:6401", b"\xc6\x33\x64\x01"),
    ],
)
def test_ip_param_honoured_when_allowed(text: bytes, packed: bytes) -> None:
    """With allow_ip_param, ip= sets the peer address; IPv4-mapped IPv6 becomes plain IPv4."""
    assert announce(ALLOW_IP, ip=text).ip == packed


def test_empty_ip_param_uses_socket_when_allowed() -> None:
    """An empty ip= falls back to the socket address."""
    assert announce(ALLOW_IP, ip=b"").ip == SOCKET_IP


@pytest.mark.parametrize(
    "text",
    [
        b"tracker.example.com",
        b"localhost",
        b"999.1.1.1",
        b"1.2.3",
        b"1.2.3.4:6881",
        b"[2001:db8::1]",
        b"2001:db8::1::2",
        b"\xc3\xa9",
        b"1.2.3.4\x00",
        b"198.51.100.1\x00junk",
    ],
)
def test_invalid_ip_param_refused_when_allowed(text: bytes) -> None:
    """With allow_ip_param, an ip= that is not an IP literal is refused, never resolved."""
    error = refused(params(ip=text), ALLOW_IP)
    assert "ip" in error.reason


# --- the key ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        (b"565E1D1F", 0x565E1D1F),  # libtorrent, qBittorrent: upper-case hex
        (b"10a1814a", 0x10A1814A),  # Transmission: lower-case hex
        (b"FFFFFFFF", 0xFFFFFFFF),
        (b"00000001", 1),
        (b"1", 1),
    ],
)
def test_hex_key_is_the_number_udp_would_carry(raw: bytes, number: int) -> None:
    """A key of up to 8 hex digits is read as the 32-bit number a UDP announce carries, so
    a client's HTTP and UDP announces carry the same key."""
    assert announce(key=raw).key == number


@pytest.mark.parametrize(
    "raw",
    [b"(\x91\x9d\xbe~\x18W`", b"not-hex!", b"-1", b"123456789", b"x" * 300, b"\xff"],
)
def test_other_keys_are_hashed_to_32_bits(raw: bytes) -> None:
    """Anything but hex (aria2 sends 8 raw bytes), or longer than 8 characters, becomes a
    stable 32-bit hash of its bytes."""
    key = announce(key=raw).key
    assert key == zlib.crc32(raw) == parse_key(raw)
    assert 0 <= key <= 0xFFFFFFFF


def test_missing_or_empty_key_is_none() -> None:
    """Without a key, or with an empty one, the announce carries key 0: none."""
    assert announce().key == 0
    assert announce(key=b"").key == 0


# --- parse_scrape -----------------------------------------------------------------------------

HASH_A = b"A" * 20
HASH_B = b"\x00" * 19 + b"\xff"
HASH_C = bytes(range(100, 120))


def test_scrape_single_hash() -> None:
    """A scrape for one torrent yields that one hash."""
    assert parse_scrape({b"info_hash": [HASH_A]}, DEFAULT).info_hashes == (HASH_A,)


def test_scrape_multiple_hashes_in_order() -> None:
    """BEP 48 multi-scrape: repeated info_hash yields every hash in the order given."""
    request = parse_scrape({b"info_hash": [HASH_C, HASH_A, HASH_B]}, DEFAULT)
    assert request.info_hashes == (HASH_C, HASH_A, HASH_B)


def test_scrape_duplicates_removed_keeping_first_order() -> None:
    """A hash asked for twice is answered once, at its first position."""
    request = parse_scrape({b"info_hash": [HASH_B, HASH_A, HASH_B, HASH_C, HASH_A]}, DEFAULT)
    assert request.info_hashes == (HASH_B, HASH_A, HASH_C)


def test_scrape_from_raw_query() -> None:
    """A raw multi-scrape query with binary escapes parses into the raw hashes."""
    query = b"info_hash=AAAAAAAAAAAAAAAAAAAA&info_hash=" + b"%00" * 19 + b"%fF"
    assert parse_scrape(parse_query(query), DEFAULT).info_hashes == (HASH_A, HASH_B)


def test_scrape_cap() -> None:
    """Up to max_scrape_hashes hashes are served; one more is refused."""
    config = TrackerConfig(max_scrape_hashes=3)
    hashes = [bytes([i]) * 20 for i in range(4)]
    assert parse_scrape({b"info_hash": hashes[:3]}, config).info_hashes == tuple(hashes[:3])
    with pytest.raises(TrackerError):
        parse_scrape({b"info_hash": hashes}, config)


def test_scrape_default_cap() -> None:
    """The default configuration serves 64 hashes per scrape and refuses 65."""
    hashes = [i.to_bytes(20, "big") for i in range(65)]
    assert len(parse_scrape({b"info_hash": hashes[:64]}, DEFAULT).info_hashes) == 64
    with pytest.raises(TrackerError):
        parse_scrape({b"info_hash": hashes}, DEFAULT)


@pytest.mark.parametrize("length", [0, 19, 21])
def test_scrape_wrong_length_refused(length: int) -> None:
    """A scrape with any hash that is not 20 bytes is refused, even beside valid ones."""
    with pytest.raises(TrackerError) as caught:
        parse_scrape({b"info_hash": [HASH_A, b"x" * length]}, DEFAULT)
    assert "info_hash" in caught.value.reason


def test_scrape_without_hash_refused() -> None:
    """A full scrape (no info_hash) is not served."""
    with pytest.raises(TrackerError):
        parse_scrape({}, DEFAULT)
    with pytest.raises(TrackerError):
        parse_scrape({b"peer_id": [PEER_ID]}, DEFAULT)


# --- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "packed"),
    [
        ("127.0.0.1", b"\x7f\x00\x00\x01"),
        ("255.255.255.255", b"\xff\xff\xff\xff"),
        ("::1", b"\x00" * 15 + b"\x01"),
        ("2001:db8::1", b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01"),
        ("::ffff:127.0.0.1", b"\x7f\x00\x00\x01"),
        ("::ffff:7f00:1", b"\x7f\x00\x00\x01"),
        ("fe80::1%eth0", b"\xfe\x80" + b"\x00" * 13 + b"\x01"),
    ],
)
def test_pack_ip(text: str, packed: bytes) -> None:
    """IP literals pack to 4 or 16 bytes; IPv4-mapped IPv6 packs as IPv4; zones are dropped."""
    assert pack_ip(text) == packed


@pytest.mark.parametrize(
    "text", ["", "localhost", "1.2.3.256", "::g", "1.2.3.4/24", "1.2.3.4\x00junk", "::1\x00junk"]
)
def test_pack_ip_refuses_non_literals(text: str) -> None:
    """Anything that is not an IP literal is refused rather than resolved."""
    with pytest.raises((OSError, ValueError)):
        pack_ip(text)


@pytest.mark.parametrize(
    ("ip", "port", "packed"),
    [
        ("192.0.2.1", 6881, b"\xc0\x00\x02\x01\x1a\xe1"),
        ("10.0.0.1", 1, b"\x0a\x00\x00\x01\x00\x01"),
        ("10.0.0.1", 65535, b"\x0a\x00\x00\x01\xff\xff"),
        ("2001:db8::1", 51413, b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01\xc8\xd5"),
    ],
)
def test_pack_and_unpack_peer(ip: str, port: int, packed: bytes) -> None:
    """Compact peers are the packed address then the port big-endian: 6 or 18 bytes."""
    assert pack_peer(pack_ip(ip), port) == packed
    assert unpack_peer(packed) == (ip, port)
    assert unpack_ip(pack_ip(ip)) == ip


TRUSTING = TrackerConfig(trusted_proxies=(net("10.0.0.0/8"), net("2001:db8:ffff::/48")))


def test_client_ip_without_proxies_is_socket_address() -> None:
    """With no trusted proxies X-Forwarded-For is ignored and the socket address is used."""
    assert client_ip("203.0.113.7", [b"198.51.100.9"], DEFAULT) == pack_ip("203.0.113.7")
    assert client_ip("203.0.113.7", None, DEFAULT) == pack_ip("203.0.113.7")
    assert client_ip("2001:db8::7", None, DEFAULT) == pack_ip("2001:db8::7")


def test_client_ip_without_proxies_ignores_malformed_header() -> None:
    """A garbage X-Forwarded-For is harmless when no proxy is trusted."""
    assert client_ip("203.0.113.7", [b"garbage"], DEFAULT) == pack_ip("203.0.113.7")


def test_client_ip_ipv4_mapped_socket_host() -> None:
    """An IPv4 client seen on a dual-stack socket (::ffff:a.b.c.d) is reported as plain IPv4."""
    assert client_ip("::ffff:203.0.113.7", None, DEFAULT) == b"\xcb\x00\x71\x07"


def test_client_ip_trusted_proxy_uses_forwarded_address() -> None:
    """Behind a trusted proxy the client is the address the proxy forwarded."""
    assert client_ip("10.0.0.1", [b"198.51.100.9"], TRUSTING) == pack_ip("198.51.100.9")


def test_client_ip_right_most_untrusted_hop() -> None:
    """Addresses the client wrote to the left of the real hop cannot spoof its address."""
    forwarded = [b"6.6.6.6, 198.51.100.9, 10.0.0.2"]
    assert client_ip("10.0.0.1", forwarded, TRUSTING) == pack_ip("198.51.100.9")


def test_client_ip_ignores_forged_garbage_left_of_real_hop() -> None:
    """Junk a client prepends to X-Forwarded-For does not break its announce."""
    forwarded = [b"not-an-ip, 198.51.100.9"]
    assert client_ip("10.0.0.1", forwarded, TRUSTING) == pack_ip("198.51.100.9")


def test_client_ip_multiple_headers() -> None:
    """Several X-Forwarded-For headers are read as one list, in order."""
    forwarded = [b"6.6.6.6", b"198.51.100.9,10.0.0.3", b"10.0.0.2"]
    assert client_ip("10.0.0.1", forwarded, TRUSTING) == pack_ip("198.51.100.9")
    forwarded = [b"6.6.6.6, 198.51.100.9", b"10.0.0.3"]
    assert client_ip("10.0.0.1", forwarded, TRUSTING) == pack_ip("198.51.100.9")


def test_client_ip_whitespace_around_hops() -> None:
    """Spaces around comma-separated hops are ignored."""
    assert client_ip("10.0.0.1", [b"  198.51.100.9 ,10.0.0.2 "], TRUSTING) == pack_ip(
        "198.51.100.9"
    )


def test_client_ip_all_hops_trusted() -> None:
    """If every hop is a trusted proxy, the left-most one is the closest to the client."""
    assert client_ip("10.0.0.1", [b"10.0.0.5, 10.0.0.6"], TRUSTING) == pack_ip("10.0.0.5")


def test_client_ip_ipv6_hops() -> None:
    """IPv6 proxies and IPv6 clients work like IPv4 ones; mapped hops become IPv4."""
    assert client_ip("2001:db8:ffff::1", [b"2400:cb00::1"], TRUSTING) == pack_ip("2400:cb00::1")
    assert client_ip("10.0.0.1", [b"::ffff:198.51.100.9"], TRUSTING) == b"\xc6\x33\x64\x09"


def test_client_ip_ipv4_mapped_trusted_proxy() -> None:
    """A trusted IPv4 proxy seen on a dual-stack socket is still trusted."""
    assert client_ip("::ffff:10.0.0.1", [b"198.51.100.9"], TRUSTING) == pack_ip("198.51.100.9")


def test_client_ip_untrusted_socket_ignores_header() -> None:
    """A client that is not a trusted proxy cannot choose its address with X-Forwarded-For."""
    assert client_ip("203.0.113.7", [b"198.51.100.9"], TRUSTING) == pack_ip("203.0.113.7")
    assert client_ip("203.0.113.7", [b"garbage"], TRUSTING) == pack_ip("203.0.113.7")


def test_client_ip_trusted_proxy_without_header() -> None:
    """A trusted proxy that sends no X-Forwarded-For is itself the client."""
    assert client_ip("10.0.0.1", None, TRUSTING) == pack_ip("10.0.0.1")
    assert client_ip("10.0.0.1", [], TRUSTING) == pack_ip("10.0.0.1")


@pytest.mark.parametrize(
    "forwarded",
    [
        [b"garbage"],
        [b"198.51.100.9:4000"],
        [b"[2001:db8::1]"],
        [b"198.51.100.9, "],
        [b""],
        [b"198.51.100.9", b"unknown"],
        [b"\xff\xfe"],
    ],
)
def test_client_ip_malformed_forwarded_for_refused(forwarded: list[bytes]) -> None:
    """A malformed hop the tracker has to read behind a trusted proxy is refused."""
    with pytest.raises(TrackerError) as caught:
        client_ip("10.0.0.1", forwarded, TRUSTING)
    assert "X-Forwarded-For" in caught.value.reason


@pytest.mark.parametrize("host", ["/run/tracker.sock", "", "localhost"])
def test_client_ip_non_ip_socket_refused(host: str) -> None:
    """A connection without an IP address (a UNIX socket, say) is refused."""
    with pytest.raises(TrackerError):
        client_ip(host, None, DEFAULT)
