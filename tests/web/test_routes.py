"""
The route table of the public port (L{disperse.web.routes}) and its three
readers: for every route and method, the front serves it as a key exactly
when the table says so, the guard asks exactly the table's scope, and the
metrics count it under the table's label.
"""

from __future__ import annotations

from prometheus_client.registry import CollectorRegistry
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from werkzeug.exceptions import MethodNotAllowed, NotFound

from disperse.config import NodeConfig
from disperse.metrics import RequestStats
from disperse.security.limits import HTTPLimits
from disperse.security.tokens import ADMIN, READ, WRITE, parseTokens
from disperse.testing.node import makeNode
from disperse.web import routes
from disperse.web.api import CacheAPI
from disperse.web.auth import RequestGuard
from disperse.web.metrics import MeteredSite, MetricsPage
from disperse.web.routes import ROUTES, Route, routeOf, segments

READER = "routes-reader-0123456789abcdef"
WRITER = "routes-writer-0123456789abcdef"
ADMINISTRATOR = "routes-admin-0123456789abcdef"
TOKENS = f"{READER} read\n{WRITER} read,write\n{ADMINISTRATOR} admin\n"
# The scopes each token has, in the order a needed scope is satisfied.
_HAS = {None: set(), READER: {READ}, WRITER: {READ, WRITE}, ADMINISTRATOR: {ADMIN}}

# A path of each route, as a client sends it.
SAMPLES: dict[Route, list[bytes]] = {
    routes.KEY: [b"/cache/k", b"/cache/users/42", b"/cache/users%2F42"],
    routes.MEMBERS: [b"/cache/members"],
    routes.CLUSTER_MEMBERS: [b"/cluster/members"],
    routes.PARTITIONS: [b"/cluster/partitions"],
    routes.OVERVIEW: [b"/cluster/overview"],
    routes.EVENTS: [b"/cluster/events"],
    routes.GOSSIP_KEYS: [b"/cluster/keys"],
    routes.INSTALL_KEY: [b"/cluster/keys/install"],
    routes.USE_KEY: [b"/cluster/keys/use"],
    routes.REMOVE_KEY: [b"/cluster/keys/remove"],
    routes.SNAPSHOT: [b"/persistence/snapshot"],
    routes.STATS: [b"/stats"],
    routes.METRICS: [b"/metrics"],
    routes.HEALTH: [b"/health"],
    routes.DASHBOARD: [b"/"],
    routes.DASHBOARD_UI: [b"/ui", b"/ui/"],
    routes.DASHBOARD_ASSET: [b"/ui/app.js"],
    routes.OTHER: [b"/nowhere", b"/cache/", b"/cache/k/", b"/internal/v1/apply"],
}


def methodsOf(route: Route) -> list[bytes]:
    # Its own methods, and one it does not serve.
    return [*route.scopes, b"PATCH"]


class _Front:
    """
    A whole public front in memory: API, guard with three tokens, and a
    metered site, fed raw requests.
    """

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.node = makeNode(NodeConfig(nodeName="routes", replicas=1), self.clock)
        self.node.httpPort = 8000
        self.guard = RequestGuard(tokens=parseTokens(TOKENS))
        self.api = CacheAPI(
            self.node, metrics=MetricsPage(CollectorRegistry()), guard=self.guard
        )
        self.site = MeteredSite(
            self.api.resource(),
            RequestStats(),
            timer=self.clock.seconds,
            limits=HTTPLimits(),
            reactor=self.clock,
        )

    def call(self, method: bytes, path: bytes, token: str | None) -> int:
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        channel = self.site.buildProtocol(address)
        assert channel is not None
        transport = StringTransport(peerAddress=address)
        channel.makeConnection(transport)
        body = b'{"value": "v"}' if method in (b"PUT", b"POST", b"PATCH") else b""
        head = [
            b"%s %s HTTP/1.1" % (method, path),
            b"Host: node",
            b"Content-Type: application/json",
            b"Content-Length: %d" % len(body),
            b"Connection: close",
        ]
        if token is not None:
            head.append(b"Authorization: Bearer " + token.encode())
        channel.dataReceived(b"\r\n".join(head) + b"\r\n\r\n" + body)
        channel.connectionLost()
        answer = transport.value()
        assert answer.startswith(b"HTTP/1.1 "), answer
        return int(answer[9:12])


