"""
What the persistence tests share: a store on a controlled clock, and a
data directory written through a real log.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock

from disperse.persist.datadir import DataDir
from disperse.persist.log import InlineSyncer, Log
from disperse.store import Store

NOW = 1_800_000_000.0
NODE = "node-a"


def newStore(clock: Clock | None = None) -> Store:
    if clock is None:
        clock = Clock()
        clock.advance(NOW)
    return Store(clock, nodeId=7)


def contents(store: Store) -> dict[str, bytes]:
    """
    Every entry of C{store} as it keeps it, by key.
    """
    found: dict[str, bytes] = {}
    for partition in range(1024):
        found.update(store.partitionItems(partition))
    return found


def openLog(
    path: Path, clock: Clock, fsync: str = "everysec", sequence: int = 1
) -> tuple[DataDir, Log]:
    dataDir = DataDir.open(path, NODE)
    log = Log(dataDir, clock, InlineSyncer(), fsync)
    log.open(sequence)
    return dataDir, log


def oneTurn(clock: Clock) -> None:
    """
    Run the calls due now, but not those they schedule for now in turn: one
    reactor turn, where L{Clock.advance} would run until nothing is due.
    """
    due = [call for call in clock.calls if call.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.called = 1
        call.func(*call.args, **call.kw)
