"""
One read-modify-write at a time per key, on this node.

Conditional writes (C{SET NX}, C{GETSET}), expiry changes and counter
increments read a key at a consistency level and then write a newer
version derived from what they read. Two of them on the same key from
different connections of one node would both read the same state and one
would overwrite the other; L{KeySerializer} runs them one after another per
key, so that on one coordinator they behave as if atomic. Between
coordinators nothing is serialized: see the Redis compatibility page.

Pure: no reactor; it only chains L{Deferred}s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from twisted.internet.defer import Deferred, maybeDeferred

_T = TypeVar("_T")


class KeySerializer:
    """
    Runs operations on the same key one at a time, in the order asked.
    """

    __slots__ = ("_tails",)

    def __init__(self) -> None:
        # The last operation queued on each busy key; a key is busy while
        # an operation on it has not finished.
        self._tails: dict[str, Deferred[None]] = {}

    def __len__(self) -> int:
        """
        The number of keys with an operation running.
        """
        return len(self._tails)

    @overload
    def run(self, key: str, operation: Callable[[], Deferred[_T]]) -> Deferred[_T]: ...

    @overload
    def run(self, key: str, operation: Callable[[], _T]) -> Deferred[_T]: ...

    def run(self, key: str, operation: Callable[[], Any]) -> Deferred[Any]:
        """
        Run C{operation} once every operation queued before it on C{key}
        has finished (at once if none is), and fire with its result.
        """
        tail = self._tails.get(key)
        if tail is None:
            result = maybeDeferred(operation)
            if result.called:
                # Finished synchronously: the key was never busy.
                return result
        else:
            result = Deferred[Any]()

            def start(_: object) -> None:
                maybeDeferred(operation).chainDeferred(result)

            tail.addCallback(start)
        return self._hold(key, result)

    def idle(self, key: str) -> bool:
        """
        Whether no operation on C{key} is running or queued: one run now
        would start at once.
        """
        return key not in self._tails

    @overload
    def runNow(
        self, key: str, operation: Callable[[], Deferred[_T]]
    ) -> Deferred[_T]: ...

    @overload
    def runNow(
        self, key: str, operation: Callable[[], _T | Deferred[_T]]
    ) -> _T | Deferred[_T]: ...

    def runNow(self, key: str, operation: Callable[[], Any]) -> Any:
        """
        L{run}, but on an idle key C{operation} is called directly and its
        own result (or exception) is the answer: no L{Deferred} is made for
        an operation that finishes at once, the common case of a node
        answering from its own replica. The order is L{run}'s exactly: on a
        busy key C{operation} waits in the same queue.

        @return: what C{operation} returned, when it was not a L{Deferred};
            else a L{Deferred} of its result.
        @raise Exception: what C{operation} raised, when the key was idle.
        """
        if key in self._tails:
            return self.run(key, operation)
        result = operation()
        kind = type(result)
        if kind is not Deferred and Deferred not in kind.__mro__:
            return result
        if result.called:
            return result
        return self._hold(key, result)

    def _hold(self, key: str, result: Deferred[Any]) -> Deferred[Any]:
        """
        Mark C{key} busy until C{result} fires, and pass its outcome on.
        """
        done: Deferred[None] = Deferred()
        self._tails[key] = done

        def finished(outcome: object) -> object:
            if self._tails.get(key) is done:
                del self._tails[key]
            done.callback(None)
            return outcome

        result.addBoth(finished)
        return result
