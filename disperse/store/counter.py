"""
Convergent counters: what C{INCR} and its kin store, how two copies of one
merge, and how the number reads. Pure: no I/O, no clock.

A counter is a record with L{FLAG_COUNTER} whose value is a PN-counter: a
I{base}, the number it started from, with the I{base version} of the write
that set it, and per I{actor} (a 64-bit id a coordinator draws for a key,
see L{disperse.cluster.increments}) two totals that only grow, of what it
added and of what it took away. The counter reads as the base plus every
actor's increments less its decrements. Each actor changes only its own
entry, so two copies of a counter with the same base merge by keeping, for
each actor, the larger of each total: increments made on both sides of a
partition, or acknowledged by replicas that then died, all count once
merged, whatever order copies meet in.

Merging records (L{joinRecords}) is a join (commutative, associative,
idempotent), so every replica ends with identical bytes and their Merkle
trees agree. Each record has a I{rank}: a plain record's version, a
counter's base version. A counter started from a live value is based on
that value's version and number; one started where the key was deleted or
expired, on that record's version, from 0; one started where there was
no record at all, on L{NO_VERSION}, from 0.

  - Two plain records: the newer by L{Record.precedence} wins, as ever.
  - Different ranks: the higher wins whole. A C{SET} or C{DEL} (a plain
    record, newer than the counter's base) resets a counter; a counter
    started from a value (its base version is that value's) supersedes it.
    A reset wins over increments that did not see it (that read an older
    base), whatever their timestamps: increments concurrent with a C{SET}
    are lost to it.
  - Equal ranks: a counter supersedes the plain record it started from;
    two counters merge their entries (per actor, the larger of each
    total), their kind (integer until an C{INCRBYFLOAT}) and
    their header, which acts as a last-writer-wins register of expiry and
    life: the header of the newer version (timestamp, node id, then
    tombstone and expiry) is kept. An increment keeps the expiry it read,
    and a counter that expired is kept as a tombstone of the same state,
    so a copy that missed a later change of expiry cannot resurrect it
    nor be resurrected.

Integer counters are exact: the totals are unbounded integers, and an
increment is refused when the counter, or its result, falls outside a
signed 64-bit integer (Redis's range). A counter becomes a decimal one
with its first C{INCRBYFLOAT} (on any copy); its base and totals are
then decimals of L{PRECISION} significant digits, so decimal steps add up
exactly (0.1 + 0.2 reads C{0.3}, as in Redis, not 0.30000000000000004),
and it reads as Redis prints C{INCRBYFLOAT}'s result: fixed point, 17
digits after the point, trailing zeros dropped (L{render}). Its value
stays within a double's range.

The value of a counter record, canonical (one encoding per state, so that
equal states are equal bytes):

    kind          uint8   0 integer, 1 decimal
    baseVersion   uint64 timestamp, uint32 node id (0, 0: no write)
    base          number, signed
    count         varint  number of actors
    per actor, ascending:
      actor       uint64
      increments  number, not negative
      decrements  number, not negative

An integer is a LEB128 varint (zigzag-coded when signed); a decimal is its
coefficient as such an integer, without trailing zeros, then its exponent
as a zigzag varint (zero is 0, 0).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    InvalidOperation,
)
from typing import Final, TypeAlias

from disperse.store.record import FLAG_COUNTER, Record

Number: TypeAlias = int | Decimal
Version: TypeAlias = tuple[int, int]

# A base version older than every write: the base of a counter started
# where no record was read.
NO_VERSION: Final[Version] = (0, 0)

_INTEGER_KIND: Final = 0
_DECIMAL_KIND: Final = 1
_VERSION = struct.Struct(">QI")
_ACTOR = struct.Struct(">Q")

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

# Decimal counters keep this many significant digits (IEEE 754's decimal128
# has as many): beyond a long double's, so that 17 digits after the point
# print what decimal steps add up to.
PRECISION: Final = 34
_ARITHMETIC: Final = Context(
    prec=PRECISION, rounding=ROUND_HALF_EVEN, Emin=-999_999, Emax=999_999, traps=[]
)
# Wide enough to print any counter to 17 digits after the point.
_PRINTING: Final = Context(
    prec=1000, rounding=ROUND_HALF_EVEN, Emin=-999_999, Emax=999_999, traps=[]
)
_STEP: Final = Decimal("1e-17")
# The largest double, exactly.
_LARGEST: Final = Decimal(float.fromhex("0x1.fffffffffffffp+1023"))

# A varint longer than this is refused from the wire: no total gets there
# (2**224 is 2**161 increments of the largest step).
_VARINT_MAX_BYTES: Final = 32
_TOTAL_LIMIT: Final = 2 ** (7 * _VARINT_MAX_BYTES - 1)

# What Redis takes for a number in a stored string: string2ll (an optional
# minus, no plus, no spaces, no leading zeros) and string2ld (strtold's
# decimal forms and infinity, whole, no spaces, no NaN, under 5 KiB). The
# RESP front end parses arguments by the same rules
# (disperse.resp.wire, disperse.resp.arguments).
_INTEGER: Final = re.compile(rb"-?[1-9][0-9]*|0")
_FLOAT: Final = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?)",
    re.IGNORECASE,
)
_MAX_FLOAT_LENGTH: Final = 5 * 1024


class CounterError(ValueError):
    """
    An increment refused; C{message} is Redis's text for it (without its
    C{ERR} prefix).
    """

    message: str = ""

    def __init__(self) -> None:
        super().__init__(self.message)


class NotAnInteger(CounterError):
    message = "value is not an integer or out of range"


class NotAFloat(CounterError):
    message = "value is not a valid float"


class WouldOverflow(CounterError):
    message = "increment or decrement would overflow"


class NotFinite(CounterError):
    message = "increment would produce NaN or Infinity"


@dataclass(frozen=True, slots=True)
class CounterState:
    """
    A counter's state, decoded.

    @ivar decimal: whether it is a decimal counter (else every number in it
        is an C{int}, else every one a L{Decimal}).
    @ivar baseVersion: the version of the write it started from.
    @ivar base: the number it started from.
    @ivar entries: per actor, its (increments, decrements) totals.
    """

    decimal: bool
    baseVersion: Version
    base: Number
    entries: Mapping[int, tuple[Number, Number]]


def value(state: CounterState) -> Number:
    """
    What C{state} counts: its base plus every actor's increments less its
    decrements, summed in the order of the actors (so every replica rounds
    a decimal counter alike).
    """
    if not state.decimal:
        total: Number = state.base
        for increments, decrements in state.entries.values():
            total += increments - decrements
        return total
    add, subtract = _ARITHMETIC.add, _ARITHMETIC.subtract
    amount = Decimal(state.base)
    for actor in sorted(state.entries):
        increments, decrements = state.entries[actor]
        amount = add(amount, subtract(increments, decrements))
    return amount


def render(number: Number) -> bytes:
    """
    C{number} as a client reads it: an integer in decimal; a decimal as
    Redis prints C{INCRBYFLOAT}'s result (C{"%.17Lf"}, trailing zeros and
    point dropped, C{-0} read as C{0}).
    """
    if isinstance(number, int):
        return b"%d" % number
    if not number.is_finite():
        return b"-inf" if number < 0 else b"inf"
    try:
        fixed = format(number.quantize(_STEP, context=_PRINTING), "f")
    except InvalidOperation:  # pragma: no cover - beyond any reachable value
        fixed = format(number, "f")
    if "." in fixed:
        fixed = fixed.rstrip("0").rstrip(".")
    if fixed == "-0":
        fixed = "0"
    return fixed.encode("ascii")


def renderedValue(record: Record) -> bytes:
    """
    The bytes a client reads for C{record}: its value, or for a counter the
    number it counts (L{render}). What every front end answers C{GET} with,
    and what C{STRLEN}, C{APPEND} and C{GETRANGE} work on.

    @raise ValueError: for a counter whose state does not decode (never
        one this node stored: stores check what they take).
    """
    if not record.counter:
        return record.value
    return render(value(decodeState(record.value)))


# Ranks and merging


def rank(record: Record) -> Version:
    """
    What decides between records of different kinds or bases: a plain
    record's version, a counter's base version.
    """
    if record.counter:
        if len(record.value) < 1 + _VERSION.size:
            raise ValueError("a counter's state is too short")
        timestamp, nodeId = _VERSION.unpack_from(record.value, 1)
        return (timestamp, nodeId)
    return (record.timestamp, record.nodeId)


def joinRecords(a: Record, b: Record) -> Record:
    """
    The merge of two records of one key (see the module's docstring): a
    join, so copies merged in any order, any number of times, end equal.

    @raise ValueError: for a counter whose state does not decode.
    """
    if not a.counter and not b.counter:
        return a if a.precedence >= b.precedence else b
    if a == b:
        return a
    rankA, rankB = rank(a), rank(b)
    if rankA != rankB:
        return a if rankA > rankB else b
    if not a.counter:
        return b
    if not b.counter:
        return a
    state = joinStates(decodeState(a.value), decodeState(b.value))
    header = max(
        (a.timestamp, a.nodeId, a.tombstone, a.expiresAtMs),
        (b.timestamp, b.nodeId, b.tombstone, b.expiresAtMs),
    )
    timestamp, nodeId, tombstone, expiresAtMs = header
    return Record(
        encodeState(state), expiresAtMs, timestamp, nodeId, tombstone, counter=True
    )


def supersedes(record: Record, other: Record) -> bool:
    """
    Whether merging C{record} into C{other} changes C{other}: what a repair
    sends and takes.
    """
    if not record.counter and not other.counter:
        return record.precedence > other.precedence
    return joinRecords(record, other) != other


def joinStates(a: CounterState, b: CounterState) -> CounterState:
    """
    The merge of two states with the same base: per actor the larger of
    each total, decimal if either is.
    """
    decimal = a.decimal or b.decimal
    convert = _decimal if decimal else _same
    entries = {
        actor: (convert(increments), convert(decrements))
        for actor, (increments, decrements) in a.entries.items()
    }
    for actor, (theirIncrements, theirDecrements) in b.entries.items():
        increments, decrements = convert(theirIncrements), convert(theirDecrements)
        mine = entries.get(actor)
        if mine is not None:
            increments = max(mine[0], increments)
            decrements = max(mine[1], decrements)
        entries[actor] = (increments, decrements)
    return CounterState(
        decimal,
        max(a.baseVersion, b.baseVersion),
        # Equal: both copies started from the same write.
        max(convert(a.base), convert(b.base)),
        entries,
    )


def canonicalValue(value: bytes) -> bytes:
    """
    C{value}, a counter's state from elsewhere, in its one encoding.

    @raise ValueError: if it is not a counter's state.
    """
    return encodeState(decodeState(value))


# Increments


def parseInteger(text: bytes) -> int | None:
    """
    C{text} as Redis reads a signed 64-bit integer, or L{None}.
    """
    if len(text) > 20 or _INTEGER.fullmatch(text) is None:
        return None
    number = int(text)
    return number if INT64_MIN <= number <= INT64_MAX else None


def parseDecimal(text: bytes) -> Decimal | None:
    """
    C{text} as Redis reads a long double (C{INCRBYFLOAT}), to
    L{PRECISION} digits, or L{None}.
    """
    if len(text) >= _MAX_FLOAT_LENGTH or _FLOAT.fullmatch(text) is None:
        return None
    return _ARITHMETIC.plus(Decimal(text.decode("ascii")))


@dataclass(frozen=True, slots=True)
class Incremented:
    """
    An increment applied to what was read: the record to write (its
    header's version left for the caller to stamp) and what it counts.

    @ivar value: the counter's value once incremented.
    @ivar state: the counter's state once incremented.
    @ivar expiresAtMs: the expiry it keeps.
    """

    value: Number
    state: CounterState
    expiresAtMs: int


def increment(
    current: Record | None, actor: int, delta: Number, nowMs: int
) -> Incremented:
    """
    Add C{delta} to C{actor}'s entry of the counter C{current} (the merge
    of what was read, tombstones and expired records included) is or
    starts. An C{int} step is C{INCRBY}'s, a L{Decimal} one
    C{INCRBYFLOAT}'s.

      - No record: a counter from 0.
      - A live plain value: a counter based on its number and version.
      - A live counter: that counter, its expiry kept.
      - A tombstone or an expired record: a counter from 0 based on its
        version, so that it supersedes what it replaces.

    @raise NotAnInteger: for an C{int} step on a value whose text is not a
        64-bit integer.
    @raise NotAFloat: for a L{Decimal} step on a value that is not a number.
    @raise WouldOverflow: for a result outside a 64-bit integer.
    @raise NotFinite: for a decimal result that is not finite, or beyond a
        double's range.
    """
    decimalStep = isinstance(delta, Decimal)
    state: CounterState
    expiresAtMs = 0
    if current is None:
        state = CounterState(False, NO_VERSION, 0, {})
    elif current.tombstone or (current.expiresAtMs and current.expiresAtMs <= nowMs):
        state = CounterState(False, (current.timestamp, current.nodeId), 0, {})
    elif current.counter:
        state = decodeState(current.value)
        expiresAtMs = current.expiresAtMs
    else:
        expiresAtMs = current.expiresAtMs
        base: Number | None
        if decimalStep:
            base = parseDecimal(current.value)
            if base is None:
                raise NotAFloat()
        else:
            base = parseInteger(current.value)
            if base is None:
                raise NotAnInteger()
        state = CounterState(decimalStep, (current.timestamp, current.nodeId), base, {})
    if decimalStep:
        return _addDecimal(state, actor, Decimal(delta), expiresAtMs)
    assert isinstance(delta, int)
    return _addInteger(state, actor, delta, expiresAtMs)


def _addInteger(
    state: CounterState, actor: int, delta: int, expiresAtMs: int
) -> Incremented:
    number = value(state)
    if isinstance(number, Decimal):
        # A decimal counter takes an integer step if it reads as an
        # integer, as Redis's stored text would.
        current = parseInteger(render(number))
    else:
        current = number if INT64_MIN <= number <= INT64_MAX else None
    if current is None:
        raise NotAnInteger()
    result = current + delta
    if not INT64_MIN <= result <= INT64_MAX:
        raise WouldOverflow()
    step: Number = _decimal(delta) if state.decimal else delta
    return Incremented(result, _withStep(state, actor, step), expiresAtMs)


def _addDecimal(
    state: CounterState, actor: int, delta: Decimal, expiresAtMs: int
) -> Incremented:
    if not delta.is_finite():
        raise NotFinite()
    if not state.decimal:
        state = CounterState(
            True,
            state.baseVersion,
            _decimal(state.base),
            {
                actor: (_decimal(increments), _decimal(decrements))
                for actor, (increments, decrements) in state.entries.items()
            },
        )
    state = _withStep(state, actor, _ARITHMETIC.plus(delta))
    result = value(state)
    assert isinstance(result, Decimal)
    if not result.is_finite() or result.copy_abs() > _LARGEST:
        raise NotFinite()
    return Incremented(result, state, expiresAtMs)


def _withStep(state: CounterState, actor: int, step: Number) -> CounterState:
    """
    C{state} with C{step} added to C{actor}'s increments, or its opposite to
    its decrements.
    """
    if not step:
        return state
    zero: Number = Decimal(0) if state.decimal else 0
    increments, decrements = state.entries.get(actor, (zero, zero))
    if state.decimal:
        add = _ARITHMETIC.add
        if step > 0:
            increments = add(increments, step)
        else:
            decrements = add(decrements, _ARITHMETIC.minus(step))
    else:
        if step > 0:
            increments += step
        else:
            decrements -= step
        if max(increments, decrements) >= _TOTAL_LIMIT:
            raise WouldOverflow()
    entries = dict(state.entries)
    entries[actor] = (increments, decrements)
    return CounterState(state.decimal, state.baseVersion, state.base, entries)


def counterRecord(
    state: CounterState, expiresAtMs: int, timestamp: int, nodeId: int
) -> Record:
    """
    The record of C{state}, versioned C{timestamp} by C{nodeId}.
    """
    return Record(encodeState(state), expiresAtMs, timestamp, nodeId, counter=True)


# The encoding


def encodeState(state: CounterState) -> bytes:
    out = bytearray()
    out.append(_DECIMAL_KIND if state.decimal else _INTEGER_KIND)
    out += _VERSION.pack(*state.baseVersion)
    if state.decimal:
        _putDecimal(out, Decimal(state.base), signed=True)
    else:
        _putVarint(out, _zigzag(int(state.base)))
    entries = state.entries
    _putVarint(out, len(entries))
    for actor in sorted(entries):
        increments, decrements = entries[actor]
        out += _ACTOR.pack(actor)
        if state.decimal:
            _putDecimal(out, Decimal(increments), signed=False)
            _putDecimal(out, Decimal(decrements), signed=False)
        else:
            _putVarint(out, int(increments))
            _putVarint(out, int(decrements))
    return bytes(out)


def decodeState(data: bytes) -> CounterState:
    """
    The state encoded in C{data}.

    @raise ValueError: if C{data} is not a counter's state (peers send
        records, so this is input).
    """
    if len(data) < 1 + _VERSION.size:
        raise ValueError("a counter's state is too short")
    kind = data[0]
    if kind not in (_INTEGER_KIND, _DECIMAL_KIND):
        raise ValueError(f"unknown counter kind {kind}")
    decimal = kind == _DECIMAL_KIND
    timestamp, nodeId = _VERSION.unpack_from(data, 1)
    baseVersion: Version = (timestamp, nodeId)
    at = 1 + _VERSION.size
    base: Number
    if decimal:
        base, at = _getDecimal(data, at, signed=True)
    else:
        zigzag, at = _getVarint(data, at)
        base = _unzigzag(zigzag)
    count, at = _getVarint(data, at)
    entries: dict[int, tuple[Number, Number]] = {}
    previous = -1
    for _ in range(count):
        if at + _ACTOR.size > len(data):
            raise ValueError("a counter's state is truncated")
        (actor,) = _ACTOR.unpack_from(data, at)
        at += _ACTOR.size
        if actor <= previous:
            raise ValueError("a counter's actors are out of order")
        previous = actor
        increments: Number
        decrements: Number
        if decimal:
            increments, at = _getDecimal(data, at, signed=False)
            decrements, at = _getDecimal(data, at, signed=False)
        else:
            increments, at = _getVarint(data, at)
            decrements, at = _getVarint(data, at)
        entries[actor] = (increments, decrements)
    if at != len(data):
        raise ValueError("trailing bytes after a counter's state")
    return CounterState(decimal, baseVersion, base, entries)


def _same(number: Number) -> Number:
    return number


def _decimal(number: Number) -> Decimal:
    # Exact: an int converts without rounding.
    return number if isinstance(number, Decimal) else Decimal(number)


def _zigzag(number: int) -> int:
    return number << 1 if number >= 0 else ((-number) << 1) - 1


def _unzigzag(number: int) -> int:
    return number >> 1 if not number & 1 else -((number + 1) >> 1)


def _putVarint(out: bytearray, number: int) -> None:
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)


def _getVarint(data: bytes, at: int) -> tuple[int, int]:
    number = 0
    shift = 0
    end = min(len(data), at + _VARINT_MAX_BYTES)
    while at < end:
        byte = data[at]
        at += 1
        number |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if not byte and shift:
                raise ValueError("a counter's varint is not minimal")
            return number, at
        shift += 7
    raise ValueError("a counter's varint is truncated or too long")


def _putDecimal(out: bytearray, number: Decimal, signed: bool) -> None:
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int), "counters hold finite numbers"
    coefficient = int("".join(map(str, digits)))
    if not coefficient:
        exponent = 0
    else:
        while not coefficient % 10:
            coefficient //= 10
            exponent += 1
    if sign and coefficient:
        coefficient = -coefficient
    _putVarint(out, _zigzag(coefficient) if signed else coefficient)
    _putVarint(out, _zigzag(exponent))


def _getDecimal(data: bytes, at: int, signed: bool) -> tuple[Decimal, int]:
    coefficient, at = _getVarint(data, at)
    if signed:
        coefficient = _unzigzag(coefficient)
    zigzag, at = _getVarint(data, at)
    exponent = _unzigzag(zigzag)
    if coefficient % 10 == 0 and (coefficient or exponent):
        raise ValueError("a counter's decimal is not canonical")
    if abs(exponent) > _ARITHMETIC.Emax:
        raise ValueError("a counter's decimal is out of range")
    return Decimal(f"{coefficient}E{exponent}"), at


__all__ = [
    "FLAG_COUNTER",
    "CounterError",
    "CounterState",
    "Incremented",
    "NotAFloat",
    "NotAnInteger",
    "NotFinite",
    "WouldOverflow",
    "canonicalValue",
    "counterRecord",
    "decodeState",
    "encodeState",
    "increment",
    "joinRecords",
    "joinStates",
    "rank",
    "renderedValue",
    "supersedes",
    "value",
]
