"""The operator's settings, shared by the resource, the store and the service."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Union

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclass(frozen=True)
class TrackerConfig:
    """
    Defaults follow what the field uses (DESIGN.md section 2): a 30 minute interval, 15 minute
    min interval, and peers forgotten after 1.5 intervals of silence.
    """

    interval: int = 1800
    min_interval: int = 900
    #: Seconds of silence after which a peer is dropped from its swarm.
    peer_timeout: int = 2700
    #: How often expiry runs, in seconds.
    expire_every: int = 60
    numwant_default: int = 50
    numwant_max: int = 200
    max_scrape_hashes: int = 64
    #: Proxies whose X-Forwarded-For header names the real client.
    trusted_proxies: tuple[IPNetwork, ...] = field(default_factory=tuple)
    #: Honour the client-supplied C{ip=} parameter (spoofable, so off by default).
    allow_ip_param: bool = False
    #: Serve the tracker's figures at stats, stats.json and metrics beside announce.
    stats: bool = True
    #: Answer a scrape without info_hash with every torrent (BEP 48's full scrape).
    full_scrape: bool = False
    #: Serve WebSocket peers (browsers: WebTorrent) on the announce URL (L{tracker.ws}).
    websocket: bool = True

    def __post_init__(self) -> None:
        if self.interval < 1 or self.min_interval < 1:
            raise ValueError("interval and min interval must be at least 1 second")
        if self.min_interval > self.interval:
            raise ValueError("min interval must not exceed interval")
        if self.peer_timeout < self.interval:
            raise ValueError("peer timeout must be at least the interval")
        if self.expire_every < 1:
            raise ValueError("expiry period must be at least 1 second")
        if not 0 <= self.numwant_default <= self.numwant_max:
            raise ValueError("numwant default must be between 0 and the numwant cap")
        if self.max_scrape_hashes < 1:
            raise ValueError("scrape hash cap must be at least 1")

    def jittered_interval(self, fraction: float) -> int:
        """
        The interval given to one announce, C{fraction} (in [0, 1)) of the way across a band of
        +-5 %: a swarm that all arrived at once, after a restart say, spreads out again.
        """
        spread = self.interval // 20
        return max(self.min_interval, self.interval - spread + int(fraction * (2 * spread + 1)))

    def is_trusted_proxy(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.trusted_proxies)
