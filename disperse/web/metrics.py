"""
Metrics over HTTP: a site whose requests time themselves, and the
C{/metrics} page Prometheus scrapes.

Every request is counted once, when its answer is finished (or its client
goes away), under the label of its route (L{disperse.web.routes}): a fixed
set of names, so that neither keys nor a client's invented paths and
methods can make the number of series grow without bound.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from disperse.metrics import DISCONNECTED, RequestStats
from disperse.security.limits import HTTPLimits
from disperse.web.routes import Route, routeOf, segments
from disperse.web.service import DisperseSite, _TrackedRequest

_METHODS = frozenset(
    {b"GET", b"HEAD", b"PUT", b"DELETE", b"POST", b"OPTIONS", b"PATCH"}
)


def methodOf(method: bytes) -> bytes:
    """
    The method label of a request: one of the methods HTTP defines that a
    client is likely to send, or C{other}.
    """
    return method if method in _METHODS else b"other"


class MeteredRequest(_TrackedRequest):
    """
    A request that records its route, status and latency in its site's
    L{RequestStats} when it is answered.
    """

    _started: float | None = None

    def process(self) -> None:
        site: MeteredSite = self.channel.site  # type: ignore[attr-defined]
        self._started = site.timer()
        super().process()

    def finish(self) -> None:
        if self._started is not None and not self.finished and not self._disconnected:
            self._record(self.code)
        super().finish()

    def connectionLost(self, reason: Failure) -> None:
        # The client gave up before its answer was finished: count it, or
        # timeouts that clients see would be missing from the metrics.
        if self._started is not None and not self.finished and self.channel:
            self._record(DISCONNECTED)
        super().connectionLost(reason)

    def _record(self, status: int | str) -> None:
        site: MeteredSite = self.channel.site  # type: ignore[attr-defined]
        started, self._started = self._started, None
        if started is None:
            return
        # The front matched the route; a request answered before it got
        # there (shed, say) is matched here.
        route: Route | None = getattr(self, "route", None)
        if route is None:
            route = routeOf(self.method, segments(self.path))
        site.requests.record(
            route.label, methodOf(self.method), status, site.timer() - started
        )


class MeteredSite(DisperseSite):
    """
    A L{DisperseSite} that records every request in C{requests}.

    @ivar timer: a monotonic clock in seconds, for latencies.
    """

    requestFactory = MeteredRequest

    def __init__(
        self,
        resource: IResource,
        requests: RequestStats,
        logPath: str | None = None,
        timer: Callable[[], float] = time.perf_counter,
        limits: HTTPLimits | None = None,
        reactor: Any = None,
    ) -> None:
        super().__init__(resource, logPath=logPath, limits=limits, reactor=reactor)
        self.requests = requests
        self.timer = timer
        requests.inFlight = lambda: self.inFlight


class MetricsPage(Resource):
    """
    C{GET /metrics}: the registry in Prometheus's text format, or in
    OpenMetrics when the scraper asks for it.

    Collectors read live node state, so they run here, on the reactor
    thread: C{prometheus_client}'s own Twisted resource would run them in
    a thread pool while the reactor changes that state.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render(self, request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({"error": "method not allowed on this route"}).encode()
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encoder, contentType = choose_encoder(accept)
        body = encoder(self._registry)
        request.setHeader(b"content-type", contentType.encode("ascii"))
        return body
