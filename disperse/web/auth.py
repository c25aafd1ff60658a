"""
The checks every public request passes before it is served: who the
client is (a bearer token, or its address), whether it is over its rate
limit or the node's, and whether its token allows what it asks for.

Node-to-node calls under C{/internal/} never come here: they carry their
own signatures (and, with TLS, certificates) and are not limited as
clients are.

Refusals are JSON errors, like every other error of the API::

    401  no token, or one this node does not know
    403  a token outside its scopes or its key prefix
    429  over a rate limit, with Retry-After in whole seconds
"""

from __future__ import annotations

import ipaddress
import json
import math

from twisted.web.iweb import IRequest

from disperse.logs import logger
from disperse.security.ratelimit import RateLimiter
from disperse.security.tokens import ADMIN, READ, WRITE, Grant, TokenTable

JSON = b"application/json"
_BEARER = b"bearer "
# Routes any client may reach without a token: liveness probes, and the
# dashboard's static page (its data comes from routes that need one).
OPEN_ROUTES = frozenset((b"health", b"", b"ui"))
_READING = frozenset((b"GET", b"HEAD"))


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

    def admit(self, request: IRequest, path: list[bytes]) -> bytes | None:
        """
        Check C{request} for C{path} (the percent-decoded segments); C{None}
        if it may be served, else the body of its refusal (the status and
        headers already set).
        """
        try:
            self.check(request, path)
        except Refusal as refusal:
            return self.refuse(request, refusal)
        return None

    def check(self, request: IRequest, path: list[bytes]) -> Grant | None:
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
        first = path[0] if path else b""
        if grant is None:
            if first in OPEN_ROUTES:
                return None
            raise Refusal(401, "a valid bearer token is required")
        method = request.method
        if first == b"cache" and len(path) > 1 and path[1:] != [b"members"]:
            needed = READ if method in _READING else WRITE
            if not grant.allows(needed):
                raise Refusal(403, f"this token does not allow {needed}")
            if request.getHeader(b"x-is-sync") == b"true" and not grant.allows(ADMIN):
                raise Refusal(403, "X-Is-Sync needs a token with the admin scope")
            if grant.prefix and not grant.covers(b"/".join(path[1:])):
                raise Refusal(403, "this token does not cover this key")
            return grant
        if first == b"cluster" and path[1:2] == [b"keys"]:
            needed = ADMIN
        else:
            # Anything else that reads is for readers; anything that
            # changes the node is administration.
            needed = READ if method in _READING else ADMIN
        if not grant.allows(needed):
            raise Refusal(403, f"this token does not allow {needed}")
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
