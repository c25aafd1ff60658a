"""
The checks every public request passes before it is served: who the
client is (a bearer token, or its address), whether it is over its rate
limit or the node's, and whether its token allows what it asks for.

Node-to-node calls under C{/internal/} never come here: they carry their
own signatures (and, with TLS, certificates) and are not limited as
clients are.

The scope each request needs is its route's (L{disperse.web.routes}).
Refusals are JSON errors, like every other error of the API::

    401  no token, or one this node does not know
    403  a token outside its scopes or its key prefix
    429  over a rate limit, with Retry-After in whole seconds
"""

from __future__ import annotations

import ipaddress
import json
import math
from typing import Any

from twisted.web.iweb import IRequest

from disperse.logs import logger
from disperse.security.options import SecurityConfig
from disperse.security.ratelimit import RateLimiter
from disperse.security.tokens import ADMIN, Grant, TokenTable
from disperse.web.routes import Route, routeOf

JSON = b"application/json"
_BEARER = b"bearer "


def isLoopbackClient(request: IRequest) -> bool:
    host = getattr(request.getClientAddress(), "host", "")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Refusal(Exception):
    """
    A request refused by the guard, with its status and message.
    """

    def __init__(self, code: int, message: str, retryAfter: float = 0.0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryAfter = retryAfter


class RequestGuard:
    """
    Authentication and rate limits for the public API.

    @ivar tokens: the accepted tokens, or C{None} when authentication is
        off; replaced whole when the token file is read again.
    """

    log = logger()

    def __init__(
        self,
        tokens: TokenTable | None = None,
        perClient: RateLimiter | None = None,
        overall: RateLimiter | None = None,
    ) -> None:
        self.tokens = tokens
        self._perClient = perClient
        self._overall = overall
        self.refused = {401: 0, 403: 0, 429: 0}

    @property
    def authenticating(self) -> bool:
        return self.tokens is not None

    @property
    def perClient(self) -> RateLimiter | None:
        """
        The rate limit of each client, shared with the Redis port so that
        a client's budget is one whichever protocol it speaks.
        """
        return self._perClient

    @property
    def overall(self) -> RateLimiter | None:
        """
        The node's rate limit over every client, shared likewise.
        """
        return self._overall

    def admit(
        self, request: IRequest, path: list[bytes], route: Route | None = None
    ) -> bytes | None:
        """
        Check C{request} for C{path} (the percent-decoded segments), which
        the route table matched to C{route} (matched here if not given);
        C{None} if it may be served, else the body of its refusal (the
        status and headers already set).
        """
        try:
            self.check(request, path, route)
        except Refusal as refusal:
            return self.refuse(request, refusal)
        return None

    def check(
        self, request: IRequest, path: list[bytes], route: Route | None = None
    ) -> Grant | None:
        """
        The grant the request was made with (C{None} without tokens).

        @raise Refusal: if it must not be served.
        """
        tokens = self.tokens
        grant = None
        if tokens is not None:
            header = request.getHeader(b"authorization")
            if header is not None and header[:7].lower() == _BEARER:
                grant = tokens.lookup(header[7:].strip())
        self._limit(request, grant)
        if tokens is None:
            return None
        if route is None:
            route = routeOf(request.method, path)
        needed = route.scopeFor(request.method)
        if needed is None:
            return grant
        if grant is None:
            raise Refusal(401, "a valid bearer token is required")
        if not grant.allows(needed):
            raise Refusal(403, f"this token does not allow {needed}")
        if route.key:
            if request.getHeader(b"x-is-sync") == b"true" and not grant.allows(ADMIN):
                raise Refusal(403, "X-Is-Sync needs a token with the admin scope")
            if grant.prefix and not grant.covers(b"/".join(path[1:])):
                raise Refusal(403, "this token does not cover this key")
        return grant

    def _limit(self, request: IRequest, grant: Grant | None) -> None:
        perClient, overall = self._perClient, self._overall
        if perClient is not None:
            client: object = (
                grant.digest
                if grant is not None
                else getattr(request.getClientAddress(), "host", None)
            )
            wait = perClient.take(client)
            if wait:
                raise Refusal(429, "too many requests from this client", wait)
        if overall is not None:
            wait = overall.take()
            if wait:
                raise Refusal(429, "this node is at its request rate limit", wait)

    def refuse(self, request: IRequest, refusal: Refusal) -> bytes:
        code = refusal.code
        self.refused[code] = self.refused.get(code, 0) + 1
        request.setResponseCode(code)
        request.setHeader(b"content-type", JSON)
        if code == 401:
            request.setHeader(b"www-authenticate", b'Bearer realm="disperse"')
        if refusal.retryAfter:
            request.setHeader(
                b"retry-after", b"%d" % max(1, math.ceil(refusal.retryAfter))
            )
        return json.dumps({"error": refusal.message}).encode("utf-8")


def makeGuard(security: SecurityConfig, clock: Any) -> RequestGuard | None:
    """
    The guard of the public API, or C{None} when there is nothing to check
    (no tokens, no rate limits), so that requests then cost nothing extra.
    """
    if (
        security.tokens is None
        and not security.rateLimit
        and not security.globalRateLimit
    ):
        return None
    return RequestGuard(
        tokens=security.tokens,
        perClient=RateLimiter(clock, security.rateLimit)
        if security.rateLimit
        else None,
        overall=(
            RateLimiter(clock, security.globalRateLimit)
            if security.globalRateLimit
            else None
        ),
    )
