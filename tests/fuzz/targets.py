"""
Fuzz targets: one plain function per parser that the network (or a damaged file) reaches. Each
takes arbitrary bytes and asserts what the tracker promises for any input:

 - only the documented exceptions escape, and nothing is logged as an unexpected error;
 - a bad HTTP request gets 200 and a bencoded C{failure reason}, or a 4xx for faults of HTTP
   itself (400, 404, 405, 413, 414, 431), never a 5xx;
 - a UDP error reply is never longer than the datagram it answers, and only the source is
   answered;
 - a refused request changes nothing in the swarm index (nor, for the admin API, in the access
   list or the passkeys);
 - the admin token and the passkeys never show in the log, in C{/stats} or in C{/metrics}.

A failed property is an C{AssertionError} (or the unexpected exception itself). The targets need
no fuzzer: C{tests/test_fuzz_corpus.py} replays the corpus (C{tests/fuzz/corpus/<target>/})
through them under CPython and PyPy, and C{python -m tests.fuzz.run} drives them with atheris.
Each call builds what it needs afresh, so that an input found to fail fails again alone.
"""

from __future__ import annotations

import json
import os
import random
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, NamedTuple

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web import http as twisted_http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from tests.helpers import announce, index_state
from tracker.core.announce import parse_announce, parse_scrape
from tracker.core.bencode import BencodeError, bdecode, bencode
from tracker.core.config import TrackerConfig
from tracker.core.errors import KeyMismatch, TrackerError
from tracker.core.journal import JournalError, replay
from tracker.core.query import Params, parse_query, percent_decode, split_query
from tracker.core.swarms import SwarmIndex
from tracker.http.private import PrivateTrackerResource, _PrivateNotFound
from tracker.http.requestline import _parser
from tracker.http.resource import AnnounceResource, TrackerResource, _Endpoint, _NotFound
from tracker.http.site import TrackerSite
from tracker.ops.access import AccessList
from tracker.ops.admin import AdminResource, AdminSite
from tracker.ops.passkeys import Passkeys
from tracker.store.access import WHITELIST, Account, MemoryAccessStore
from tracker.store.memory import MemoryPeerStore
from tracker.udp.connection_ids import ConnectionIds
from tracker.udp.private import PrivateUDPTracker
from tracker.udp.protocol import ANNOUNCE, CONNECT, ERROR, PROTOCOL_ID, SCRAPE, UDPTracker

#: The clock's time in every target: any fixed time well after the epoch.
NOW = 1_000_000
#: The one passkey of the private trackers; not a peer id's length, so no reply can echo it.
PASSKEY = b"fuzz-passkey-0123456789abcdef"
#: The admin API's token: not a well-formed passkey, so it cannot be added as one.
TOKEN = b"fuzz.admin.token~0123456789"
#: A torrent on the admin API's list file.
LISTED = bytes.fromhex("4019183ccb446db947d7aebf99df1394076bea27")
CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)
SECRETS = (PASSKEY, TOKEN)


# Logs.


@contextmanager
def watched_log(secrets: tuple[bytes, ...] = SECRETS) -> Iterator[None]:
    """Fail if what runs inside logs an unexpected exception, or any of C{secrets} in any
    field of any event."""
    events: list[LogEvent] = []
    observer = events.append
    globalLogPublisher.addObserver(observer)
    try:
        yield
    finally:
        globalLogPublisher.removeObserver(observer)
    for event in events:
        failure = event.get("log_failure")
        text = formatEvent(event)
        if isinstance(failure, Failure):
            # What the tracker logs for an exception it did not expect: a bug.
            raise AssertionError(f"logged an error: {text}\n{failure.getTraceback()}")
        shown = [text.encode("utf-8", "backslashreplace")]
        for value in event.values():
            if isinstance(value, bytes):
                shown.append(value)
            elif isinstance(value, str):
                shown.append(value.encode("utf-8", "backslashreplace"))
        for secret in secrets:
            assert not any(secret in piece for piece in shown), f"a secret in the log: {text}"


# HTTP conversations through a real channel.


