"""
Glob patterns as Redis matches them (C{KEYS}, C{SCAN ... MATCH}): C{*}
any run of bytes, C{?} one byte, C{[abc]} one of a set, C{[^a]} one byte
not in it, C{[a-z]} a range, a backslash the next byte taken literally.

The rules are Redis's C{stringmatchlen}, edge cases included, so that a
pattern selects the same keys here as on a Redis server:
    - An empty key matches the empty pattern only (not even C{*}); C{SCAN}
      and C{KEYS} treat a pattern of exactly C{*} as no pattern at all.
    - A C{[} with no closing C{]} runs to the end of the pattern: C{[ab}
      is C{[ab]}, a lone C{[} matches nothing and C{[^} any one byte.
    - In a set, C{x-y} is a range whatever C{y} is (C{[a-]} is the range
      from C{a} down to C{]}), a reversed range is swapped, and bytes are
      compared as C's signed C{char} (bytes from 0x80 sort below 0x00).
    - A trailing backslash, alone or in a set, stands for itself.
    - More than 1000 C{*} groups with anything after the 1001st never
      match (Redis's guard against abusive patterns).

The pattern is compiled once into tokens that each consume one byte, or a
star; matching is then the classic two-pointer walk with one backtracking
point, linear for the usual patterns and never exponential.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Final

# Redis gives up beyond this depth of stars.
_MAX_NESTING: Final = 1000

# A token: _STAR, _ANY, a byte value (a literal), or the frozenset of byte
# values a set accepts.
_STAR: Final = -1
_ANY: Final = -2
_Token = int | frozenset[int]


def _signed(byte: int) -> int:
    # The value of a byte as C's (signed) char.
    return byte - 256 if byte >= 128 else byte


def _compile(pattern: bytes) -> list[_Token]:
    """
    C{pattern} as a token list, following Redis's walk of the pattern (which
    never depends on the key being matched).
    """
    length = len(pattern)

    def at(index: int) -> int:
        # Past the end, C reads the string's terminating NUL.
        return pattern[index] if index < length else 0

    tokens: list[_Token] = []
    i = 0
    while i < length:
        byte = pattern[i]
        if byte == 0x2A:  # *
            while i + 1 < length and pattern[i + 1] == 0x2A:
                i += 1
            tokens.append(_STAR)
        elif byte == 0x3F:  # ?
            tokens.append(_ANY)
        elif byte == 0x5B:  # [
            i += 1
            negate = at(i) == 0x5E  # ^
            if negate:
                i += 1
            members: set[int] = set()
            while True:
                if at(i) == 0x5C and length - i >= 2:  # backslash
                    i += 1
                    members.add(pattern[i])
                elif at(i) == 0x5D:  # ]
                    break
                elif i >= length:
                    # Unterminated: the set ends with the pattern.
                    i -= 1
                    break
                elif length - i >= 3 and pattern[i + 1] == 0x2D:  # -
                    start, end = _signed(pattern[i]), _signed(pattern[i + 2])
                    if start > end:
                        start, end = end, start
                    members.update(c & 0xFF for c in range(start, end + 1))
                    i += 2
                else:
                    members.add(pattern[i])
                i += 1
            accepted = frozenset(members)
            if negate:
                accepted = frozenset(range(256)) - accepted
            tokens.append(accepted)
        elif byte == 0x5C and length - i >= 2:  # backslash
            i += 1
            tokens.append(pattern[i])
        else:
            tokens.append(byte)
        i += 1
    return tokens


class GlobPattern:
    """
    A compiled glob pattern; L{matches} tells whether a key matches it.
    """

    __slots__ = ("_never", "_pattern", "_tokens")

    def __init__(self, pattern: bytes) -> None:
        self._pattern = pattern
        self._tokens = _compile(pattern)
        stars = [index for index, token in enumerate(self._tokens) if token == _STAR]
        self._never = (
            len(stars) > _MAX_NESTING and stars[_MAX_NESTING] != len(self._tokens) - 1
        )

    def __repr__(self) -> str:
        return f"GlobPattern({self._pattern!r})"

    def matches(self, key: bytes) -> bool:
        """
        Whether C{key} matches the pattern, as Redis's C{stringmatchlen}
        (case-sensitive) decides.
        """
        tokens = self._tokens
        if not key:
            return not self._pattern
        if self._never:
            return False
        count = len(tokens)
        size = len(key)
        t = k = 0
        # Where to resume after the last star: the token after it and the
        # key position it was tried from.
        starToken = -1
        starKey = 0
        while k < size:
            if t < count:
                token = tokens[t]
                if token == _STAR:
                    starToken = t
                    starKey = k
                    t += 1
                    continue
                byte = key[k]
                if token in (_ANY, byte) or (
                    type(token) is frozenset and byte in token
                ):
                    t += 1
                    k += 1
                    continue
            if starToken < 0:
                return False
            # Let the last star swallow one more byte and try again.
            starKey += 1
            k = starKey
            t = starToken + 1
        while t < count and tokens[t] == _STAR:
            t += 1
        return t == count


def globMatch(pattern: bytes, key: bytes) -> bool:
    """
    Whether C{key} matches glob C{pattern} (see L{GlobPattern}).
    """
    return GlobPattern(pattern).matches(key)
