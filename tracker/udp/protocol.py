"""
The UDP tracker protocol (BEP 15, with BEP 41's URL data): connect, announce, scrape and error,
served from the same store as HTTP, so that a swarm is one swarm whichever protocol its peers
use. A plain L{DatagramProtocol}: C{reactor.listenUDP(6969, UDPTracker(store, config))}.

Nothing answers a datagram with more than it carried, except an announce with a valid
connection ID, whose sender has proved it receives at its address: a forged source address
gets no amplified traffic.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import MessageLengthError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from tracker.core.addresses import pack_ip
from tracker.core.announce import COMPLETED, NONE, PAUSED, STARTED, STOPPED, AnnounceRequest
from tracker.core.config import TrackerConfig
from tracker.core.errors import TrackerError
from tracker.core.groups import GroupCountingStore
from tracker.core.interfaces import (
    NO_COUNTS,
    AnnounceResult,
    IPeerStore,
    StoreStopped,
    StoreUnavailable,
    SwarmCounts,
)
from tracker.core.ledger import Ledger
from tracker.core.meters import TIMED
from tracker.ops.stats import TrackerStats
from tracker.udp.connection_ids import ConnectionIds
from tracker.udp.port import BatchingPort

log = Logger()

#: The magic number a connect request carries where a connection ID would be.
PROTOCOL_ID = struct.pack("!Q", 0x41727101980)
CONNECT = b"\x00\x00\x00\x00"
ANNOUNCE = b"\x00\x00\x00\x01"
SCRAPE = b"\x00\x00\x00\x02"
ERROR = b"\x00\x00\x00\x03"

#: Connection ID, action and transaction ID: every request starts with these 16 bytes.
_HEADER = 16
#: After the header: info hash, peer id, downloaded, left, uploaded, event, IP, key, num_want,
#: port; 98 bytes in all, then BEP 41 options.
_ANNOUNCE = struct.Struct("!20s20sqqqi4sIiH")
_ANNOUNCE_SIZE = _HEADER + _ANNOUNCE.size
#: Action, transaction ID, interval, leechers, seeders; then the peers.
_ANNOUNCE_REPLY = struct.Struct("!4s4siii")
#: Per info hash: seeders, completed, leechers.
_SCRAPE_COUNTS = struct.Struct("!iii")

_EVENTS = {0: NONE, 1: COMPLETED, 2: STARTED, 3: STOPPED, 4: PAUSED}
_ANY_ADDRESS = b"\x00\x00\x00\x00"
#: A peer list that fits an IPv6 packet of the minimum MTU (1280 bytes, less 48 of headers), so
#: it is never fragmented: 18 bytes a peer after the 20 of the reply's head.
_MAX_IPV6_PEERS = (1280 - 48 - _ANNOUNCE_REPLY.size) // 18
#: BEP 41: where the announce URL's path arrives. The daemon serves announces at /announce; a
#: URL with no path sends none.
_ANNOUNCE_PATHS = (b"", b"/", b"/announce")
_new_tuple = tuple.__new__
#: The error reply while the store cannot be reached (cut, as every error reply is, to the size
#: of the request: an announce's 98 bytes hold it whole).
UNAVAILABLE = "the tracker's storage is unavailable; try again later"
#: Datagrams refused are logged as a summary at most this often.
REPORT_EVERY = 60


class UDPTracker(DatagramProtocol):
    #: Twisted would log every start and stop of the protocol.
    noisy = False

    def __init__(
        self,
        store: IPeerStore,
        config: TrackerConfig | None = None,
        clock: IReactorTime | None = None,
        rng: random.Random | None = None,
        connection_ids: ConnectionIds | None = None,
        stats: TrackerStats | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as default_reactor

            clock = default_reactor
        assert clock is not None
        self._config = config or TrackerConfig()
        self._clock = clock
        self._random = (rng or random.Random()).random
        # Listeners of one tracker share theirs: libtorrent keeps one ID per tracker IP address,
        # whatever the port it was issued on.
        self._ids = connection_ids or ConnectionIds(clock)
        self._refusals: Counter[str] = Counter()
        #: Shared with the HTTP side when given (as the daemon does), so both count together.
        self.stats = stats or TrackerStats(store, clock)
        # WebSocket peers are counted in what UDP reports, as in what HTTP does.
        self._store = (
            GroupCountingStore(store, self.stats.groups) if self._config.websocket else store
        )
        self._announces = self.stats.udp_announce
        self._scrapes = self.stats.udp_scrape
        self._meters = {ANNOUNCE: self._announces, SCRAPE: self._scrapes}
        self._report_at = 0.0
        self._sendto: Callable[[bytes, Any], object] | None = None

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if len(data) < _HEADER:
            # Too short to carry a transaction ID: nothing to answer with.
            self._refused("shorter than 16 bytes")
            return
        action = data[8:12]
        transaction = data[12:16]
        host = addr[0]
        now = self._clock.seconds()
        try:
            if action == CONNECT:
                self._connect(data, transaction, host, addr, now)
            elif not self._ids.valid(data[:8], host, now):
                self._refuse(data, addr, "connection ID expired or unknown; connect again")
            elif action == ANNOUNCE:
                self._announce(data, transaction, addr, int(now))
            elif action == SCRAPE:
                self._scrape(data, transaction, addr)
            else:
                self._refuse(data, addr, "unknown action")
        except TrackerError as e:
            self._refuse(data, addr, e.reason)
        except StoreStopped:
            self._refuse(data, addr, "the tracker is restarting; try again shortly", True)
        except StoreUnavailable:
            self._refuse(data, addr, UNAVAILABLE, True)
        except Exception:
            log.failure("unexpected error handling a UDP datagram from {host}", host=addr[0])
            self._refuse(data, addr, "internal tracker error; try again later", True)

    def _connect(self, data: bytes, transaction: bytes, host: str, addr: Any, now: float) -> None:
        if data[:8] != PROTOCOL_ID:
            # Not BitTorrent: an error reply would be noise toward whoever this is.
            self._refused("connect without the protocol ID")
            return
        self._send(CONNECT + transaction + self._ids.issue(host, now), addr)

    def _announce(self, data: bytes, transaction: bytes, addr: Any, now: int) -> None:
        # The clock is read only for the answers that are timed (see TIMED): what it costs
        # shows in the cost of a UDP announce.
        started = perf_counter() if self._announces.ok & TIMED == TIMED else 0.0
        request = self._parse_announce(data, addr[0])
        self._answer_announce(request, data, transaction, addr, now, started)

    def _answer_announce(
        self,
        request: AnnounceRequest,
        data: bytes,
        transaction: bytes,
        addr: Any,
        now: int,
        started: float,
    ) -> None:
        """Record an announce already parsed and answer it (private mode parses its own)."""
        v6 = len(request.ip) == 16
        result = self._store.announce(request, now)
        # Asked as "is it the answer" rather than "is it a Deferred", an ABC and so a slow check.
        if isinstance(result, tuple):
            self._send_announce(result, transaction, v6, addr, started)
        else:
            sent = result.addCallback(self._send_announce, transaction, v6, addr, started)
            self._answer_later(sent, data, addr)

    def _parse_announce(
        self, data: bytes, host: str, account: Ledger | None = None
    ) -> AnnounceRequest:
        size = len(data)
        if size != _ANNOUNCE_SIZE:
            if size < _ANNOUNCE_SIZE:
                raise short_announce(size)
            path = url_data(data, _ANNOUNCE_SIZE).partition(b"?")[0]
            if path not in _ANNOUNCE_PATHS:
                raise TrackerError("not a tracker endpoint: announce to /announce")
        info_hash, peer_id, downloaded, left, uploaded, event, claimed_ip, key, numwant, port = (
            _ANNOUNCE.unpack_from(data, _HEADER)
        )
        if not port:
            raise TrackerError("'port' must be between 1 and 65535")
        config = self._config
        ip = pack_ip(host)
        if claimed_ip != _ANY_ADDRESS and config.allow_ip_param and len(ip) == 4:
            ip = claimed_ip
        if numwant < 0:
            # BEP 15's -1: the tracker's default.
            numwant = config.numwant_default
        elif numwant > config.numwant_max:
            numwant = config.numwant_max
        if len(ip) == 16 and numwant > _MAX_IPV6_PEERS:
            numwant = _MAX_IPV6_PEERS
        # A tuple built directly: a named tuple's generated __new__ costs a sixth of a parse.
        return _new_tuple(
            AnnounceRequest,
            (
                info_hash,
                peer_id,
                ip,
                port,
                uploaded if uploaded > 0 else 0,
                downloaded if downloaded > 0 else 0,
                # Negative where a client does not know the size yet (a magnet link): a leecher.
                left if left >= 0 else 1,
                _EVENTS.get(event, NONE),
                numwant,
                True,
                True,
                key,
                # The reply carries the client's own family only: numwant of those.
                True,
                account,
            ),
        )

    def _send_announce(
        self, result: AnnounceResult, transaction: bytes, v6: bool, addr: Any, started: float
    ) -> None:
        counts = result.counts
        head = _ANNOUNCE_REPLY.pack(
            ANNOUNCE,
            transaction,
            self._config.jittered_interval(self._random()),
            counts.incomplete,
            counts.complete,
        )
        # The reply's family is the request's: 6-byte peers to IPv4 clients, 18-byte to IPv6.
        self._send(head + (result.peers6 if v6 else result.peers4), addr)
        meter = self._announces
        meter.ok += 1
        if started:
            meter.latency.observe(perf_counter() - started)

    def _scrape(self, data: bytes, transaction: bytes, addr: Any) -> None:
        started = perf_counter() if self._scrapes.ok & TIMED == TIMED else 0.0
        hashes = len(data) - _HEADER
        if hashes < 20 or hashes % 20:
            raise TrackerError("a scrape carries one or more 20-byte info hashes")
        most = self._config.max_scrape_hashes
        if hashes // 20 > most:
            raise TrackerError(f"at most {most} info hashes per scrape")
        info_hashes = [data[k : k + 20] for k in range(_HEADER, len(data), 20)]
        counts = self._store.scrape(info_hashes)
        if isinstance(counts, dict):
            self._send_scrape(counts, info_hashes, transaction, addr, started)
        else:
            sent = counts.addCallback(self._send_scrape, info_hashes, transaction, addr, started)
            self._answer_later(sent, data, addr)

    def _send_scrape(
        self,
        counts: dict[bytes, SwarmCounts],
        info_hashes: Sequence[bytes],
        transaction: bytes,
        addr: Any,
        started: float,
    ) -> None:
        # In the order asked, one entry per hash asked, repeats included: that is how the
        # client matches them up.
        pack = _SCRAPE_COUNTS.pack
        found = (counts.get(info_hash, NO_COUNTS) for info_hash in info_hashes)
        body = [pack(c.complete, c.downloaded, c.incomplete) for c in found]
        self._send(SCRAPE + transaction + b"".join(body), addr)
        meter = self._scrapes
        meter.ok += 1
        if started:
            meter.latency.observe(perf_counter() - started)

    def _answer_later(self, answer: Deferred[None], data: bytes, addr: Any) -> None:
        def failed(failure: Failure) -> None:
            refusal = failure.value
            if isinstance(refusal, TrackerError):
                # Refused once the store could decide: a key that does not match, or an access
                # list that was still loading.
                self._refuse(data, addr, refusal.reason)
                return
            if failure.check(StoreStopped):
                self._refuse(data, addr, "the tracker is restarting; try again shortly", True)
                return
            if failure.check(StoreUnavailable):
                # The store logs the outage once.
                self._refuse(data, addr, UNAVAILABLE, True)
                return
            log.failure("UDP announce or scrape failed in the store", failure)
            self._refuse(data, addr, "internal tracker error; try again later", True)

        answer.addErrback(failed)

    def _refuse(self, data: bytes, addr: Any, reason: str, failed: bool = False) -> None:
        """An error reply, cut to the size of the datagram it answers; C{failed} when the
        tracker failed, not the request."""
        meter = self._meters.get(data[8:12])
        if meter is not None:
            if failed:
                meter.errors += 1
            else:
                meter.refused += 1
        self._refused(reason)
        message = reason.encode("utf-8")[: len(data) - 8]
        self._send(ERROR + data[12:16] + message, addr)

    def startProtocol(self) -> None:
        # Straight to the socket where there is one: Twisted's write() checks the address
        # three ways for every datagram, a fifth of the time an announce takes. The address
        # here is always the one recvfrom() gave, so there is nothing to check.
        transport = self.transport
        assert transport is not None
        handle = getattr(transport, "getHandle", None)
        if isinstance(transport, BatchingPort) or handle is None:
            # A batching port's write() checks nothing either, and sends with the batch.
            self._sendto = transport.write
        else:
            self._sendto = handle().sendto

    def stopProtocol(self) -> None:
        self._sendto = None

    def _send(self, datagram: bytes, addr: Any) -> None:
        sendto = self._sendto
        if sendto is None:
            # An answer from the store that arrived after the port closed.
            return
        try:
            sendto(datagram, addr)
        except (OSError, MessageLengthError):
            # A full send buffer under load: the client retries, as BEP 15 has it do.
            self._refused("reply not sent: the socket refused it")

    def repliesDropped(self, count: int, reason: str) -> None:
        """Called by a L{BatchingPort} for replies its socket refused."""
        for _ in range(count):
            self._refused(f"reply not sent: {reason}")

    def _refused(self, reason: str) -> None:
        """Count a refused datagram; log the counts at most every L{REPORT_EVERY} seconds."""
        self._refusals[reason] += 1
        self.stats.refusals.add("udp", reason)
        now = self._clock.seconds()
        if now >= self._report_at:
            self._report_at = now + REPORT_EVERY
            self._report()

    def _report(self) -> None:
        refusals, self._refusals = self._refusals, Counter()
        if refusals:
            log.info(
                "UDP: refused {total} datagrams: {reasons}",
                total=sum(refusals.values()),
                reasons="; ".join(f"{n} {reason}" for reason, n in refusals.most_common()),
            )

    def doStop(self) -> None:
        self._report()
        super().doStop()


def short_announce(size: int) -> TrackerError:
    """The refusal of an announce of C{size} bytes, too short to hold its fixed fields."""
    return TrackerError(f"an announce is {_ANNOUNCE_SIZE} bytes, not {size}")


def url_data(data: bytes, offset: int) -> bytes:
    """
    BEP 41: the URL data options from C{offset} on, joined (the announce URL's path and query).
    Options of other types are skipped by their length; a truncated option is an error.
    """
    parts = []
    end = len(data)
    while offset < end:
        kind = data[offset]
        if kind == 0:  # EndOfOptions
            break
        if kind == 1:  # NOP
            offset += 1
            continue
        if offset + 1 >= end:
            raise TrackerError("truncated BEP 41 option")
        start = offset + 2
        offset = start + data[offset + 1]
        if offset > end:
            raise TrackerError("truncated BEP 41 option")
        if kind == 2:  # URLData
            parts.append(data[start:offset])
    return b"".join(parts)
