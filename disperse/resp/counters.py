"""
C{INCR}, C{INCRBY}, C{DECR}, C{DECRBY} and C{INCRBYFLOAT}: convergent
counters (L{disperse.store.counter}), incremented through
L{disperse.node.Node.increment} at the connection's write level.

Arguments and errors are Redis's: the step is checked before the key is
read; a value that is not a number, a result out of range and one that is
not finite are refused with Redis's texts, and nothing is written. C{GET}
(and every command that reads a string) reads a counter as its number.
"""

from __future__ import annotations

from decimal import Decimal

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from disperse.cluster.increments import IncrementOutcome
from disperse.resp.arguments import floatArgument, parseIncrement
from disperse.resp.commands import CommandError
from disperse.resp.context import Context, handles, requireRead, requireWrite
from disperse.resp.replies import Reply
from disperse.store.counter import CounterError


@handles("incr", "decr", "incrby", "decrby")
def incrementBy(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    """
    Add an integer step; reply the counter's new value.
    """
    step = parseIncrement(arguments)
    key = context.key(arguments[1])
    return _increment(context, key, step).addCallback(_integer)


@handles("incrbyfloat")
def incrementByFloat(context: Context, arguments: list[bytes]) -> Deferred[Reply]:
    """
    Add a decimal step; reply the counter's new value as text, as C{GET}
    reads it.
    """
    key = context.key(arguments[1])
    floatArgument(arguments[2])
    # Exactly as written: 0.1 is a tenth, not the double nearest to it.
    step = Decimal(arguments[2].decode("ascii"))
    return _increment(context, key, step).addCallback(lambda outcome: outcome.rendered)


def _increment(
    context: Context, key: str, step: int | Decimal
) -> Deferred[IncrementOutcome]:
    return context.node.increment(key, step, context.writeLevel).addCallbacks(
        _settled, _refused
    )


def _settled(outcome: IncrementOutcome) -> IncrementOutcome:
    requireRead(outcome.read)
    assert outcome.write is not None
    requireWrite(outcome.write)
    return outcome


def _integer(outcome: IncrementOutcome) -> Reply:
    value = outcome.value
    assert isinstance(value, int), "an integer step leaves an integer"
    return value


def _refused(failure: Failure) -> Failure:
    error = failure.value
    if isinstance(error, CounterError):
        raise CommandError(f"ERR {error.message}")
    return failure