class Exchange(NamedTuple):
    """One request the site processed, and how it was answered."""

    method: bytes
    resource: Resource | None
    code: int
    body: bytes
    #: Whether what C{state} shows changed while the request was answered.
    changed: bool


class Response(NamedTuple):
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def observed(
    request_class: type[Request], state: Callable[[], object], log: list[Exchange]
) -> Callable[..., Request]:
    """A request factory for a site: requests of C{request_class} that add an L{Exchange} to
    C{log} once answered; C{state} is asked before and after."""

    class Observed(request_class):  # type: ignore[valid-type, misc]
        _resource: Resource | None = None

        def process(self) -> None:
            self._written: list[bytes] = []
            before = state()
            super().process()
            # Every store here answers at once: a request still open is one left hanging,
            # unless it opened a WebSocket, which takes its connection over.
            assert self.finished or self.code == 101, (
                f"request left unanswered: {self.method!r} {self.uri!r}"
            )
            log.append(
                Exchange(
                    self.method,
                    self._resource,
                    self.code,
                    b"".join(self._written),
                    state() != before,
                )
            )

        def render(self, resrc: Resource) -> None:
            self._resource = resrc
            super().render(resrc)

        def write(self, data: bytes) -> None:
            self._written.append(data)
            super().write(data)

    return Observed


def converse(site: Site, data: bytes) -> tuple[StringTransport, bytes]:
    """Feed C{data} to a new connection of C{site}, as one read, then close it; the transport
    and what was written to it."""
    channel = site.buildProtocol(CLIENT)
    transport = StringTransport(peerAddress=CLIENT)
    channel.makeConnection(transport)
    channel.dataReceived(data)
    written = transport.value()
    channel.connectionLost(Failure(ConnectionDone()))
    return transport, written


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n")


def read_responses(stream: bytes, heads: list[bool]) -> list[Response]:
    """
    Split what a server wrote into responses: one for each request processed (C{heads} says
    which of them were HEAD, and so have no body), and at most one more, the last, for a
    request refused before it was processed. Interim (1xx) responses are skipped.
    """
    responses: list[Response] = []
    offset = 0
    pending = list(heads)
    while offset < len(stream):
        match = _STATUS_LINE.match(stream, offset)
        assert match is not None, f"not a status line at {offset}: {stream[offset:][:80]!r}"
        status = int(match[1])
        end = stream.index(b"\r\n\r\n", match.end() - 2)
        headers: dict[bytes, bytes] = {}
        for line in stream[match.end() : end].split(b"\r\n"):
            if line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
        offset = end + 4
        if status == 101:
            # A WebSocket: what follows is frames, not HTTP.
            responses.append(Response(status, headers, b""))
            break
        if status < 200:
            continue
        head = pending.pop(0) if pending else False
        length = headers.get(b"content-length")
        if head:
            body = b""
        elif length is not None:
            body = stream[offset : offset + int(length)]
            assert len(body) == int(length), "a body shorter than its content-length"
            offset += len(body)
        elif headers.get(b"transfer-encoding") == b"chunked":
            pieces = []
            while True:
                line_end = stream.index(b"\r\n", offset)
                size = int(stream[offset:line_end].split(b";")[0], 16)
                pieces.append(stream[line_end + 2 : line_end + 2 + size])
                offset = line_end + 2 + size + 2
                if not size:
                    break
            body = b"".join(pieces)
        else:
            body, offset = stream[offset:], len(stream)
        responses.append(Response(status, headers, body))
    return responses


#: The statuses a client may get for a request that is wrong at the HTTP level.
HTTP_FAULTS = frozenset((400, 404, 405, 411, 413, 414, 431))


