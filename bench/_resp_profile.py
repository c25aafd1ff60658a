"""
The Redis front end's CPU per command, in process, behind
C{bench/resp-profile}: a node's C{RespFactory} (the real server, dispatcher,
handlers and node, on a fake clock and transport) fed batches of
pipelined commands, as C{dataReceived} gets them from a client, with no
network and no reactor; CPU time per command, and where it goes
(C{cProfile}, by function, cumulative and own time). The same for the
bare Twisted RESP reference's protocol (L{bench._refs.resp_ref}) on the
same batches, so the ratio of the two is the front end's cost on top of
the ceiling, without the system calls both pay alike.

CPU time, not wall time: on a shared machine it is the steadier figure.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench._resp_load import encode, keyName

PIPELINES = (1, 16)
TESTS = ("set", "get", "ping")


def batches(
    test: str, pipeline: int, count: int, keyspace: int, value: bytes
) -> list[bytes]:
    """
    C{count} batches of C{pipeline} commands on random keys, each batch as
    one C{dataReceived} gets it.
    """
    rng = random.Random(1)
    out = []
    for _ in range(count):
        parts = []
        for _ in range(pipeline):
            key = keyName(rng.randrange(keyspace))
            if test == "set":
                parts.append(encode(b"SET", key, value))
            elif test == "get":
                parts.append(encode(b"GET", key))
            else:
                parts.append(encode(b"PING"))
        out.append(b"".join(parts))
    return out


class NullTransport:
    """
    Enough of a TCP transport for both protocols: writes are counted and
    dropped.
    """

    disconnecting = False

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writeSequence(self, data: Sequence[bytes]) -> None:
        for piece in data:
            self.write(piece)

    def getPeer(self) -> Any:
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", "127.0.0.1", 40000)

    def getHost(self) -> Any:
        from twisted.internet.address import IPv4Address

        return IPv4Address("TCP", "127.0.0.1", 6380)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def loseConnection(self) -> None:
        pass

    def abortConnection(self) -> None:
        pass

    def fileno(self) -> int:
        return -1


def disperseProtocol() -> Callable[[bytes], None]:
    """
    A node's RESP connection, as C{makeService} builds the port.
    """
    from twisted.internet.task import Clock

    from disperse.config import NodeConfig
    from disperse.resp.dispatch import Dispatcher
    from disperse.resp.server import RespFactory, wireLimits
    from disperse.resp.stats import RespStats
    from disperse.testing.node import makeNode

    clock = Clock()
    clock.advance(time.time())
    node = makeNode(NodeConfig(nodeName="profiled"), clock)
    node.startService()
    factory = RespFactory(
        node, Dispatcher(RespStats(), time.monotonic), clock, wireLimits(4 << 20)
    )
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(NullTransport())
    return protocol.dataReceived


def referenceProtocol() -> Callable[[bytes], None]:
    """
    The bare Twisted RESP reference's protocol.
    """
    from bench._refs.resp_ref import makeProtocol

    protocol = makeProtocol({})
    protocol.makeConnection(NullTransport())
    return protocol.dataReceived


def measure(feed: Callable[[bytes], None], data: Sequence[bytes]) -> float:
    """
    CPU seconds to feed every batch.
    """
    started = time.process_time()
    for chunk in data:
        feed(chunk)
    return time.process_time() - started


def profile(feed: Callable[[bytes], None], data: Sequence[bytes], top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for chunk in data:
        feed(chunk)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/resp-profile",
        description="CPU per command of a node's Redis front end in process, "
        "next to the bare Twisted RESP reference's, and a cProfile of it.",
    )
    parser.add_argument("--commands", type=int, default=200_000)
    parser.add_argument("--keyspace", type=int, default=10_000)
    parser.add_argument("--value-size", type=int, default=64)
    parser.add_argument("--tests", default=",".join(TESTS))
    parser.add_argument(
        "--profile", action="store_true", help="print cProfile's top functions"
    )
    parser.add_argument("--top", type=int, default=30)
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    value = b"v" * args.value_size
    tests = [t for t in args.tests.split(",") if t in TESTS]
    rows = []
    for test in tests:
        for pipeline in PIPELINES:
            count = args.commands // pipeline
            data = batches(test, pipeline, count, args.keyspace, value)
            node = disperseProtocol()
            ref = referenceProtocol()
            if test == "get":
                # Every key there, as after redis-benchmark's SET run.
                fill = batches("set", 16, args.keyspace // 8, args.keyspace, value)
                for chunk in fill:
                    node(chunk)
                    ref(chunk)
            measure(node, data[: count // 10])
            measure(ref, data[: count // 10])
            mine = measure(node, data) / (count * pipeline) * 1e6
            theirs = measure(ref, data) / (count * pipeline) * 1e6
            rows.append((test, pipeline, mine, theirs))
            print(
                f"{test.upper():4} -P {pipeline:<2}  disperse {mine:6.2f} us/command"
                f"  bare Twisted RESP {theirs:5.2f} us/command"
                f"  ratio {theirs / mine:.2f}",
                flush=True,
            )
            if args.profile:
                print(profile(disperseProtocol(), data, args.top))
    return 0
