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

    def test_summary(self) -> None:
        """
        The C{/stats} form: connection counters, totals, and per command its
        calls, failures and mean latency in milliseconds, by name.
        """
        stats = RespStats(connections=2, accepted=5, rejected=1, protocolErrors=1)
        stats.record("set", 0.004)
        stats.record("get", 0.001)
        stats.record("get", 0.003, failed=True)
        summary = stats.summary()
        self.assertEqual(
            summary,
            {
                "connections": 2,
                "accepted": 5,
                "rejected": 1,
                "protocolErrors": 1,
                "idleClosed": 0,
                "rateLimited": 0,
                "commands": 3,
                "failed": 1,
                "perCommand": {
                    "get": {"calls": 2, "failed": 1, "meanMs": 2.0},
                    "set": {"calls": 1, "failed": 0, "meanMs": 4.0},
                },
            },
        )
        self.assertEqual(list(summary["perCommand"]), ["get", "set"])
