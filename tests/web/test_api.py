"""
Tests for L{disperse.web.api}: every row of the original project's HTTP
contract, the extensions, and bad input, through L{StubTreq} with the node
on a L{Clock}.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.coordinator import Consistency, ReadOutcome
from disperse.cluster.members import MemberDirectory
from disperse.config import NodeConfig
from disperse.gossip.config import GossipSettings
from disperse.gossip.crypto import Keyring
from disperse.gossip.service import Membership
from disperse.logs import fingerprint as keyFingerprint
from disperse.testing import MemoryReactorWithUDP
from disperse.testing.node import makeNode
from disperse.web.api import CacheAPI

START = 1_700_000_000.0
URL = "http://node.test"
SEED_PUT_BODY = b'{"value": "test", "duration": "9000000000000"}'
JSON_HEADERS = {"Content-Type": ["application/json"]}


class Response:
    """
    What a test looks at in an answer.
    """

    def __init__(self, code: int, headers: Any, body: bytes) -> None:
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def json(self) -> Any:
        assert self.header("content-type") == "application/json", self.headers
        return json.loads(self.body)


class CacheAPITests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.config = NodeConfig(
            nodeName="alpha",
            advertiseAddress="10.0.0.1",
            gossipPort=7946,
            maxMemory=64 * 1024 * 1024,
            maxValueSize=1024,
        )
        self.node = makeNode(self.config, self.clock)
        self.node.httpPort = 8000
        # StubTreq builds its methods at run time, out of mypy's sight.
        self.stub: Any = StubTreq(CacheAPI(self.node).resource())

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, list[str]] | None = None,
    ) -> Response:
        d = self.stub.request(method, URL + path, data=body, headers=headers)
        self.stub.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(self.stub.content(response))
        return Response(response.code, response.headers, content)

    def put(
        self, key: str, body: bytes, contentType: str = "application/json"
    ) -> Response:
        return self.request(
            "PUT", "/cache/" + key, body, {"Content-Type": [contentType]}
        )

    def assertError(self, response: Response, code: int, message: str) -> None:
        self.assertEqual((response.code, response.json()), (code, {"error": message}))

    # The seed's contract

    def test_seedPutThenGet(self) -> None:
        put = self.put("John10", SEED_PUT_BODY)
        self.assertEqual((put.code, put.body), (200, b"OK"))
        get = self.request("GET", "/cache/John10", headers=JSON_HEADERS)
        self.assertEqual((get.code, get.body), (200, b"test"))
        self.assertEqual(get.header("content-type"), "text/plain; charset=utf-8")

    def test_getMiss(self) -> None:
        response = self.request("GET", "/cache/nothing")
        self.assertEqual((response.code, response.body), (404, b"Not Found"))

    def test_durationIsNanoseconds(self) -> None:
        self.put("k", b'{"value": "v", "duration": "1500000000"}')
        self.clock.advance(1.499)
        self.assertEqual(self.request("GET", "/cache/k").code, 200)
        self.clock.advance(0.001)
        self.assertEqual(self.request("GET", "/cache/k").code, 404)

    def test_durationRoundsUpToTheMillisecond(self) -> None:
        self.put("k", b'{"value": "v", "duration": 1}')
        record = self.node.store.record("k")
        assert record is not None
        self.assertEqual(record.expiresAtMs, int(START * 1000) + 1)

    def test_putWithoutJSONContentType(self) -> None:
        for contentType in ("text/plain", "", "application/x-www-form-urlencoded"):
            self.assertError(
                self.put("k", SEED_PUT_BODY, contentType),
                400,
                "Content-Type must be application/json",
            )
        response = self.request("PUT", "/cache/k", SEED_PUT_BODY)
        self.assertError(response, 400, "Content-Type must be application/json")

    def test_contentTypeWithCharset(self) -> None:
        response = self.put("k", SEED_PUT_BODY, "application/json; charset=utf-8")
        self.assertEqual(response.code, 200)

    def test_malformedJSON(self) -> None:
        for body in (b"", b"{", b"[1, 2]", b'"text"', b"\xff\xfe", b"null"):
            self.assertError(self.put("k", body), 400, "Invalid JSON format")

    def test_missingValue(self) -> None:
        for body in (
            b'{"duration": "10"}',
            b'{"value": null, "duration": "10"}',
            b'{"value": "", "duration": "10"}',
        ):
            self.assertError(self.put("k", body), 400, "Missing required fields")

    def test_valueMustBeAString(self) -> None:
        response = self.put("k", b'{"value": 5}')
        self.assertEqual(response.code, 400)
        self.assertIn("value must be a string", response.json()["error"])

    def test_durationNotAnInteger(self) -> None:
        for duration in ('"abc"', '"1.5"', "1.5", "true", '"0x10"', '" 10"', "[]"):
            response = self.put(
                "k", b'{"value": "v", "duration": %s}' % duration.encode()
            )
            self.assertError(
                response, 400, "duration must be an integer number of nanoseconds"
            )

    def test_negativeDuration(self) -> None:
        for duration in ('"-1"', "-5"):
            response = self.put(
                "k", b'{"value": "v", "duration": %s}' % duration.encode()
            )
            self.assertError(response, 400, "duration must not be negative")

    def test_durationOutOfRange(self) -> None:
        response = self.put("k", b'{"value": "v", "duration": "9223372036854775808"}')
        self.assertError(response, 400, "duration is out of range (at most 2^63-1 ns)")

    def test_noDurationMeansNoExpiry(self) -> None:
        for i, body in enumerate(
            (
                b'{"value": "v"}',
                b'{"value": "v", "duration": "0"}',
                b'{"value": "v", "duration": 0}',
                b'{"value": "v", "duration": null}',
                b'{"value": "v", "duration": ""}',
            )
        ):
            self.assertEqual(self.put(f"k{i}", body).code, 200)
            record = self.node.store.record(f"k{i}")
            assert record is not None
            self.assertEqual(record.expiresAtMs, 0)

    def test_numericDurationAndExtraFields(self) -> None:
        body = b'{"value": "v", "duration": 2000000000, "extra": [1], "other": {}}'
        self.assertEqual(self.put("k", body).code, 200)
        self.clock.advance(2)
        self.assertEqual(self.request("GET", "/cache/k").code, 404)

    def test_unicodeValueAndKey(self) -> None:
        self.put("caf%C3%A9", '{"value": "ünïcødé ☃"}'.encode())
        response = self.request("GET", "/cache/caf%C3%A9")
        self.assertEqual(response.body.decode("utf-8"), "ünïcødé ☃")
        self.assertIsNotNone(self.node.store.record("café"))

    def test_keysMayContainSlashes(self) -> None:
        self.put("users/42", b'{"value": "v"}')
        self.assertEqual(self.request("GET", "/cache/users/42").body, b"v")
        self.assertEqual(self.request("GET", "/cache/users%2F42").body, b"v")

    def test_delete(self) -> None:
        self.put("k", SEED_PUT_BODY)
        for _ in range(2):
            response = self.request("DELETE", "/cache/k", headers=JSON_HEADERS)
            self.assertEqual((response.code, response.body), (200, b"OK"))
            self.assertEqual(self.request("GET", "/cache/k").code, 404)

    def test_otherMethods(self) -> None:
        for method in ("POST", "PATCH", "OPTIONS"):
            response = self.request(method, "/cache/k", b"{}", JSON_HEADERS)
            self.assertEqual(
                (response.code, response.body), (405, b"Method not allowed")
            )

    def test_bodyTooLarge(self) -> None:
        body = b'{"value": "' + b"x" * (1024 + 64 * 1024) + b'"}'
        response = self.put("k", body)
        self.assertEqual(response.code, 413)
        self.assertIn("body is larger than", response.json()["error"])

    def test_valueTooLarge(self) -> None:
        response = self.put("k", b'{"value": "' + b"x" * 1025 + b'"}')
        self.assertError(response, 413, "value is larger than 1024 bytes")
        self.assertEqual(self.put("k", b'{"value": "' + b"x" * 1024 + b'"}').code, 200)

    def test_keyTooLong(self) -> None:
        response = self.request("GET", "/cache/" + "k" * 1025)
        self.assertError(response, 414, "key is longer than 1024 bytes")
        # Length counts UTF-8 bytes, not characters.
        response = self.request(
            "PUT", "/cache/" + "%C3%A9" * 513, b'{"value": "v"}', JSON_HEADERS
        )
        self.assertEqual(response.code, 414)
        self.assertEqual(self.request("GET", "/cache/" + "k" * 1024).code, 404)

    def test_keyNotUTF8(self) -> None:
        self.assertError(
            self.request("GET", "/cache/a%FF"), 400, "key is not valid UTF-8"
        )

    def test_xIsSyncAccepted(self) -> None:
        response = self.request(
            "PUT",
            "/cache/k",
            SEED_PUT_BODY,
            {"Content-Type": ["application/json"], "X-Is-Sync": ["true"]},
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(
            self.request("GET", "/cache/k", headers={"X-Is-Sync": ["true"]}).body,
            b"test",
        )

    def test_members(self) -> None:
        response = self.request("GET", "/cache/members")
        self.assertEqual(
            response.json(),
            [
                {
                    "addr": "10.0.0.1:7946",
                    "http_port": 8000,
                    "name": "alpha",
                    "port": 7946,
                }
            ],
        )

    def test_putToMembersStoresAKey(self) -> None:
        # As in the original, only GET on /cache/members lists members.
        self.assertEqual(self.put("members", b'{"value": "v"}').code, 200)
        self.assertIsNotNone(self.node.store.record("members"))

    # Extensions

    def test_binaryValues(self) -> None:
        value = bytes(range(256)) * 3
        response = self.put("blob?ttl=2s", value, "application/octet-stream")
        self.assertEqual(response.code, 200)
        get = self.request("GET", "/cache/blob")
        self.assertEqual(get.body, value)
        self.assertEqual(get.header("content-type"), "application/octet-stream")
        self.clock.advance(2)
        self.assertEqual(self.request("GET", "/cache/blob").code, 404)

    def test_binaryTtlSources(self) -> None:
        cases = [
            ("a", {"X-TTL": ["1500ms"]}, 1500),
            ("b?ttl=90", {}, 90_000),
            ("c?duration=2000000", {}, 2),
            ("d", {}, 0),
        ]
        for path, extra, ttlMs in cases:
            headers = {"Content-Type": ["application/octet-stream"], **extra}
            self.assertEqual(
                self.request("PUT", "/cache/" + path, b"v", headers).code, 200
            )
            record = self.node.store.record(path.split("?")[0])
            assert record is not None
            self.assertEqual(
                record.expiresAtMs, int(START * 1000) + ttlMs if ttlMs else 0
            )

    def test_binaryBadTtl(self) -> None:
        response = self.put("k?ttl=soon", b"v", "application/octet-stream")
        self.assertEqual(response.code, 400)
        self.assertIn("not a duration", response.json()["error"])

    def test_emptyBinaryValue(self) -> None:
        self.assertEqual(self.put("k", b"", "application/octet-stream").code, 200)
        response = self.request("GET", "/cache/k")
        self.assertEqual((response.code, response.body), (200, b""))

    def test_head(self) -> None:
        self.put("k", SEED_PUT_BODY)
        hit = self.request("HEAD", "/cache/k")
        self.assertEqual((hit.code, hit.body), (200, b""))
        self.assertEqual(hit.header("content-length"), "4")
        self.assertEqual(self.request("HEAD", "/cache/missing").code, 404)

    def test_health(self) -> None:
        response = self.request("GET", "/health")
        self.assertEqual(
            (response.code, response.json()), (200, {"status": "ok", "node": "alpha"})
        )

    def test_stats(self) -> None:
        self.put("k", SEED_PUT_BODY)
        self.request("GET", "/cache/k")
        self.request("GET", "/cache/missing")
        self.request("DELETE", "/cache/k")
        stats = self.request("GET", "/stats").json()
        self.assertEqual(
            {
                k: stats[k]
                for k in (
                    "node",
                    "keys",
                    "tombstones",
                    "hits",
                    "misses",
                    "sets",
                    "deletes",
                )
            },
            {
                "node": "alpha",
                "keys": 0,
                "tombstones": 1,
                "hits": 1,
                "misses": 1,
                "sets": 1,
                "deletes": 1,
            },
        )
        self.assertEqual(stats["maxBytes"], 64 * 1024 * 1024)

    def test_unknownRoute(self) -> None:
        self.assertError(self.request("GET", "/nope"), 404, "no such route")
        self.assertError(self.request("GET", "/cache/"), 404, "no such route")

    def test_wrongMethodOnOtherRoutes(self) -> None:
        self.assertError(
            self.request("POST", "/health"), 405, "method not allowed on this route"
        )

    def test_internalErrorIsContained(self) -> None:
        def broken(key: str, level: Consistency | None = None) -> ReadOutcome:
            raise RuntimeError("secret value in message")

        self.node.get = broken  # type: ignore[method-assign]
        response = self.request("GET", "/cache/k")
        self.assertError(response, 500, "internal error")
        self.assertNotIn(b"secret", response.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        # The node goes on serving.
        self.assertEqual(self.request("GET", "/health").code, 200)


class GossipKeysAPITests(SynchronousTestCase):
    """
    Rotating gossip keys over HTTP: install, use, remove; fingerprints only.
    """

    def setUp(self) -> None:
        self.old, self.new = b"o" * 16, b"n" * 32
        settings = GossipSettings(keyring=Keyring(self.old))
        config = NodeConfig(nodeName="alpha", gossip=settings)
        reactor = MemoryReactorWithUDP()
        directory = MemberDirectory()
        self.node = makeNode(
            config,
            reactor,
            directory=directory,
            membership=Membership(
                name="alpha",
                bindAddress="127.0.0.1",
                advertiseAddress="127.0.0.1",
                port=7946,
                seeds=[],
                settings=settings,
                reactor=reactor,
                meta=lambda: b"{}",
                listener=directory,
            ),
        )
        self.stub: Any = StubTreq(CacheAPI(self.node).resource())

    def call(self, operation: str, key: bytes | str) -> tuple[int, Any]:
        text = key if isinstance(key, str) else base64.b64encode(key).decode()
        d = self.stub.post(
            f"{URL}/cluster/keys/{operation}", data=json.dumps({"key": text}).encode()
        )
        self.stub.flush()
        response = self.successResultOf(d)
        return response.code, json.loads(
            self.successResultOf(self.stub.content(response))
        )

    def test_rotation(self) -> None:
        old, new = keyFingerprint(self.old), keyFingerprint(self.new)
        self.assertEqual(
            self.call("install", self.new),
            (200, {"encryption": True, "primary": old, "keys": [old, new]}),
        )
        self.assertEqual(
            self.call("use", self.new),
            (200, {"encryption": True, "primary": new, "keys": [new, old]}),
        )
        self.assertEqual(
            self.call("remove", self.old),
            (200, {"encryption": True, "primary": new, "keys": [new]}),
        )
        membership = self.node.membership
        assert membership is not None and membership.settings.keyring is not None
        self.assertEqual(membership.settings.keyring.keys, (self.new,))

    def test_refusals(self) -> None:
        self.assertEqual(
            self.call("remove", self.old),
            (409, {"error": "the primary key cannot be removed; use another first"}),
        )
        self.assertEqual(
            self.call("use", self.new),
            (409, {"error": "install the key before making it primary"}),
        )
        self.assertEqual(self.call("install", "not base64!")[0], 400)
        self.assertEqual(self.call("install", b"short")[0], 400)
        self.assertEqual(self.call("rotate", self.new)[0], 404)
