"""
Tests for L{disperse.store.sweeper}: expiry runs when entries fall due, and
an idle store schedules nothing.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.store import Store
from disperse.store.sweeper import SWEEP_INTERVAL, ExpirySweeper

START = 1_700_000_000.0


class ExpirySweeperTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = Store(self.clock, 1)
        self.sweeper = ExpirySweeper(self.store, self.clock, budget=10)
        self.sweeper.start()

    def test_idleStoreSchedulesNothing(self) -> None:
        """
        With nothing to expire, the sweeper sets no timer at all, and
        entries without expiry do not change that.
        """
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.store.put("k", b"v")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_sweepsWhenDue(self) -> None:
        """
        An entry with a time to live wakes the sweeper once its expiry
        second has passed; the entry is gone then, and the sweeper sleeps
        again.
        """
        self.store.put("k", b"v", ttlMs=1500)
        [call] = self.clock.getDelayedCalls()
        self.assertGreaterEqual(call.getTime(), START + 2.0)
        self.assertLess(call.getTime(), START + 2.0 + SWEEP_INTERVAL)
        self.clock.advance(call.getTime() - START)
        self.assertEqual(self.store.stats().expirations, 1)
        self.assertEqual(self.store.record("k"), None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_earlierExpiryWakesSooner(self) -> None:
        """
        An entry that expires before the one the sweeper waits for moves
        the sweep earlier.
        """
        self.store.put("late", b"v", ttlMs=60_000)
        self.store.put("soon", b"v", ttlMs=1000)
        [call] = [c for c in self.clock.getDelayedCalls() if c.active()]
        self.assertLess(call.getTime(), START + 2.0 + SWEEP_INTERVAL)
        self.clock.advance(call.getTime() - START)
        self.assertEqual(self.store.stats().expirations, 1)
        [call] = [c for c in self.clock.getDelayedCalls() if c.active()]
        self.assertGreaterEqual(call.getTime(), START + 60.0)

    def test_burstKeepsSpacing(self) -> None:
        """
        More due entries than one sweep's budget are swept a budget at a
        time, one interval apart.
        """
        for i in range(25):
            self.store.put(f"k{i}", b"v", ttlMs=1000)
        self.clock.advance(2.0 + 0.01)
        self.assertEqual(self.store.stats().expirations, 10)
        [call] = self.clock.getDelayedCalls()
        self.assertAlmostEqual(call.getTime() - self.clock.seconds(), SWEEP_INTERVAL)
        self.clock.advance(SWEEP_INTERVAL)
        self.clock.advance(SWEEP_INTERVAL)
        self.assertEqual(self.store.stats().expirations, 25)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop(self) -> None:
        """
        A stopped sweeper cancels its timer and does not come back for new
        entries.
        """
        self.store.put("k", b"v", ttlMs=1000)
        self.sweeper.stop()
        self.store.put("j", b"v", ttlMs=500)
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()], [])

    def test_failingSweepGoesOn(self) -> None:
        """
        A sweep that raises is logged, and the next one still comes.
        """
        self.store.put("k", b"v", ttlMs=1000)
        calls = []

        def broken(budget: int) -> int:
            calls.append(budget)
            raise RuntimeError("boom")

        self.store.sweep = broken  # type: ignore[method-assign]
        self.clock.advance(2.01)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(calls, [10])
        [call] = self.clock.getDelayedCalls()
        self.assertAlmostEqual(call.getTime() - self.clock.seconds(), SWEEP_INTERVAL)
