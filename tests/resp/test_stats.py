"""
Tests for L{disperse.resp.stats}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from disperse.resp.stats import RespStats


class RespStatsTests(SynchronousTestCase):
    def test_recordCountsPerCommand(self) -> None:
        stats = RespStats(bounds=(0.001, 0.01))
        stats.record("get", 0.0005)
        stats.record("get", 0.005, failed=True)
        stats.record("set", 1.0)
        get = stats.commands["get"]
        self.assertEqual((get.calls, get.failed, get.buckets), (2, 1, [1, 1, 0]))
        self.assertEqual(stats.commands["set"].buckets, [0, 0, 1])
        self.assertAlmostEqual(get.seconds, 0.0055)
        self.assertEqual(stats.calls, 3)