def check_conversation(
    transport: StringTransport, written: bytes, exchanges: list[Exchange]
) -> list[Response]:
    """What any HTTP conversation must look like: one response per request processed, the
    same status as the request's, and at most one more, the last, for a request refused
    unprocessed; never a 5xx."""
    responses = read_responses(written, [e.method == b"HEAD" for e in exchanges])
    assert len(responses) in (len(exchanges), len(exchanges) + 1), (responses, exchanges)
    for response, exchange in zip(responses, exchanges):
        assert response.status == exchange.code, (response, exchange)
    if len(responses) > len(exchanges):
        refusal = responses[-1]
        assert refusal.status in HTTP_FAULTS, refusal
        assert transport.disconnecting, "a refusal leaves the connection open"
    for response in responses:
        assert response.status < 500, response
    return responses


def failure_reason(body: bytes) -> bytes | None:
    """The C{failure reason} of a bencoded reply, None for a reply that is not a failure."""
    try:
        value = bdecode(body)
    except BencodeError:
        raise AssertionError(f"not a bencoded reply: {body[:200]!r}") from None
    assert isinstance(value, dict), value
    reason = value.get(b"failure reason")
    assert reason is None or (isinstance(reason, bytes) and reason), value
    return reason


# The tracker's HTTP site.


def tracker_site(private: bool) -> tuple[TrackerSite, MemoryPeerStore, list[Exchange]]:
    clock = Clock()
    clock.advance(NOW)
    store = MemoryPeerStore(random.Random(1))
    config = TrackerConfig()
    resource: TrackerResource
    if private:
        passkeys = Passkeys(MemoryAccessStore(), clock)
        passkeys.load_stored({PASSKEY: Account("fuzz", 0, 0, 0)})
        resource = PrivateTrackerResource(store, passkeys, config, clock, random.Random(2))
    else:
        resource = TrackerResource(store, config, clock, random.Random(2))
    site = TrackerSite(resource, timeout=None, reactor=clock)
    exchanges: list[Exchange] = []
    site.requestFactory = observed(site.requestFactory, lambda: index_state(store.index), exchanges)
    return site, store, exchanges


_TRACKER_ANSWERS = (_Endpoint, _NotFound, _PrivateNotFound)


def http(data: bytes) -> None:
    """
    Bytes from a client into the tracker's HTTP site, public and private: request line,
    headers and query all parsed as the daemon parses them. The endpoints answer in bencoding,
    a refusal changes no swarm, and the passkey shows nowhere, answers included.
    """
    for private in (False, True):
        site, store, exchanges = tracker_site(private)
        # A public tracker has no passkey: what a client sends may be logged as it is.
        with watched_log(SECRETS if private else ()):
            transport, written = converse(site, data)
        check_conversation(transport, written, exchanges)
        if private:
            assert PASSKEY not in written, "the passkey in a reply"
        for exchange in exchanges:
            # The tracker's own answers are bencoded; a figures page's (stats/x) are not.
            tracker_answer = isinstance(exchange.resource, _TRACKER_ANSWERS)
            if tracker_answer and exchange.code in (200, 404, 405):
                reason = failure_reason(exchange.body)
                succeeded = exchange.code == 200 and reason is None
            else:
                succeeded = exchange.code == 200
            if exchange.changed:
                assert succeeded and isinstance(exchange.resource, AnnounceResource), exchange
        labels = repr(sorted(site.resource.stats.refusals.counts)).encode()
        assert PASSKEY not in labels, labels


# Request lines and queries.

_twisted_parser = twisted_http._parseRequestLine
_our_parser = _parser(_twisted_parser)


def _outcome(parse: Callable[[bytes], tuple[bytes, bytes, bytes]], line: bytes) -> object:
    try:
        return parse(line)
    except ValueError as e:
        return type(e)


def request_line(data: bytes) -> None:
    """The request line's fast path reads every line exactly as Twisted's own parser does:
    the same three parts, or the same refusal."""
    line = data.split(b"\r\n", 1)[0]
    assert _outcome(_our_parser, line) == _outcome(_twisted_parser, line), line


_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")


def _reference_decode(value: bytes) -> bytes | None:
    """Percent-decoding written the plain way; None where an escape is malformed."""
    if b"%" in _ESCAPE.sub(b"", value):
        return None
    return _ESCAPE.sub(lambda m: bytes((int(m[1], 16),)), value)


#: Each byte as its %XX escape.
_ESCAPED = [b"%%%02X" % b for b in range(256)]


