"""
Tests for L{disperse.testbed.relay.DelayLine} on a fake clock.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from disperse.testbed.relay import DelayLine


def test_delaysInOrder() -> None:
    clock = Clock()
    line = DelayLine(clock, delay=0.1)
    out: list[str] = []
    line.send(lambda: out.append("a"))
    clock.advance(0.05)
    line.send(lambda: out.append("b"))
    clock.advance(0.049)
    assert out == []
    clock.advance(0.001)
    assert out == ["a"]
    assert line.inFlight == 1
    clock.advance(0.05)
    assert out == ["a", "b"]
    assert line.inFlight == 0


def test_noDelayDeliversAtOnce() -> None:
    clock = Clock()
    line = DelayLine(clock)
    out: list[int] = []
    line.send(lambda: out.append(1))
    assert out == [1]


def test_shrinkingDelayKeepsOrder() -> None:
    """
    Items sent after the delay shrinks wait for the ones already delayed:
    a stream's bytes are never reordered.
    """
    clock = Clock()
    line = DelayLine(clock, delay=1.0)
    out: list[str] = []
    line.send(lambda: out.append("slow"))
    line.delay = 0.0
    line.send(lambda: out.append("fast"))
    assert out == []
    clock.advance(1.0)
    assert out == ["slow", "fast"]


def test_cancel() -> None:
    clock = Clock()
    line = DelayLine(clock, delay=1.0)
    out: list[int] = []
    line.send(lambda: out.append(1))
    line.cancel()
    clock.advance(2)
    assert out == []
