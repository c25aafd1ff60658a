"""
Every input a fuzzer (fuzz/, make fuzz) found crashing, kept as a test.
"""

from __future__ import annotations

import pytest

from disperse.store import Record


@pytest.mark.parametrize("blob", [b"", b"\n", bytes(20)])
def test_shortRecordBlob(blob: bytes) -> None:
    """
    A record blob shorter than its header (a peer's apply, fetch or range
    answer) raises ValueError, which the peer API answers with 400, not
    struct.error, which it answered with 500 (fuzz/peer_protocol.py).
    """
    with pytest.raises(ValueError, match="a record needs"):
        Record.decode(blob)


def test_recordHeaderOnly() -> None:
    assert Record.decode(Record(b"", 1, 2, 3).encode()) == Record(b"", 1, 2, 3)
