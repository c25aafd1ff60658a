"""
The suites of real Redis clients (C{make redis-clients}), marked
C{redisclients} and left out of the default run.

They import redis-py and Django, which come with the C{redis-clients}
extra that C{make redis-clients} installs: where those are not installed
(the ordinary C{make test}, which deselects these tests anyway) the
modules are not collected at all. C{make redis-clients} without them
collects no test and fails.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from importlib.util import find_spec
from types import FrameType

import pytest


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@pytest.fixture(scope="session", autouse=True)
def stopCleanlyOnSigterm() -> None:
    """
    The time limit of C{make redis-clients} stops pytest with SIGTERM:
    unwind as on Ctrl-C, so that the nodes (each in a session of its own,
    out of reach of the signal) are killed on the way out.
    """
    signal.signal(signal.SIGTERM, _interrupted)


if find_spec("redis") is None or find_spec("django") is None:
    collect_ignore_glob = ["*.py"]
else:
    from tests.redisclients.nodes import RedisNode, redisNode

    @pytest.fixture(scope="session")
    def solo() -> Iterator[RedisNode]:
        """
        One node, shared by the suites that need no cluster: each test
        works on keys of its own.
        """
        with redisNode("solo") as node:
            yield node
