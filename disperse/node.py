"""
The node: the one core object every front end talks to.

A L{Node} owns the store (and, as they land, membership and replication)
and exposes the operations the front ends translate requests into. Front
ends never reach into each other or into the store directly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from disperse.config import NodeConfig, nodeIdFor
from disperse.store import Record, Store

# The active expiry sweep looks at this many candidates per tick, so a burst
# of expiring keys costs a little time on many ticks, never a long pause.
SWEEP_INTERVAL = 0.1
SWEEP_BUDGET = 2000


@dataclass(frozen=True)
class MemberInfo:
    """
    What the seed's C{GET /cache/members} lists for one member.
    """

    name: str
    addr: str
    port: int
    httpPort: int

    def asSeedJSON(self) -> dict[str, Any]:
        return {
            "addr": f"{self.addr}:{self.port}",
            "http_port": self.httpPort,
            "name": self.name,
            "port": self.port,
        }


class Node(MultiService):
    """
    One Disperse node.

    @ivar httpPort: the TCP port the HTTP API listens on, once it does.
    """

    log = Logger()

    def __init__(self, config: NodeConfig, clock: IReactorTime) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        self.nodeId = nodeIdFor(config.nodeName)
        self.store = Store(clock, self.nodeId, maxBytes=config.maxMemory)
        self.httpPort: int | None = None
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = clock

    # Service lifecycle

    def startService(self) -> None:
        super().startService()
        self._sweeper.start(SWEEP_INTERVAL, now=False).addErrback(self._sweeperStopped)
        self.log.info(
            "node {name} started (max memory {maxMemory} bytes, max value size"
            " {maxValueSize} bytes)",
            name=self.config.nodeName,
            maxMemory=self.config.maxMemory,
            maxValueSize=self.config.maxValueSize,
        )

    def stopService(self) -> Any:
        if self._sweeper.running:
            self._sweeper.stop()
        return super().stopService()

    def _sweep(self) -> None:
        # An exception escaping a LoopingCall stops it for good; expiry must
        # go on whatever one tick ran into.
        try:
            self.store.sweep(SWEEP_BUDGET)
        except Exception:
            self.log.failure("expiry sweep failed")

    def _sweeperStopped(self, failure: Failure) -> None:
        self.log.failure("expiry sweep stopped", failure)

    # Operations for the front ends

    def get(self, key: str) -> Record | None:
        return self.store.get(key)

    def put(
        self, key: str, value: bytes, ttlMs: int = 0, binary: bool = False
    ) -> Record:
        return self.store.put(key, value, ttlMs, binary)

    def delete(self, key: str) -> bool:
        return self.store.delete(key)

    def members(self) -> list[MemberInfo]:
        """
        The members this node believes alive or suspect, itself included.
        """
        return [
            MemberInfo(
                name=self.config.nodeName,
                addr=self.config.advertiseAddress,
                port=self.config.gossipPort,
                httpPort=self.httpPort or 0,
            )
        ]

    def stats(self) -> dict[str, Any]:
        return {"node": self.config.nodeName, **asdict(self.store.stats())}
