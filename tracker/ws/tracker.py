"""
The WebSocket tracker browsers use (WebTorrent, P2P Media Loader, Trystero): the protocol of
webtorrent's bittorrent-tracker, with aquatic's safety rules, on the HTTP announce URL.

A browser cannot accept connections, so peers do not exchange addresses: each announce carries
WebRTC offers, which the tracker relays to other WebSocket peers of the torrent, one random
peer each; a peer that wants to connect sends an answer, which the tracker relays back to the
offer's maker. The rules:

  - An offer goes to one peer, chosen at random among the torrent's other WebSocket peers (a
    seeder's only to leechers); at most L{tracker.ws.messages.MAX_OFFERS} an announce.
  - An answer is relayed only to the peer whose offer it answers, only from the peer the offer
    was sent to, on the connection it was sent on, and only while the offer is outstanding
    (L{OFFER_TIMEOUT}); it changes nothing of the answering peer's state.
  - A connection announces one peer id per torrent; a peer id announced on one connection
    cannot be announced on another while the first lasts (so nobody can take over a peer, and
    its answers, by sending its id).
  - C{left: null} (a magnet link without its metadata yet) is a leecher.
  - Every failure carries C{action} and C{info_hash}.
  - A connection that sends nothing for L{idle_timeout} seconds is closed, and a peer that
    stops announcing for as long leaves its swarm; a closed connection's peers leave every
    swarm at once.

Torrents are the same as for HTTP and UDP: the access list and private mode apply, the
store counts completions and the counts every protocol reports include WebSocket peers
(L{tracker.core.groups}). They are never handed to HTTP or UDP clients, which could not reach
them, and offers go to WebSocket peers only.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from time import perf_counter
from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from tracker.core.announce import COMPLETED, STARTED, STOPPED
from tracker.core.bencode import bencode
from tracker.core.config import TrackerConfig
from tracker.core.errors import TrackerError
from tracker.core.interfaces import IPeerStore, StoreStopped, SwarmCounts
from tracker.core.ledger import Ledger, credit_report
from tracker.core.meters import TIMED, RequestMeter
from tracker.core.slices import cooperator
from tracker.ops.passkeys import Passkeys, wait_or_refuse
from tracker.ops.stats import TrackerStats
from tracker.ws.frames import (
    INVALID_DATA,
    MAX_FRAME,
    MAX_MESSAGE,
    NORMAL,
    PROTOCOL_ERROR,
    TOO_BIG,
    UNSUPPORTED_DATA,
    FrameReader,
    HandshakeError,
    handshake_response,
)
from tracker.ws.messages import (
    ANNOUNCE,
    SCRAPE,
    Announce,
    Answer,
    MessageError,
    Scrape,
    announce_reply,
    failure,
    offer_prefix,
    parse,
    relayed_answer,
    relayed_offer,
    scrape_reply,
)
from tracker.ws.protocol import WebSocketConnection, take_over
from tracker.ws.swarms import (
    Peer,
    WebSocketSwarms,
    forget_expired_offers,
    remember_offer,
    take_offer,
)

log = Logger()

T = TypeVar("T")

#: Seconds between a client's announces: bittorrent-tracker's and aquatic's. Offers are only
#: useful fresh, so this is far shorter than HTTP's interval.
INTERVAL = 120
#: Seconds an offer may be answered after it was relayed (aquatic's figure; WebTorrent itself
#: gives up on an offer after 50).
OFFER_TIMEOUT = 120
#: Seconds a closing connection has to let its close frame out before it is dropped.
CLOSE_GRACE = 10
#: Connections looked at per step of a sweep for idle ones.
SWEEP_STEP = 500

_CLOSE_REASONS = {
    TOO_BIG: "too big",
    PROTOCOL_ERROR: "protocol error",
    INVALID_DATA: "invalid data",
    UNSUPPORTED_DATA: "invalid data",
}
#: Twisted knows no phrase for 426.
_STATUS = {426: b"Upgrade Required"}
_NO_SUCH_OFFER = "could not find the offer this answer is for; it may have expired"
_INTERNAL = "internal tracker error; try again later"


class WebSocketTracker:
    """
    WebSocket connections upgraded from announce requests (L{upgrade}), the torrents' WebSocket
    peers (L{swarms}) and the rules above. C{store} is the one HTTP and UDP announce to (with
    its access list, if any, but without L{tracker.core.groups.GroupCountingStore}: the peers
    it adds are these); C{stats} is where its figures and its peers are counted; C{passkeys}
    makes it private.

    It owns no port and no thread. It schedules its own sweep for idle connections while it
    has connections, and none when it has none.
    """

    def __init__(
        self,
        store: IPeerStore,
        config: TrackerConfig,
        clock: IReactorTime,
        stats: TrackerStats,
        rng: random.Random | None = None,
        passkeys: Passkeys | None = None,
        interval: int = INTERVAL,
        idle_timeout: float | None = None,
        max_frame: int = MAX_FRAME,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._stats = stats
        self._groups = stats.groups
        self._passkeys = passkeys
        self.swarms = WebSocketSwarms(stats.groups, rng)
        #: Open connections, by number.
        self.connections: dict[int, WebSocketConnection] = {}
        self._numbers = itertools.count(1)
        self.interval = interval
        #: Seconds without a message after which a connection is closed, and without an
        #: announce after which a peer leaves its swarm: two intervals, so that a browser tab
        #: in the background, whose timers the browser slows to one a minute, keeps its peers.
        self.idle_timeout = idle_timeout if idle_timeout is not None else 2 * interval
        self.max_frame = max_frame
        self.max_message = max_message
        self.offer_timeout = OFFER_TIMEOUT
        #: The next sweep, while one is scheduled; whether one is under way.
        self._sweep_call: IDelayedCall | None = None
        self._sweeping = False
        self._cooperator = cooperator(clock)
        self._meter = stats.websocket
        self._announces = stats.websocket_announce
        self._scrapes = stats.websocket_scrape

    def now(self) -> int:
        return int(self._clock.seconds())

    # Opening and closing.

    def upgrade(
        self, request: Request, passkey: bytes | None = None, refusal: str | None = None
    ) -> Any:
        """
        Answer C{request}, which asks to upgrade to a WebSocket: with C{101 Switching Protocols},
        its connection then becoming a L{WebSocketConnection}, or with an HTTP error for a
        request that is not a valid opening handshake. C{passkey} is the private URL's; a
        C{refusal} is the failure every message on the connection gets.
        """
        headers = request.requestHeaders
        try:
            response = handshake_response(
                request.method,
                request.clientproto,
                headers.getRawHeaders(b"connection"),
                headers.getRawHeaders(b"upgrade"),
                headers.getRawHeaders(b"sec-websocket-key"),
                headers.getRawHeaders(b"sec-websocket-version"),
            )
        except HandshakeError as e:
            self._stats.refusals.add("websocket", e.reason)
            request.setResponseCode(e.status, _STATUS.get(e.status))
            if e.status == 426:
                request.setHeader(b"sec-websocket-version", b"13")
            # Bencoded, as every answer of the announce URL.
            request.setHeader(b"content-type", b"text/plain")
            body = bencode({b"failure reason": e.reason.encode("utf-8")})
            request.setHeader(b"content-length", b"%d" % len(body))
            if request.method != b"HEAD":
                return body
            # Written, so that Twisted sends the length without the body (and logs no warning
            # for a HEAD answered with one).
            request.write(body)
            request.finish()
            return NOT_DONE_YET
        channel = request.channel
        assert channel is not None and channel.transport is not None
        # For whoever looks at the request: it is never finished, its connection is taken.
        request.setResponseCode(101)
        channel.transport.write(response)
        connection = WebSocketConnection(
            self,
            next(self._numbers),
            FrameReader(self.max_frame, self.max_message),
            self.now(),
            passkey,
            refusal,
        )
        take_over(channel, connection)
        self.connections[connection.number] = connection
        self._meter.connections += 1
        self._meter.opened += 1
        if self._sweep_call is None and not self._sweeping:
            self._schedule_sweep()
        return NOT_DONE_YET

    def closed(self, connection: WebSocketConnection) -> None:
        """C{connection} is gone: its peers leave every swarm, at once."""
        if self.connections.pop(connection.number, None) is None:
            return
        self._meter.connections -= 1
        peers = connection.peers
        connection.peers = None
        if peers:
            leave = self.swarms.leave
            for peer in peers.values():
                leave(peer)
        if not self.connections and self._sweep_call is not None:
            if self._sweep_call.active():
                self._sweep_call.cancel()
            self._sweep_call = None

    def close(
        self, connection: WebSocketConnection, code: int, reason: str, why: str | None = None
    ) -> None:
        """Close C{connection} for breaking a rule (C{code} tells which) or, C{why} "idle",
        for keeping silent."""
        self._meter.closes[why or _CLOSE_REASONS.get(code, "protocol error")] += 1
        connection.seen = self.now()
        connection.close(code, reason)

    # The sweep: idle connections closed, silent peers out, stale offers forgotten.

    def _schedule_sweep(self) -> None:
        every = max(min(self.idle_timeout / 8, 30.0), 0.05)
        self._sweep_call = self._clock.callLater(every, self._sweep)

    def _sweep(self) -> None:
        self._sweep_call = None
        self._sweeping = True
        swept = self._cooperator.coiterate(self._sweep_steps(self.now()))

        def again(result: object) -> None:
            self._sweeping = False
            if isinstance(result, Failure):
                log.failure("the sweep for idle WebSocket connections failed", result)
            # One sweep scheduled at a time, and none once every connection is gone.
            if self.connections and self._sweep_call is None:
                self._schedule_sweep()

        swept.addBoth(again)

    def _sweep_steps(self, now: int) -> Iterator[None]:
        idle_since = now - self.idle_timeout
        budget = SWEEP_STEP
        for connection in list(self.connections.values()):
            budget -= 1
            if budget <= 0:
                budget = SWEEP_STEP
                yield None
            if connection.closing:
                if connection.seen < now - CLOSE_GRACE:
                    connection.abort()
                continue
            if connection.seen < idle_since:
                self.close(connection, NORMAL, f"idle for {self.idle_timeout:g} seconds", "idle")
                continue
            peers = connection.peers
            if not peers:
                continue
            for info_hash, peer in list(peers.items()):
                if peer.seen < idle_since:
                    del peers[info_hash]
                    self.swarms.leave(peer)
                else:
                    forget_expired_offers(peer, now)

    # Messages.

    def received(self, connection: WebSocketConnection, text: str) -> None:
        """One text message from C{connection}."""
        now = int(self._clock.seconds())
        connection.seen = now
        messages = self._meter.messages
        try:
            message = parse(text)
        except MessageError as e:
            messages["invalid"] += 1
            self._refuse(connection, e.reason, e.action, e.info_hash)
            return
        kind = type(message)
        try:
            if kind is Announce:
                messages["announce"] += 1
                self._announce(connection, message, now)  # type: ignore[arg-type]
            elif kind is Answer:
                messages["answer"] += 1
                self._answer(connection, message, now)  # type: ignore[arg-type]
            else:
                messages["scrape"] += 1
                self._scrape(connection, message)  # type: ignore[arg-type]
        except Exception:
            log.failure("unexpected error handling a WebSocket message")
            action = SCRAPE if kind is Scrape else ANNOUNCE
            info_hash = getattr(message, "info_hash", "")
            (self._scrapes if kind is Scrape else self._announces).errors += 1
            connection.send(failure(_INTERNAL, action, info_hash))

    def _refuse(
        self,
        connection: WebSocketConnection,
        reason: str,
        action: str,
        info_hash: Any,
        meter: RequestMeter | None = None,
    ) -> None:
        if meter is not None:
            meter.refused += 1
        self._stats.refusals.add("websocket", reason)
        log.debug("refused a WebSocket {action}: {reason}", action=action, reason=reason)
        connection.send(failure(reason, action, info_hash))

    def _account(
        self, connection: WebSocketConnection, retry: Callable[[], Any]
    ) -> Ledger | Deferred[Any] | None:
        """The ledger of the connection's passkey (None on a public tracker); a Deferred that
        fires with C{retry}'s outcome while the passkeys are loading. Raises L{TrackerError} for
        a connection whose every message is refused."""
        if connection.refusal is not None:
            raise TrackerError(connection.refusal)
        if connection.passkey is None:
            return None
        assert self._passkeys is not None
        ledger = self._passkeys.ledgers.get(connection.passkey)
        if ledger is None:
            return wait_or_refuse(self._passkeys, retry)
        return ledger

    def _when(
        self,
        answer: T | Deferred[T],
        then: Callable[[T], None],
        connection: WebSocketConnection,
        action: str,
        info_hash: Any,
        meter: RequestMeter,
    ) -> None:
        """Run C{then} with C{answer} now, or when it arrives if the connection is still
        open; a refusal or a failure on the way is answered as any other."""
        if not isinstance(answer, Deferred):
            then(answer)
            return

        def arrived(result: T) -> None:
            if not connection.closing:
                then(result)

        def failed(reason: Failure) -> None:
            if connection.closing:
                return
            if isinstance(reason.value, TrackerError):
                self._refuse(connection, reason.value.reason, action, info_hash, meter)
                return
            meter.errors += 1
            if not reason.check(StoreStopped):
                log.failure("a WebSocket {action} failed in the store", reason, action=action)
            connection.send(failure(_INTERNAL, action, info_hash))

        answer.addCallback(arrived).addErrback(failed)

    def _announce(self, connection: WebSocketConnection, announce: Announce, now: int) -> None:
        started = perf_counter()
        info_hash = announce.info_hash
        meter = self._announces
        try:
            account = self._account(
                connection, lambda: self._announce(connection, announce, self.now())
            )
            if isinstance(account, Deferred):
                self._when(account, lambda _: None, connection, ANNOUNCE, info_hash, meter)
                return
            # The store's own peers: their count, and the access list's verdict.
            key = info_hash.encode("latin-1")
            counts = self._store.scrape((key,))
        except TrackerError as e:
            self._refuse(connection, e.reason, ANNOUNCE, info_hash, meter)
            return
        except StoreStopped:
            meter.errors += 1
            connection.send(failure(_INTERNAL, ANNOUNCE, info_hash))
            return

        def record(counts: dict[bytes, SwarmCounts]) -> None:
            self._record(connection, announce, account, key, counts[key], started)

        self._when(counts, record, connection, ANNOUNCE, info_hash, meter)

    def _record(
        self,
        connection: WebSocketConnection,
        announce: Announce,
        account: Ledger | None,
        key: bytes,
        counts: SwarmCounts,
        started: float,
    ) -> None:
        """Apply C{announce} (which the store and the access list let through) and answer it,
        C{counts} being the store's own peers of the torrent."""
        meter = self._announces
        info_hash = announce.info_hash
        peer_id = announce.peer_id
        now = self.now()
        peers = connection.peers
        peer = peers.get(info_hash) if peers is not None else None
        seeder = announce.left == 0
        if peer is None:
            if self.swarms.find(info_hash, peer_id) is not None:
                self._refuse(
                    connection,
                    "this peer id is announced on another connection",
                    ANNOUNCE,
                    info_hash,
                    meter,
                )
                return
            if announce.event == STOPPED:
                # Not a peer here: nothing to stop.
                self._reply(connection, announce, key, counts, meter, started)
                return
            peer = self.swarms.join(info_hash, peer_id, connection, seeder)
            if peers is None:
                peers = connection.peers = {}
            peers[info_hash] = peer
        elif peer.peer_id != peer_id:
            self._refuse(
                connection,
                "only one peer id can be announced per torrent on a connection",
                ANNOUNCE,
                info_hash,
                meter,
            )
            return
        elif peer.seeder != seeder:
            peer.swarm.unplace(peer)
            peer.swarm.place(peer, seeder)
        peer.seen = now
        event = announce.event
        if account is not None:
            peer.report = credit_report(
                account, peer.report, announce.uploaded, announce.downloaded, event == STARTED
            )
        if event == STOPPED:
            assert peers is not None
            del peers[info_hash]
            self.swarms.leave(peer)
            self._reply(connection, announce, key, counts, meter, started)
            return
        if event == COMPLETED and seeder and not peer.completed:
            # Counted once per peer, by the store, which keeps it.
            peer.completed = True
            self._count_completion(key, now)
        if announce.offers:
            self._relay_offers(peer, announce, now)
        self._reply(connection, announce, key, counts, meter, started)

    def _reply(
        self,
        connection: WebSocketConnection,
        announce: Announce,
        key: bytes,
        counts: SwarmCounts,
        meter: RequestMeter,
        started: float,
    ) -> None:
        counts = self._groups.counts(key, counts)
        connection.send(
            announce_reply(announce.info_hash, counts.complete, counts.incomplete, self.interval)
        )
        meter.ok += 1
        if not meter.ok & TIMED:
            meter.latency.observe(perf_counter() - started)

    def _count_completion(self, key: bytes, now: int) -> None:
        try:
            counted = self._store.count_completion(key, now)
        except Exception:
            log.failure("could not count a WebSocket peer's completion")
            return
        if isinstance(counted, Deferred):
            counted.addErrback(
                lambda f: (
                    None
                    if f.check(StoreStopped)
                    else log.failure("could not count a WebSocket peer's completion", f)
                )
            )

    def _relay_offers(self, peer: Peer, announce: Announce, now: int) -> None:
        offers = announce.offers
        forget_expired_offers(peer, now)
        targets = peer.swarm.choose(len(offers), peer, self.swarms.random)
        if not targets:
            return
        expires = now + self.offer_timeout
        prefix = offer_prefix(announce.info_hash, announce.peer_id)
        relayed = 0
        for offer, target in zip(offers, targets):
            recipient = target.connection
            if recipient.congested:
                self._meter.dropped += 1
                continue
            recipient.send(relayed_offer(prefix, offer))
            remember_offer(peer, offer.offer_id, target, expires)
            relayed += 1
        self._meter.relayed["offer"] += relayed

    def _answer(self, connection: WebSocketConnection, answer: Answer, now: int) -> None:
        # Signalling only: the answering peer's state is left as it is.
        maker = self.swarms.find(answer.info_hash, answer.to_peer_id)
        if maker is None or not take_offer(
            maker, answer.offer_id, answer.peer_id, connection.number, now
        ):
            self._refuse(connection, _NO_SUCH_OFFER, ANNOUNCE, answer.info_hash)
            return
        recipient = maker.connection
        if recipient.congested:
            self._meter.dropped += 1
            return
        recipient.send(relayed_answer(answer))
        self._meter.relayed["answer"] += 1

    def _scrape(self, connection: WebSocketConnection, scrape: Scrape) -> None:
        meter = self._scrapes
        hashes = scrape.info_hashes
        info_hash = scrape.given
        try:
            if not hashes:
                raise TrackerError(
                    "a scrape must name its torrents: full scrapes are not served here"
                )
            if len(hashes) > self._config.max_scrape_hashes:
                raise TrackerError(
                    f"at most {self._config.max_scrape_hashes} info hashes per scrape"
                )
            account = self._account(connection, lambda: self._scrape(connection, scrape))
            if isinstance(account, Deferred):
                self._when(account, lambda _: None, connection, SCRAPE, info_hash, meter)
                return
            keys = [h.encode("latin-1") for h in hashes]
            counts = self._store.scrape(keys)
        except TrackerError as e:
            self._refuse(connection, e.reason, SCRAPE, info_hash, meter)
            return
        except StoreStopped:
            meter.errors += 1
            connection.send(failure(_INTERNAL, SCRAPE, info_hash))
            return

        def reply(counts: dict[bytes, SwarmCounts]) -> None:
            add = self._groups.counts
            files = {h: add(k, counts[k]) for h, k in zip(hashes, keys)}
            connection.send(scrape_reply(files, self.interval))
            meter.ok += 1

        self._when(counts, reply, connection, SCRAPE, info_hash, meter)
