"""
Tests for L{disperse.security.tokens}: the token file and lookups.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from disperse.security.tokens import (
    SCOPES,
    TokenFileError,
    TokenTable,
    digestOf,
    loadTokens,
    parseTokens,
)

READER = "r" * 32
WRITER = "w" * 32
ADMIN = "a" * 32


def test_parse() -> None:
    table = parseTokens(
        f"# comment\n\n{READER} read\n{WRITER} read,write users/\n{ADMIN} admin\n"
    )
    assert len(table) == 3
    reader = table.lookup(READER.encode())
    writer = table.lookup(WRITER.encode())
    admin = table.lookup(ADMIN.encode())
    assert reader is not None and writer is not None and admin is not None
    assert reader.scopes == {"read"} and reader.prefix == b""
    assert writer.scopes == {"read", "write"} and writer.prefix == b"users/"
    assert writer.covers(b"users/1") and not writer.covers(b"admins/1")
    # admin implies the others
    assert admin.scopes == SCOPES
    assert (reader.line, writer.line, admin.line) == (3, 4, 5)


def test_unknownToken() -> None:
    table = parseTokens(f"{READER} read\n")
    assert table.lookup(b"x" * 32) is None
    assert table.lookup(b"") is None
    assert table.lookup(READER.encode() + b" ") is None


def test_onlyDigestsAreKept() -> None:
    table = parseTokens(f"{READER} read\n")
    grant = table.lookup(READER.encode())
    assert grant is not None
    assert grant.digest == hashlib.sha256(READER.encode()).digest()
    assert READER not in repr(grant)


def test_digestEntries() -> None:
    digest = digestOf(READER.encode()).hex()
    table = parseTokens(f"sha256:{digest} write\n")
    grant = table.lookup(READER.encode())
    assert grant is not None and grant.scopes == {"write"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short read\n", "line 1: token shorter"),
        (f"{READER}\n", "line 1: expected"),
        (f"{READER} read prefix extra\n", "line 1: expected"),
        (f"{READER} delete\n", "line 1: scopes must be"),
        (f"{READER} ,\n", "line 1: scopes must be"),
        (f"#\n{READER} read\n{READER} write\n", "line 3: the same token twice"),
        ("sha256:abcd read\n", "line 1: a sha256: token needs 64"),
        ("sha256:" + "z" * 64 + " read\n", "line 1: a sha256: token needs 64"),
    ],
)
def test_badFiles(text: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=message) as error:
        parseTokens(text)
    # A refusal names the line, never the token.
    assert READER not in str(error.value)


def test_loadTokens(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "tokens"  # type: ignore[operator]
    path.write_text(f"{READER} read\n")
    assert len(loadTokens(str(path))) == 1
    with pytest.raises(TokenFileError, match="cannot read"):
        loadTokens(str(path) + ".missing")


@given(st.text(max_size=300))
def test_anyTextParsesOrIsRefused(text: str) -> None:
    try:
        table = parseTokens(text)
    except TokenFileError:
        return
    assert isinstance(table, TokenTable)


@given(st.binary(max_size=100))
def test_anyPresentedTokenIsLookedUp(token: bytes) -> None:
    table = parseTokens(f"{READER} read\n")
    assert (table.lookup(token) is not None) == (token == READER.encode())
