"""
The routes of the public port, written once.

Every public request is matched here, once, to a L{Route}: the front
(L{disperse.web.api}) serves key routes itself and hands the rest to the
Klein app, the guard (L{disperse.web.auth}) asks for the route's scope,
and the metrics (L{disperse.web.metrics}) count it under the route's
label. None of them looks at the path again.

The one path two routes share is C{/cache/members}: C{GET} and C{HEAD}
answer the seed's member list; any other method treats C{members} as a
key, as on any other C{/cache/<key>}, with the scopes of a key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from disperse.security.tokens import ADMIN, READ, WRITE

_READING = frozenset((b"GET", b"HEAD"))


@dataclass(frozen=True, eq=False)
class Route:
    """
    One route of the public port.

    @ivar path: the route as the docs write it (C{/cache/{key}}).
    @ivar label: the C{route} label of its metrics.
    @ivar scopes: the scope a token needs for each method the route
        serves; C{None} for a route open to clients without a token.
    @ivar otherMethods: the scope needed to be told, for any other method,
        that the route does not serve it.
    @ivar key: whether the front serves it as C{/cache/<key>}, whose token
        must also cover the key, and whose C{X-Is-Sync} needs C{admin}.
    """

    path: str
    scopes: Mapping[bytes, str | None]
    otherMethods: str | None = ADMIN
    key: bool = False
    label: str = field(default="")

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.path)

    def scopeFor(self, method: bytes) -> str | None:
        """
        The scope a token needs for C{method} on this route (C{None}: no
        token needed).
        """
        return self.scopes.get(method, self.otherMethods)


def _reading(scope: str | None) -> dict[bytes, str | None]:
    return {b"GET": scope, b"HEAD": scope}


KEY = Route(
    "/cache/{key}",
    {b"GET": READ, b"HEAD": READ, b"PUT": WRITE, b"DELETE": WRITE},
    # Answered 405 by the key route, as in the seed: a write-scoped miss.
    otherMethods=WRITE,
    key=True,
)
MEMBERS = Route("/cache/members", _reading(READ))
CLUSTER_MEMBERS = Route("/cluster/members", _reading(READ))
PARTITIONS = Route("/cluster/partitions", _reading(READ))
OVERVIEW = Route("/cluster/overview", _reading(READ))
EVENTS = Route("/cluster/events", _reading(READ))
GOSSIP_KEYS = Route("/cluster/keys", _reading(ADMIN))
INSTALL_KEY = Route("/cluster/keys/install", {b"POST": ADMIN})
USE_KEY = Route("/cluster/keys/use", {b"POST": ADMIN})
REMOVE_KEY = Route("/cluster/keys/remove", {b"POST": ADMIN})
SNAPSHOT = Route("/persistence/snapshot", {b"POST": ADMIN})
STATS = Route("/stats", _reading(READ))
METRICS = Route("/metrics", _reading(READ))
# Liveness probes, and the dashboard's static page (the data it fetches
# needs a token): open whatever the method, which the app then refuses.
HEALTH = Route("/health", _reading(None), otherMethods=None)
DASHBOARD = Route("/", _reading(None), otherMethods=None, label="/ui")
DASHBOARD_UI = Route("/ui", _reading(None), otherMethods=None)
DASHBOARD_ASSET = Route("/ui/{asset}", _reading(None), otherMethods=None, label="/ui")
# Any other path: the app answers 404. Reading is for readers; anything
# that might change the node is administration.
OTHER = Route("other", _reading(READ))

ROUTES: tuple[Route, ...] = (
    KEY,
    MEMBERS,
    CLUSTER_MEMBERS,
    PARTITIONS,
    OVERVIEW,
    EVENTS,
    GOSSIP_KEYS,
    INSTALL_KEY,
    USE_KEY,
    REMOVE_KEY,
    SNAPSHOT,
    STATS,
    METRICS,
    HEALTH,
    DASHBOARD,
    DASHBOARD_UI,
    DASHBOARD_ASSET,
    OTHER,
)

# Routes of one fixed path, by their segments (as Twisted splits a path:
# "/" is one empty segment, "/ui/" ends with one).
_FIXED: dict[tuple[bytes, ...], Route] = {
    (b"",): DASHBOARD,
    (b"ui",): DASHBOARD_UI,
    (b"ui", b""): DASHBOARD_UI,
    (b"cluster", b"members"): CLUSTER_MEMBERS,
    (b"cluster", b"partitions"): PARTITIONS,
    (b"cluster", b"overview"): OVERVIEW,
    (b"cluster", b"events"): EVENTS,
    (b"cluster", b"keys"): GOSSIP_KEYS,
    (b"cluster", b"keys", b"install"): INSTALL_KEY,
    (b"cluster", b"keys", b"use"): USE_KEY,
    (b"cluster", b"keys", b"remove"): REMOVE_KEY,
    (b"persistence", b"snapshot"): SNAPSHOT,
    (b"health",): HEALTH,
    (b"stats",): STATS,
    (b"metrics",): METRICS,
}


def routeOf(method: bytes, path: Sequence[bytes]) -> Route:
    """
    The route of a request for C{path}: its percent-decoded segments after
    the leading C{/} (a request's C{postpath}).
    """
    # The hot path first: two comparisons and a length for a key.
    if len(path) > 1 and path[0] == b"cache" and path[-1]:
        if len(path) == 2 and path[1] == b"members" and method in _READING:
            return MEMBERS
        return KEY
    route = _FIXED.get(tuple(path))
    if route is not None:
        return route
    if len(path) == 2 and path[0] == b"ui" and path[1]:
        return DASHBOARD_ASSET
    return OTHER


def segments(path: bytes) -> list[bytes]:
    """
    The percent-decoded segments of a request's path (without its query),
    as Twisted makes C{postpath}.
    """
    return [unquote_to_bytes(part) for part in path[1:].split(b"/")]
