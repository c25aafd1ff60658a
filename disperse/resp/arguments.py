"""
Typed arguments of the option-heavy commands: C{SET}, C{SETEX},
C{PSETEX}, C{GETEX}, the C{EXPIRE} family, C{INCRBY}/C{DECRBY}/
C{INCRBYFLOAT} and C{SCAN}, parsed into frozen dataclasses with Redis's own
error texts and its order of checks (options first, then numbers).

Expiry comes out as an absolute time in milliseconds since the epoch,
computed from the C{nowMs} the caller passes: the caller owns the clock.
Each parser takes the whole command line, name first, whose arity the
command table has already checked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from disperse.resp.wire import parseInteger

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_UINT64_MAX: Final = 2**64 - 1

SYNTAX_ERROR: Final = "ERR syntax error"
NOT_AN_INTEGER: Final = "ERR value is not an integer or out of range"
NOT_A_FLOAT: Final = "ERR value is not a valid float"

# What strtold accepts and Redis keeps: decimal, optional exponent, inf; no
# white space, no underscores (which Python's float() would take).
_FLOAT: Final = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?)",
    re.IGNORECASE,
)
# Redis refuses longer float texts outright.
_MAX_FLOAT_LENGTH: Final = 5 * 1024

# The value types SCAN's TYPE may name.
SCAN_TYPES: Final = frozenset(("string", "list", "set", "zset", "hash", "stream"))


class ArgumentError(Exception):
    """
    A command's arguments refused; C{message} is the error reply's text.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def integerArgument(text: bytes) -> int:
    """
    A signed 64-bit integer argument.

    @raise ArgumentError: C{ERR value is not an integer or out of range}.
    """
    value = parseInteger(text)
    if value is None:
        raise ArgumentError(NOT_AN_INTEGER)
    return value


def floatArgument(text: bytes) -> float:
    """
    A floating-point argument as Redis reads one (C{INCRBYFLOAT}): no
    surrounding space, no NaN.

    @raise ArgumentError: C{ERR value is not a valid float}.
    """
    if len(text) > _MAX_FLOAT_LENGTH or _FLOAT.fullmatch(text) is None:
        raise ArgumentError(NOT_A_FLOAT)
    return float(text)


def _option(argument: bytes) -> bytes:
    return argument.upper()


def _expireTimeError(command: bytes) -> ArgumentError:
    name = command.decode("utf-8", "replace").lower()
    return ArgumentError(f"ERR invalid expire time in '{name}' command")


@dataclass(frozen=True)
class _Expiry:
    # An expiry option as written: which one and its number, unparsed.
    option: bytes
    text: bytes


