"""
A user-space relay that delays traffic, for latency on a kernel without
C{tc netem}. It runs inside a node's namespace; nat rules there redirect
what peers send to the node's gossip (UDP and TCP) and HTTP ports to the
relay, which hands it on to the node after the current delay. The delay
is read from standard input, a line C{delay <seconds>} at a time.

L{DelayLine} is the logic (on an injected clock); L{UDPRelay} and
L{TCPRelay} are the Twisted glue; L{main} runs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import (
    ClientFactory,
    DatagramProtocol,
    Factory,
    Protocol,
)
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from disperse.logs import logger

log = logger()


class DelayLine:
    """
    Items go in, and come out C{delay} seconds later in the order they went
    in: when the delay shrinks, later items wait for earlier ones rather
    than overtaking them.
    """

    def __init__(self, clock: IReactorTime, delay: float = 0.0) -> None:
        self._clock = clock
        self.delay = delay
        self._lastRelease = 0.0
        self._pending: list[IDelayedCall] = []

    def send(self, deliver: Callable[[], None]) -> None:
        now = self._clock.seconds()
        release = max(now + self.delay, self._lastRelease)
        self._lastRelease = release
        if release <= now:
            deliver()
            return

        def fire() -> None:
            self._pending.remove(call)
            deliver()

        call = self._clock.callLater(release - now, fire)
        self._pending.append(call)

    @property
    def inFlight(self) -> int:
        return len(self._pending)

    def cancel(self) -> None:
        for call in self._pending:
            call.cancel()
        self._pending.clear()


class UDPRelay(DatagramProtocol):
    """
    Datagrams from a peer are delayed and forwarded to the node from a
    socket of that peer's own, so that the node's replies to that socket
    find their way back to the peer.
    """

    def __init__(
        self, reactor: Any, address: str, target: int, line: DelayLine
    ) -> None:
        self._reactor = reactor
        self._address = address
        self._target = target
        self._line = line
        self._perSource: dict[tuple[str, int], _Returning] = {}

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        returning = self._perSource.get(addr)
        if returning is None:
            returning = _Returning(self, addr)
            self._reactor.listenUDP(0, returning, interface=self._address)
            self._perSource[addr] = returning
        self._line.send(
            lambda: returning.forward(datagram, (self._address, self._target))
        )

    def sendBack(self, datagram: bytes, addr: tuple[str, int]) -> None:
        # Sent from the relay's own port; the nat rule's connection
        # tracking rewrites it to come from the node's port.
        if self.transport is not None:
            self.transport.write(datagram, addr)


class _Returning(DatagramProtocol):
    def __init__(self, relay: UDPRelay, peer: tuple[str, int]) -> None:
        self._relay = relay
        self._peer = peer

    def forward(self, datagram: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.write(datagram, addr)

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self._relay.sendBack(datagram, self._peer)


def _transport(protocol: Protocol) -> Any:
    # Connected TCP transports are producers too; the interface says less.
    return protocol.transport


class _Inbound(Protocol):
    """
    A peer's connection: its bytes are delayed on the way to the node; the
    node's answers go back at once.
    """

    def __init__(self, relay: TCPRelay) -> None:
        self._relay = relay
        self._outbound: _Outbound | None = None
        self._buffer: list[bytes] = []

    def connectionMade(self) -> None:
        _transport(self).pauseProducing()
        factory = ClientFactory.forProtocol(lambda: _Outbound(self))
        self._relay.reactor.connectTCP(
            self._relay.address, self._relay.target, factory, timeout=10
        )

    def outboundReady(self, outbound: _Outbound) -> None:
        self._outbound = outbound
        _transport(self).resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        self._relay.line.send(lambda: self._deliver(data))

    def _deliver(self, data: bytes) -> None:
        if self._outbound is not None and self._outbound.transport is not None:
            self._outbound.transport.write(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        outbound = self._outbound
        if outbound is not None:
            # Close only once every delayed byte went through.
            self._relay.line.send(_transport(outbound).loseConnection)


class _Outbound(Protocol):
    def __init__(self, inbound: _Inbound) -> None:
        self._inbound = inbound

    def connectionMade(self) -> None:
        self._inbound.outboundReady(self)

    def dataReceived(self, data: bytes) -> None:
        _transport(self._inbound).write(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        _transport(self._inbound).loseConnection()


class TCPRelay(Factory):
    def __init__(self, reactor: Any, address: str, target: int, line: DelayLine):
        self.reactor = reactor
        self.address = address
        self.target = target
        self.line = line

    def buildProtocol(self, addr: Any) -> _Inbound:
        return _Inbound(self)


class _Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, lines: list[DelayLine], reactor: Any) -> None:
        self._lines = lines
        self._reactor = reactor

    def lineReceived(self, line: bytes) -> None:
        words = line.decode("ascii", "replace").split()
        if len(words) == 2 and words[0] == "delay":
            try:
                delay = float(words[1])
            except ValueError:
                return
            for delayLine in self._lines:
                delayLine.delay = max(0.0, delay)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        # The bed went away: so does the relay.
        if self._reactor.running:
            self._reactor.stop()


def _mapping(text: str) -> tuple[int, int]:
    listen, _, target = text.partition(":")
    return int(listen), int(target)


def main(argv: list[str] | None = None) -> None:
    from twisted.internet import reactor as globalReactor  # noqa: PLC0415
    from twisted.internet import stdio  # noqa: PLC0415

    reactor: Any = globalReactor

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--udp", action="append", type=_mapping, default=[])
    parser.add_argument("--tcp", action="append", type=_mapping, default=[])
    args = parser.parse_args(argv)
    lines = []
    for listen, target in args.udp:
        line = DelayLine(reactor)
        lines.append(line)
        relay = UDPRelay(reactor, args.address, target, line)
        reactor.listenUDP(listen, relay, interface=args.address)
    for listen, target in args.tcp:
        line = DelayLine(reactor)
        lines.append(line)
        tcpRelay = TCPRelay(reactor, args.address, target, line)
        reactor.listenTCP(listen, tcpRelay, interface=args.address)
    stdio.StandardIO(_Control(lines, reactor))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
