"""
A memory reactor that can also "listen" on UDP, for tests that build a
whole node: Twisted's L{MemoryReactorClock} has no C{listenUDP}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.interfaces import IListeningPort, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer


@implementer(IListeningPort)
class FakeUDPPort:
    """
    A bound UDP port that records what is written to it.

    @ivar written: C{(datagram, (host, port))} for every write.
    """

    def __init__(self, protocol: DatagramProtocol, interface: str, port: int) -> None:
        self.protocol = protocol
        self.interface = interface
        self.port = port
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.listening = True

    def startListening(self) -> None:
        self.listening = True

    def stopListening(self) -> Any:
        self.listening = False
        self.protocol.doStop()
        return succeed(None)

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", self.interface or "0.0.0.0", self.port)

    def write(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.written.append((datagram, addr))


@implementer(IReactorUDP)
class MemoryReactorWithUDP(MemoryReactorClock):
    """
    L{MemoryReactorClock} plus C{listenUDP}; OS-chosen ports (0) are given
    numbers from 40000 up.

    @ivar udpPorts: every port listened on, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: list[FakeUDPPort] = []
        self._nextPort = 40000

    def listenUDP(
        self,
        port: int,
        protocol: DatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,
    ) -> FakeUDPPort:
        if port == 0:
            port = self._nextPort
            self._nextPort += 1
        udpPort = FakeUDPPort(protocol, interface, port)
        protocol.makeConnection(udpPort)  # type: ignore[arg-type]
        protocol.doStart()
        self.udpPorts.append(udpPort)
        return udpPort
