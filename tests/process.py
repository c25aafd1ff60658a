"""
Real C{twistd disperse} processes for integration tests: started on ports
the operating system chooses, found ready by reading their log, stopped
(and killed if need be) when the test ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_LISTENING = re.compile(r"HTTP API listening on (?P<host>[^\s]+):(?P<port>\d+)")
_GOSSIP = re.compile(r"gossip listening on (?P<host>[^\s]+):(?P<port>\d+)")
_PEER = re.compile(
    r"node-to-node API(?: \(TLS\))? listening on (?P<host>[^\s]+):(?P<port>\d+)"
)
DEADLINE = 30.0

# The twistd installed beside the interpreter running the tests.
TWISTD = str(Path(sys.executable).with_name("twistd"))
LOOPBACK = (
    "--bind",
    "127.0.0.1",
    "--port",
    "0",
    "--http-port",
    "tcp:0:interface=127.0.0.1",
)


class NodeProcess:
    """
    One running node and everything it has logged so far.
    """

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [TWISTD, "--nodaemon", "--pidfile=", "disperse", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.httpPort = int(self.waitFor(_LISTENING).group("port"))
        self.peerPort = int(self.waitFor(_PEER).group("port"))
        self.gossipPort = int(self.waitFor(_GOSSIP).group("port"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpPort}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def mark(self) -> int:
        """
        A position in the log, for L{waitFor} to search from.
        """
        with self._changed:
            return len(self.lines)

    def waitPast(self, mark: int, timeout: float) -> None:
        """
        Return once the node logged anything after C{mark}, or after
        C{timeout} seconds, or when it exited.
        """
        with self._changed:
            self._changed.wait_for(
                lambda: len(self.lines) > mark or self.process.poll() is not None,
                timeout,
            )

    def waitFor(
        self, pattern: re.Pattern[str], deadline: float = DEADLINE, since: int = 0
    ) -> re.Match[str]:
        """
        The first log line (from line C{since} on) matching C{pattern},
        waiting up to C{deadline} seconds for it to appear.
        """
        end = time.monotonic() + deadline
        seen = since
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = pattern.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                remaining = end - time.monotonic()
                if remaining <= 0 or (
                    self.process.poll() is not None and not self._reader.is_alive()
                ):
                    raise AssertionError(
                        f"no log line matching {pattern.pattern!r}; log:\n"
                        + "\n".join(self.lines)
                    )
                self._changed.wait(remaining)

    def terminate(self, deadline: float = DEADLINE) -> int:
        """
        Stop the node with SIGTERM as an operator would; the exit status.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(deadline)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._reader.join(DEADLINE)


@contextmanager
def runningNode(*args: str) -> Iterator[NodeProcess]:
    """
    A node on 127.0.0.1 with OS-chosen ports, for the duration of a block.
    """
    node = NodeProcess([*LOOPBACK, *args])
    try:
        yield node
    finally:
        node.kill()
