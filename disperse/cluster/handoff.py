"""
Handing a leaving node's partitions to their next owners.

When a node leaves on purpose (SIGTERM, a rolling restart), the members
that will own its partitions once it is gone are known: the partition
table built without it. Before it says goodbye to the cluster it pushes
every record of each partition it holds to the owners that gain that
partition, so the data keeps its replication factor without waiting for
them to catch up from the remaining replicas, and nothing is lost where
this node held the only current copy (a replication factor of one, or
replicas that died before it).

The push goes through the ordinary batched replica writes and is bounded
in time: a node asked to stop stops, handed off or not, and says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from disperse.cluster.clients import PeerClient
from disperse.cluster.placement import PartitionTable, Replicas
from disperse.logs import logger
from disperse.store import Store

# Records in one batch handed to a member: the batcher splits further by
# size, this bounds how much one call holds in memory at once.
HANDOFF_BATCH = 1000

log = logger()


def handoffPlan(
    table: PartitionTable, leaving: str, replicas: Replicas
) -> dict[str, list[int]]:
    """
    For each member that gains partitions when C{leaving} leaves, the
    partitions C{leaving} holds that it gains.
    """
    remaining = [m for m in table.members if m.name != leaving]
    if not remaining:
        return {}
    after = PartitionTable.build(remaining, replicas)
    plan: dict[str, list[int]] = {}
    for partition in sorted(table.partitionsOf(leaving)):
        before = set(table.owners(partition))
        for owner in after.owners(partition):
            if owner not in before:
                plan.setdefault(owner, []).append(partition)
    return plan


@dataclass
class HandoffResult:
    partitions: int = 0
    keys: int = 0
    sent: int = 0
    failed: int = 0
    complete: bool = True


def handOff(
    *,
    store: Store,
    peers: PeerClient,
    plan: Mapping[str, list[int]],
    clock: IReactorTime,
    timeout: float,
) -> Deferred[HandoffResult]:
    """
    Push the records of the partitions in C{plan} to their members.

    @return: fires with what was handed off once every member answered, or
        after C{timeout} seconds with what was by then.
    """
    result = HandoffResult()
    done: Deferred[HandoffResult] = Deferred()
    if not plan:
        return succeed(result)
    calls: list[Deferred[object]] = []
    partitions: set[int] = set()
    for member, wanted in plan.items():
        for partition in wanted:
            partitions.add(partition)
            records = store.partitionContents(partition)
            result.keys += len(records)
            for start in range(0, len(records), HANDOFF_BATCH):
                batch = records[start : start + HANDOFF_BATCH]
                calls.append(
                    peers.apply(member, batch).addCallbacks(
                        _sent,
                        _failed,
                        callbackArgs=(result, len(batch)),
                        errbackArgs=(result, len(batch), member),
                    )
                )
    result.partitions = len(partitions)
    log.info(
        "handing off {partitions} partitions ({keys} records) to {members}"
        " members before leaving",
        partitions=result.partitions,
        keys=result.keys,
        members=len(plan),
    )
    started = clock.seconds()

    def finished(_: object) -> None:
        if done.called:
            return
        timer.cancel()
        log.info(
            "handed off {sent} of {keys} records in {seconds:.2f} s",
            sent=result.sent,
            keys=result.keys,
            seconds=clock.seconds() - started,
        )
        done.callback(result)

    def timedOut() -> None:
        result.complete = False
        log.warn(
            "handoff incomplete after {timeout} s: {sent} of {keys} records"
            " handed off; the remaining replicas still hold the rest",
            timeout=timeout,
            sent=result.sent,
            keys=result.keys,
        )
        done.callback(result)

    timer = clock.callLater(timeout, timedOut)
    DeferredList(calls, consumeErrors=True).addCallback(finished)
    return done


def _sent(_: object, result: HandoffResult, count: int) -> None:
    result.sent += count


def _failed(failure: Failure, result: HandoffResult, count: int, member: str) -> None:
    result.failed += count
    result.complete = False
    log.warn(
        "handoff of {count} records to {member} failed: {error}",
        count=count,
        member=member,
        error=failure.getErrorMessage(),
    )
