"""
What the command line shows people: aligned tables, sizes and durations
in their units, and a progress line on standard error that redraws itself
when (and only when) standard error is a terminal.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO

BAR_WIDTH = 24
# Redrawing more often than this costs time and shows nothing more.
REDRAW_INTERVAL = 0.1


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """
    C{rows} under C{headers} in aligned columns; numbers to the right.
    """
    cells = [[str(h) for h in headers], *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        all(isinstance(row[i], int | float) for row in rows) and bool(rows)
        for i in range(len(headers))
    ]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def size(count: float) -> str:
    """
    A byte count for people: C{512 B}, C{1.5 MiB}.
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """
    A latency or a span of time for people: C{850 us}, C{1.2 ms}, C{3.4 s}.
    """
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.1f} s"


class Progress:
    """
    One line on C{stream}, redrawn in place as work advances; silent when
    C{stream} is not a terminal (a log or a pipe wants the summary only).
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        enabled: bool | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream or sys.stderr
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self._timer = timer
        self._drawn = -math.inf
        self._width = 0

    def show(
        self, done: float, total: float | None, text: str, force: bool = False
    ) -> None:
        """
        Draw a bar at C{done} of C{total} (no bar when the total is not
        known) followed by C{text}.
        """
        if not self.enabled:
            return
        now = self._timer()
        if not force and now - self._drawn < REDRAW_INTERVAL:
            return
        self._drawn = now
        if total:
            filled = int(BAR_WIDTH * min(done / total, 1.0))
            bar = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "
            line = f"{bar}{100 * min(done / total, 1.0):3.0f}%  {text}"
        else:
            line = text
        padding = " " * max(self._width - len(line), 0)
        self._width = len(line)
        self._stream.write("\r" + line + padding)
        self._stream.flush()

    def clear(self) -> None:
        """
        Erase the line, before the summary is printed.
        """
        if self.enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0
