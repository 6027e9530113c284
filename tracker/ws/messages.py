"""
The messages WebTorrent clients exchange with a tracker (bittorrent-tracker's protocol): JSON
objects in text frames, read into typed values with aquatic's rules, and the replies written.

C{info_hash}, C{peer_id}, C{offer_id} and C{to_peer_id} are 20-character strings of code points
0-255 (JavaScript "binary" strings: one character a byte); anything else is refused. They are
kept as the strings they came as, which is what replies carry back; C{latin-1} turns one into
its bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii as _escape
from typing import Any, NamedTuple, Union

from tracker.core.announce import COMPLETED, NONE, PAUSED, STARTED, STOPPED

ANNOUNCE = "announce"
SCRAPE = "scrape"
#: The most offers relayed for one announce (aquatic's limit); more are left unsent.
MAX_OFFERS = 10
#: Counts of bytes: JavaScript numbers, kept to what a signed 64-bit integer holds.
_MAX_COUNT = 2**63 - 1
_EVENTS = {
    "started": STARTED,
    "completed": COMPLETED,
    "stopped": STOPPED,
    "paused": PAUSED,
}


class MessageError(Exception):
    """
    A message refused. The failure sent back carries C{action} and C{info_hash} as the
    message gave them: a WebTorrent client closes its socket, and stays away for minutes, on a
    message whose C{action} it does not know, and ignores one for another torrent.
    """

    def __init__(self, reason: str, action: str = ANNOUNCE, info_hash: Any = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.action = action
        self.info_hash = info_hash


class Offer(NamedTuple):
    offer_id: str
    #: The SDP of the WebRTC offer.
    sdp: str


class Announce(NamedTuple):
    info_hash: str
    peer_id: str
    #: One of L{tracker.core.announce}'s events; an update when absent or unknown.
    event: str
    #: Bytes left; None when the client does not know yet (a magnet link before its metadata:
    #: C{left: null}), which makes it a leecher.
    left: int | None
    uploaded: int
    downloaded: int
    #: The most offers to relay: the client's C{numwant}, at most L{MAX_OFFERS}.
    numwant: int
    offers: tuple[Offer, ...]

    @property
    def is_seeder(self) -> bool:
        return self.left == 0


class Answer(NamedTuple):
    """A WebRTC answer to an offer, for the peer that made it: signalling only."""

    info_hash: str
    peer_id: str
    to_peer_id: str
    offer_id: str
    sdp: str


class Scrape(NamedTuple):
    #: Distinct, in the order asked; empty for a scrape of every torrent.
    info_hashes: tuple[str, ...]
    #: C{info_hash} as the message gave it (one string or a list), for a failure to carry.
    given: Any = ""


Message = Union[Announce, Answer, Scrape]


def binary_id(value: Any) -> bool:
    """Whether C{value} is a 20-character string of code points 0-255."""
    return type(value) is str and len(value) == 20 and _bytewide(value)


def _bytewide(text: str) -> bool:
    """Whether every character of C{text} is a code point 0-255."""
    if text.isascii():
        return True
    try:
        # A plain copy for the strings of code points 0-255, which Python keeps a byte each.
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _ids(message: dict[str, Any], names: tuple[str, ...], action: str, given: Any) -> list[Any]:
    """The values of C{names} in C{message}, each a 20-character string of code points 0-255,
    checked together: one test of the code points for all of them."""
    values: list[Any] = [message.get(name) for name in names]
    for value in values:
        if type(value) is not str or len(value) != 20:
            break
    else:
        if _bytewide("".join(values)):
            return values
    # Which one is wrong, for the failure to name it.
    for name, value in zip(names, values):
        if not binary_id(value):
            raise MessageError(
                f"'{name}' must be a string of 20 characters of code points 0-255",
                action,
                values[0] if name != "info_hash" and binary_id(values[0]) else given,
            )
    raise AssertionError("unreachable")


def _count(message: dict[str, Any], name: str, info_hash: str, default: int | None) -> int | None:
    value = message.get(name)
    if value is None:
        # Absent, or JSON.stringify(NaN): unknown.
        return default
    if type(value) is not int:
        if type(value) is float and value.is_integer():
            value = int(value)
        else:
            raise MessageError(f"'{name}' must be a whole number of bytes", ANNOUNCE, info_hash)
    if not 0 <= value <= _MAX_COUNT:
        raise MessageError(f"'{name}' must be a whole number of bytes", ANNOUNCE, info_hash)
    return value


def parse(text: str) -> Message:
    """A text message (a text frame's payload, decoded) as a message; raises
    L{MessageError} for anything else."""
    try:
        # json takes NaN and Infinity, which are not JSON, as floats: no field takes a float
        # that is not a whole number, so they are refused with the rest. (A parse_constant
        # hook would have PyPy parse every message in pure Python, eight times slower.)
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise MessageError("a message must be a JSON object") from None
    if type(message) is not dict:
        raise MessageError("a message must be a JSON object")
    action = message.get("action")
    if action == ANNOUNCE:
        if "answer" in message:
            return _answer(message)
        return _announce(message)
    info_hash = message.get("info_hash", "")
    if type(info_hash) is not str and type(info_hash) is not list:
        info_hash = ""
    if action == SCRAPE:
        return _scrape(message, info_hash)
    raise MessageError("'action' must be announce or scrape", ANNOUNCE, info_hash)


def _given(message: dict[str, Any]) -> Any:
    """The message's C{info_hash}, for a failure to carry back: as given if it is a string."""
    info_hash = message.get("info_hash", "")
    return info_hash if type(info_hash) is str else ""


_ANNOUNCE_IDS = ("info_hash", "peer_id")
_ANSWER_IDS = ("info_hash", "peer_id", "to_peer_id", "offer_id")
_BAD_OFFER = "each offer must be {offer: {type: 'offer', sdp}, offer_id}"


def _announce(message: dict[str, Any]) -> Announce:
    info_hash, peer_id = _ids(message, _ANNOUNCE_IDS, ANNOUNCE, _given(message))
    event = message.get("event")
    numwant = _count(message, "numwant", info_hash, MAX_OFFERS)
    assert numwant is not None
    if numwant > MAX_OFFERS:
        numwant = MAX_OFFERS
    offers: tuple[Offer, ...] = ()
    raw = message.get("offers")
    if raw is not None:
        if type(raw) is not list:
            raise MessageError("'offers' must be a list", ANNOUNCE, info_hash)
        # Only those that will be relayed are read.
        offers = tuple([_offer(item, info_hash) for item in raw[:numwant]])
        if not _bytewide("".join([offer.offer_id for offer in offers])):
            raise MessageError(_BAD_OFFER, ANNOUNCE, info_hash)
    uploaded = _count(message, "uploaded", info_hash, 0)
    downloaded = _count(message, "downloaded", info_hash, 0)
    assert uploaded is not None and downloaded is not None
    return Announce(
        info_hash,
        peer_id,
        _EVENTS.get(event, NONE) if type(event) is str else NONE,
        _count(message, "left", info_hash, None),
        uploaded,
        downloaded,
        numwant,
        offers,
    )


def _offer(item: Any, info_hash: str) -> Offer:
    """One offer of an announce; its id's code points are checked by the caller, with the
    others'."""
    if type(item) is dict:
        offer = item.get("offer")
        if type(offer) is dict and offer.get("type") == "offer":
            sdp = offer.get("sdp")
            offer_id = item.get("offer_id")
            if type(sdp) is str and type(offer_id) is str and len(offer_id) == 20:
                return Offer(offer_id, sdp)
    raise MessageError(_BAD_OFFER, ANNOUNCE, info_hash)


def _answer(message: dict[str, Any]) -> Answer:
    info_hash, peer_id, to_peer_id, offer_id = _ids(message, _ANSWER_IDS, ANNOUNCE, _given(message))
    answer = message.get("answer")
    if type(answer) is dict and answer.get("type") == "answer":
        sdp = answer.get("sdp")
        if type(sdp) is str:
            return Answer(info_hash, peer_id, to_peer_id, offer_id, sdp)
    raise MessageError("'answer' must be {type: 'answer', sdp}", ANNOUNCE, info_hash)


def _scrape(message: dict[str, Any], info_hash: Any) -> Scrape:
    if "info_hash" not in message:
        return Scrape(())
    hashes = info_hash if type(info_hash) is list else [info_hash]
    for value in hashes:
        if not binary_id(value):
            raise MessageError(
                "'info_hash' must be one or a list of strings of 20 characters of code points"
                " 0-255",
                SCRAPE,
                info_hash,
            )
    return Scrape(tuple(dict.fromkeys(hashes)), info_hash)


# Replies. Every string is escaped by json's own escaper, which writes every character above
# U+007F as an escape: what is sent is ASCII, and a client reads back exactly the strings it
# sent. Written out rather than by json.dumps, which costs twice as much under CPython and
# four times under PyPy, for the messages every announce makes.

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def announce_reply(info_hash: str, complete: int, incomplete: int, interval: int) -> bytes:
    return (
        f'{{"action":"announce","interval":{interval:d},"info_hash":{_escape(info_hash)},'
        f'"complete":{complete:d},"incomplete":{incomplete:d}}}'
    ).encode("ascii")


def offer_prefix(info_hash: str, peer_id: str) -> str:
    """What every offer relayed for one announce starts with."""
    return (
        '{"action":"announce","info_hash":' + _escape(info_hash) + ',"peer_id":'
        + _escape(peer_id)
    )  # fmt: skip


def relayed_offer(prefix: str, offer: Offer) -> bytes:
    """An offer as relayed, after L{offer_prefix}."""
    return (
        prefix + ',"offer_id":' + _escape(offer.offer_id) + ',"offer":{"type":"offer","sdp":'
        + _escape(offer.sdp) + "}}"
    ).encode("ascii")  # fmt: skip


def relayed_answer(answer: Answer) -> bytes:
    return (
        '{"action":"announce","info_hash":' + _escape(answer.info_hash) + ',"peer_id":'
        + _escape(answer.peer_id) + ',"offer_id":' + _escape(answer.offer_id)
        + ',"answer":{"type":"answer","sdp":' + _escape(answer.sdp) + "}}"
    ).encode("ascii")  # fmt: skip


def scrape_reply(files: Mapping[str, Sequence[int]], min_interval: int) -> bytes:
    return _dumps(
        {
            "action": SCRAPE,
            "files": {
                info_hash: {"complete": c, "incomplete": i, "downloaded": d}
                for info_hash, (c, i, d) in files.items()
            },
            "flags": {"min_request_interval": min_interval},
        }
    ).encode("ascii")


def failure(reason: str, action: str, info_hash: Any) -> bytes:
    return _dumps({"action": action, "failure reason": reason, "info_hash": info_hash}).encode(
        "ascii"
    )
