"""
The admin API: JSON over HTTP on a listener of its own, for the operator's scripts.

Every request carries C{Authorization: Bearer <token>}; a wrong or missing token gets 401 and
changes nothing. The endpoints (see the README for examples):

    GET    /stats                  torrents, peers, seeders, leechers
    GET    /torrents               the access list: its file, the torrents stored through here
    POST   /torrents               {"info_hash": "<40 hex digits>"}: add one to the list
    DELETE /torrents/<info hash>   remove one added through here
    POST   /reload                 read the list file again (as SIGHUP does)
    GET    /passkeys               every passkey with its uploaded and downloaded totals
    POST   /passkeys               {"passkey": "...", "label": "..."} (both optional): add one
    DELETE /passkeys/<passkey>     remove one
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any, Callable, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from tracker.ops.access import AccessList, AccessListError, parse_info_hash
from tracker.ops.passkeys import PasskeyError, Passkeys, check_passkey
from tracker.store.batching import disk_error

log = Logger()

#: The API's answers are small, and so are the requests it takes.
MAX_BODY = 64 * 1024
#: Seconds a client is told to wait (Retry-After) when the database cannot be written.
DISK_RETRY_AFTER = 60
DEFAULT_ADMIN_LISTEN = "tcp:6970:interface=127.0.0.1"
#: A token shorter than this is refused at start.
MIN_TOKEN_LENGTH = 16

Reply = tuple[int, Mapping[str, Any]]
Answer = Union[Reply, Deferred[Reply]]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AdminResource(Resource):
    """
    The whole API, one leaf resource. C{stats} gives the figures for C{GET /stats}; the access
    list and the passkeys are None when the tracker runs without them.
    """

    isLeaf = True

    def __init__(
        self,
        token: bytes,
        stats: Callable[[], Mapping[str, Any]],
        access_list: AccessList | None = None,
        passkeys: Passkeys | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__()
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the admin token must be at least {MIN_TOKEN_LENGTH} characters")
        if clock is None:
            from twisted.internet import reactor as default_reactor

            clock = default_reactor
        assert clock is not None
        self._token = token
        self._stats = stats
        self._access = access_list
        self._passkeys = passkeys
        self._clock = clock

    def render(self, request: Request) -> Any:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        scheme, _, given = (request.getHeader(b"authorization") or b"").strip().partition(b" ")
        # Constant time: how much of a guess was right must not show in how long it took.
        if not hmac.compare_digest(given.strip(), self._token) or scheme.lower() != b"bearer":
            request.setHeader(b"www-authenticate", b'Bearer realm="tracker admin"')
            return _json(request, 401, {"error": "missing or wrong bearer token"})
        try:
            answer = self._route(request, request.method, [s for s in request.postpath or [] if s])
        except ApiError as e:
            return _json(request, e.status, {"error": e.message})
        except Exception:
            log.failure("admin API: unexpected error on {uri!r}", uri=request.uri)
            return _json(request, 500, {"error": "internal error; see the tracker's log"})
        if isinstance(answer, Deferred):
            _finish_later(request, answer)
            return NOT_DONE_YET
        return _json(request, *answer)

    def _route(self, request: Request, method: bytes, path: list[bytes]) -> Answer:
        route = (method, path[0] if path else b"", len(path))
        if route == (b"GET", b"stats", 1):
            return 200, dict(self._stats())
        if route == (b"GET", b"torrents", 1):
            return self._list_torrents()
        if route == (b"POST", b"torrents", 1):
            return self._add_torrent(_body(request))
        if route == (b"DELETE", b"torrents", 2):
            return self._remove_torrent(path[1])
        if route == (b"POST", b"reload", 1):
            return self._reload()
        if route == (b"GET", b"passkeys", 1):
            return self._list_passkeys()
        if route == (b"POST", b"passkeys", 1):
            return self._add_passkey(_body(request))
        if route == (b"DELETE", b"passkeys", 2):
            return self._remove_passkey(path[1])
        known = {b"stats", b"torrents", b"reload", b"passkeys"}
        if path and path[0] in known and len(path) <= 2:
            raise ApiError(405, f"{method.decode('ascii', 'replace')} is not allowed here")
        raise ApiError(404, "no such endpoint: see the README's admin API section")

    # The access list.

    def _access_list(self) -> AccessList:
        if self._access is None:
            raise ApiError(
                404, "no access list: start the tracker with --whitelist FILE or --blacklist FILE"
            )
        if not self._access.loaded:
            raise ApiError(503, "the tracker is starting; try again shortly")
        return self._access

    def _list_torrents(self) -> Reply:
        access = self._access_list()
        return 200, {
            "list": access.list_name,
            "file": access.path,
            "file_torrents": len(access.file_hashes),
            "stored": sorted(h.hex() for h in access.stored_hashes),
        }

    def _add_torrent(self, body: Mapping[str, Any]) -> Deferred[Reply]:
        access = self._access_list()
        info_hash = _info_hash(body.get("info_hash"))
        added = access.add(info_hash)
        return added.addCallback(
            lambda new: (201 if new else 200, {"info_hash": info_hash.hex(), "added": new})
        )

    def _remove_torrent(self, segment: bytes) -> Deferred[Reply]:
        access = self._access_list()
        info_hash = _info_hash(segment.decode("ascii", "replace"))

        def removed(there: bool) -> Reply:
            if info_hash in access.file_hashes:
                raise ApiError(
                    409,
                    f"{info_hash.hex()} is listed in {access.path}: remove it there and reload",
                )
            if not there:
                raise ApiError(404, f"{info_hash.hex()} was not added through the API")
            return 200, {"info_hash": info_hash.hex(), "removed": True}

        return access.remove(info_hash).addCallback(removed)

    def _reload(self) -> Deferred[Reply]:
        access = self._access_list()

        def failed(failure: Failure) -> Reply:
            error = failure.value
            if isinstance(error, OSError):
                reason = f"cannot read {access.path}: {error.strerror or error}"
            elif isinstance(error, AccessListError):
                reason = f"{access.path}: {error}"
            else:
                return failure  # type: ignore[return-value]
            raise ApiError(422, f"{reason}; the list in force is kept")

        reloaded = access.reload()
        return reloaded.addCallbacks(
            lambda count: (200, {"list": access.list_name, "file_torrents": count}), failed
        )

    # Passkeys.

    def _passkey_table(self) -> Passkeys:
        if self._passkeys is None:
            raise ApiError(404, "private mode is off: start the tracker with --private")
        if not self._passkeys.loaded:
            raise ApiError(503, "the tracker is starting; try again shortly")
        return self._passkeys

    def _list_passkeys(self) -> Reply:
        rows = self._passkey_table().listing()
        return 200, {
            "passkeys": [
                {
                    "passkey": row.passkey.decode("ascii"),
                    "label": row.label,
                    "created": row.created,
                    "uploaded": row.uploaded,
                    "downloaded": row.downloaded,
                }
                for row in rows
            ]
        }

    def _add_passkey(self, body: Mapping[str, Any]) -> Deferred[Reply]:
        passkeys = self._passkey_table()
        given = body.get("passkey")
        label = body.get("label", "")
        if given is not None and not isinstance(given, str):
            raise ApiError(400, "'passkey' must be a string")
        if not isinstance(label, str) or len(label) > 200:
            raise ApiError(400, "'label' must be a string of at most 200 characters")
        try:
            passkey = None if given is None else check_passkey(given.encode("utf-8"))
            added = passkeys.add(passkey, label, int(self._clock.seconds()))
        except PasskeyError as e:
            raise ApiError(400, str(e)) from None

        def answered(new: bytes | None) -> Reply:
            if new is None:
                raise ApiError(409, "that passkey exists already")
            text = new.decode("ascii")
            return 201, {"passkey": text, "label": label, "announce_path": f"/{text}/announce"}

        return added.addCallback(answered)

    def _remove_passkey(self, segment: bytes) -> Deferred[Reply]:
        passkeys = self._passkey_table()

        def removed(there: bool) -> Reply:
            if not there:
                raise ApiError(404, "no such passkey")
            return 200, {"passkey": segment.decode("ascii", "replace"), "removed": True}

        return passkeys.remove(segment).addCallback(removed)


def _info_hash(value: object) -> bytes:
    info_hash = parse_info_hash(value) if isinstance(value, str) else None
    if info_hash is None:
        raise ApiError(400, "'info_hash' must be 40 hex digits")
    return info_hash


def _body(request: Request) -> Mapping[str, Any]:
    content = request.content
    data = content.read(MAX_BODY + 1) if content is not None else b""
    if len(data) > MAX_BODY:
        raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
    except ValueError as e:
        raise ApiError(400, f"the body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _json(request: Request, status: int, body: Mapping[str, Any]) -> bytes:
    request.setResponseCode(status)
    data = json.dumps(body, sort_keys=True).encode("utf-8") + b"\n"
    request.setHeader(b"content-length", b"%d" % len(data))
    return data


def _finish_later(request: Request, answer: Deferred[Reply]) -> None:
    gone: list[Failure] = []
    request.notifyFinish().addErrback(gone.append)

    def failed(failure: Failure) -> Reply:
        error = failure.value
        if isinstance(error, ApiError):
            return error.status, {"error": error.message}
        problem = disk_error(error)
        if problem is not None:
            # Nothing was changed; the tracker's log and /metrics tell the disk's state.
            request.setHeader(b"retry-after", b"%d" % DISK_RETRY_AFTER)
            return 503, {"error": f"the database cannot be written ({problem}); try again later"}
        log.failure("admin API: {uri!r} failed", failure, uri=request.uri)
        return 500, {"error": "internal error; see the tracker's log"}

    def write(reply: Reply) -> None:
        if gone:
            return
        request.write(_json(request, *reply))
        request.finish()

    answer.addErrback(failed).addCallback(write).addErrback(
        lambda f: log.failure("admin API: could not send a reply", f)
    )


_MALFORMED_BODY = b'{"error": "the Content-Type header cannot be read"}\n'


class AdminRequest(Request):
    """A request of the API: one whose Content-Type Twisted cannot read gets 400."""

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        try:
            super().requestReceived(command, path, version)
        except ValueError:
            # Twisted reads a POST's Content-Type with the email package, which raises for
            # bytes it takes for line breaks (\x0b, \x0c, \x1c to \x1e, \x85): out of the
            # connection, which would close without an answer and log a traceback.
            transport = self.channel.transport
            assert transport is not None
            transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(_MALFORMED_BODY), _MALFORMED_BODY)
            )
            transport.loseConnection()


class AdminSite(Site):
    """The API's site: idle connections close after 30 seconds, as the tracker's do."""

    requestFactory = AdminRequest

    def __init__(self, resource: AdminResource, timeout: float = 30) -> None:
        super().__init__(resource, timeout=timeout)
