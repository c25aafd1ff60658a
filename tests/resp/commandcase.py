"""
A test case that runs commands in memory on a node of its own (a cluster
of one, on a L{Clock} set to a realistic time) and reads their replies or
errors, whether the handler answered at once or later.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from disperse.config import NodeConfig
from disperse.node import Node
from disperse.resp.arguments import ArgumentError
from disperse.resp.commands import CommandError
from disperse.resp.context import Context
from disperse.resp.replies import Reply
from disperse.testing.node import makeNode
from disperse.testing.nodes import START
from disperse.testing.resp import handlerContext, runCommand

Word = bytes | str | int


def words(line: tuple[Word, ...]) -> list[bytes]:
    return [w if isinstance(w, bytes) else str(w).encode() for w in line]


def started(context: Context, *line: Word) -> Deferred[Reply]:
    """
    The reply to C{line} as a L{Deferred}, however the handler answered
    (a refusal raised at once becomes its failure).
    """
    try:
        reply = runCommand(context, *words(line))
    except Exception:
        return fail(Failure())
    if isinstance(reply, Deferred):
        return reply
    return succeed(reply)


class CommandTestCase(SynchronousTestCase):
    """
    @ivar node: the node commands run on.
    @ivar context: a connection's context on it.
    """

    config = NodeConfig(nodeName="a", maxValueSize=64)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.node: Node = makeNode(self.config, self.clock)
        self.context = handlerContext(self.node)

    @property
    def nowMs(self) -> int:
        return int(self.clock.seconds() * 1000)

    def call(self, *line: Word) -> Reply:
        """
        The reply to C{line}, which must have answered.
        """
        return self.successResultOf(started(self.context, *line))

    def refused(self, *line: Word) -> str:
        """
        The error C{line} was refused with.
        """
        failure = self.failureResultOf(started(self.context, *line))
        error = failure.value
        if not isinstance(error, CommandError | ArgumentError):
            failure.raiseException()
        assert isinstance(error, CommandError | ArgumentError)
        return error.message

    def calls(self, *lines: tuple[Word, ...]) -> list[Reply]:
        """
        The replies to C{lines}, run one after another.
        """
        return [self.call(*line) for line in lines]
