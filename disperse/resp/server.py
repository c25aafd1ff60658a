"""
The Redis protocol port: a Twisted protocol and factory around the
dispatcher (L{disperse.resp.dispatch}).

Each connection reads requests with L{RequestReader}, runs them through its
L{Pipeline} and sends the replies ready after each read in one write, so a
pipeline of commands costs one system call each way. Replies that wait on
replicas go out as they become ready, in request order.

What one connection may cost the node is bounded:

  - a malformed frame gets C{-ERR Protocol error: ...} and the connection
    closes (after the replies to the commands before it); a bulk longer
    than the largest value the node accepts is refused from its header,
    before its bytes are buffered;
  - a connection with no traffic for C{idleTimeout} seconds is closed;
  - a client that does not read its replies is backpressured: the
    connection is registered as the producer of its transport, and while
    the transport's buffer is full no command starts and nothing more is
    read; reading also stops while too many of the connection's commands
    are unanswered;
  - one address may hold at most C{maxConnectionsPerClient} connections
    (the HTTP API's C{--max-connections-per-client}); beyond, it is told
    C{-ERR max number of clients reached} and the connection closes.

The factory is the server's L{ServerState} for the handlers (open
connections, command statistics, the tokens in force).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from disperse.node import Node
from disperse.resp.context import Context, Session
from disperse.resp.dispatch import DEFAULT_MAX_RUNNING, Dispatcher, Pipeline
from disperse.resp.replies import ErrorReply
from disperse.resp.stats import RespStats
from disperse.resp.wire import ReplyEncoder, RequestReader, WireLimits
from disperse.security.limits import ConnectionCounter
from disperse.security.tokens import TokenTable
from disperse.send import sendNow

DEFAULT_IDLE_TIMEOUT: Final = 300.0
# Unanswered commands of one connection beyond which it is not read from,
# and below which reading resumes.
DEFAULT_MAX_BACKLOG: Final = 4 * DEFAULT_MAX_RUNNING
# The largest argument besides a value: a key, an option.
ARGUMENT_SLACK: Final = 64 * 1024
MAX_CLIENTS: Final = b"-ERR max number of clients reached\r\n"


def wireLimits(maxValueSize: int) -> WireLimits:
    """
    The request limits of a node whose largest value is C{maxValueSize}:
    a bulk a little longer than that (so that a value just over it gets the
    value-size error rather than a closed connection), and Redis's other
    defaults.
    """
    return WireLimits(maxBulkLength=maxValueSize + ARGUMENT_SLACK)


def formatAddress(address: IAddress) -> str:
    """
    C{host:port}, as Redis writes a client's address (IPv6 in brackets).
    """
    host = str(getattr(address, "host", ""))
    port = getattr(address, "port", 0)
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


@implementer(IPushProducer)
class RespProtocol(Protocol):
    """
    One client connection.
    """

    factory: RespFactory
    # Something was read or written since the last idle sweep.
    active = True
    quietSince = 0.0
    _writeBlocked = False
    _readingPaused = False
    _closing = False
    _pipeline: Pipeline | None = None
    _transport: Any = None
    _flushCall: IDelayedCall | None = None

    def connectionMade(self) -> None:
        factory = self.factory
        transport: Any = self.transport
        self._transport = transport
        peer = transport.getPeer()
        self._host = str(getattr(peer, "host", ""))
        if not factory.connections.opened(self._host):
            # Everything it sends is ignored (no pipeline).
            factory.stats.rejected += 1
            transport.write(MAX_CLIENTS)
            transport.loseConnection()
            return
        self.session = session = Session(
            clientId=factory.nextClientId(),
            address=formatAddress(peer),
            localAddress=formatAddress(transport.getHost()),
            fd=_fileno(transport),
            createdMs=int(factory.clock.seconds() * 1000),
            authenticated=factory.tokens is None,
        )
        self._context = Context(factory.node, session, factory)
        self._encoder = ReplyEncoder()
        self._reader = RequestReader(factory.limits)
        self._pipeline = Pipeline(
            factory.dispatcher,
            self._context,
            self._encoder,
            self._replyReady,
            factory.maxRunning,
        )
        self._maxBacklog = factory.maxBacklog
        self.quietSince = factory.clock.seconds()
        transport.registerProducer(self, True)
        factory.opened(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._flushCall is not None:
            self._flushCall.cancel()
            self._flushCall = None
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None
            self.factory.closed(self)

    def dataReceived(self, data: bytes) -> None:
        pipeline = self._pipeline
        if pipeline is None or self._closing:
            return
        self.active = True
        requests = self._reader.feed(data)
        pipeline.runAll(requests.commands)
        if requests.error is not None:
            self.factory.stats.protocolErrors += 1
            self._closing = True
            pipeline.finish(ErrorReply(requests.error.message))
        self._flush()

    def _replyReady(self) -> None:
        """
        Replies became ready outside L{dataReceived} (commands that waited
        on replicas): send them at the end of this reactor turn.

        Such replies come in bursts: one peer's answer completes every
        command of a pipeline it carried, one after the other in the same
        turn. Sending each at once cost one C{send} (and one wake-up of
        the client) per command, the largest single cost of a quorum read
        on a cluster; one write per turn carries them all.
        """
        if self._flushCall is None:
            self._flushCall = self.factory.clock.callLater(0, self._flushLater)

    def _flushLater(self) -> None:
        self._flushCall = None
        self._flush()

    def _flush(self) -> None:
        """
        Send the replies encoded so far in one write; close when the
        connection is over and answered; stop or resume reading.
        """
        data = self._encoder.take()
        if data:
            self.active = True
            sendNow(self._transport, data)
        pipeline = self._pipeline
        if pipeline is None:
            return
        if self._closing or self.session.closing:
            self._closing = True
            if pipeline.idle:
                self._pipeline = None
                pipeline.close()
                self._transport.loseConnection()
                self.factory.closed(self)
            return
        if self._readingPaused:
            if not self._writeBlocked and pipeline.backlog <= self._maxBacklog // 2:
                self._readingPaused = False
                self._transport.resumeProducing()
        elif self._writeBlocked or pipeline.backlog > self._maxBacklog:
            self._readingPaused = True
            self._transport.pauseProducing()
        if self.factory.draining:
            self.factory.checkDrained()

    def idleOut(self) -> None:
        """
        Close the connection for idleness, whatever it has still to send
        (a client that stopped reading would hold a lingering close open).
        """
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None
            self.factory.closed(self)
        self._transport.abortConnection()

    @property
    def running(self) -> int:
        """
        This connection's commands running now.
        """
        return 0 if self._pipeline is None else self._pipeline.running

    # IPushProducer: the transport's buffer is full, or drained.

    def pauseProducing(self) -> None:
        self._writeBlocked = True
        if self._pipeline is not None:
            self._pipeline.held = True
            self._flush()

    def resumeProducing(self) -> None:
        self._writeBlocked = False
        if self._pipeline is not None:
            # Starts what waited, and sends and reads again (via _flush).
            self._pipeline.resume()

    def stopProducing(self) -> None:
        # The transport is going away: connectionLost follows.
        if self._pipeline is not None:
            self._pipeline.held = True


def _fileno(transport: Any) -> int:
    fileno = getattr(transport, "fileno", None)
    if fileno is None:
        return -1
    try:
        return int(fileno())
    except (OSError, ValueError, TypeError, AttributeError):
        return -1


class RespFactory(Factory[RespProtocol]):
    """
    The Redis protocol port of one node, and the server state its handlers
    see.

    @param node: the node commands run on.
    @param stats: where connections and commands are counted (the
        dispatcher's too).
    @param clock: the idle sweep's, and connection times.
    @param tokens: the client tokens in force, read at each connection and
        C{AUTH} (the HTTP guard's, replaced whole when the token file is
        read again); L{None} when the node has none.
    @param idleTimeout: seconds without traffic before a connection is
        closed; 0 never closes one.
    """

    noisy = False
    log = Logger()

    def __init__(
        self,
        node: Node,
        dispatcher: Dispatcher,
        clock: IReactorTime,
        limits: WireLimits,
        tokens: Callable[[], TokenTable | None] = lambda: None,
        idleTimeout: float = DEFAULT_IDLE_TIMEOUT,
        maxConnectionsPerClient: int = 64,
        maxRunning: int = DEFAULT_MAX_RUNNING,
        maxBacklog: int = DEFAULT_MAX_BACKLOG,
    ) -> None:
        self.node = node
        self.dispatcher = dispatcher
        self.stats: RespStats = dispatcher.stats
        self.clock = clock
        self.limits = limits
        self._tokens = tokens
        self.idleTimeout = idleTimeout
        self.connections = ConnectionCounter(maxConnectionsPerClient)
        self.maxRunning = maxRunning
        self.maxBacklog = maxBacklog
        self._protocols: set[RespProtocol] = set()
        self._lastClientId = 0
        self._startedMs = int(clock.seconds() * 1000)
        self.listeningPort: int | None = None
        self._drained: list[Deferred[None]] = []
        self._sweeper: LoopingCall | None = None

    def buildProtocol(self, addr: IAddress | None) -> RespProtocol:
        protocol = RespProtocol()
        protocol.factory = self
        return protocol

    # ServerState

    @property
    def startedMs(self) -> int:
        return self._startedMs

    @property
    def port(self) -> int | None:
        return self.listeningPort

    @property
    def tokens(self) -> TokenTable | None:
        return self._tokens()

    def sessions(self) -> Iterable[Session]:
        return [protocol.session for protocol in self._protocols]

    def commandStats(self) -> dict[str, tuple[int, float, int]]:
        return {
            name: (series.calls, series.seconds, series.failed)
            for name, series in self.stats.commands.items()
        }

    # Connections

    def nextClientId(self) -> int:
        self._lastClientId += 1
        return self._lastClientId

    def opened(self, protocol: RespProtocol) -> None:
        self._protocols.add(protocol)
        self.stats.accepted += 1
        self.stats.connections = len(self._protocols)

    def closed(self, protocol: RespProtocol) -> None:
        if protocol in self._protocols:
            self._protocols.discard(protocol)
            self.connections.closed(protocol._host)
            self.stats.connections = len(self._protocols)
            if self.draining:
                self.checkDrained()

    def startFactory(self) -> None:
        self._startedMs = int(self.clock.seconds() * 1000)
        if self.idleTimeout > 0:
            sweeper = self._sweeper = LoopingCall(self._sweep)
            sweeper.clock = self.clock
            # Connections close between idleTimeout and a tenth more after
            # their last traffic: one sweep for all, no timer per command.
            period = min(max(self.idleTimeout / 10, 0.1), 10.0)
            sweeper.start(period, now=False).addErrback(
                lambda failure: self.log.failure(
                    "Redis idle sweep stopped", failure=failure
                )
            )

    def stopFactory(self) -> None:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None

    def _sweep(self) -> None:
        now = self.clock.seconds()
        timeout = self.idleTimeout
        for protocol in list(self._protocols):
            if protocol.active:
                protocol.active = False
                protocol.quietSince = now
            elif now - protocol.quietSince >= timeout:
                self.stats.idleClosed += 1
                protocol.idleOut()

    # Draining, for HTTPService's stop.

    @property
    def inFlight(self) -> int:
        """
        Commands running now, on every connection.
        """
        return sum(protocol.running for protocol in self._protocols)

    @property
    def draining(self) -> bool:
        return bool(self._drained)

    def whenDrained(self) -> Deferred[None]:
        """
        A L{Deferred} that fires once no command is running.
        """
        if not self.inFlight:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        return d

    def checkDrained(self) -> None:
        if not self.inFlight:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)
