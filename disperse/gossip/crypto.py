"""
memberlist's AES-GCM message encryption and its keyring.

This module owns the encrypted payload layout:: version byte, 12-byte nonce,
then the GCM ciphertext with its 16-byte tag.  Version 0 pads the plaintext
with PKCS#7 before sealing; version 1 (what memberlist sends from protocol
version 2 on) does not.  Callers supply the nonce, so the module reads no
randomness; L{disperse.gossip.wire} decides what the additional
authenticated data is (the label for packets, the stream header plus label
for streams).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENCRYPTION_VERSION_PADDED: Final = 0
ENCRYPTION_VERSION_UNPADDED: Final = 1
NONCE_SIZE: Final = 12
_TAG_SIZE: Final = 16
_BLOCK_SIZE: Final = 16
_VALID_KEY_SIZES: Final = frozenset((16, 24, 32))


class DecryptionError(ValueError):
    """
    No key could authenticate the payload, or the payload is malformed.
    """


class Keyring:
    """
    The keys a node accepts: the primary key encrypts, every key (primary
    first) is tried when decrypting, so keys can be rotated across a cluster.
    """

    __slots__ = ("_keys",)

    def __init__(self, primaryKey: bytes, otherKeys: Iterable[bytes] = ()) -> None:
        keys = [primaryKey]
        for key in otherKeys:
            if key not in keys:
                keys.append(key)
        for key in keys:
            if len(key) not in _VALID_KEY_SIZES:
                raise ValueError("keys must be 16, 24 or 32 bytes long")
        self._keys: tuple[bytes, ...] = tuple(bytes(key) for key in keys)

    @property
    def primaryKey(self) -> bytes:
        return self._keys[0]

    @property
    def keys(self) -> tuple[bytes, ...]:
        """
        All installed keys, the primary first.
        """
        return self._keys

    def __repr__(self) -> str:
        # Never show key material.
        return f"<Keyring with {len(self._keys)} key(s)>"


def encryptionOverhead(version: int) -> int:
    """
    The most bytes encryption adds to a payload.
    """
    if version == ENCRYPTION_VERSION_PADDED:
        return 1 + NONCE_SIZE + _BLOCK_SIZE + _TAG_SIZE
    return 1 + NONCE_SIZE + _TAG_SIZE


def encryptedLength(version: int, plainLength: int) -> int:
    """
    The exact length of an encrypted payload for a plaintext this long.
    """
    if version == ENCRYPTION_VERSION_PADDED:
        padding = _BLOCK_SIZE - plainLength % _BLOCK_SIZE
        return 1 + NONCE_SIZE + plainLength + padding + _TAG_SIZE
    return 1 + NONCE_SIZE + plainLength + _TAG_SIZE


def encrypt(
    version: int, key: bytes, nonce: bytes, plaintext: bytes, associatedData: bytes
) -> bytes:
    """
    Seal C{plaintext} with C{key} under C{nonce}.

    @param nonce: 12 bytes that must never repeat for the same key; the
        caller draws them from a secure source.
    """
    if version not in (ENCRYPTION_VERSION_PADDED, ENCRYPTION_VERSION_UNPADDED):
        raise ValueError(f"unsupported encryption version {version}")
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
    if version == ENCRYPTION_VERSION_PADDED:
        padding = _BLOCK_SIZE - len(plaintext) % _BLOCK_SIZE
        plaintext = plaintext + bytes((padding,)) * padding
    sealed = AESGCM(key).encrypt(nonce, plaintext, associatedData or None)
    return bytes((version,)) + nonce + sealed


def decrypt(keys: Sequence[bytes], payload: bytes, associatedData: bytes) -> bytes:
    """
    Open an encrypted payload with the first of C{keys} that authenticates.

    @raise DecryptionError: if the payload is malformed or no key fits.
    """
    if not payload:
        raise DecryptionError("cannot decrypt an empty payload")
    version = payload[0]
    if version not in (ENCRYPTION_VERSION_PADDED, ENCRYPTION_VERSION_UNPADDED):
        raise DecryptionError(f"unsupported encryption version {version}")
    if len(payload) < encryptedLength(version, 0):
        raise DecryptionError(f"payload too short to decrypt: {len(payload)}")
    nonce = payload[1 : 1 + NONCE_SIZE]
    sealed = payload[1 + NONCE_SIZE :]
    for key in keys:
        try:
            plain = AESGCM(key).decrypt(nonce, sealed, associatedData or None)
        except InvalidTag:
            continue
        if version == ENCRYPTION_VERSION_PADDED:
            return _unpad(plain)
        return plain
    raise DecryptionError("no installed key could decrypt the payload")


def _unpad(padded: bytes) -> bytes:
    # Authenticated, so a bad pad means a buggy sender, not an attacker; Go
    # would slice blindly (or panic), we refuse.
    if not padded:
        raise DecryptionError("padded plaintext is empty")
    size = padded[-1]
    if size < 1 or size > _BLOCK_SIZE or size > len(padded):
        raise DecryptionError("invalid PKCS#7 padding")
    return padded[:-size]
