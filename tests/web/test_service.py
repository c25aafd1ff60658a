"""
Tests for L{disperse.web.service}: stopping waits for requests in flight,
but not forever.
"""

from __future__ import annotations

import os

from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from disperse.web.service import DRAIN_TIMEOUT, DisperseSite, HTTPService


class HTTPServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.site = DisperseSite(Resource())
        self.service = HTTPService(
            TCP4ServerEndpoint(self.reactor, 0), self.site, self.reactor
        )
        self.service.startService()

    def test_stopWaitsForRequestsInFlight(self) -> None:
        self.site.requestStarted()
        stopped = self.service.stopService()
        self.assertNoResult(stopped)
        self.site.requestFinished(None)
        self.successResultOf(stopped)

    def test_stopGivesUpAfterTimeout(self) -> None:
        self.site.requestStarted()
        stopped = self.service.stopService()
        self.reactor.advance(DRAIN_TIMEOUT - 0.1)
        self.assertNoResult(stopped)
        self.reactor.advance(0.1)
        self.successResultOf(stopped)

    def test_stopWhenIdle(self) -> None:
        self.successResultOf(self.service.stopService())


class AccessLogDateTests(SynchronousTestCase):
    def test_noTimerWithoutAccessLog(self) -> None:
        """
        Without an access log, the site keeps no timer to refresh the date
        of its lines: an idle node does not wake up for it.
        """
        reactor = MemoryReactorClock()
        site = DisperseSite(Resource(), reactor=reactor)
        site.startFactory()
        self.assertEqual(reactor.getDelayedCalls(), [])
        site.stopFactory()

    def test_timerWithAccessLog(self) -> None:
        reactor = MemoryReactorClock()
        site = DisperseSite(Resource(), logPath=os.devnull, reactor=reactor)
        site.startFactory()
        self.assertEqual(len(reactor.getDelayedCalls()), 1)
        site.stopFactory()
        self.assertEqual(reactor.getDelayedCalls(), [])
