"""
Tests for L{disperse.testing.respserver}, the in-memory Redis port the
fuzzer and tests feed raw bytes.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from disperse.testing.respserver import inMemoryRespPort
from disperse.testing.site import READER, WRITER


class InMemoryRespPortTests(SynchronousTestCase):
    def test_tokens(self) -> None:
        """
        With tokens, commands wait for C{AUTH}; a token's scope applies.
        """
        port = inMemoryRespPort()
        self.assertEqual(
            port.exchange(b"GET k\r\n"), b"-NOAUTH Authentication required.\r\n"
        )
        answer = port.exchange(
            b"AUTH " + WRITER.encode() + b"\r\nSET users/k v\r\nGET users/k\r\n",
            chunk=5,
        )
        self.assertEqual(answer, b"+OK\r\n+OK\r\n$1\r\nv\r\n")
        refused = port.exchange(b"AUTH " + READER.encode() + b"\r\nSET k v\r\n")
        self.assertTrue(refused.startswith(b"+OK\r\n-NOPERM "), refused)

    def test_withoutTokens(self) -> None:
        """
        Without tokens commands run at once, and the port's counters are the
        node's C{respStats}.
        """
        port = inMemoryRespPort(withTokens=False)
        self.assertEqual(port.exchange(b"PING\r\nTIME\r\n")[:7], b"+PONG\r\n")
        self.assertIs(port.node.respStats, port.factory.stats)
        self.assertEqual(port.factory.stats.commands["ping"].calls, 1)

    def test_protocolError(self) -> None:
        port = inMemoryRespPort(withTokens=False)
        self.assertEqual(
            port.exchange(b"*1\r\n$4\r\nPING\r\n*x\r\nPING\r\n"),
            b"+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n",
        )
        self.assertEqual(port.factory.stats.protocolErrors, 1)
