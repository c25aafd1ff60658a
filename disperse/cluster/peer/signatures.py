"""
How a node proves that a call comes from a member of its cluster.

This module owns:

  - request signatures (L{Signer}, L{Verifier}): HMAC-SHA256 with a cluster
    secret over the method, path, a hash of the body, a timestamp and a
    nonce, checked in constant time, with a bounded replay cache;
  - turning a C{--cluster-secret} given as text into a key (L{deriveSecret}).

Pure: no I/O, no reactor; time only through an injected L{TimeSource}, and
nonces are made by the caller (C{os.urandom(NONCE_SIZE)}).

Part of the wire contract between nodes of different versions: a change to
the signed string or the header needs a new version (C{v2} in the header).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import struct
import unicodedata
from collections import deque
from collections.abc import Iterable

from disperse.timesource import TimeSource

SIGNATURE_HEADER = b"X-Disperse-Signature"
NONCE_SIZE = 16
MIN_SECRET_SIZE = 16
DEFAULT_WINDOW = 30.0
DEFAULT_MAX_NONCES = 100_000

# Domain separation: a MAC made for anything else with the same secret
# (responses, some later version) can never pass for a request's.
_LABEL = b"disperse request signature"
_VERSION = b"v1"
# The one accepted spelling: lowercase hex, no leading zeros. A second
# spelling of the same nonce would otherwise be a fresh entry in a cache
# keyed on text; the cache is keyed on the decoded nonce anyway.
_HEADER_RE = re.compile(rb"v1 t=(0|[1-9][0-9]{0,15}) n=([0-9a-f]{32}) s=([0-9a-f]{64})")
_MAX_HEADER = 160
_MAX_TIMESTAMP = 10**16 - 1


class SignatureError(ValueError):
    """
    A request that does not prove it comes from the cluster; the message is
    a short reason fit for a log line and a 401.
    """


_LENGTH = struct.Struct(">I").pack


def _field(value: bytes) -> bytes:
    return _LENGTH(len(value)) + value


_PREFIX = _field(_LABEL) + _field(_VERSION)


def _canonical(
    method: bytes, path: bytes, body: bytes, timestampMs: int, nonce: bytes
) -> bytes:
    # Every field length-prefixed, so no two different requests share a
    # string (a newline in a path could otherwise move text between fields).
    timestamp = b"%d" % timestampMs
    bodyHash = hashlib.sha256(body).digest()
    return b"".join(
        (
            _PREFIX,
            _LENGTH(len(method)),
            method,
            _LENGTH(len(path)),
            path,
            _LENGTH(len(timestamp)),
            timestamp,
            _LENGTH(len(nonce)),
            nonce,
            _LENGTH(len(bodyHash)),
            bodyHash,
        )
    )


def _keyed(secret: bytes) -> hmac.HMAC:
    """
    An HMAC keyed with C{secret} and fed nothing, to copy for each message:
    half the cost of keying one afresh each time (about 2 us instead of 4).
    """
    if type(secret) is not bytes:
        raise TypeError("a cluster secret is bytes (see deriveSecret)")
    if len(secret) < MIN_SECRET_SIZE:
        raise ValueError(f"a cluster secret needs at least {MIN_SECRET_SIZE} bytes")
    return hmac.new(secret, digestmod=hashlib.sha256)


def _mac(keyed: hmac.HMAC, canonical: bytes) -> bytes:
    mac = keyed.copy()
    mac.update(canonical)
    return mac.digest()


class Signer:
    """
    Signs the requests this node sends, with one secret.
    """

    __slots__ = ("_keyed",)

    def __init__(self, secret: bytes) -> None:
        self._keyed = _keyed(secret)

    def sign(
        self, method: bytes, path: bytes, body: bytes, nowMs: int, nonce: bytes
    ) -> bytes:
        """
        The L{SIGNATURE_HEADER} value of a request.

        @param method: the HTTP method as sent, e.g. C{b"POST"}.
        @param path: the request target as sent: path and query (what
            Twisted's C{request.uri} gives the receiver).
        @param body: the exact body bytes.
        @param nowMs: now, in ms since the epoch.
        @param nonce: L{NONCE_SIZE} random bytes, never reused:
            C{os.urandom(NONCE_SIZE)}.
        """
        if type(nowMs) is not int or not 0 <= nowMs <= _MAX_TIMESTAMP:
            raise ValueError(f"timestamp out of range: {nowMs!r}")
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"a nonce is {NONCE_SIZE} bytes")
        mac = _mac(self._keyed, _canonical(method, path, body, nowMs, nonce))
        return b"v1 t=%d n=%s s=%s" % (nowMs, nonce.hex().encode(), mac.hex().encode())


class Verifier:
    """
    Checks the signatures of requests this node receives, and refuses each
    signed request after its first use.

    Replay protection: a signed request is valid within C{window} seconds
    either side of its timestamp (clocks across the cluster disagree a
    little), and its nonce is remembered until that validity has passed, in
    arrival order (a deque) beside a set for lookups. Each request purges
    the expired nonces at the old end: every nonce enters and leaves once,
    so amortised O(1). A nonce is remembered only once its signature has
    checked out, so only holders of the secret can fill the cache.

    Bounded memory: at C{maxNonces} entries the oldest nonce is forgotten to
    make room, and the I{horizon} rises to its timestamp: from then on every
    request timestamped at or before the horizon is refused, so the
    forgotten nonce can never be replayed. Refusing new requests when full
    would be just as safe but would turn a burst of honest traffic (or one
    peer gone mad) into every replica write to this node failing for up to
    a window; raising the horizon only narrows the window for old
    timestamps, to how long the cache took to fill, and fresh requests
    still pass (those of a peer whose clock runs behind the one forgotten
    can fail, by at most that skew). The horizon also rises past every
    expired nonce, so a wall clock set back cannot make a purged nonce valid
    again: set back by more than the window, it refuses every request until
    it has caught up with the horizon, an outage of the step less the
    window, rather than a replay hole.

    About 140 bytes a remembered nonce on 64-bit CPython (tracemalloc): 14
    MiB at the default bound, reached only above a few thousand signed
    requests a second.
    """

    __slots__ = (
        "_clock",
        "_horizon",
        "_maxNonces",
        "_nonces",
        "_secrets",
        "_seen",
        "_times",
        "_windowMs",
    )

    def __init__(
        self,
        secret: bytes | None,
        clock: TimeSource,
        window: float = DEFAULT_WINDOW,
        maxNonces: int = DEFAULT_MAX_NONCES,
        *,
        secrets: Iterable[bytes] = (),
    ) -> None:
        """
        @param secret: the secret this node signs with, or C{None} to name
            them all in C{secrets}.
        @param secrets: further secrets accepted, for rotation: add the new
            secret everywhere, then sign with it everywhere, then drop the
            old one.
        """
        accepted = [] if secret is None else [secret]
        accepted.extend(secrets)
        if not accepted:
            raise ValueError("a verifier needs at least one secret")
        if not window > 0:
            raise ValueError(f"window must be positive, not {window}")
        if maxNonces < 1:
            raise ValueError(f"maxNonces must be at least 1, not {maxNonces}")
        self._secrets = tuple(_keyed(secret) for secret in accepted)
        self._clock = clock
        self._windowMs = int(window * 1000)
        self._maxNonces = maxNonces
        # Parallel deques (no tuple per entry): timestamps and nonces in
        # arrival order; _nonces for membership.
        self._times: deque[int] = deque()
        self._seen: deque[bytes] = deque()
        self._nonces: set[bytes] = set()
        self._horizon = -1

    @property
    def remembered(self) -> int:
        """
        How many nonces the replay cache holds now.
        """
        return len(self._nonces)

    @property
    def horizon(self) -> int:
        """
        Requests timestamped at or before this (ms) are refused.
        """
        return self._horizon

    def verify(
        self, method: bytes, path: bytes, body: bytes, header: bytes | None
    ) -> None:
        """
        Accept a request (once) or say why not.

        @param header: the L{SIGNATURE_HEADER} value, C{None} when absent.
        @raise SignatureError: missing, malformed, bad signature, expired or
            future timestamp, before the replay horizon, replayed nonce.
        """
        if not header:
            raise SignatureError("missing signature")
        match = _HEADER_RE.fullmatch(header) if len(header) <= _MAX_HEADER else None
        if match is None:
            raise SignatureError("malformed signature")
        timestampMs = int(match[1])
        nonce = bytes.fromhex(match[2].decode())
        mac = bytes.fromhex(match[3].decode())

        nowMs = int(self._clock.seconds() * 1000)
        if timestampMs < nowMs - self._windowMs:
            raise SignatureError("expired timestamp")
        if timestampMs > nowMs + self._windowMs:
            raise SignatureError("future timestamp")

        canonical = _canonical(method, path, body, timestampMs, nonce)
        # Every secret is tried, so the time taken does not tell which one
        # matched; compare_digest keeps each comparison constant-time.
        valid = False
        for secret in self._secrets:
            valid |= hmac.compare_digest(_mac(secret, canonical), mac)
        if not valid:
            raise SignatureError("bad signature")

        self._purge(nowMs)
        if timestampMs <= self._horizon:
            raise SignatureError("timestamp before replay horizon")
        if nonce in self._nonces:
            raise SignatureError("replayed nonce")
        if len(self._nonces) >= self._maxNonces:
            self._forgetOldest()
        self._times.append(timestampMs)
        self._seen.append(nonce)
        self._nonces.add(nonce)

    def _purge(self, nowMs: int) -> None:
        # Arrival order is timestamp order but for skew between peers: an
        # entry from a peer ahead of us holds the ones behind it a little
        # longer (at most two windows), which costs memory, never safety.
        times = self._times
        expiredBefore = nowMs - self._windowMs
        while times and times[0] < expiredBefore:
            self._forgetOldest()

    def _forgetOldest(self) -> None:
        timestampMs = self._times.popleft()
        self._nonces.discard(self._seen.popleft())
        self._horizon = max(self._horizon, timestampMs)


# Secrets given as text


MIN_SECRET_LENGTH = 16
# Fixed for ever: every node must derive the same key from the same text.
_SECRET_SALT = b"disperse cluster secret v1"


def checkSecretText(text: str) -> None:
    """
    Refuse a C{--cluster-secret} too short to be one.

    @raise ValueError: with a message for the operator.
    """
    if len(text) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"the cluster secret must be at least {MIN_SECRET_LENGTH} characters"
            f" long (this one has {len(text)}); generate one with"
            " `openssl rand -hex 32`"
        )


def deriveSecret(text: str) -> bytes:
    """
    The 32-byte key of a C{--cluster-secret} given as text, the same on
    every node: scrypt of its NFC form (so the same passphrase typed on two
    systems is the same key) with a fixed salt naming its purpose.

    A memory-hard function rather than a plain hash or HKDF because
    operators pick memorable secrets and internal traffic is plain HTTP:
    anyone who sees one signed request can test guesses offline, and scrypt
    makes each guess cost about 50 ms and 16 MiB instead of a microsecond.
    Run at startup; repeated calls with the same text are cached.

    @raise ValueError: for a secret shorter than L{MIN_SECRET_LENGTH}.
    """
    checkSecretText(text)
    return _derive(text)


# Cached because it is slow by design and callers (option parsing, tests
# that build many configurations) may derive the same text many times; the
# process holds both the text and the key anyway.
@functools.lru_cache(maxsize=4)
def _derive(text: str) -> bytes:
    # surrogateescape: on POSIX, argv bytes that are not UTF-8 arrive as
    # lone surrogates; this gives back those very bytes.
    normalized = unicodedata.normalize("NFC", text).encode("utf-8", "surrogateescape")
    return hashlib.scrypt(normalized, salt=_SECRET_SALT, n=2**14, r=8, p=1, dklen=32)