class RouteTableTests(SynchronousTestCase):
    def test_everyRouteHasSamples(self) -> None:
        self.assertEqual(set(SAMPLES), set(ROUTES))
        self.assertEqual(
            len({route.label for route in ROUTES}),
            len(ROUTES) - 2,  # "/", "/ui" and "/ui/{asset}" share "/ui"
        )

    def test_samplesMatchTheirRoutes(self) -> None:
        for route, paths in SAMPLES.items():
            for path in paths:
                for method in route.scopes:
                    self.assertIs(routeOf(method, segments(path)), route, path)

    def test_cacheMembers(self) -> None:
        """
        C{GET} and C{HEAD /cache/members} are the seed's member list; any
        other method makes C{members} a key, with a key's scopes.
        """
        for method in (b"GET", b"HEAD"):
            self.assertIs(routeOf(method, [b"cache", b"members"]), routes.MEMBERS)
        for method in (b"PUT", b"DELETE", b"POST"):
            self.assertIs(routeOf(method, [b"cache", b"members"]), routes.KEY)
        self.assertEqual(routes.KEY.scopeFor(b"PUT"), WRITE)
        self.assertIs(routeOf(b"GET", [b"cache", b"members", b"x"]), routes.KEY)

    def test_kleinServesTheTablesRoutes(self) -> None:
        """
        Every route the front hands to the Klein app is one of the app's,
        with the same methods, and the app has no route the table lacks.
        """
        adapter = CacheAPI.app.url_map.bind("node")
        for route, paths in SAMPLES.items():
            if route.key or route in (routes.OTHER, routes.METRICS):
                continue
            for path in paths:
                for method in route.scopes:
                    adapter.match(path.decode(), method.decode())
                with self.assertRaises(MethodNotAllowed):
                    adapter.match(path.decode(), "PATCH")
        for path in (b"/nowhere", b"/cache/k/"):
            with self.assertRaises(NotFound):
                adapter.match(path.decode(), "GET")
        for rule in CacheAPI.app.url_map.iter_rules():
            sample = rule.rule.replace("<asset>", "app.js").replace(
                "<operation>", "install"
            )
            for name in rule.methods or ():
                route = routeOf(name.encode(), segments(sample.encode()))
                self.assertNotIn(route, (routes.OTHER, routes.KEY), rule.rule)
                self.assertIn(name.encode(), route.scopes, rule.rule)


class ReadersAgreeTests(SynchronousTestCase):
    """
    For every route and method, a request through the whole front with
    each token.
    """

    def test_frontGuardAndMetricsAgree(self) -> None:
        front = _Front()
        for route, paths in SAMPLES.items():
            for path in paths:
                for method in methodsOf(route):
                    self._check(front, route, path, method)

    def _check(self, front: _Front, route: Route, path: bytes, method: bytes) -> None:
        expected = routeOf(method, segments(path))
        if method in route.scopes:
            self.assertIs(expected, route)
        needed = expected.scopeFor(method)
        for token, scopes in _HAS.items():
            where = (method, path, token)
            keys = front.api.cacheRequests
            front.site.requests = requests = RequestStats()
            status = front.call(method, path, token)
            # The guard: refused exactly when the token lacks the scope.
            if needed is None:
                self.assertNotIn(status, (401, 403), where)
            elif token is None:
                self.assertEqual(status, 401, where)
            elif needed in scopes or ADMIN in scopes:
                self.assertNotIn(status, (401, 403), where)
            else:
                self.assertEqual(status, 403, where)
            # The front: the key path exactly for key routes it admitted.
            served = status not in (401, 403)
            self.assertEqual(
                front.api.cacheRequests - keys, int(expected.key and served), where
            )
            # The metrics: counted once, under the route's label.
            self.assertEqual(requests.count(expected.label, method, status), 1, where)
