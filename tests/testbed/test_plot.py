"""
The fault bed's timeline plot (matplotlib comes with the test extra).
"""

from __future__ import annotations

from pathlib import Path

from disperse.testbed.report import plotTimeline
from tests.testbed.test_verdict import history, verdict


def test_plotTimeline(tmp_path: Path) -> None:
    path = tmp_path / "timeline.png"
    assert plotTimeline(path, verdict(), history().events) is None
    assert path.read_bytes().startswith(b"\x89PNG")
