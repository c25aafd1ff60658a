"""
A RESP pinger, for the reactor stalls C{bench/durability} measures from
outside a node: one connection, one C{PING} at a time, sent every
C{--interval} (1 ms), each reply's latency recorded with the time the
C{PING} was sent. A reactor turn that holds the node for 30 ms shows as a
C{PING} answered after about 30 ms; the pings that fell due meanwhile are
skipped, not sent in a burst, so that one stall counts once.

It runs until C{--duration} passes or it gets SIGINT or SIGTERM, then prints
one line of JSON: every sample as C{[sent, latency]} in seconds, C{sent} on
the system's monotonic clock (C{time.monotonic}, the same in every process
of the machine, so that the caller can pick the samples of a time window).
Run as C{python -m bench._resp_ping --help}.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType

from bench._resp_load import LOOPBACK, encode

PING = encode(b"PING")
PONG = b"+PONG\r\n"
REPLY_TIMEOUT_S = 30.0  # a reply later than this ends the run as an error


class _Stop:
    """
    Set by SIGINT or SIGTERM: the loop ends after the ping in flight.
    """

    requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def ping(
    port: int, interval: float, duration: float, stop: _Stop
) -> tuple[list[tuple[float, float]], str]:
    """
    PING C{port} every C{interval} s for C{duration} s at most; the samples
    (sent, latency) and an error, if one ended the run early.
    """
    clock = time.monotonic
    samples: list[tuple[float, float]] = []
    with socket.create_connection((LOOPBACK, port), timeout=REPLY_TIMEOUT_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        end = clock() + duration
        due = clock()
        while not stop.requested:
            now = clock()
            if now >= end:
                break
            if due > now:
                time.sleep(due - now)
            sent = clock()
            try:
                sock.sendall(PING)
                got = b""
                while len(got) < len(PONG):
                    chunk = sock.recv(64)
                    if not chunk:
                        return samples, "the server closed the connection"
                    got += chunk
            except OSError as e:
                return samples, repr(e)
            answered = clock()
            if got != PONG:
                return samples, f"unexpected reply {got!r}"
            samples.append((sent, answered - sent))
            # The next ping one interval after this one was sent, or now if
            # that time has passed (a stall): missed pings are not sent late.
            due = max(sent + interval, answered)
    return samples, ""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench._resp_ping",
        description="PING a RESP port every interval; JSON samples on stdout.",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--interval", type=float, default=0.001, help="seconds between pings"
    )
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds at most (SIGINT ends)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    stop = _Stop()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    samples, error = ping(args.port, args.interval, args.duration, stop)
    rounded = [[round(s, 6), round(lat, 6)] for s, lat in samples]
    print(json.dumps({"samples": rounded, "error": error}))
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
