"""
Tests for L{disperse.web.auth}: bearer tokens, scopes, prefixes and rate
limits in front of the public API, through L{StubTreq} on a L{Clock}, and
the node's own refusals of X-Is-Sync and keyring administration.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from disperse.config import NodeConfig
from disperse.security.ratelimit import RateLimiter
from disperse.security.tokens import parseTokens
from disperse.testing.node import makeNode
from disperse.web.api import CacheAPI
from disperse.web.auth import RequestGuard

START = 1_700_000_000.0
URL = "http://node.test"
READER = "reader-token-0123456789abcdef"
WRITER = "writer-token-0123456789abcdef"
USERS = "users-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
TOKENS = f"""
{READER} read
{WRITER} read,write
{USERS} read,write users/
{ADMIN} admin
"""
PUT = b'{"value": "v"}'


class _Base(SynchronousTestCase):
    guard: RequestGuard | None = None

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.node = makeNode(NodeConfig(nodeName="alpha", replicas=1), self.clock)
        self.node.httpPort = 8000
        self.stub: Any = StubTreq(CacheAPI(self.node, guard=self.guard).resource())

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: bytes | None = None,
        headers: dict[str, list[str]] | None = None,
    ) -> tuple[int, Any, bytes]:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = [f"Bearer {token}"]
        if body is not None:
            headers.setdefault("Content-Type", ["application/json"])
        d = self.stub.request(method, URL + path, data=body, headers=headers)
        self.stub.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(self.stub.content(response))
        return response.code, response.headers, content

    def assertRefused(
        self, answer: tuple[int, Any, bytes], code: int, message: str
    ) -> None:
        status, headers, body = answer
        self.assertEqual((status, json.loads(body)), (code, {"error": message}))
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/json"])


class AuthenticationTests(_Base):
    """
    The security matrix rows about tokens.
    """

    def setUp(self) -> None:
        self.guard = RequestGuard(tokens=parseTokens(TOKENS))
        super().setUp()

    def test_noTokenIs401(self) -> None:
        answer = self.call("GET", "/cache/k")
        self.assertRefused(answer, 401, "a valid bearer token is required")
        self.assertEqual(
            answer[1].getRawHeaders("www-authenticate"), ['Bearer realm="disperse"']
        )
        self.assertRefused(
            self.call("PUT", "/cache/k", body=PUT),
            401,
            "a valid bearer token is required",
        )

    def test_badTokenIs401(self) -> None:
        for header in ("Bearer nope-nope-nope-nope", "Basic " + READER, READER, ""):
            answer = self.call("GET", "/stats", headers={"Authorization": [header]})
            self.assertRefused(answer, 401, "a valid bearer token is required")

    def test_schemeIsCaseInsensitive(self) -> None:
        answer = self.call(
            "GET", "/cache/k", headers={"Authorization": ["bearer " + READER]}
        )
        self.assertEqual(answer[0], 404)

    def test_readTokenReads(self) -> None:
        self.assertEqual(self.call("PUT", "/cache/k", WRITER, PUT)[0], 200)
        self.assertEqual(self.call("GET", "/cache/k", READER)[2], b"v")
        self.assertEqual(self.call("GET", "/cache/members", READER)[0], 200)
        self.assertEqual(self.call("GET", "/stats", READER)[0], 200)

    def test_readTokenWritingIs403(self) -> None:
        self.assertRefused(
            self.call("PUT", "/cache/k", READER, PUT),
            403,
            "this token does not allow write",
        )
        self.assertRefused(
            self.call("DELETE", "/cache/k", READER),
            403,
            "this token does not allow write",
        )
        self.assertIsNone(self.node.getLocal("k"))

    def test_prefixTokenOutsideItsPrefixIs403(self) -> None:
        self.assertEqual(self.call("PUT", "/cache/users/1", USERS, PUT)[0], 200)
        self.assertEqual(self.call("GET", "/cache/users/1", USERS)[2], b"v")
        for method, body in (("PUT", PUT), ("GET", None), ("DELETE", None)):
            self.assertRefused(
                self.call(method, "/cache/admins/1", USERS, body),
                403,
                "this token does not cover this key",
            )
        # Prefixes apply to the key as decoded, as the store sees it.
        self.assertEqual(self.call("GET", "/cache/%75sers%2F1", USERS)[2], b"v")
        self.assertRefused(
            self.call("GET", "/cache/user", USERS),
            403,
            "this token does not cover this key",
        )

    def test_isSyncNeedsAdmin(self) -> None:
        headers = {"X-Is-Sync": ["true"]}
        self.assertRefused(
            self.call("PUT", "/cache/k", WRITER, PUT, headers),
            403,
            "X-Is-Sync needs a token with the admin scope",
        )
        self.assertIsNone(self.node.getLocal("k"))
        self.assertEqual(self.call("PUT", "/cache/k", ADMIN, PUT, headers)[0], 200)
        self.assertIsNotNone(self.node.getLocal("k"))

    def test_keyringNeedsAdmin(self) -> None:
        for token in (READER, WRITER):
            self.assertRefused(
                self.call("GET", "/cluster/keys", token),
                403,
                "this token does not allow admin",
            )
        # With tokens, an admin may administer from anywhere; this node has
        # no gossip yet, which is the next answer.
        self.assertNotEqual(self.call("GET", "/cluster/keys", ADMIN)[0], 403)

    def test_unknownWritesNeedAdmin(self) -> None:
        self.assertRefused(
            self.call("POST", "/cluster/anything", WRITER),
            403,
            "this token does not allow admin",
        )
        self.assertEqual(self.call("POST", "/cluster/anything", ADMIN)[0], 404)

    def test_healthIsOpen(self) -> None:
        self.assertEqual(self.call("GET", "/health")[0], 200)

    def test_reload(self) -> None:
        assert self.guard is not None
        self.guard.tokens = parseTokens(f"{READER} read,write\n")
        self.assertEqual(self.call("PUT", "/cache/k", READER, PUT)[0], 200)
        self.assertEqual(self.call("PUT", "/cache/k", WRITER, PUT)[0], 401)


class WithoutTokensTests(_Base):
    """
    Without a token file, administration is for loopback clients only.
    """

    def test_isSyncFromLoopback(self) -> None:
        answer = self.call("PUT", "/cache/k", body=PUT, headers={"X-Is-Sync": ["true"]})
        self.assertEqual(answer[0], 200)

    def test_isSyncFromElsewhereIs403(self) -> None:
        request: Any = DummyRequest([b"cache", b"k"])
        request.method = b"DELETE"
        request.client = IPv4Address("TCP", "10.1.2.3", 5555)
        request.requestHeaders.setRawHeaders(b"x-is-sync", [b"true"])
        api = CacheAPI(self.node)
        body = api.serveKey(request, [b"k"])
        self.assertEqual(request.responseCode, 403)
        assert isinstance(body, bytes)
        self.assertIn("loopback", json.loads(body)["error"])


class RateLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.guard = RequestGuard(
            tokens=None,
            perClient=RateLimiter(self.clock, rate=5),
            overall=RateLimiter(self.clock, rate=100),
        )

    def request(self, host: str, token: str | None = None) -> Any:
        # DummyRequest stands in for IRequest without declaring it.
        request = DummyRequest([b"cache", b"k"])
        request.client = IPv4Address("TCP", host, 5555)
        if token:
            request.requestHeaders.setRawHeaders(
                b"authorization", [b"Bearer " + token.encode()]
            )
        return request

    def test_perClient429WithRetryAfter(self) -> None:
        for _ in range(10):
            self.assertIsNone(
                self.guard.admit(self.request("10.0.0.1"), [b"cache", b"k"])
            )
        request = self.request("10.0.0.1")
        body = self.guard.admit(request, [b"cache", b"k"])
        assert body is not None
        self.assertEqual(request.responseCode, 429)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"retry-after"), [b"1"])
        self.assertEqual(
            json.loads(body), {"error": "too many requests from this client"}
        )
        # Another client is not affected.
        self.assertIsNone(self.guard.admit(self.request("10.0.0.2"), [b"cache", b"k"]))
        self.clock.advance(0.2)
        self.assertIsNone(self.guard.admit(self.request("10.0.0.1"), [b"cache", b"k"]))

    def test_tokenClientsAreKeyedByToken(self) -> None:
        self.guard.tokens = parseTokens(TOKENS)
        for _ in range(10):
            self.assertIsNone(
                self.guard.admit(self.request("10.0.0.1", READER), [b"cache", b"k"])
            )
        self.assertIsNotNone(
            self.guard.admit(self.request("10.0.0.9", READER), [b"cache", b"k"])
        )
        # Same address, another token: another client.
        self.assertIsNone(
            self.guard.admit(self.request("10.0.0.1", WRITER), [b"cache", b"k"])
        )

    def test_overall429(self) -> None:
        refused = 0
        for index in range(400):
            request = self.request(f"10.0.{index // 250}.{index % 250}")
            if self.guard.admit(request, [b"cache", b"k"]) is not None:
                refused += 1
                self.assertEqual(request.responseCode, 429)
        self.assertEqual(refused, 200)


class OpenRoutesTests(_Base):
    def setUp(self) -> None:
        self.guard = RequestGuard(tokens=parseTokens(TOKENS))
        super().setUp()

    def test_dashboardPageIsOpenItsDataIsNot(self) -> None:
        self.assertNotEqual(self.call("GET", "/")[0], 401)
        self.assertNotEqual(self.call("GET", "/ui")[0], 401)
        self.assertEqual(self.call("GET", "/cluster/overview")[0], 401)
        self.assertEqual(self.call("GET", "/metrics")[0], 401)
        self.assertNotEqual(self.call("GET", "/metrics", READER)[0], 401)