def _encoded(params: Params) -> bytes:
    """A query of C{params} with every byte of every name and value escaped."""

    def encode(value: bytes) -> bytes:
        return b"".join(_ESCAPED[b] for b in value)

    return b"&".join(
        encode(name) + b"=" + encode(value) for name, values in params.items() for value in values
    )


CONFIG = TrackerConfig()
_SOCKET_IP = b"\x7f\x00\x00\x01"


def query(data: bytes) -> None:
    """
    A request URI's query: split on C{&} only, each escape decoded as a plain decoder would;
    fully escaped again, it parses to the same parameters. An announce or scrape built from it
    is refused with L{TrackerError} or is within its bounds.
    """
    raw = split_query(data)
    assert b"#" not in raw
    parts = [part for pair in raw.split(b"&") for part in pair.partition(b"=")[::2]]
    expected = [_reference_decode(part) for part in parts]
    try:
        params = parse_query(raw)
    except TrackerError:
        assert None in expected, raw
        return
    assert [percent_decode(part) for part in parts] == expected, raw
    assert parse_query(_encoded(params)) == params
    try:
        announce = parse_announce(params, _SOCKET_IP, CONFIG)
    except TrackerError:
        pass
    else:
        assert len(announce.info_hash) == len(announce.peer_id) == 20
        assert 1 <= announce.port <= 65535
        assert 0 <= announce.numwant <= CONFIG.numwant_max
        for count in (announce.uploaded, announce.downloaded, announce.left):
            assert 0 <= count < 2**63
        assert 0 <= announce.key < 2**32
        assert announce.ip == _SOCKET_IP
    try:
        scrape = parse_scrape(params, CONFIG)
    except TrackerError:
        pass
    else:
        assert 1 <= len(scrape.info_hashes) <= CONFIG.max_scrape_hashes
        assert all(len(h) == 20 for h in scrape.info_hashes)


# Bencoding.


def _value(data: bytes, at: list[int], depth: int = 0) -> Any:
    """A bencodable value built from C{data}, reading from C{at[0]} on."""
    if at[0] >= len(data):
        return b""
    kind = 1 if depth > 8 else data[at[0]] % 4 if depth < 8 else data[at[0]] % 2
    at[0] += 1
    size = data[at[0]] % 8 if at[0] < len(data) else 0
    at[0] += 1
    if kind == 0:
        number = int.from_bytes(data[at[0] : at[0] + size], "big", signed=True)
        at[0] += size
        return number
    if kind == 1:
        text = data[at[0] : at[0] + size * 3]
        at[0] += size * 3
        return text
    if kind == 2:
        return [_value(data, at, depth + 1) for _ in range(size)]
    return {bytes(_value(data, at, 9)): _value(data, at, depth + 1) for _ in range(size)}


def bencoding(data: bytes) -> None:
    """
    A decoded value encodes back to exactly its input (the decoder takes the canonical form
    only); anything else is refused with L{BencodeError}. A value built from the bytes encodes
    to what decodes back to it.
    """
    try:
        value = bdecode(data)
    except BencodeError:
        pass
    else:
        assert bencode(value) == data
    built = _value(data, [0])
    assert bdecode(bencode(built)) == built


# UDP.

_UDP_PORT = 6881


