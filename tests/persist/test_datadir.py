"""
A data directory's identity and lock (L{disperse.persist.datadir}).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disperse.persist.datadir import DataDir, DataDirError


def test_secondProcessRefused(tmp_path: Path) -> None:
    first = DataDir.open(tmp_path, "a")
    with pytest.raises(DataDirError, match="in use by another process"):
        DataDir.open(tmp_path, "a")
    first.close()
    DataDir.open(tmp_path, "a").close()


def test_anotherNodesDirectoryRefused(tmp_path: Path) -> None:
    DataDir.open(tmp_path, "a").close()
    with pytest.raises(DataDirError, match="belongs to node 'a', not 'b'"):
        DataDir.open(tmp_path, "b")


def test_otherFormatRefused(tmp_path: Path) -> None:
    DataDir.open(tmp_path, "a").close()
    (tmp_path / "disperse.json").write_text(json.dumps({"format": 0, "node": "a"}))
    with pytest.raises(DataDirError, match="format version 0"):
        DataDir.open(tmp_path, "a")


def test_dataWithoutIdentityRefused(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "0000000000000001.log").write_bytes(b"x")
    with pytest.raises(DataDirError, match=r"no disperse\.json"):
        DataDir.open(tmp_path, "a")
