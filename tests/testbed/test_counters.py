"""
Convergent counters on both sides of a network partition, in the fault
bed: three nodes in network namespaces of this machine, each serving
Redis; redis-py clients increment the same keys through every node while
n0 is cut off from the other two (firewall rules in its namespace, as
the bed's C{partition} fault does) long enough for each side to declare
the other dead, then healed.

The clients of n0, alone on its side, increment at level one (a quorum
cannot be had there); those of n1 and n2 at the default quorum. After
healing, every node gives every counter the same value, and that value
is every acknowledged increment of both sides (see
L{tests.redisclients.incrementers} for what counts as acknowledged).

Needs root, iproute2 and iptables; marked C{testbed}, run by
C{make testbed}. Node logs go to C{build/testbed/counters}.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from disperse.testbed.__main__ import tearDownOnSignals
from disperse.testbed.faults import Faults, iptablesProblem
from disperse.testbed.hosts import (
    Network,
    NodeProcess,
    cleanLeftovers,
    exclusive,
    namespaceProblem,
)
from disperse.testbed.runner import memberViews, partitionViews
from disperse.testbed.scenario import Action

pytestmark = pytest.mark.testbed

DIRECTORY = Path("build/testbed/counters")
REDIS_PORT = 6380
KEYS = ("pn:a", "pn:b", "{pn}c")
# Forming, failure detection (with --profile local) and settling after
# healing each take seconds; these are ceilings.
DEADLINE = 60.0


def failed(subject: str) -> re.Pattern[str]:
    return re.compile(rf"member {re.escape(subject)} failed ")


def test_incrementsOnBothSidesOfAPartition() -> None:
    # redis-py comes with the testbed extra, not with the ordinary tests,
    # which collect this module too.
    from tests.redisclients.incrementers import (
        Incrementer,
        agreedValues,
        checkCounts,
        increased,
        once,
        totals,
    )
    from tests.redisclients.nodes import waitUntil

    problem = namespaceProblem() or iptablesProblem()
    assert problem is None, f"the fault bed cannot run here: {problem}"
    # A CI time limit stops the run with SIGTERM: the hosts still go away.
    tearDownOnSignals()
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    with exclusive():
        cleanLeftovers()
        network = Network(3)
        processes: list[NodeProcess] = []
        clients: list[Incrementer] = []
        try:
            network.create()
            hosts = network.hosts
            processes = [
                NodeProcess(
                    host,
                    hosts,
                    DIRECTORY,
                    time.monotonic,
                    extraArgs=[
                        "--profile",
                        "local",
                        "--redis-port",
                        f"tcp:{REDIS_PORT}:interface={host.address}",
                    ],
                )
                for host in hosts
            ]
            for process in processes:
                process.start()

            def formed() -> bool:
                for process in processes:
                    process.check()
                names = {host.name for host in hosts}
                views = memberViews(hosts)
                return (
                    all(
                        {n for n, s in view.items() if s == "alive"} == names
                        for view in views.values()
                    )
                    and len(partitionViews(hosts)[1]) == 1
                )

            waitUntil(formed, "the cluster to form", DEADLINE, interval=0.2)
            once(hosts[0].address, REDIS_PORT).delete(*KEYS)
            clients = [
                Incrementer(
                    host.name,
                    once(host.address, REDIS_PORT),
                    KEYS,
                    level="one" if host.index == 0 else None,
                )
                for host in hosts
                for _ in range(2)
            ]
            waitUntil(increased(clients, 30), "30 increments from every client")

            faults = Faults(hosts, processes)
            marks = [process.mark() for process in processes]
            faults.apply(Action(0.0, "isolate", node=0))
            # Both sides declare the other dead: from then on each side
            # counts alone.
            for observer, subject in ((0, "n1"), (0, "n2"), (1, "n0"), (2, "n0")):
                processes[observer].waitFor(failed(subject), DEADLINE, marks[observer])
            waitUntil(
                increased(clients, 100),
                "100 increments from every client during the partition",
                DEADLINE,
            )
            faults.healAll()
            waitUntil(formed, "the cluster to form again", DEADLINE, interval=0.2)
            waitUntil(
                increased(clients, 30), "30 increments from every client after it"
            )
            for client in clients:
                client.stop()
            acknowledged, unknown, refusals = totals(clients, KEYS)
            readers = [once(host.address, REDIS_PORT) for host in hosts]
            try:
                finals = waitUntil(
                    lambda: agreedValues(readers, KEYS),
                    "every node to agree on every counter",
                    DEADLINE,
                    interval=0.2,
                )
            finally:
                for reader in readers:
                    reader.close()
        finally:
            for client in clients:
                client.stop()
            for process in processes:
                process.kill()
            network.destroy()

    assert refusals == []
    # Both sides acknowledged increments while they were apart.
    assert all(client.acknowledged >= 160 for client in clients)
    assert checkCounts(finals, acknowledged, unknown) == []