class _Transport:
    """A UDP transport that keeps what is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, datagram: bytes, addr: Any) -> None:
        self.sent.append((datagram, addr))


def datagrams(data: bytes) -> Iterator[bytes]:
    """The datagrams of a UDP input: each a 2-byte big-endian length, then that many bytes."""
    offset = 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 2], "big")
        yield data[offset + 2 : offset + 2 + size]
        offset += 2 + size


def udp(data: bytes) -> None:
    """
    Datagrams into the UDP tracker (BEP 15, BEP 41). The first byte chooses: bit 0, give every
    request after the first 8 bytes a valid connection ID (so that announces and scrapes get
    past the check); bit 1, the client is on IPv6; bit 2, the tracker is private. The rest is
    the datagrams (see L{datagrams}). Only the source is answered, once at most; an error
    reply is never longer than its request and echoes its transaction ID; a refused datagram
    changes nothing; counts in the replies are the store's.
    """
    if not data:
        return
    flags = data[0]
    host = "::1" if flags & 2 else "127.0.0.1"
    addr = (host, _UDP_PORT)
    clock = Clock()
    clock.advance(NOW)
    store = MemoryPeerStore(random.Random(1))
    ids = ConnectionIds(clock, secret=lambda: b"k" * 16)
    config = TrackerConfig()
    tracker: UDPTracker
    if flags & 4:
        passkeys = Passkeys(MemoryAccessStore(), clock)
        passkeys.load_stored({PASSKEY: Account("fuzz", 0, 0, 0)})
        tracker = PrivateUDPTracker(
            store, passkeys, config, clock, random.Random(2), connection_ids=ids
        )
    else:
        tracker = UDPTracker(store, config, clock, random.Random(2), connection_ids=ids)
    transport = _Transport()
    tracker.makeConnection(transport)  # type: ignore[arg-type]
    with watched_log():
        for datagram in datagrams(data[1:]):
            if flags & 1 and len(datagram) >= 8 and datagram[8:12] != CONNECT:
                datagram = ids.issue(host) + datagram[8:]
            _udp_exchange(tracker, store, ids, transport, datagram, addr)
        tracker.doStop()
    labels = repr(sorted(tracker.stats.refusals.counts)).encode()
    assert PASSKEY not in labels, labels


def _udp_exchange(
    tracker: UDPTracker,
    store: MemoryPeerStore,
    ids: ConnectionIds,
    transport: _Transport,
    datagram: bytes,
    addr: tuple[str, int],
) -> None:
    before = index_state(store.index)
    transport.sent.clear()
    action = datagram[8:12]
    known = ids.valid(datagram[:8], addr[0])
    tracker.datagramReceived(datagram, addr)
    sent = transport.sent
    assert len(sent) <= 1, sent
    assert all(to == addr for _, to in sent), sent
    reply = sent[0][0] if sent else None
    if len(datagram) < 16 or (action == CONNECT and datagram[:8] != PROTOCOL_ID):
        assert reply is None, reply
    if reply is None or reply[:4] == ERROR:
        assert index_state(store.index) == before, "a refused datagram changed the index"
    if reply is None:
        return
    assert reply[4:8] == datagram[12:16], "the transaction ID not echoed"
    if reply[:4] == ERROR:
        assert len(reply) <= len(datagram), (reply, datagram)
        return
    assert reply[:4] == action, (reply, datagram)
    if action == CONNECT:
        assert len(reply) == 16
        return
    assert known, "a request with an unknown connection ID answered"
    if action == ANNOUNCE:
        width = 18 if ":" in addr[0] else 6
        assert len(reply) >= 20 and (len(reply) - 20) % width == 0, reply
        _, _, _, leechers, seeders = struct.unpack_from("!4s4siii", reply)
        counts = store.scrape([datagram[16:36]])[datagram[16:36]]
        assert (seeders, leechers) == (counts.complete, counts.incomplete), (reply, counts)
    else:
        assert action == SCRAPE
        hashes = [datagram[k : k + 20] for k in range(16, len(datagram), 20)]
        assert len(reply) == 8 + 12 * len(hashes)
        counts = store.scrape(hashes)
        for k, info_hash in enumerate(hashes):
            c = counts[info_hash]
            assert reply[8 + 12 * k : 20 + 12 * k] == struct.pack(
                "!iii", c.complete, c.downloaded, c.incomplete
            )


# The journal.


def journal(data: bytes) -> None:
    """
    A journal read back at start (from a damaged file, say): it loads whole, or is refused with
    L{JournalError}, never with anything else. What it loads is a whole index, which a
    checkpoint writes out and replays to the same index, and which answers announces.
    """
    index = SwarmIndex(random.Random(1), journal=True)
    try:
        replay(data, index)
    except JournalError:
        return
    loaded = index_state(index)
    index.take_changes()
    for _ in index.checkpoint([0], chunk=3):
        pass
    again = SwarmIndex()
    replay(b"".join(index.take_changes()), again)
    assert index_state(again) == loaded
    # Every swarm answers a new peer; expiry leaves only the peers seen since the cutoff.
    for info_hash in list(index.swarms):
        request = announce(0, left=0, numwant=200, compact=False)._replace(info_hash=info_hash)
        try:
            result = index.announce(request, NOW)
        except KeyMismatch:
            # The journal held a peer of this id, with a key.
            continue
        assert request.peer_id not in result.peer_ids
        assert len(result.peers4) % 6 == 0 and len(result.peers6) % 18 == 0
    for _ in index.expire(NOW, [0], chunk=5):
        pass
    for _, (_, peers) in index_state(index).items():
        assert all(seen >= NOW for _, _, _, seen, _, _ in peers), peers


# The admin API.


#: The access list's file, which C{POST /reload} reads.
WHITELIST_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "whitelist.txt")


class _Inline:
    """A reactor whose thread pool runs each job at once, in the caller's thread."""

    def getThreadPool(self) -> _Inline:
        return self

    def callInThreadWithCallback(
        self, on_result: Callable[[bool, object], None], f: Callable[..., object], *args: Any
    ) -> None:
        try:
            result = f(*args)
        except Exception:
            on_result(False, Failure())
        else:
            on_result(True, result)

    def callFromThread(self, f: Callable[..., object], *args: Any) -> None:
        f(*args)