def _expiryAtMs(command: bytes, expiry: _Expiry, nowMs: int) -> int:
    # Redis's rule for SET, SETEX, PSETEX and GETEX: the number must be a
    # positive integer, and the absolute time must fit in 64 bits.
    amount = integerArgument(expiry.text)
    seconds = expiry.option in (b"EX", b"EXAT")
    if amount <= 0 or (seconds and amount > _INT64_MAX // 1000):
        raise _expireTimeError(command)
    milliseconds = amount * 1000 if seconds else amount
    if expiry.option in (b"EX", b"PX"):
        milliseconds += nowMs
    if milliseconds > _INT64_MAX:
        raise _expireTimeError(command)
    return milliseconds


@dataclass(frozen=True)
class SetArguments:
    """
    C{SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms|KEEPTTL]},
    and C{SETEX}, C{PSETEX}, C{SETNX} in the same form.

    @ivar onlyIfAbsent: C{NX}.
    @ivar onlyIfPresent: C{XX}.
    @ivar get: answer the old value.
    @ivar expireAtMs: the new absolute expiry, or L{None} for none (the
        key's time to live is removed, unless C{keepTtl}).
    @ivar keepTtl: keep the key's current expiry.
    """

    key: bytes
    value: bytes
    onlyIfAbsent: bool = False
    onlyIfPresent: bool = False
    get: bool = False
    expireAtMs: int | None = None
    keepTtl: bool = False


_EXPIRY_OPTIONS: Final = (b"EX", b"PX", b"EXAT", b"PXAT")


def parseSet(arguments: Sequence[bytes], nowMs: int) -> SetArguments:
    """
    Parse C{SET}'s command line.

    @raise ArgumentError: C{ERR syntax error} for a misplaced or clashing
        option, then the number's own errors.
    """
    nx = xx = get = keepTtl = False
    expiry: _Expiry | None = None
    index = 3
    while index < len(arguments):
        option = _option(arguments[index])
        hasNext = index + 1 < len(arguments)
        if option == b"NX" and not xx:
            nx = True
        elif option == b"XX" and not nx:
            xx = True
        elif option == b"GET":
            get = True
        elif option == b"KEEPTTL" and expiry is None:
            keepTtl = True
        elif (
            option in _EXPIRY_OPTIONS
            and hasNext
            and not keepTtl
            and (expiry is None or expiry.option == option)
        ):
            # The same option twice is allowed; the last one counts.
            index += 1
            expiry = _Expiry(option, arguments[index])
        else:
            raise ArgumentError(SYNTAX_ERROR)
        index += 1
    expireAtMs = None
    if expiry is not None:
        expireAtMs = _expiryAtMs(arguments[0], expiry, nowMs)
    return SetArguments(arguments[1], arguments[2], nx, xx, get, expireAtMs, keepTtl)


def parseSetEx(arguments: Sequence[bytes], nowMs: int) -> SetArguments:
    """
    Parse C{SETEX key seconds value} or C{PSETEX key milliseconds value}.
    """
    option = b"PX" if _option(arguments[0]) == b"PSETEX" else b"EX"
    expireAtMs = _expiryAtMs(arguments[0], _Expiry(option, arguments[2]), nowMs)
    return SetArguments(arguments[1], arguments[3], expireAtMs=expireAtMs)


@dataclass(frozen=True)
class GetExArguments:
    """
    C{GETEX key [EX s|PX ms|EXAT ts|PXAT ms|PERSIST]}.

    @ivar expireAtMs: a new absolute expiry, or L{None} to leave it (or
        remove it, with C{persist}).
    """

    key: bytes
    expireAtMs: int | None = None
    persist: bool = False


def parseGetEx(arguments: Sequence[bytes], nowMs: int) -> GetExArguments:
    """
    Parse C{GETEX}'s command line.

    @raise ArgumentError: C{ERR syntax error}, then the number's errors.
    """
    persist = False
    expiry: _Expiry | None = None
    index = 2
    while index < len(arguments):
        option = _option(arguments[index])
        hasNext = index + 1 < len(arguments)
        if option == b"PERSIST" and expiry is None:
            persist = True
        elif (
            option in _EXPIRY_OPTIONS
            and hasNext
            and not persist
            and (expiry is None or expiry.option == option)
        ):
            index += 1
            expiry = _Expiry(option, arguments[index])
        else:
            raise ArgumentError(SYNTAX_ERROR)
        index += 1
    expireAtMs = None
    if expiry is not None:
        expireAtMs = _expiryAtMs(arguments[0], expiry, nowMs)
    return GetExArguments(arguments[1], expireAtMs, persist)


@dataclass(frozen=True)
class ExpireArguments:
    """
    C{EXPIRE}, C{PEXPIRE}, C{EXPIREAT}, C{PEXPIREAT} C{key time
    [NX|XX|GT|LT]}. C{XX} may be given with C{GT} or C{LT}.

    @ivar atMs: the absolute expiry; in the past, the key is deleted.
    @ivar onlyIfNone: C{NX}: only if the key has no expiry.
    @ivar onlyIfSome: C{XX}: only if it has one.
    @ivar onlyIfLater: C{GT}: only if later than the current one (a key
        without expiry counts as expiring never).
    @ivar onlyIfEarlier: C{LT}: only if earlier.
    """

    key: bytes
    atMs: int
    onlyIfNone: bool = False
    onlyIfSome: bool = False
    onlyIfLater: bool = False
    onlyIfEarlier: bool = False


def parseExpire(arguments: Sequence[bytes], nowMs: int) -> ExpireArguments:
    """
    Parse a command line of the C{EXPIRE} family; the name says the unit
    and whether the time is relative.

    @raise ArgumentError: C{ERR Unsupported option ...} or an incompatible
        pair first, then the number's errors.
    """
    name = _option(arguments[0])
    seen: set[bytes] = set()
    for argument in arguments[3:]:
        option = _option(argument)
        if option not in (b"NX", b"XX", b"GT", b"LT"):
            text = argument.decode("utf-8", "replace")
            raise ArgumentError(f"ERR Unsupported option {text}")
        seen.add(option)
    if b"NX" in seen and len(seen) > 1:
        raise ArgumentError(
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        )
    if {b"GT", b"LT"} <= seen:
        raise ArgumentError("ERR GT and LT options at the same time are not compatible")
    when = integerArgument(arguments[2])
    if name in (b"EXPIRE", b"EXPIREAT"):
        if not _INT64_MIN // 1000 <= when <= _INT64_MAX // 1000:
            raise _expireTimeError(arguments[0])
        when *= 1000
    if name in (b"EXPIRE", b"PEXPIRE"):
        if when > _INT64_MAX - nowMs:
            raise _expireTimeError(arguments[0])
        when += nowMs
    return ExpireArguments(
        arguments[1],
        when,
        b"NX" in seen,
        b"XX" in seen,
        b"GT" in seen,
        b"LT" in seen,
    )


def parseIncrement(arguments: Sequence[bytes]) -> int:
    """
    The signed step of C{INCR}, C{DECR}, C{INCRBY} or C{DECRBY}.

    @raise ArgumentError: for a step that is not an integer, or a
        C{DECRBY} whose negation would overflow.
    """
    name = _option(arguments[0])
    if name == b"INCR":
        return 1
    if name == b"DECR":
        return -1
    step = integerArgument(arguments[2])
    if name == b"DECRBY":
        if step == _INT64_MIN:
            raise ArgumentError("ERR decrement would overflow")
        return -step
    return step


@dataclass(frozen=True)
class ScanArguments:
    """
    C{SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]}.

    @ivar match: the glob pattern, or L{None} for every key (as for C{*}).
    @ivar count: how much work to do for this call, at least 1.
    @ivar type: the value type asked for, lower case, or L{None}.
    """

    cursor: int
    match: bytes | None = None
    count: int = 10
    type: str | None = None


_CURSOR: Final = re.compile(rb"([+-]?)([0-9]*)")


def _scanCursor(text: bytes) -> int | None:
    """
    A cursor as Redis reads one, with C{strtoul}: an optional sign and
    decimal digits, a negative one taken modulo 2**64, nothing at all 0;
    L{None} for anything else, or beyond 64 bits.
    """
    parsed = _CURSOR.fullmatch(text)
    if parsed is None:
        return None
    sign, digits = parsed.groups()
    if not digits:
        return None if sign else 0
    value = int(digits)
    if value > _UINT64_MAX:
        return None
    return -value % 2**64 if sign == b"-" else value


def parseScan(arguments: Sequence[bytes]) -> ScanArguments:
    """
    Parse C{SCAN}'s command line.

    @raise ArgumentError: C{ERR invalid cursor}, C{ERR syntax error}, the
        count's integer error or C{ERR unknown type name '...'}.
    """
    cursor = _scanCursor(arguments[1])
    if cursor is None:
        raise ArgumentError("ERR invalid cursor")
    match: bytes | None = None
    count = 10
    type: str | None = None
    index = 2
    while index < len(arguments):
        option = _option(arguments[index])
        if index + 1 >= len(arguments):
            raise ArgumentError(SYNTAX_ERROR)
        value = arguments[index + 1]
        if option == b"COUNT":
            count = integerArgument(value)
            if count < 1:
                raise ArgumentError(SYNTAX_ERROR)
        elif option == b"MATCH":
            match = None if value == b"*" else value
        elif option == b"TYPE":
            text = value.decode("utf-8", "replace")
            type = text.lower()
            if type not in SCAN_TYPES:
                raise ArgumentError(f"ERR unknown type name '{text}'")
        else:
            raise ArgumentError(SYNTAX_ERROR)
        index += 2
    return ScanArguments(cursor, match, count, type)
