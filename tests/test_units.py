"""
Tests for L{disperse.units}: sizes, durations and host:port pairs as
people write them.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from disperse.units import parseDuration, parseHostPort, parseSize


class ParsingTests(SynchronousTestCase):
    def test_sizes(self) -> None:
        self.assertEqual(
            [
                parseSize(s)
                for s in ("100", "1KB", "1kib", "1K", "2MB", "1.5GiB", "3 gb")
            ],
            [100, 1000, 1024, 1024, 2_000_000, 1536 * 1024**2, 3_000_000_000],
        )

    def test_durations(self) -> None:
        self.assertEqual(
            [parseDuration(s) for s in ("10", "500ms", "2m", "1h", "1d", "250us")],
            [10.0, 0.5, 120.0, 3600.0, 86400.0, 0.00025],
        )
        self.assertRaises(ValueError, parseDuration, "-1s")
        self.assertRaises(ValueError, parseDuration, "1 fortnight")

    def test_hostPort(self) -> None:
        self.assertEqual(parseHostPort("host", 7946), ("host", 7946))
        self.assertEqual(parseHostPort("[fe80::1]:7000", 7946), ("fe80::1", 7000))
        self.assertEqual(parseHostPort("fe80::1", 7946), ("fe80::1", 7946))
        self.assertRaises(ValueError, parseHostPort, "[::1", 7946)