class _AdminState(NamedTuple):
    listed: dict[str, set[bytes]]
    stored: frozenset[bytes]
    passkeys: dict[bytes, Account]
    ledgers: frozenset[bytes]


def admin(data: bytes) -> None:
    """
    Bytes from a client into the admin API's site. Every answer is JSON; without the right
    bearer token it is 401 and changes nothing; nothing is a 5xx; the token never shows in the
    log, and in no answer but to a request that carries it in its body.
    """
    clock = Clock()
    clock.advance(NOW)
    access_store = MemoryAccessStore()
    access_store.passkeys[PASSKEY] = Account("fuzz", 5, 10, 20)
    access = AccessList(WHITELIST, WHITELIST_FILE, frozenset({LISTED}), access_store, _Inline())
    access.load_stored(frozenset())
    passkeys = Passkeys(access_store, clock)
    passkeys.load_stored(dict(access_store.passkeys))

    def state() -> _AdminState:
        return _AdminState(
            {name: set(hashes) for name, hashes in access_store.listed.items()},
            frozenset(access.stored_hashes),
            dict(access_store.passkeys),
            frozenset(passkeys.ledgers),
        )

    figures = {"torrents": 3, "peers": 7}
    site = AdminSite(AdminResource(TOKEN, lambda: figures, access, passkeys, clock))
    site.reactor = clock
    exchanges: list[Exchange] = []
    site.requestFactory = observed(site.requestFactory, state, exchanges)
    # The passkeys are the API's to show; the token is not.
    with watched_log(SECRETS):
        transport, written = converse(site, data)
    responses = check_conversation(transport, written, exchanges)
    for exchange, response in zip(exchanges, responses):
        assert response.headers.get(b"content-type") == b"application/json", response
        if exchange.method != b"HEAD":
            json.loads(exchange.body)
        if exchange.code == 401:
            assert not exchange.changed, exchange
    if TOKEN not in data.partition(b"\r\n\r\n")[2]:
        assert TOKEN not in written, "the token in a reply"


# The WebSocket front end.

