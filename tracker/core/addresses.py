"""Client addresses: packing, canonical IPv4, and the trusted-proxy rule."""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Sequence

from tracker.core.config import TrackerConfig
from tracker.core.errors import TrackerError

_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
_PORT = struct.Struct("!H")


def pack_ip(text: str) -> bytes:
    """
    The packed form of an IP literal: 4 bytes for IPv4, 16 for IPv6. IPv4-mapped IPv6 addresses
    (C{::ffff:a.b.c.d}, what a dual-stack socket reports for IPv4 clients) become plain IPv4 so
    one client is one peer whichever socket it came in on. Raises C{ValueError} or C{OSError} for
    anything that is not a literal address: this never resolves names.
    """
    if "\x00" in text:
        # PyPy's inet_pton stops at a NUL, and would accept "1.2.3.4\x00junk".
        raise ValueError("NUL in address")
    if ":" not in text:
        return socket.inet_pton(socket.AF_INET, text)
    # Scoped link-local addresses (fe80::1%eth0) carry a zone the peers cannot use.
    packed = socket.inet_pton(socket.AF_INET6, text.partition("%")[0])
    if packed.startswith(_V4_MAPPED_PREFIX):
        return packed[12:]
    return packed


def unpack_ip(packed: bytes) -> str:
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, packed)


def pack_peer(ip: bytes, port: int) -> bytes:
    """The BEP 23 / BEP 7 compact form: address then big-endian port (6 or 18 bytes)."""
    return ip + _PORT.pack(port)


def unpack_peer(peer: bytes) -> tuple[str, int]:
    return unpack_ip(peer[:-2]), _PORT.unpack(peer[-2:])[0]


def client_ip(
    socket_host: str, forwarded_for: Sequence[bytes] | None, config: TrackerConfig
) -> bytes:
    """
    The packed address of the client. Behind a trusted proxy this is the right-most address in
    C{X-Forwarded-For} that is not itself a trusted proxy: everything to its left was written by
    the client and can be forged.
    """
    try:
        packed = pack_ip(socket_host)
    except (OSError, ValueError):
        # Not an IP socket (a UNIX socket, say): there is no address to hand to peers.
        raise TrackerError("the tracker cannot see an IP address for this client") from None
    if not config.trusted_proxies or not forwarded_for:
        return packed
    if not config.is_trusted_proxy(ipaddress.ip_address(packed)):
        return packed
    hops = [hop.strip() for header in forwarded_for for hop in header.split(b",")]
    for hop in reversed(hops):
        try:
            hop_packed = pack_ip(hop.decode("ascii"))
        except (UnicodeDecodeError, OSError, ValueError):
            raise TrackerError("malformed X-Forwarded-For header") from None
        if not config.is_trusted_proxy(ipaddress.ip_address(hop_packed)):
            return hop_packed
        packed = hop_packed
    # Every hop is a trusted proxy: the left-most one is as close to the client as we can get.
    return packed
