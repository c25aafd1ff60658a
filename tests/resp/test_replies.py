"""
Tests for L{disperse.resp.replies}: each kind of reply value in RESP2 and
RESP3.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from disperse.resp.replies import (
    NULL_ARRAY,
    OK,
    ErrorReply,
    Reply,
    SetReply,
    Simple,
    Verbatim,
    encodeReply,
)
from disperse.resp.wire import ReplyEncoder


def encoded(reply: Reply, protocol: int = 2) -> bytes:
    encoder = ReplyEncoder(protocol)
    encodeReply(encoder, reply)
    return encoder.take()


class EncodeReplyTests(SynchronousTestCase):
    def test_scalars(self) -> None:
        self.assertEqual(encoded(b"v"), b"$1\r\nv\r\n")
        self.assertEqual(encoded("é"), b"$2\r\n\xc3\xa9\r\n")
        self.assertEqual(encoded(OK), b"+OK\r\n")
        self.assertEqual(encoded(7), b":7\r\n")
        self.assertEqual(encoded(ErrorReply("ERR no")), b"-ERR no\r\n")

    def test_nullsByProtocol(self) -> None:
        self.assertEqual(encoded(None), b"$-1\r\n")
        self.assertEqual(encoded(None, 3), b"_\r\n")
        self.assertEqual(encoded(NULL_ARRAY), b"*-1\r\n")
        self.assertEqual(encoded(NULL_ARRAY, 3), b"_\r\n")

    def test_booleanAndDoubleByProtocol(self) -> None:
        self.assertEqual(encoded(True), b":1\r\n")
        self.assertEqual(encoded(True, 3), b"#t\r\n")
        self.assertEqual(encoded(1.5), b"$3\r\n1.5\r\n")
        self.assertEqual(encoded(1.5, 3), b",1.5\r\n")

    def test_aggregates(self) -> None:
        self.assertEqual(encoded([b"a", None, 1]), b"*3\r\n$1\r\na\r\n$-1\r\n:1\r\n")
        self.assertEqual(encoded({b"k": 1}), b"*2\r\n$1\r\nk\r\n:1\r\n")
        self.assertEqual(encoded({b"k": 1}, 3), b"%1\r\n$1\r\nk\r\n:1\r\n")
        self.assertEqual(encoded(frozenset([b"x"]), 3), b"~1\r\n$1\r\nx\r\n")

    def test_orderedSet(self) -> None:
        """
        A L{SetReply} is a set in RESP3 and an array in RESP2, its elements
        in the order given.
        """
        flags = SetReply((Simple("write"), Simple("denyoom"), Simple("fast")))
        self.assertEqual(encoded(flags, 3), b"~3\r\n+write\r\n+denyoom\r\n+fast\r\n")
        self.assertEqual(encoded(flags), b"*3\r\n+write\r\n+denyoom\r\n+fast\r\n")
        self.assertEqual(encoded(SetReply(), 3), b"~0\r\n")

    def test_verbatim(self) -> None:
        self.assertEqual(encoded(Verbatim(b"hi")), b"$2\r\nhi\r\n")
        self.assertEqual(encoded(Verbatim(b"hi"), 3), b"=6\r\ntxt:hi\r\n")

    def test_notAReply(self) -> None:
        self.assertRaises(TypeError, encoded, object())
