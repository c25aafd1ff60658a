"""
Serving HTTP: a site that counts requests in flight, sheds those beyond its
limits with 503, applies the connection limits of L{disperse.web.limits}
and writes no access log unless asked to; and a service that listens on an
endpoint, reports the port it got, and on stop lets requests in flight
finish before it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from disperse.logs import logger
from disperse.security.limits import ConnectionCounter, HTTPLimits
from disperse.web.limits import GuardedChannel

if TYPE_CHECKING:
    from disperse.cluster.peer.server import PeerServerFactory
    from disperse.resp.server import RespFactory

# How long a stopping node waits for requests in flight.
DRAIN_TIMEOUT = 10.0


class _TrackedRequest(Request):
    def process(self) -> None:
        site: DisperseSite = self.channel.site  # type: ignore[attr-defined]
        size = site.admit(self)
        if size < 0:
            return
        site.requestStarted(size)
        self.notifyFinish().addBoth(site.requestFinished, size)
        super().process()


class DisperseSite(Site):
    """
    A L{Site} that knows how many requests are in flight.

    Access logging through twistd's log costs about a fifth of the request
    rate of a cache, so it is off unless C{logPath} is given.
    """

    requestFactory = _TrackedRequest
    protocol = GuardedChannel  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        resource: IResource,
        logPath: str | None = None,
        limits: HTTPLimits | None = None,
        reactor: Any = None,
    ) -> None:
        """
        @param reactor: runs the connection timeouts; the global one if
            C{None}.
        """
        # No route takes form posts, and parsing the Content-Type of every
        # POST (every node-to-node call) costs about 0.1 ms.
        super().__init__(
            resource,
            logPath=logPath,
            parsePOSTFormSubmission=False,
            reactor=reactor,
        )
        self._accessLog = logPath is not None
        self.limits = limits or HTTPLimits()
        self.connections = ConnectionCounter(self.limits.maxConnectionsPerClient)
        self.timedOut = 0
        self.shed = 0
        self.inFlight = 0
        self.bytesInFlight = 0
        self._drained: list[Deferred[None]] = []

    def log(self, request: Request) -> None:  # type: ignore[override]
        if self._accessLog:
            super().log(request)

    def _updateLogDateTime(self) -> None:
        # The date Twisted refreshes every second is for access log lines
        # only: without an access log it would wake an idle node for nothing.
        if self._accessLog:
            super()._updateLogDateTime()

    def admit(self, request: Request) -> int:
        """
        The body size of C{request} if this node takes it on now; else -1,
        after answering 503. (Node-to-node calls never come here: they have
        their own port, and are never shed.)
        """
        content = request.content
        size = 0
        if content is not None:
            size = content.seek(0, 2)
            content.seek(0)
        limits = self.limits
        if self.inFlight and (
            self.inFlight >= limits.maxInFlight
            or self.bytesInFlight + size > limits.maxInFlightBytes
        ):
            self.shed += 1
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"retry-after", b"1")
            request.write(b'{"error": "this node has too many requests in flight"}')
            request.finish()
            return -1
        return size

    def requestStarted(self, size: int = 0) -> None:
        self.inFlight += 1
        self.bytesInFlight += size

    def requestFinished(self, result: object, size: int = 0) -> None:
        self.inFlight -= 1
        self.bytesInFlight -= size
        if not self.inFlight:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def whenDrained(self) -> Deferred[None]:
        """
        A L{Deferred} that fires once no request is in flight.
        """
        if not self.inFlight:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        return d


class HTTPService(Service):
    """
    Listen on C{endpoint} with C{site} while running.

    @ivar port: the listening port, once listening.
    """

    log = logger()

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        site: DisperseSite | PeerServerFactory | RespFactory,
        clock: IReactorTime,
        onListening: Callable[[IListeningPort], None] = lambda port: None,
        what: str = "HTTP API",
    ) -> None:
        self._endpoint = endpoint
        self._site = site
        self._clock = clock
        self._onListening = onListening
        self._what = what
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        # Listen before privileges are dropped and before the reactor runs,
        # so that a port in use fails start-up instead of a running node.
        results: list[Any] = []
        self._endpoint.listen(self._site).addBoth(results.append)
        if isinstance(results[0], Failure):
            # A port in use is an operator's mistake, not a bug: say so in
            # one line and exit, rather than with a traceback.
            results[0].trap(CannotListenError)
            self.log.critical(
                "{what} cannot listen: {reason}",
                what=self._what,
                reason=results[0].getErrorMessage(),
            )
            raise SystemExit(1)
        self.port = results[0]
        super().privilegedStartService()

    def startService(self) -> None:
        super().startService()
        if self.port is None:
            self.privilegedStartService()
        assert self.port is not None
        host = self.port.getHost()
        self.log.info(
            "{what} listening on {host}:{port}",
            what=self._what,
            host=getattr(host, "host", "?"),
            port=getattr(host, "port", 0),
        )
        self._onListening(self.port)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self.port = self.port, None
        stopped: Deferred[Any] = (
            Deferred.fromCoroutine(self._stop(port))
            if port is not None
            else succeed(None)
        )
        return stopped

    async def _stop(self, port: IListeningPort) -> None:
        stopping = port.stopListening()
        if stopping is not None:
            await stopping
        if self._site.inFlight:
            self.log.info(
                "waiting for {count} requests in flight", count=self._site.inFlight
            )
            drained = self._site.whenDrained()
            drained.addTimeout(DRAIN_TIMEOUT, self._clock, lambda *a: None)
            await drained
