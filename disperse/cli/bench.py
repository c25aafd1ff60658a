"""
C{disperse bench}: a quick load test of a running cluster.

A few threads, each with its own kept-alive connection, send a mix of
GETs and PUTs over a small key space until a number of requests is sent
or a time is up, whichever comes first. Each thread keeps its own
latencies (no lock on the way); the summary merges them: throughput,
percentiles per operation, and errors by status.

It measures the cluster as a client on this host sees it, Python client
included; for the server's own limits see C{bench/} in the repository.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from disperse.cli.client import CannotConnect, Client

OPERATIONS = ("get", "put")
PERCENTILES = (50, 90, 99)
# The error key of requests that never got an answer.
NO_ANSWER = "no answer"


@dataclass(frozen=True)
class BenchPlan:
    requests: int = 10_000
    seconds: float = 30.0
    concurrency: int = 8
    readFraction: float = 0.8
    keys: int = 1000
    valueSize: int = 128
    prefix: str = "bench:"
    ttlSeconds: float | None = 300.0
    consistency: str | None = None
    seed: int | None = None


@dataclass
class _Worker:
    """
    What one thread saw: latencies per operation, and answers by kind.
    """

    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {op: [] for op in OPERATIONS}
    )
    hits: int = 0
    misses: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    errorsByOperation: Counter[str] = field(default_factory=Counter)

    @property
    def done(self) -> int:
        return sum(len(v) for v in self.latencies.values())


def percentile(ordered: list[float], p: float) -> float:
    """
    The C{p}th percentile of C{ordered} (nearest rank); 0 if empty.
    """
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


@dataclass
class BenchResult:
    plan: BenchPlan
    seconds: float
    workers: list[_Worker]
    aborted: str | None = None

    @property
    def requests(self) -> int:
        return sum(w.done for w in self.workers)

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for worker in self.workers:
            total.update(worker.errors)
        return total

    def operations(self) -> dict[str, dict[str, Any]]:
        """
        Per operation (and C{all}): requests, errors, throughput and
        latency percentiles in seconds.
        """
        summary = {}
        for name in (*OPERATIONS, "all"):
            ops = OPERATIONS if name == "all" else (name,)
            latencies = sorted(
                latency
                for worker in self.workers
                for op in ops
                for latency in worker.latencies[op]
            )
            errors = sum(w.errorsByOperation[op] for w in self.workers for op in ops)
            summary[name] = {
                "requests": len(latencies),
                "errors": errors,
                "throughput": len(latencies) / self.seconds if self.seconds else 0.0,
                **{f"p{p}": percentile(latencies, p) for p in PERCENTILES},
                "max": latencies[-1] if latencies else 0.0,
            }
        return summary

    def asJSON(self) -> dict[str, Any]:
        hits = sum(w.hits for w in self.workers)
        misses = sum(w.misses for w in self.workers)
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "concurrency": self.plan.concurrency,
            "operations": self.operations(),
            "hits": hits,
            "misses": misses,
            "errors": dict(self.errors),
            "aborted": self.aborted,
        }


def run(
    plan: BenchPlan,
    makeClient: Callable[[], Client],
    onProgress: Callable[[int, float, int], None] = lambda done, elapsed, errors: None,
    timer: Callable[[], float] = time.perf_counter,
) -> BenchResult:
    """
    Run C{plan}; C{onProgress(done, elapsed, errors)} is called from this
    thread about ten times a second while the workers run.
    """
    tickets = itertools.count()
    stop = threading.Event()
    seeds = random.Random(plan.seed)
    workers = [_Worker() for _ in range(plan.concurrency)]
    aborted: list[str] = []
    value = b"v" * plan.valueSize
    started = timer()
    deadline = started + plan.seconds

    def work(state: _Worker, rng: random.Random) -> None:
        client = makeClient()
        try:
            # next() on a count is atomic under the GIL: each ticket once.
            while not stop.is_set() and next(tickets) < plan.requests:
                if timer() >= deadline:
                    break
                key = f"{plan.prefix}{rng.randrange(plan.keys)}"
                op = "get" if rng.random() < plan.readFraction else "put"
                sent = timer()
                try:
                    if op == "get":
                        response = client.get(key, plan.consistency)
                    else:
                        response = client.put(
                            key, value, plan.ttlSeconds, consistency=plan.consistency
                        )
                except CannotConnect as e:
                    if not any(w.done for w in workers):
                        # Nothing ever answered: the node is not there.
                        aborted.append(e.message)
                        stop.set()
                        return
                    state.latencies[op].append(timer() - sent)
                    state.errors[NO_ANSWER] += 1
                    state.errorsByOperation[op] += 1
                    continue
                state.latencies[op].append(timer() - sent)
                if response.status == 200:
                    if op == "get":
                        state.hits += 1
                elif op == "get" and response.status == 404:
                    state.misses += 1
                else:
                    state.errors[str(response.status)] += 1
                    state.errorsByOperation[op] += 1
        finally:
            client.close()

    remaining = [len(workers)]
    lock = threading.Lock()
    finished = threading.Event()

    def worker(state: _Worker, rng: random.Random) -> None:
        try:
            work(state, rng)
        finally:
            with lock:
                remaining[0] -= 1
                if not remaining[0]:
                    finished.set()

    threads = [
        threading.Thread(
            target=worker, args=(w, random.Random(seeds.random())), daemon=True
        )
        for w in workers
    ]
    for thread in threads:
        thread.start()
    try:
        while not finished.wait(0.1):
            done = sum(w.done for w in workers)
            errors = sum(sum(w.errors.values()) for w in workers)
            onProgress(done, timer() - started, errors)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return BenchResult(
        plan, timer() - started, workers, aborted[0] if aborted else None
    )
