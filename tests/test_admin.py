"""The admin API on a real listening port: authentication, each endpoint, and bad requests."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import sqlite3
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import fail, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.helpers import info_hash
from tests.test_network import exchange
from tests.test_resource import LogCapture
from tracker.ops.access import AccessList
from tracker.ops.admin import AdminResource, AdminSite
from tracker.ops.passkeys import Passkeys
from tracker.store.access import WHITELIST, Account, MemoryAccessStore

TOKEN = b"s3cret-token-0123456789"
KEY = "0123456789abcdef0123456789abcdef"
HEX1 = info_hash(1).hex()
HEX2 = info_hash(2).hex()


def call(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    token: bytes | None = TOKEN,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """One request to the API (blocking: run it in a thread); the status and decoded JSON."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = "Bearer " + token.decode()
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        assert response.getheader("Content-Type") == "application/json"
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def call_with_header(
    port: int, method: str, path: str, body: Any, header: str
) -> tuple[int, Any, str | None]:
    """One request with the token; the status, decoded JSON and one header of the answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Content-Type": "application/json", "Authorization": "Bearer " + TOKEN.decode()}
        connection.request(method, path, body=json.dumps(body).encode(), headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read()), response.getheader(header)
    finally:
        connection.close()


def _raw_get(port: int, authorization: bytes) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.putrequest("GET", "/stats")
        connection.putheader("Authorization", authorization)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


class AdminTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="tracker-admin-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.list_path = os.path.join(directory, "whitelist.txt")
        with open(self.list_path, "w") as f:
            f.write(HEX1 + "\n")
        self.store = MemoryAccessStore()
        self.store.passkeys[KEY.encode()] = Account("alice", 5, 10, 20)
        self.access = AccessList(
            WHITELIST, self.list_path, frozenset({info_hash(1)}), self.store, reactor
        )
        self.access.load_stored(frozenset())
        self.passkeys = Passkeys(self.store, Clock())
        self.passkeys.load_stored(dict(self.store.passkeys))
        self.figures = {"torrents": 3, "peers": 7, "seeders": 2, "leechers": 5}
        clock = Clock()
        clock.advance(1000)
        self.port = self.listen(
            AdminResource(TOKEN, lambda: self.figures, self.access, self.passkeys, clock)
        )

    def listen(self, resource: AdminResource) -> int:
        port = reactor.listenTCP(0, AdminSite(resource), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        return deferToThread(call, self.port, method, path, body, **kwargs)

    @inlineCallbacks
    def test_token_required(self) -> Any:
        """Without the right bearer token every endpoint answers 401 with a JSON error and
        changes nothing."""
        for token in [None, b"wrong", TOKEN[:-1], TOKEN + b"x", b"s3cret-token-0123456780"]:
            for method, path, body in [
                ("GET", "/stats", None),
                ("POST", "/torrents", {"info_hash": HEX2}),
                ("DELETE", f"/passkeys/{KEY}", None),
                ("POST", "/passkeys", {}),
            ]:
                status, reply = yield self.call(method, path, body, token=token)
                self.assertEqual((status, reply), (401, {"error": "missing or wrong bearer token"}))
        self.assertEqual(self.store.listed[WHITELIST], set())
        self.assertEqual(list(self.passkeys.ledgers), [KEY.encode()])

    @inlineCallbacks
    def test_scheme_case(self) -> Any:
        """The scheme's name is case-insensitive (RFC 9110); the token is not."""
        for header in [b"bearer " + TOKEN, b"BEARER  " + TOKEN, b"Basic " + TOKEN, TOKEN]:
            status, _ = yield deferToThread(_raw_get, self.port, header)
            self.assertEqual(status, 200 if header.lower().startswith(b"bearer") else 401)

    @inlineCallbacks
    def test_failing_disk_is_503(self) -> Any:
        """A change the database cannot write (the disk full, or an I/O error) is answered 503
        with Retry-After, and changes nothing: the client may try again later."""

        def full(*args: Any) -> Any:
            return fail(sqlite3.OperationalError("database or disk is full"))

        self.patch(self.store, "list_torrent", full)
        self.patch(self.store, "add_passkey", full)
        for path, body in (("/torrents", {"info_hash": HEX2}), ("/passkeys", {})):
            status, reply, retry = yield deferToThread(
                call_with_header, self.port, "POST", path, body, "Retry-After"
            )
            self.assertEqual(status, 503)
            self.assertIn("the database cannot be written (disk full)", reply["error"])
            self.assertEqual(retry, "60")
        self.assertFalse(self.access.allows(info_hash(2)))
        self.assertEqual(list(self.passkeys.ledgers), [KEY.encode()])

    @inlineCallbacks
    def test_stats(self) -> Any:
        """GET /stats gives the figures of the injected callable."""
        status, reply = yield self.call("GET", "/stats")
        self.assertEqual((status, reply), (200, self.figures))

    @inlineCallbacks
    def test_torrents(self) -> Any:
        """Torrents are added (stored and in force), listed, and removed; one in the file
        cannot be removed here."""
        status, reply = yield self.call("POST", "/torrents", {"info_hash": HEX2.upper()})
        self.assertEqual((status, reply), (201, {"info_hash": HEX2, "added": True}))
        self.assertTrue(self.access.allows(info_hash(2)))
        self.assertEqual(self.store.listed[WHITELIST], {info_hash(2)})
        status, reply = yield self.call("POST", "/torrents", {"info_hash": HEX2})
        self.assertEqual((status, reply["added"]), (200, False))
        status, reply = yield self.call("GET", "/torrents")
        self.assertEqual(
            reply,
            {"list": WHITELIST, "file": self.list_path, "file_torrents": 1, "stored": [HEX2]},
        )
        status, reply = yield self.call("DELETE", f"/torrents/{HEX1}")
        self.assertEqual(status, 409)
        self.assertIn("remove it there and reload", reply["error"])
        status, reply = yield self.call("DELETE", f"/torrents/{HEX2}")
        self.assertEqual((status, reply), (200, {"info_hash": HEX2, "removed": True}))
        self.assertFalse(self.access.allows(info_hash(2)))
        status, _ = yield self.call("DELETE", f"/torrents/{HEX2}")
        self.assertEqual(status, 404)

    @inlineCallbacks
    def test_reload(self) -> Any:
        """POST /reload reads the file again; a file with a mistake is refused with its line
        number, and the list in force stays."""
        with open(self.list_path, "w") as f:
            f.write(f"{HEX1}\n{HEX2}\n")
        status, reply = yield self.call("POST", "/reload")
        self.assertEqual((status, reply), (200, {"list": WHITELIST, "file_torrents": 2}))
        self.assertTrue(self.access.allows(info_hash(2)))
        with open(self.list_path, "w") as f:
            f.write(f"{HEX1}\n\nbad\n")
        status, reply = yield self.call("POST", "/reload")
        self.assertEqual(status, 422)
        self.assertIn("line 3: not a 40-digit hex info hash: 'bad'", reply["error"])
        self.assertTrue(self.access.allows(info_hash(2)))

    @inlineCallbacks
    def test_passkeys(self) -> Any:
        """Passkeys are listed with their totals, added (generated or given) and removed."""
        status, reply = yield self.call("GET", "/passkeys")
        self.assertEqual(
            reply,
            {"passkeys": [{"passkey": KEY, "label": "alice", "created": 5,
                           "uploaded": 10, "downloaded": 20}]},
        )  # fmt: skip
        status, reply = yield self.call("POST", "/passkeys", {"label": "bob"})
        self.assertEqual(status, 201)
        generated = reply["passkey"]
        self.assertEqual(reply["announce_path"], f"/{generated}/announce")
        self.assertIn(generated.encode(), self.passkeys.ledgers)
        self.assertEqual(self.store.passkeys[generated.encode()], Account("bob", 1000, 0, 0))
        given = "given_passkey-0123"
        status, reply = yield self.call("POST", "/passkeys", {"passkey": given})
        self.assertEqual((status, reply["passkey"]), (201, given))
        status, reply = yield self.call("POST", "/passkeys", {"passkey": given})
        self.assertEqual(status, 409)
        status, reply = yield self.call("DELETE", f"/passkeys/{given}")
        self.assertEqual((status, reply), (200, {"passkey": given, "removed": True}))
        self.assertNotIn(given.encode(), self.passkeys.ledgers)
        status, _ = yield self.call("DELETE", f"/passkeys/{given}")
        self.assertEqual(status, 404)

    @inlineCallbacks
    def test_bad_requests(self) -> Any:
        """Bad JSON, bad hex, bad passkeys and unknown routes get 4xx with a JSON error, and
        change nothing."""
        cases = [
            ("POST", "/torrents", dict(raw=b"{not json"), 400, "the body is not JSON"),
            ("POST", "/torrents", dict(raw=b"[1, 2]"), 400, "must be a JSON object"),
            ("POST", "/torrents", dict(raw=b'{"info_hash": "zz"}'), 400, "40 hex digits"),
            ("POST", "/torrents", dict(raw=b'{"info_hash": 5}'), 400, "40 hex digits"),
            ("POST", "/torrents", dict(raw=b"{}"), 400, "40 hex digits"),
            ("DELETE", "/torrents/abc", {}, 400, "40 hex digits"),
            ("POST", "/passkeys", dict(raw=b'{"passkey": "short"}'), 400, "16 to 64"),
            ("POST", "/passkeys", dict(raw=b'{"passkey": 12}'), 400, "must be a string"),
            ("POST", "/passkeys", dict(raw=b'{"label": ["x"]}'), 400, "'label'"),
            ("GET", "/nowhere", {}, 404, "no such endpoint"),
            ("PUT", "/stats", {}, 405, "not allowed"),
            ("POST", "/torrents", dict(raw=b"x" * 70000), 413, "larger than"),
        ]
        for method, path, kwargs, code, message in cases:
            status, reply = yield self.call(method, path, None, **kwargs)
            self.assertEqual(status, code, (method, path, reply))
            self.assertIn(message, reply["error"])
        self.assertEqual(self.store.listed[WHITELIST], set())
        self.assertEqual(len(self.passkeys.ledgers), 1)

    @inlineCallbacks
    def test_unreadable_content_type(self) -> Any:
        """A POST whose Content-Type holds a byte Python reads as a line break (which made
        Twisted's parser raise out of the connection, closing it without an answer and logging
        a traceback) gets 400 with a JSON error, changes nothing and logs nothing."""
        captured = LogCapture(self)
        body = json.dumps({"info_hash": HEX2}).encode()
        for byte in b"\x0b\x0c\x1c\x1d\x1e\x85":
            request = (
                b"POST /torrents HTTP/1.1\r\nAuthorization: Bearer %s\r\n"
                b"Content-Type: application/%cjson\r\nContent-Length: %d\r\n\r\n%s"
                % (TOKEN, byte, len(body), body)
            )
            reply = yield deferToThread(exchange, "127.0.0.1", self.port, request)
            self.assertEqual(reply.status, 400)
            self.assertEqual(reply.headers[b"content-type"], b"application/json")
            self.assertIn("Content-Type", json.loads(reply.body)["error"])
        self.assertEqual(captured.failures(), [])
        self.assertEqual(self.store.listed[WHITELIST], set())
        status, _ = yield self.call("POST", "/torrents", {"info_hash": HEX2})
        self.assertEqual(status, 201)

    @inlineCallbacks
    def test_features_off(self) -> Any:
        """Without an access list or private mode, their endpoints say how to turn them on."""
        self.port = self.listen(AdminResource(TOKEN, lambda: {}))
        status, reply = yield self.call("GET", "/torrents")
        self.assertEqual(status, 404)
        self.assertIn("--whitelist FILE or --blacklist FILE", reply["error"])
        status, reply = yield self.call("POST", "/reload")
        self.assertEqual(status, 404)
        status, reply = yield self.call("GET", "/passkeys")
        self.assertIn("--private", reply["error"])

    @inlineCallbacks
    def test_starting(self) -> Any:
        """While the stored state loads, the list and passkey endpoints answer 503."""
        access = AccessList(WHITELIST, self.list_path, frozenset(), self.store, reactor)
        passkeys = Passkeys(self.store, Clock())
        self.port = self.listen(AdminResource(TOKEN, lambda: {}, access, passkeys))
        for path in ["/torrents", "/passkeys"]:
            status, reply = yield self.call("GET", path)
            self.assertEqual(
                (status, reply["error"]), (503, "the tracker is starting; try again shortly")
            )


class TokenTests(SynchronousTestCase):
    def test_short_token_refused(self) -> None:
        """A token shorter than 16 characters is refused."""
        with self.assertRaises(ValueError):
            AdminResource(b"short", lambda: {})
