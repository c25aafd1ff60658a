"""
Active expiry on a schedule: runs L{Store.sweep} once the store's earliest
expiry second has passed, and sleeps while no entry waits to expire, so
that an idle node does not wake up for it. Time comes only from the
injected clock.
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from disperse.logs import logger
from disperse.store.store import Store

# Each sweep looks at this many candidates at most, so a burst of expiring
# keys costs a little time on many sweeps (a few ms at most), never a long
# pause; with sweeps at least this far apart, up to 20,000 expirations a
# second.
SWEEP_INTERVAL = 0.25
SWEEP_BUDGET = 5000
# Wake a little after the due second has passed, not a float's width
# before it.
_SLACK = 0.001


class ExpirySweeper:
    """
    Sweeps C{store} when it has entries due to expire: at the end of the
    earliest second of its timing wheel, then every C{interval} while a
    sweep leaves due entries behind.
    """

    log = logger()

    def __init__(
        self,
        store: Store,
        clock: IReactorTime,
        interval: float = SWEEP_INTERVAL,
        budget: int = SWEEP_BUDGET,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._budget = budget
        self._call: IDelayedCall | None = None
        self._lastSweep: float | None = None
        self.running = False
        store.observeExpiry(self._expiryScheduled)

    def start(self) -> None:
        self.running = True
        self._scheduleNext()

    def stop(self) -> None:
        self.running = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _expiryScheduled(self) -> None:
        if self.running:
            self._scheduleNext()

    def _scheduleNext(self) -> None:
        dueMs = self._store.nextSweepMs()
        if dueMs is None:
            return
        now = self._clock.seconds()
        when = now + max(0.0, (dueMs - self._store.nowMs()) / 1000) + _SLACK
        if self._lastSweep is not None:
            # However many entries fall due, sweeps keep their spacing.
            when = max(when, self._lastSweep + self._interval)
        call = self._call
        if call is not None and call.active():
            if call.getTime() <= when:
                return
            call.cancel()
        self._call = self._clock.callLater(when - now, self._sweep)

    def _sweep(self) -> None:
        self._call = None
        self._lastSweep = self._clock.seconds()
        # Expiry must go on whatever one sweep ran into.
        try:
            self._store.sweep(self._budget)
        except Exception:
            self.log.failure("expiry sweep failed")
        if self.running:
            self._scheduleNext()