WS_HANDSHAKE = (
    b"GET /announce HTTP/1.1\r\nHost: tracker\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
#: The torrent the other browser of the websocket target announces; the seeds announce it too.
WS_TORRENT = bytes(range(20)).decode("latin-1")
WS_OTHER = "-WW0208-" + "\x80\xff" * 6


def masked(
    payload: bytes, opcode: int = 1, final: bool = True, mask: bytes = b"\x01\x02\x03\x04"
) -> bytes:
    """A frame as a browser sends it."""
    length = len(payload)
    head = bytes([(0x80 if final else 0) | opcode])
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 0x10000:
        head += bytes([0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + length.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


def server_frames(stream: bytes) -> list[tuple[int, bytes]]:
    """The frames a server wrote: each final and unmasked, the last one whole."""
    frames = []
    offset = 0
    while offset < len(stream):
        first, second = stream[offset], stream[offset + 1]
        assert first & 0x80 and not first & 0x70, f"not a final frame: {stream[offset:][:20]!r}"
        assert not second & 0x80, "a server's frame masked"
        length, start = second & 0x7F, offset + 2
        if length == 126:
            length, start = int.from_bytes(stream[start : start + 2], "big"), start + 2
        elif length == 127:
            length, start = int.from_bytes(stream[start : start + 8], "big"), start + 8
        assert start + length <= len(stream), "a frame cut short"
        frames.append((first & 0x0F, stream[start : start + length]))
        offset = start + length
    return frames


def _ws_open(site: Site) -> tuple[Any, StringTransport]:
    """A browser's connection to C{site}, upgraded to a WebSocket."""
    channel = site.buildProtocol(CLIENT)
    transport = StringTransport(peerAddress=CLIENT)
    channel.makeConnection(transport)
    channel.dataReceived(WS_HANDSHAKE)
    assert transport.value().startswith(b"HTTP/1.1 101 "), transport.value()
    transport.clear()
    return channel, transport


def websocket(data: bytes) -> None:
    """
    Bytes from a browser's WebSocket, after its opening handshake, into the tracker, while
    another browser of the same torrent is connected. Whatever they hold: nothing escapes or
    is logged as unexpected; the tracker writes whole frames only, each text frame a JSON
    object whose action is announce or scrape, each failure with its info_hash; a close frame
    is the last thing written, and the connection is then closing; the other browser gets
    well-formed offers and answers only; once both are gone, no WebSocket peer is left and no
    timer is either.
    """
    clock = Clock()
    clock.advance(NOW)
    store = MemoryPeerStore(random.Random(1))
    resource = TrackerResource(store, TrackerConfig(), clock, random.Random(2))
    websocket = resource.websocket
    assert websocket is not None
    site = TrackerSite(resource, timeout=None, reactor=clock)
    with watched_log(()):
        other, other_transport = _ws_open(site)
        announce = {"action": "announce", "info_hash": WS_TORRENT, "peer_id": WS_OTHER,
                    "left": None, "event": "started"}  # fmt: skip
        other.dataReceived(masked(json.dumps(announce).encode()))
        other_transport.clear()
        mine, transport = _ws_open(site)
        mine.dataReceived(data)
        written = transport.value()
        mine.connectionLost(Failure(ConnectionDone()))
        other.connectionLost(Failure(ConnectionDone()))
    frames = server_frames(written)
    for number, (opcode, payload) in enumerate(frames):
        if opcode == 8:
            assert number == len(frames) - 1, "frames after a close frame"
            assert transport.disconnecting, "a close frame, and the connection left open"
            continue
        if opcode == 0xA:
            continue
        assert opcode == 1, f"opcode {opcode}"
        message = json.loads(payload)
        assert isinstance(message, dict) and message.get("action") in ("announce", "scrape"), (
            message
        )
        if "failure reason" in message:
            assert message["failure reason"] and "info_hash" in message, message
    for opcode, payload in server_frames(other_transport.value()):
        message = json.loads(payload)
        assert opcode == 1 and message["action"] == "announce", message
        assert ("offer" in message) != ("answer" in message), message
        assert message["info_hash"] == WS_TORRENT and len(message["offer_id"]) == 20, message
    assert not websocket.connections and not websocket.swarms.swarms, "peers left behind"
    assert not resource.stats.groups.torrents, "counts left behind"
    assert not clock.getDelayedCalls(), clock.getDelayedCalls()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "request_line": request_line,
    "query": query,
    "http": http,
    "bencode": bencoding,
    "udp": udp,
    "journal": journal,
    "admin": admin,
    "websocket": websocket,
}
