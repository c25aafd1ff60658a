"""
Clients that increment counters through redis-py and keep count of what
each node acknowledged, for the tests of convergent counters: across a
replica's C{kill -9} (L{tests.redisclients.test_counters}) and on both
sides of a network partition in the fault bed
(L{tests.testbed.test_counters}).

An increment is acknowledged when its node answered with the new value.
One answered with C{NOREPLICAS}, or not answered at all, may or may not
have been applied: it is counted as unknown. Any other error is a
refusal, which the tests expect none of. So every counter must end
between its acknowledged count and that plus its unknown ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# Each client stops after this many increments at most, and pauses this
# long after each, so that six clients leave a two-core machine to its
# nodes and last through every phase of a test (about a minute at most).
MAX_INCREMENTS = 5000
PAUSE = 0.01


def once(host: str, port: int, **options: object) -> redis.Redis:
    """
    A client of one node that never sends a command twice: a retried
    increment could be applied twice and acknowledged once.
    """
    return redis.Redis(
        host=host,
        port=port,
        socket_timeout=5,
        socket_connect_timeout=5,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
        **options,
    )


@dataclass
class Tally:
    acknowledged: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)


class Incrementer:
    """
    A thread incrementing C{keys} in turn through one connection until
    told to stop, its connection fails (its node died or was cut off), or
    it has done L{MAX_INCREMENTS}.

    @ivar label: which node it talks to, for the tests' bookkeeping.
    """

    def __init__(
        self,
        label: str,
        client: redis.Redis,
        keys: Sequence[str],
        level: str | None = None,
    ) -> None:
        self.label = label
        self.tally = Tally()
        self._keys = tuple(keys)
        self._client = client
        if level is not None:
            client.execute_command("DISPERSE", "CONSISTENCY", level)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def acknowledged(self) -> int:
        with self._lock:
            return sum(self.tally.acknowledged.values())

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _count(self, counts: dict[str, int], key: str) -> None:
        with self._lock:
            counts[key] = counts.get(key, 0) + 1

    def _run(self) -> None:
        tally = self.tally
        for n in range(MAX_INCREMENTS):
            if self._stopping.is_set():
                return
            key = self._keys[n % len(self._keys)]
            try:
                self._client.incr(key)
            except redis.ResponseError as e:
                if str(e).startswith("NOREPLICAS"):
                    self._count(tally.unknown, key)
                else:
                    tally.refusals.append(str(e))
            except redis.RedisError:
                # No answer: its node is gone or cut off, and so is this
                # connection.
                self._count(tally.unknown, key)
                return
            else:
                self._count(tally.acknowledged, key)
            self._stopping.wait(PAUSE)

    def stop(self) -> None:
        self._stopping.set()
        # A request gives up after the client's 5 s socket timeout.
        self._thread.join(30)
        assert not self._thread.is_alive(), f"{self.label}'s client did not stop"
        self._client.close()


def increased(clients: Iterable[Incrementer], by: int) -> Callable[[], bool]:
    """
    A condition: each of C{clients} has had C{by} more increments
    acknowledged than now (a client that stopped counts as done).
    """
    start = [(client, client.acknowledged) for client in clients]
    return lambda: all(
        client.acknowledged >= count + by or not client.running
        for client, count in start
    )


def totals(
    clients: Iterable[Incrementer], keys: Sequence[str]
) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """
    Acknowledged and unknown increments per key, and the refusals, over
    all C{clients}.
    """
    acknowledged = dict.fromkeys(keys, 0)
    unknown = dict.fromkeys(keys, 0)
    refusals: list[str] = []
    for client in clients:
        for key, count in client.tally.acknowledged.items():
            acknowledged[key] += count
        for key, count in client.tally.unknown.items():
            unknown[key] += count
        refusals += client.tally.refusals
    return acknowledged, unknown, refusals


def agreedValues(
    clients: Iterable[redis.Redis], keys: Sequence[str]
) -> dict[str, int] | None:
    """
    The value of each counter if every node gives the same, at quorum and
    at level one (its own copy); else C{None}.
    """
    seen: dict[str, set[int]] = {key: set() for key in keys}
    for client in clients:
        for level in ("quorum", "one"):
            client.execute_command("DISPERSE", "CONSISTENCY", level)
            for key in keys:
                seen[key].add(int(client.get(key) or 0))
    if all(len(values) == 1 for values in seen.values()):
        return {key: values.pop() for key, values in seen.items()}
    return None


def checkCounts(
    finals: dict[str, int],
    acknowledged: dict[str, int],
    unknown: dict[str, int],
) -> list[str]:
    """
    The counters whose final value is not what the increments allow:
    at least the acknowledged, at most those and the unknown.
    """
    return [
        f"{key}: {finals[key]}, acknowledged {acknowledged[key]},"
        f" unknown {unknown[key]}"
        for key in finals
        if not acknowledged[key] <= finals[key] <= acknowledged[key] + unknown[key]
    ]
