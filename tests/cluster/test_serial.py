"""
Tests for L{disperse.cluster.serial}.
"""

from __future__ import annotations

from functools import partial

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.serial import KeySerializer


class KeySerializerTests(SynchronousTestCase):
    def test_synchronousRunsAtOnce(self) -> None:
        """
        An operation that finishes at once leaves the key free.
        """
        serial = KeySerializer()
        self.assertEqual(self.successResultOf(serial.run("k", lambda: 7)), 7)
        self.assertEqual(len(serial), 0)

    def test_waitsForEarlierOnSameKey(self) -> None:
        """
        A second operation on a busy key starts only when the first has
        finished; one on another key starts at once.
        """
        serial = KeySerializer()
        first: Deferred[int] = Deferred()
        started: list[str] = []

        def second() -> int:
            started.append("second")
            return 2

        one = serial.run("k", lambda: first)
        two = serial.run("k", second)
        other = serial.run("j", lambda: started.append("other"))
        self.assertEqual(started, ["other"])
        self.assertNoResult(two)
        self.successResultOf(other)
        first.callback(1)
        self.assertEqual(self.successResultOf(one), 1)
        self.assertEqual(self.successResultOf(two), 2)
        self.assertEqual(started, ["other", "second"])
        self.assertEqual(len(serial), 0)

    def test_failureReleasesKey(self) -> None:
        """
        An operation that fails passes its failure on and frees the key for
        the next.
        """
        serial = KeySerializer()
        first: Deferred[int] = Deferred()
        one = serial.run("k", lambda: first)
        two = serial.run("k", lambda: 2)
        first.errback(ValueError("no"))
        self.failureResultOf(one, ValueError)
        self.assertEqual(self.successResultOf(two), 2)
        self.assertEqual(len(serial), 0)

    def test_orderKept(self) -> None:
        """
        Operations queued on one key run in the order they were asked for.
        """
        serial = KeySerializer()
        gate: Deferred[None] = Deferred()
        ran: list[int] = []
        serial.run("k", lambda: gate)
        for index in range(5):
            serial.run("k", partial(ran.append, index))
        gate.callback(None)
        self.assertEqual(ran, [0, 1, 2, 3, 4])
