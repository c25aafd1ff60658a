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


class RunNowTests(SynchronousTestCase):
    def test_idleKeyAnswersPlainly(self) -> None:
        """
        On an idle key, an operation that finishes at once gives its own
        result, not a Deferred, and leaves the key idle.
        """
        serial = KeySerializer()
        self.assertTrue(serial.idle("k"))
        self.assertEqual(serial.runNow("k", lambda: 7), 7)
        self.assertTrue(serial.idle("k"))
        self.assertEqual(len(serial), 0)

    def test_idleKeyRaisesPlainly(self) -> None:
        """
        On an idle key, what the operation raises is raised, and the key
        stays idle.
        """
        serial = KeySerializer()

        def refuse() -> int:
            raise ValueError("no")

        self.assertRaises(ValueError, serial.runNow, "k", refuse)
        self.assertTrue(serial.idle("k"))

    def test_pendingOperationHoldsKey(self) -> None:
        """
        An operation whose Deferred has not fired holds the key: a later
        run or runNow on it waits, in order, and the key is idle again
        when all are done.
        """
        serial = KeySerializer()
        first: Deferred[int] = Deferred()
        started: list[int] = []

        def firstOperation() -> Deferred[int]:
            return first

        def start(index: int) -> int:
            started.append(index)
            return index

        one = serial.runNow("k", firstOperation)
        self.assertIs(one, first)
        self.assertFalse(serial.idle("k"))
        two = serial.runNow("k", partial(start, 2))
        three = serial.run("k", partial(start, 3))
        assert isinstance(two, Deferred)
        self.assertEqual(started, [])
        first.callback(1)
        self.assertEqual(started, [2, 3])
        self.assertEqual(self.successResultOf(two), 2)
        self.assertEqual(self.successResultOf(three), 3)
        self.assertTrue(serial.idle("k"))

    def test_firedDeferredLeavesKeyIdle(self) -> None:
        """
        An operation returning a Deferred that has fired already does not
        hold the key.
        """
        serial = KeySerializer()
        done: Deferred[int] = Deferred()
        done.callback(5)

        def operation() -> Deferred[int]:
            return done

        result = serial.runNow("k", operation)
        assert isinstance(result, Deferred)
        self.assertEqual(self.successResultOf(result), 5)
        self.assertTrue(serial.idle("k"))
