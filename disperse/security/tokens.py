"""
Client bearer tokens: the token file, and the table a node checks requests
against.

The token file has one token a line::

    # comment
    <token> <scope>[,<scope>...] [<key-prefix>]

Scopes are C{read}, C{write} and C{admin} (C{admin} includes the other
two). A key prefix restricts the token's cache operations to keys that
start with it. A token may be written as C{sha256:<64 hex digits>}, its
SHA-256 digest, so that the file need not hold the secret itself.

Only digests are kept in memory: a presented token is hashed once and looked
up by its digest, so the cost of a check does not grow with the number of
tokens, and the match is confirmed with L{hmac.compare_digest}.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

READ: Final = "read"
WRITE: Final = "write"
ADMIN: Final = "admin"
SCOPES: Final = frozenset((READ, WRITE, ADMIN))

# Guessable tokens defeat the point: ask for at least 128 bits of hex.
MIN_TOKEN_LENGTH: Final = 16
_DIGEST_PREFIX: Final = "sha256:"
_DIGEST_SIZE: Final = hashlib.sha256().digest_size


class TokenFileError(ValueError):
    """
    The token file cannot be used; the message names the line, never a
    token.
    """


def digestOf(token: bytes) -> bytes:
    """
    The digest a token is stored and looked up under.
    """
    return hashlib.sha256(token).digest()


@dataclass(frozen=True, slots=True)
class Grant:
    """
    What one token allows.

    @ivar digest: SHA-256 of the token.
    @ivar scopes: the scopes granted, C{admin} expanded to all of them.
    @ivar prefix: keys the token's cache operations are limited to (empty
        for all keys), as UTF-8.
    @ivar line: the line of the token file it came from, to name the token
        in logs without revealing it.
    """

    digest: bytes
    scopes: frozenset[str]
    prefix: bytes = b""
    line: int = 0

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    def covers(self, key: bytes) -> bool:
        """
        Whether C{key} (UTF-8) is within this token's prefix.
        """
        return key.startswith(self.prefix)


class TokenTable:
    """
    The tokens a node accepts, by digest.
    """

    __slots__ = ("_grants",)

    def __init__(self, grants: Iterable[Grant] = ()) -> None:
        self._grants: Mapping[bytes, Grant] = {g.digest: g for g in grants}

    def __len__(self) -> int:
        return len(self._grants)

    def lookup(self, token: bytes) -> Grant | None:
        """
        The grant of C{token}, or C{None} if it is not one of ours.
        """
        digest = hashlib.sha256(token).digest()
        grant = self._grants.get(digest)
        # The dictionary matched on the digest already; comparing again in
        # constant time costs nothing and keeps every secret-dependent
        # comparison free of early exits.
        if grant is None or not hmac.compare_digest(grant.digest, digest):
            return None
        return grant


def _tokenDigest(text: str, line: int) -> bytes:
    if text.startswith(_DIGEST_PREFIX):
        try:
            digest = bytes.fromhex(text[len(_DIGEST_PREFIX) :])
        except ValueError:
            digest = b""
        if len(digest) != _DIGEST_SIZE:
            raise TokenFileError(
                f"line {line}: a sha256: token needs {_DIGEST_SIZE * 2} hex digits"
            )
        return digest
    if len(text) < MIN_TOKEN_LENGTH:
        raise TokenFileError(
            f"line {line}: token shorter than {MIN_TOKEN_LENGTH} characters"
        )
    return digestOf(text.encode("utf-8"))


def _scopes(text: str, line: int) -> frozenset[str]:
    scopes = frozenset(part.strip().lower() for part in text.split(",") if part)
    unknown = scopes - SCOPES
    if not scopes or unknown:
        raise TokenFileError(
            f"line {line}: scopes must be read, write or admin,"
            f" comma-separated (not {', '.join(sorted(unknown)) or 'none'})"
        )
    if ADMIN in scopes:
        return SCOPES
    return scopes


def parseTokens(text: str) -> TokenTable:
    """
    Parse the contents of a token file.

    @raise TokenFileError: for any line that is not a comment, blank, or a
        valid token; the whole file is refused, so a typo never silently
        drops a token.
    """
    grants: list[Grant] = []
    seen: set[bytes] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) not in (2, 3):
            raise TokenFileError(
                f"line {number}: expected '<token> <scopes> [<key-prefix>]'"
            )
        digest = _tokenDigest(fields[0], number)
        if digest in seen:
            raise TokenFileError(f"line {number}: the same token twice")
        seen.add(digest)
        prefix = fields[2].encode("utf-8") if len(fields) == 3 else b""
        grants.append(Grant(digest, _scopes(fields[1], number), prefix, number))
    return TokenTable(grants)


def loadTokens(path: str) -> TokenTable:
    """
    Read and parse the token file at C{path}.

    @raise TokenFileError: if it cannot be read or parsed.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read {path}: {e}") from None
    return parseTokens(text)
