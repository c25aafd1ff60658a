"""
Tests for L{disperse.resp.match}: glob patterns select what Redis's
C{stringmatchlen} selects. The expected answers of the edge cases were
checked with C{KEYS} on redis-server 7.0, and a property test holds the
matcher to a plain recursive reading of the same rules.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from disperse.resp.match import GlobPattern, globMatch


def reference(pattern: bytes, key: bytes) -> bool:
    """
    Redis's rules read literally: a recursive walk of the pattern and the
    key, C's terminating NUL and signed chars included. Exponential on
    bad patterns; for tests only.
    """

    def at(index: int) -> int:
        return pattern[index] if index < len(pattern) else 0

    def signed(byte: int) -> int:
        return byte - 256 if byte >= 128 else byte

    def walk(p: int, k: int) -> bool:
        while p < len(pattern) and k < len(key):
            byte = pattern[p]
            if byte == ord("*"):
                while p + 1 < len(pattern) and pattern[p + 1] == ord("*"):
                    p += 1
                if p == len(pattern) - 1:
                    return True
                return any(walk(p + 1, start) for start in range(k, len(key)))
            if byte == ord("["):
                p += 1
                negate = at(p) == ord("^")
                if negate:
                    p += 1
                matched = False
                while True:
                    if at(p) == ord("\\") and len(pattern) - p >= 2:
                        p += 1
                        matched |= pattern[p] == key[k]
                    elif at(p) == ord("]"):
                        break
                    elif p >= len(pattern):
                        p -= 1
                        break
                    elif len(pattern) - p >= 3 and pattern[p + 1] == ord("-"):
                        low, high = sorted((signed(pattern[p]), signed(pattern[p + 2])))
                        matched |= low <= signed(key[k]) <= high
                        p += 2
                    else:
                        matched |= pattern[p] == key[k]
                    p += 1
                if matched == negate:
                    return False
            elif byte == ord("?"):
                pass
            else:
                if byte == ord("\\") and len(pattern) - p >= 2:
                    p += 1
                if pattern[p] != key[k]:
                    return False
            p += 1
            k += 1
            if k == len(key):
                while at(p) == ord("*") and p < len(pattern):
                    p += 1
                break
        return p >= len(pattern) and k == len(key)

    return walk(0, 0)


class GlobTests(SynchronousTestCase):
    def assertMatches(
        self, pattern: bytes, matching: list[bytes], others: list[bytes]
    ) -> None:
        compiled = GlobPattern(pattern)
        for key in matching:
            self.assertTrue(compiled.matches(key), (pattern, key))
        for key in others:
            self.assertFalse(compiled.matches(key), (pattern, key))

    def test_literal(self) -> None:
        self.assertMatches(b"user:1", [b"user:1"], [b"user:12", b"user:", b"User:1"])

    def test_star(self) -> None:
        self.assertMatches(
            b"user:*", [b"user:", b"user:1", b"user:a:b"], [b"use", b"xuser:1"]
        )
        self.assertMatches(b"*:1", [b"a:1", b":1", b"a:1:1"], [b"a:12"])
        self.assertMatches(b"a**b*c", [b"abc", b"aXbYc", b"abbc"], [b"acb", b"ab"])

    def test_question(self) -> None:
        self.assertMatches(b"h?llo", [b"hello", b"hallo"], [b"hllo", b"heello"])

    def test_sets(self) -> None:
        self.assertMatches(b"h[ae]llo", [b"hello", b"hallo"], [b"hillo", b"hllo"])
        self.assertMatches(b"h[^e]llo", [b"hallo", b"hbllo"], [b"hello", b"hllo"])
        self.assertMatches(b"h[a-b]llo", [b"hallo", b"hbllo"], [b"hcllo"])
        self.assertMatches(b"[z-x]", [b"x", b"y", b"z"], [b"w"])

    def test_escapes(self) -> None:
        self.assertMatches(b"a\\*b", [b"a*b"], [b"axb", b"a\\*b"])
        self.assertMatches(b"\\?", [b"?"], [b"a"])
        self.assertMatches(b"[\\]]", [b"]"], [b"\\"])
        self.assertMatches(b"[\\^a]", [b"^", b"a"], [b"b"])

    def test_emptyKey(self) -> None:
        """
        An empty key matches only the empty pattern: not even C{*}.
        """
        self.assertTrue(globMatch(b"", b""))
        for pattern in (b"*", b"**", b"?", b"[a]"):
            self.assertFalse(globMatch(pattern, b""), pattern)
        self.assertFalse(globMatch(b"", b"a"))

    def test_unterminatedSets(self) -> None:
        self.assertMatches(b"[ab", [b"a", b"b"], [b"c", b"[", b"ab"])
        self.assertMatches(b"[", [], [b"[", b"a"])
        self.assertMatches(b"[^", [b"a", b"^", b"["], [b"ab"])
        self.assertMatches(b"x[", [], [b"x", b"x["])

    def test_oddRanges(self) -> None:
        # "a-]" is a range (from "]" to "a"), not "a", "-" and the end.
        self.assertMatches(b"[a-]", [b"]", b"^", b"_", b"`", b"a"], [b"-", b"b"])
        # Bytes compare as signed chars: 0x80..0xff sort below 0x00.
        self.assertMatches(b"[a-\xff]", [b"\xff", b"\x00", b"a"], [b"b", b"\x80"])
        self.assertMatches(b"[\x80-\x81]", [b"\x80", b"\x81"], [b"\x82", b"\x7f"])

    def test_trailingBackslash(self) -> None:
        self.assertMatches(b"a\\", [b"a\\"], [b"a"])
        self.assertMatches(b"[a\\", [b"a", b"\\"], [b"b"])

    def test_nulBytes(self) -> None:
        self.assertMatches(b"a\x00*", [b"a\x00", b"a\x00b"], [b"a", b"ab"])

    def test_tooManyStars(self) -> None:
        """
        Beyond 1000 stars with more after them, nothing matches, as Redis
        gives up; 1000, or more with only the last one after, match.
        """
        key = b"a" * 1200
        self.assertTrue(globMatch(b"*a" * 1000, key))
        self.assertTrue(globMatch(b"*a" * 1000 + b"*", key))
        self.assertTrue(globMatch(b"a*" * 1001, key))
        self.assertFalse(globMatch(b"*a" * 1001, key))

    def test_linear(self) -> None:
        """
        A pattern that backtracks exponentially in a naive matcher answers
        at once.
        """
        self.assertFalse(globMatch(b"*a" * 30 + b"b", b"a" * 5000))

    @settings(max_examples=2000, deadline=None)
    @given(
        st.binary(max_size=8).map(lambda b: bytes(c % 12 for c in b)),
        st.binary(max_size=8).map(lambda b: bytes(c % 12 for c in b)),
    )
    def test_sameAsTheRules(self, pattern: bytes, key: bytes) -> None:
        alphabet = b"ab\\[]^-*?\x80\xff\x00"
        pattern = bytes(alphabet[c] for c in pattern)
        key = bytes(alphabet[c] for c in key)
        if key:
            self.assertEqual(globMatch(pattern, key), reference(pattern, key))
        else:
            self.assertEqual(globMatch(pattern, key), not pattern)
