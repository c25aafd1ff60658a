"""
An open-loop RESP load generator, for the latency C{bench/resp} reports at
a fixed offered rate (redis-benchmark has no rate option: it is closed-loop,
each connection sending its next request when the last answer arrives, so
its latencies at saturation are mostly queueing).

Batches of C{--pipeline} commands (C{GET} or C{SET} of random keys) arrive
at random (Poisson) times at the offered rate, each on the next of
C{--connections} connections, and are written whether or not earlier ones
were answered. A request's latency runs from its scheduled time, not from
when it was written, so a generator or server that falls behind is charged
for it (no coordinated omission). One thread, non-blocking sockets and
epoll, replies counted with C{hiredis}; it spins, rather than sleeps, when
the next batch is due within 2 ms, since a sleep may overshoot by a
millisecond and that would be counted as latency.

With C{--cluster}, the generator reads C{CLUSTER SLOTS} from the given node
and binds its connections to the masters in turn, each sending only keys of
its master's slots, as redis-benchmark C{--cluster} does.

Also the small blocking client the benchmark checks servers with
(L{command}). Run as C{python -m bench._resp_load --help}; the result is
one line of JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import select
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import hiredis

LOOPBACK = "127.0.0.1"
SLOTS = 16384
SPIN_S = 0.002  # below this, spin instead of sleeping in epoll
MAX_LATENESS_MS = 1.0  # a generator writing later than this at p99 fell behind


# --- RESP, blocking, for checks -----------------------------------------------------


def encode(*args: bytes) -> bytes:
    """
    One command as a RESP array of bulk strings.
    """
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%b\r\n" % (len(a), a))
    return b"".join(parts)


def command(port: int, *args: bytes, timeout: float = 5.0) -> Any:
    """
    Send one command on a fresh connection and return its reply (errors as
    C{hiredis.ReplyError} values, not raised).
    """
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(encode(*args))
        reader = hiredis.Reader()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"port {port} closed the connection")
            reader.feed(chunk)
            reply = reader.gets()
            if reply is not False:
                return reply


# --- cluster slots ----------------------------------------------------------------


def _crcTable() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crcTable()


def crc16(data: bytes) -> int:
    """
    CRC16-CCITT (XModem: polynomial 0x1021, initial 0), the one Redis
    Cluster hashes keys with.
    """
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def keySlot(key: bytes) -> int:
    """
    A key's cluster slot: the CRC16 of its hash tag (the text between the
    first C{{} and the first C{}} after it, when not empty) or of the whole
    key, mod 16384.
    """
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16(key) % SLOTS


def slotOwners(port: int) -> dict[int, int]:
    """
    Slot -> the master's port, from C{CLUSTER SLOTS} on C{port}; every slot
    must have one.
    """
    reply = command(port, b"CLUSTER", b"SLOTS")
    if isinstance(reply, hiredis.ReplyError) or not isinstance(reply, list):
        raise RuntimeError(f"CLUSTER SLOTS on port {port} answered {reply!r}")
    owners: dict[int, int] = {}
    for entry in reply:
        first, last, master = entry[0], entry[1], entry[2]
        for slot in range(first, last + 1):
            owners[slot] = int(master[1])
    missing = SLOTS - len(owners)
    if missing:
        raise RuntimeError(f"CLUSTER SLOTS on port {port}: {missing} slots unowned")
    return owners


# --- the load ------------------------------------------------------------------------


def keyName(i: int) -> bytes:
    """
    redis-benchmark's key form (C{key:__rand_int__}, 12 digits).
    """
    return b"key:%012d" % i


@dataclass(eq=False)
class Connection:
    sock: socket.socket
    port: int
    requests: list[bytes]  # encoded commands this connection picks from
    reader: Any = field(default_factory=hiredis.Reader)
    out: bytearray = field(default_factory=bytearray)
    # (scheduled time, replies still awaited) per batch, oldest first
    pending: deque[list[float]] = field(default_factory=deque)
    writing: bool = False


@dataclass
class Result:
    offered_per_sec: float
    achieved_per_sec: float  # completed / the scheduled span
    requests: int  # scheduled and measured (after the warm-up)
    completed: int
    errors: int
    nulls: int  # GET of a key not there
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    lateness_p99_ms: float  # how late the generator wrote, at p99
    generator_cpu_pct: float
    kept_up: bool
    note: str = ""


def weightedPercentiles(
    samples: list[tuple[float, int]], points: Sequence[float]
) -> list[float]:
    """
    Percentiles of (value, count) samples.
    """
    if not samples:
        return [0.0 for _ in points]
    samples.sort()
    total = sum(c for _, c in samples)
    out = []
    for p in points:
        rank = p / 100.0 * total
        seen = 0
        value = samples[-1][0]
        for v, c in samples:
            seen += c
            if seen >= rank:
                value = v
                break
        out.append(value)
    return out


def openLoop(
    ports: Sequence[int],
    requestsByPort: dict[int, list[bytes]],
    rate: float,
    pipeline: int,
    connections: int,
    seconds: float,
    warmup: float,
    seed: int,
) -> Result:
    """
    Offer C{rate} requests/s in batches of C{pipeline} over C{connections}
    connections (bound to C{ports} in turn) for C{warmup} + C{seconds};
    latencies of the batches scheduled after the warm-up.
    """
    rng = random.Random(seed)
    conns: list[Connection] = []
    epoll = select.epoll()
    byFd: dict[int, Connection] = {}
    for i in range(connections):
        port = ports[i % len(ports)]
        sock = socket.create_connection((LOOPBACK, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = Connection(sock, port, requestsByPort[port])
        conns.append(conn)
        byFd[sock.fileno()] = conn
        epoll.register(sock.fileno(), select.EPOLLIN)
    batchRate = rate / pipeline
    clock = time.perf_counter
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = clock() + 0.05
    measureFrom = start + warmup
    end = measureFrom + seconds
    nextDue = start
    sent = 0
    samples: list[tuple[float, int]] = []
    lateness: list[float] = []
    errors = nulls = completed = 0
    outstanding = 0
    drainUntil = end + 5.0

    def flush(conn: Connection) -> None:
        try:
            n = conn.sock.send(conn.out)
        except BlockingIOError:
            n = 0
        del conn.out[:n]
        if conn.out and not conn.writing:
            epoll.modify(conn.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)
            conn.writing = True
        elif not conn.out and conn.writing:
            epoll.modify(conn.sock.fileno(), select.EPOLLIN)
            conn.writing = False

    while True:
        now = clock()
        if nextDue < end:
            touched = set()
            while nextDue <= now and nextDue < end:
                conn = conns[sent % connections]
                conn.out += b"".join(rng.choices(conn.requests, k=pipeline))
                conn.pending.append([nextDue, pipeline])
                if nextDue >= measureFrom:
                    lateness.append(now - nextDue)
                touched.add(conn)
                sent += 1
                outstanding += pipeline
                nextDue += rng.expovariate(batchRate)
            for conn in touched:
                if not conn.writing:
                    flush(conn)
        elif outstanding == 0 or now > drainUntil:
            break
        wait = (nextDue if nextDue < end else drainUntil) - clock()
        timeout = 0.0 if wait < SPIN_S else wait - SPIN_S / 2
        for fd, events in epoll.poll(timeout):
            conn = byFd[fd]
            if events & select.EPOLLOUT:
                flush(conn)
            if not events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                continue
            chunk = conn.sock.recv(262144)
            if not chunk:
                raise ConnectionError(f"port {conn.port} closed a connection")
            conn.reader.feed(chunk)
            got = 0
            reply = conn.reader.gets()
            while reply is not False:
                got += 1
                if reply is None:
                    nulls += 1
                elif isinstance(reply, hiredis.ReplyError):
                    errors += 1
                reply = conn.reader.gets()
            if not got:
                continue
            t = clock()
            outstanding -= got
            while got:
                head = conn.pending[0]
                take = min(got, int(head[1]))
                got -= take
                head[1] -= take
                if head[0] >= measureFrom:
                    samples.append((t - head[0], take))
                    completed += take
                if head[1] == 0:
                    conn.pending.popleft()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    for conn in conns:
        conn.sock.close()
    epoll.close()
    unanswered = sum(int(b[1]) for c in conns for b in c.pending if b[0] >= measureFrom)
    p50, p90, p99, p999, top = weightedPercentiles(
        samples, (50.0, 90.0, 99.0, 99.9, 100.0)
    )
    late = sorted(lateness)
    lateP99 = late[min(len(late) - 1, int(len(late) * 0.99))] if late else 0.0
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    wall = max(clock() - start, 1e-9)
    achieved = completed / seconds
    keptUp = lateP99 * 1000 <= MAX_LATENESS_MS and achieved >= 0.9 * rate
    note = ""
    if unanswered:
        note = (
            f"{unanswered} requests unanswered {drainUntil - end:.0f} s after the end"
        )
    return Result(
        offered_per_sec=rate,
        achieved_per_sec=achieved,
        requests=completed + unanswered,
        completed=completed,
        errors=errors,
        nulls=nulls,
        p50_ms=p50 * 1000,
        p90_ms=p90 * 1000,
        p99_ms=p99 * 1000,
        p999_ms=p999 * 1000,
        max_ms=top * 1000,
        lateness_p99_ms=lateP99 * 1000,
        generator_cpu_pct=cpu / wall * 100,
        kept_up=keptUp and not unanswered,
        note=note,
    )


def requestsFor(test: str, keys: Sequence[bytes], value: bytes) -> list[bytes]:
    """
    The encoded commands a connection picks from: one per key.
    """
    if test == "get":
        return [encode(b"GET", k) for k in keys]
    return [encode(b"SET", k, value) for k in keys]


def preload(port: int, keys: Sequence[bytes], value: bytes) -> None:
    """
    SET every key (pipelined, 256 at a time) so that GETs hit.
    """
    with socket.create_connection((LOOPBACK, port), timeout=30.0) as sock:
        reader = hiredis.Reader()
        for i in range(0, len(keys), 256):
            chunk = keys[i : i + 256]
            sock.sendall(b"".join(encode(b"SET", k, value) for k in chunk))
            got = 0
            while got < len(chunk):
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError(f"port {port} closed the connection")
                reader.feed(data)
                reply = reader.gets()
                while reply is not False:
                    if isinstance(reply, hiredis.ReplyError):
                        raise RuntimeError(f"preload SET on port {port}: {reply}")
                    got += 1
                    reply = reader.gets()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench._resp_load",
        description="Open-loop RESP load at a fixed rate; JSON result on stdout.",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests/s")
    parser.add_argument("--test", choices=("get", "set"), default="get")
    parser.add_argument("--pipeline", type=int, default=1)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds")
    parser.add_argument("--keyspace", type=int, default=10000)
    parser.add_argument("--value-size", type=int, default=64)
    parser.add_argument("--cluster", action="store_true", help="route by slot")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    value = b"x" * args.value_size
    keys = [keyName(i) for i in range(args.keyspace)]
    if args.cluster:
        owners = slotOwners(args.port)
        byPort: dict[int, list[bytes]] = {}
        for key in keys:
            byPort.setdefault(owners[keySlot(key)], []).append(key)
    else:
        byPort = {args.port: keys}
    ports = sorted(byPort)
    if args.test == "get":
        for port, mine in byPort.items():
            preload(port, mine, value)
    requests = {p: requestsFor(args.test, k, value) for p, k in byPort.items()}
    result = openLoop(
        ports,
        requests,
        args.rate,
        args.pipeline,
        args.connections,
        args.duration,
        args.warmup,
        args.seed,
    )
    print(json.dumps({**asdict(result), "ports": ports}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
