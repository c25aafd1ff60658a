"""
The background scrub on a schedule: every C{interval} seconds, a step of
the store's L{Scrub} sized to check C{rate} entries a second on average, so
that re-checking a store of millions of entries costs a little time often
and never a long pause. Time comes only from the injected clock.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from disperse.logs import logger
from disperse.store.integrity import DEFAULT_SCRUB_RATE, Scrub
from disperse.store.store import Store

SCRUB_INTERVAL = 0.1


class Scrubber:
    """
    Runs C{store}'s scrub at C{rate} entries a second, in steps
    C{interval} seconds apart; a rate of 0 never runs it.
    """

    log = logger()

    def __init__(
        self,
        store: Store,
        clock: IReactorTime,
        rate: int = DEFAULT_SCRUB_RATE,
        interval: float = SCRUB_INTERVAL,
    ) -> None:
        if rate < 0 or interval <= 0:
            raise ValueError("the rate must not be negative, the interval positive")
        self.rate = rate
        self._interval = interval
        self._scrub = Scrub(store)
        # Entries a step may check, carried over from step to step so that
        # a rate below one entry an interval still checks some.
        self._credit = 0.0
        self._loop = LoopingCall(self._step)
        self._loop.clock = clock

    @property
    def running(self) -> bool:
        return bool(self._loop.running)

    def start(self) -> None:
        if self.rate and not self._loop.running:
            self._loop.start(self._interval, now=False).addErrback(
                lambda f: self.log.failure("scrub stopped", f)
            )

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _step(self) -> None:
        self._credit += self.rate * self._interval
        budget = int(self._credit)
        if not budget:
            return
        self._credit -= budget
        # The scrub must go on whatever one step ran into.
        try:
            self._scrub.step(budget)
        except Exception:
            self.log.failure("scrub step failed")
