"""
Tests for L{disperse.store.scrubber}: the scrub runs at its rate on the
clock it is given, finds damage within a pass, and a rate of 0 runs
nothing.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.store import Store
from disperse.store.scrubber import SCRUB_INTERVAL, Scrubber
from disperse.testing.damage import damageEntry

START = 1_700_000_000.0


class ScrubberTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = Store(self.clock, 1)
        for i in range(1000):
            self.store.put(f"key{i}", b"value %d" % i)

    def scrubber(self, rate: int) -> Scrubber:
        scrubber = Scrubber(self.store, self.clock, rate)
        scrubber.start()
        self.addCleanup(scrubber.stop)
        return scrubber

    def test_rate(self) -> None:
        """
        Each step checks the rate's share of a second's entries; a pass
        over the store takes the entries over the rate, in seconds.
        """
        self.scrubber(rate=100)
        self.clock.advance(SCRUB_INTERVAL)
        self.assertEqual(self.store.integrity.scrubbed, 10)
        self.clock.pump([SCRUB_INTERVAL] * 99)
        self.assertEqual(self.store.integrity.scrubbed, 1000)
        self.assertEqual(self.store.integrity.scrubPasses, 0)
        self.clock.pump([SCRUB_INTERVAL] * 10)
        self.assertEqual(self.store.integrity.scrubPasses, 1)

    def test_slowRate(self) -> None:
        """
        A rate below one entry a step still checks entries, one every few
        steps.
        """
        self.scrubber(rate=3)
        self.clock.pump([SCRUB_INTERVAL] * 10)
        self.assertEqual(self.store.integrity.scrubbed, 3)

    def test_findsDamage(self) -> None:
        damageEntry(self.store, "key500")
        self.scrubber(rate=10_000)
        self.clock.advance(SCRUB_INTERVAL)
        self.assertEqual(self.store.integrity.scrub, 1)
        self.assertIsNone(self.store.record("key500"))
        self.assertEqual(len(self.store), 999)

    def test_off(self) -> None:
        scrubber = self.scrubber(rate=0)
        self.assertFalse(scrubber.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop(self) -> None:
        scrubber = self.scrubber(rate=100)
        self.assertTrue(scrubber.running)
        scrubber.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.store.integrity.scrubbed, 0)

    def test_stepErrorLoggedAndGoesOn(self) -> None:
        """
        A step that fails is logged; the next one runs.
        """
        scrubber = self.scrubber(rate=100)
        calls: list[int] = []

        def failing(budget: int) -> int:
            calls.append(budget)
            raise RuntimeError("boom")

        scrubber._scrub.step = failing  # type: ignore[method-assign]
        self.clock.pump([SCRUB_INTERVAL] * 2)
        self.assertEqual(calls, [10, 10])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertTrue(scrubber.running)

    def test_badArguments(self) -> None:
        self.assertRaises(ValueError, Scrubber, self.store, self.clock, -1)
        self.assertRaises(ValueError, Scrubber, self.store, self.clock, 1, 0)
