"""
C{disperse load}: bulk import of JSON lines or CSV.

JSON lines: one object a line, C{{"key": "k", "value": "text"}}, or
C{"value_base64"} for bytes, and optionally C{"ttl"} (seconds, or a
duration such as C{"30s"}). CSV: a header row naming C{key} and C{value}
columns, and optionally C{ttl}. A malformed line is reported and skipped;
the rest is loaded.

Writes go out from a few threads, each with its own connection, so that
the wait for replicas of one write overlaps with others.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from disperse.cli.client import CannotConnect, Client

FORMATS = ("jsonl", "csv")


@dataclass(frozen=True)
class Entry:
    line: int
    key: str
    value: bytes
    binary: bool
    ttlSeconds: float | None


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


def parseTtl(value: object) -> float | None:
    """
    A time to live: seconds as a number, or text such as C{30s} or
    C{1500ms}; nothing (or 0) for no expiry.

    @raise ValueError: with a message fit for a user.
    """
    if value is None or value in ("", 0):
        return None
    if isinstance(value, bool):
        raise ValueError("ttl must be a number of seconds or a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        # The node's own parser, so that the CLI takes what the node takes;
        # imported here because most commands never need it.
        from disperse.units import parseDuration  # noqa: PLC0415

        seconds = parseDuration(value.strip())
    else:
        raise ValueError("ttl must be a number of seconds or a duration")
    if seconds < 0:
        raise ValueError("ttl must not be negative")
    return seconds or None


class EntryReader:
    """
    The entries of a JSON lines or CSV stream, with how far into it
    reading has got (for a progress bar).

    @ivar position: bytes read so far.
    """

    def __init__(
        self, stream: IO[bytes], format: str, defaultTtl: float | None = None
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self._stream = stream
        self._format = format
        self._defaultTtl = defaultTtl
        self.position = 0

    def _lines(self) -> Iterator[str]:
        for raw in self._stream:
            self.position += len(raw)
            yield raw.decode("utf-8", "replace")

    def __iter__(self) -> Iterator[Entry | BadLine]:
        if self._format == "csv":
            return self._csv()
        return self._jsonLines()

    def _jsonLines(self) -> Iterator[Entry | BadLine]:
        for number, text in enumerate(self._lines(), 1):
            if not text.strip():
                continue
            try:
                document = json.loads(text)
            except ValueError:
                yield BadLine(number, "not JSON")
                continue
            if not isinstance(document, dict):
                yield BadLine(number, "not a JSON object")
                continue
            yield self._entry(number, document)

    def _csv(self) -> Iterator[Entry | BadLine]:
        rows = csv.DictReader(self._lines())
        if rows.fieldnames is None or not {"key", "value"} <= set(rows.fieldnames):
            yield BadLine(1, "the header row must name key and value columns")
            return
        for row in rows:
            yield self._entry(rows.line_num, row)

    def _entry(self, number: int, document: dict[str, Any]) -> Entry | BadLine:
        key = document.get("key")
        if not isinstance(key, str) or not key or key.endswith("/"):
            return BadLine(number, "key must be a non-empty string not ending in /")
        binary = False
        if isinstance(document.get("value_base64"), str):
            try:
                value = base64.b64decode(document["value_base64"], validate=True)
            except (ValueError, binascii.Error):
                return BadLine(number, "value_base64 is not base64")
            binary = True
        elif isinstance(document.get("value"), str) and document["value"]:
            value = document["value"].encode("utf-8")
        else:
            return BadLine(
                number,
                "value must be a non-empty string"
                " (an empty value can only be loaded as value_base64)",
            )
        try:
            ttl = parseTtl(document.get("ttl"))
        except ValueError as e:
            return BadLine(number, str(e))
        return Entry(number, key, value, binary, ttl or self._defaultTtl)


@dataclass
class LoadReport:
    loaded: int = 0
    failed: int = 0
    bad: list[BadLine] = field(default_factory=list)
    # Failed writes by HTTP status, and what the node said the first time.
    failures: Counter[str] = field(default_factory=Counter)
    messages: dict[str, str] = field(default_factory=dict)
    # Why loading stopped early, if it did: the node cannot be reached.
    aborted: str | None = None
    seconds: float = 0.0

    def asJSON(self) -> dict[str, Any]:
        return {
            "loaded": self.loaded,
            "failed": self.failed,
            "malformed": [{"line": b.line, "error": b.reason} for b in self.bad],
            "failures": {
                status: {"count": count, "error": self.messages.get(status)}
                for status, count in self.failures.items()
            },
            "aborted": self.aborted,
            "seconds": round(self.seconds, 3),
        }


def load(
    entries: EntryReader,
    makeClient: Callable[[], Client],
    concurrency: int = 4,
    consistency: str | None = None,
    onProgress: Callable[[LoadReport], None] = lambda report: None,
    timer: Callable[[], float] = time.monotonic,
) -> LoadReport:
    """
    Write every entry through C{concurrency} connections.
    """
    report = LoadReport()
    lock = threading.Lock()
    pending: queue.Queue[Entry | None] = queue.Queue(maxsize=concurrency * 8)
    stop = threading.Event()
    started = timer()

    def work() -> None:
        client = makeClient()
        try:
            while (entry := pending.get()) is not None:
                if stop.is_set():
                    continue
                try:
                    response = client.put(
                        entry.key,
                        entry.value,
                        entry.ttlSeconds,
                        binary=entry.binary,
                        consistency=consistency,
                    )
                except CannotConnect as e:
                    with lock:
                        report.aborted = report.aborted or e.message
                    stop.set()
                    continue
                with lock:
                    if response.status == 200:
                        report.loaded += 1
                    else:
                        report.failed += 1
                        status = str(response.status)
                        report.failures[status] += 1
                        report.messages.setdefault(status, response.errorMessage())
        finally:
            client.close()

    workers = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
    for worker in workers:
        worker.start()
    try:
        for item in entries:
            if stop.is_set():
                break
            if isinstance(item, BadLine):
                report.bad.append(item)
            else:
                pending.put(item)
            onProgress(report)
    finally:
        for _ in workers:
            pending.put(None)
        for worker in workers:
            worker.join()
    report.seconds = timer() - started
    return report
