"""
What every test shares.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from disperse.send import writeQueued


@pytest.fixture(autouse=True)
def _queuedWritesMade() -> Iterator[None]:
    """
    A log a test leaves with writes queued for the end of a turn that never
    comes would hold back every answer sent at once after it (in other
    tests too): its writes are made when the test ends.
    """
    yield
    writeQueued()
