"""
Tests for L{disperse.cluster.peer.signatures}: signatures bind every part of
a request, the replay cache refuses replays while staying bounded, and a
secret given as text becomes the same key on every node.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from disperse.cluster.peer.signatures import (
    NONCE_SIZE,
    SignatureError,
    Signer,
    Verifier,
    checkSecretText,
    deriveSecret,
)

SECRET = b"s" * 32
OTHER = b"o" * 32
NOW = 1_700_000_000.0
NOW_MS = int(NOW * 1000)


def clockAt(seconds: float = NOW) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


_nonces = itertools.count(1)


class Requests:
    """
    Signs requests with fresh nonces, as a peer would (counting rather than
    random, for speed and reproducibility).
    """

    def __init__(self, secret: bytes = SECRET) -> None:
        self.signer = Signer(secret)

    def sign(
        self,
        nowMs: int,
        method: bytes = b"POST",
        path: bytes = b"/internal/apply",
        body: bytes = b"body",
    ) -> tuple[bytes, bytes, bytes, bytes]:
        nonce = next(_nonces).to_bytes(NONCE_SIZE, "big")
        return method, path, body, self.signer.sign(method, path, body, nowMs, nonce)


def test_validPasses() -> None:
    verifier = Verifier(SECRET, clockAt())
    header = Signer(SECRET).sign(b"POST", b"/a?b=c", b"", NOW_MS, os.urandom(16))
    verifier.verify(b"POST", b"/a?b=c", b"", header)
    assert verifier.remembered == 1


def test_headerShape() -> None:
    header = Signer(SECRET).sign(b"GET", b"/", b"", 123, bytes(range(16)))
    version, t, n, s = header.split(b" ")
    assert (version, t) == (b"v1", b"t=123")
    assert n == b"n=" + bytes(range(16)).hex().encode()
    assert len(s) == 2 + 64


def test_signedStringIsTheContract() -> None:
    """
    The signature is HMAC-SHA256 over length-prefixed fields, as spelled
    out here: a change is a new version of the wire protocol.
    """
    nonce = bytes(range(16))

    def field(value: bytes) -> bytes:
        return len(value).to_bytes(4, "big") + value

    canonical = b"".join(
        map(
            field,
            [
                b"disperse request signature",
                b"v1",
                b"POST",
                b"/internal/apply",
                b"1700000000000",
                nonce,
                hashlib.sha256(b"body").digest(),
            ],
        )
    )
    mac = hmac.new(SECRET, canonical, hashlib.sha256).hexdigest().encode()
    header = Signer(SECRET).sign(
        b"POST", b"/internal/apply", b"body", 1_700_000_000_000, nonce
    )
    assert header == b"v1 t=1700000000000 n=%s s=%s" % (nonce.hex().encode(), mac)


fields = st.sampled_from(["method", "path", "body", "timestamp", "nonce", "mac"])


@settings(max_examples=300, deadline=None)
@given(
    method=st.binary(min_size=1, max_size=8),
    path=st.binary(max_size=40),
    body=st.binary(max_size=100),
    nonce=st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE),
    skew=st.integers(-30_000, 30_000),
    field=fields,
    data=st.data(),
)
def test_anyChangeFails(
    method: bytes,
    path: bytes,
    body: bytes,
    nonce: bytes,
    skew: int,
    field: str,
    data: st.DataObject,
) -> None:
    """
    A signed request passes as signed; a change to any one part of it, the
    header's included, is a bad signature.
    """
    signer = Signer(SECRET)
    timestampMs = NOW_MS + skew
    header = signer.sign(method, path, body, timestampMs, nonce)
    Verifier(SECRET, clockAt()).verify(method, path, body, header)

    other = data.draw(st.binary(max_size=100), label="other")
    if field == "method":
        assume(other != method)
        method = other
    elif field == "path":
        assume(other != path)
        path = other
    elif field == "body":
        assume(other != body)
        body = other
    else:
        t, n, s = header.split(b" ")[1:]
        if field == "timestamp":
            newMs = timestampMs + data.draw(
                st.integers(-1000, 1000).filter(bool), label="delta"
            )
            assume(abs(newMs - NOW_MS) <= 30_000)
            t = b"t=%d" % newMs
        elif field == "nonce":
            newNonce = data.draw(
                st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE), label="nonce"
            )
            assume(newNonce != nonce)
            n = b"n=" + newNonce.hex().encode()
        else:
            position = data.draw(st.integers(2, len(s) - 1), label="position")
            digit = b"%x" % ((int(s[position : position + 1], 16) + 1) % 16)
            s = s[:position] + digit + s[position + 1 :]
        header = b" ".join((b"v1", t, n, s))
    with pytest.raises(SignatureError, match="bad signature"):
        Verifier(SECRET, clockAt()).verify(method, path, body, header)


def test_wrongSecret() -> None:
    method, path, body, header = Requests(OTHER).sign(NOW_MS)
    with pytest.raises(SignatureError, match="bad signature"):
        Verifier(SECRET, clockAt()).verify(method, path, body, header)


def test_fieldsDoNotRunTogether() -> None:
    """
    Moving bytes between method and path, or path and body, changes the
    signature.
    """
    signer = Signer(SECRET)
    nonce = bytes(16)
    a = signer.sign(b"POST", b"/x", b"y", NOW_MS, nonce)
    assert a != signer.sign(b"POS", b"T/x", b"y", NOW_MS, nonce)
    assert a != signer.sign(b"POST", b"/xy", b"", NOW_MS, nonce)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        (b"", "missing"),
        (b"v1", "malformed"),
        (b"v2 t=1 n=%s s=%s" % (b"0" * 32, b"0" * 64), "malformed"),
        (b"v1 t=01 n=%s s=%s" % (b"0" * 32, b"0" * 64), "malformed"),
        (b"v1 t=-1 n=%s s=%s" % (b"0" * 32, b"0" * 64), "malformed"),
        (b"v1 t=1 n=%s s=%s" % (b"0" * 30, b"0" * 64), "malformed"),
        (b"v1 t=1 n=%s s=%s" % (b"A" * 32, b"0" * 64), "malformed"),
        (b"v1 t=1 n=%s s=%s" % (b"0" * 32, b"0" * 63), "malformed"),
        (b"v1 t=1 n=%s s=%s " % (b"0" * 32, b"0" * 64), "malformed"),
        (b"v1 t=1  n=%s s=%s" % (b"0" * 32, b"0" * 64), "malformed"),
        (b"v1 t=%s n=%s s=%s" % (b"1" * 17, b"0" * 32, b"0" * 64), "malformed"),
        (b"\xff" * 100_000, "malformed"),
    ],
)
def test_malformed(header: bytes | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        Verifier(SECRET, clockAt()).verify(b"POST", b"/", b"", header)


def test_uppercaseSpellingIsNotAFreshNonce() -> None:
    """
    The nonce and signature have one spelling; the same request in capitals
    cannot slip past the replay cache.
    """
    verifier = Verifier(SECRET, clockAt())
    method, path, body, header = Requests().sign(NOW_MS)
    verifier.verify(method, path, body, header)
    t, n, s = header.split(b" ")[1:]
    for variant in (
        b" ".join((b"v1", t, n.upper().replace(b"N=", b"n="), s)),
        b" ".join((b"v1", t, n, s.upper().replace(b"S=", b"s="))),
    ):
        with pytest.raises(SignatureError):
            verifier.verify(method, path, body, variant)


@pytest.mark.parametrize(
    ("offsetMs", "reason"),
    [
        (-30_001, "expired"),
        (-3_600_000, "expired"),
        (30_001, "future"),
        (10**9, "future"),
    ],
)
def test_timestampOutsideWindow(offsetMs: int, reason: str) -> None:
    method, path, body, header = Requests().sign(NOW_MS + offsetMs)
    with pytest.raises(SignatureError, match=reason):
        Verifier(SECRET, clockAt()).verify(method, path, body, header)


@pytest.mark.parametrize("offsetMs", [-30_000, 0, 30_000])
def test_timestampAtWindowEdges(offsetMs: int) -> None:
    method, path, body, header = Requests().sign(NOW_MS + offsetMs)
    Verifier(SECRET, clockAt()).verify(method, path, body, header)


def test_windowIsConfigurable() -> None:
    requests = Requests()
    verifier = Verifier(SECRET, clockAt(), window=1.0)
    verifier.verify(*requests.sign(NOW_MS - 1000))
    with pytest.raises(SignatureError, match="expired"):
        verifier.verify(*requests.sign(NOW_MS - 1001))


def test_replayRefused() -> None:
    clock = clockAt()
    verifier = Verifier(SECRET, clock)
    request = Requests().sign(NOW_MS)
    verifier.verify(*request)
    with pytest.raises(SignatureError, match="replayed nonce"):
        verifier.verify(*request)
    # Still refused at the last moment of its validity...
    clock.advance(30.0)
    with pytest.raises(SignatureError, match="replayed nonce"):
        verifier.verify(*request)
    # ...and for being too old after that, once forgotten.
    clock.advance(0.01)
    with pytest.raises(SignatureError, match="expired"):
        verifier.verify(*request)


def test_forgedRequestsAreNotRemembered() -> None:
    """
    Only requests with a good signature take room in the replay cache, so
    nobody without the secret can fill it.
    """
    verifier = Verifier(SECRET, clockAt(), maxNonces=10)
    forger = Requests(OTHER)
    for _ in range(100):
        with pytest.raises(SignatureError, match="bad signature"):
            verifier.verify(*forger.sign(NOW_MS))
    assert verifier.remembered == 0
    assert verifier.horizon == -1


def test_nonceCacheBoundedOnAMovingClock() -> None:
    """
    120,000 requests at 2,000 a second: expired nonces are purged as time
    moves, so the cache holds one window's worth, never more.
    """
    clock = clockAt()
    verifier = Verifier(SECRET, clock)
    requests = Requests()
    largest = 0
    for i in range(120_000):
        if i % 10 == 0:
            clock.advance(0.005)
        nowMs = int(clock.seconds() * 1000)
        # Peers' clocks disagree a little with ours, either way.
        verifier.verify(*requests.sign(nowMs + (i % 7 - 3) * 1000))
        largest = max(largest, verifier.remembered)
    # 30 s (plus the skew) at 2,000 a second.
    assert 60_000 <= largest <= 68_000
    assert largest < 100_000
    # No nonce was forgotten early: the horizon is an expired timestamp.
    assert verifier.horizon < int(clock.seconds() * 1000) - 30_000


def test_fullCacheForgetsSafely() -> None:
    """
    At its bound the cache forgets its oldest nonce and refuses everything
    at or before that nonce's timestamp: fresh requests still pass, and the
    forgotten one cannot be replayed.
    """
    clock = clockAt()
    verifier = Verifier(SECRET, clock, maxNonces=100)
    requests = Requests()
    sent = []
    for _ in range(300):
        clock.advance(0.01)
        sent.append(requests.sign(int(clock.seconds() * 1000)))
        verifier.verify(*sent[-1])
        assert verifier.remembered <= 100
    assert verifier.remembered == 100
    for request in sent[:200]:
        with pytest.raises(SignatureError, match="replay horizon"):
            verifier.verify(*request)
    for request in sent[200:]:
        with pytest.raises(SignatureError, match="replayed nonce"):
            verifier.verify(*request)
    verifier.verify(*requests.sign(int(clock.seconds() * 1000)))


class SteppingTime:
    """
    A wall clock that an operator (or NTP) can set back, which a Clock
    cannot do.
    """

    def __init__(self, now: float) -> None:
        self.now = now

    def seconds(self) -> float:
        return self.now


def test_clockSteppedBackDoesNotReviveNonces() -> None:
    time = SteppingTime(NOW)
    verifier = Verifier(SECRET, time)
    requests = Requests()
    old = requests.sign(NOW_MS)
    verifier.verify(*old)
    # A minute later a request purges the old nonce...
    time.now = NOW + 60
    verifier.verify(*requests.sign(NOW_MS + 60_000))
    assert verifier.remembered == 1
    # ...then the clock is set back: the forgotten request is in its window
    # again, and refused all the same.
    time.now = NOW
    with pytest.raises(SignatureError, match="replay horizon"):
        verifier.verify(*old)


def test_rotation() -> None:
    """
    During a rotation a verifier accepts both secrets; a signer uses one.
    """
    new, old, stranger = b"n" * 32, b"o" * 32, b"x" * 32
    for verifier in (
        Verifier(new, clockAt(), secrets=[old]),
        Verifier(None, clockAt(), secrets=[old, new]),
    ):
        nonce = os.urandom(NONCE_SIZE)
        header = Signer(old).sign(b"POST", b"/", b"", NOW_MS, nonce)
        verifier.verify(b"POST", b"/", b"", header)
        verifier.verify(*Requests(new).sign(NOW_MS))
        with pytest.raises(SignatureError, match="bad signature"):
            verifier.verify(*Requests(stranger).sign(NOW_MS))
        # One replay cache whatever the secret.
        header = Signer(new).sign(b"POST", b"/", b"", NOW_MS, nonce)
        with pytest.raises(SignatureError, match="replayed"):
            verifier.verify(b"POST", b"/", b"", header)
    # The old secret dropped, its requests fail.
    with pytest.raises(SignatureError, match="bad signature"):
        Verifier(new, clockAt()).verify(*Requests(old).sign(NOW_MS))


def test_badConfiguration() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        Verifier(None, clockAt())
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Verifier(b"short", clockAt())
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Verifier(SECRET, clockAt(), secrets=[b"short"])
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Signer(b"x" * 15)
    with pytest.raises(ValueError, match="window"):
        Verifier(SECRET, clockAt(), window=0)
    with pytest.raises(ValueError, match="maxNonces"):
        Verifier(SECRET, clockAt(), maxNonces=0)
    with pytest.raises(ValueError, match="nonce"):
        Signer(SECRET).sign(b"GET", b"/", b"", NOW_MS, b"short")
    with pytest.raises(ValueError, match="timestamp"):
        Signer(SECRET).sign(b"GET", b"/", b"", -1, bytes(16))


# Secrets as text


def test_deriveSecret() -> None:
    key = deriveSecret("correct horse battery staple")
    assert len(key) == 32
    assert key == deriveSecret("correct horse battery staple")
    assert key != deriveSecret("correct horse battery stapler")
    # Not a bare hash of the text: derived with a label of its own.
    assert key != hashlib.sha256(b"correct horse battery staple").digest()
    # The same text typed composed or decomposed is the same secret.
    assert deriveSecret("caf\u00e9 caf\u00e9 caf\u00e9 !") == deriveSecret(
        "cafe\u0301 cafe\u0301 cafe\u0301 !"
    )
    # Usable as it comes.
    Signer(key)


def test_derivedSecretIsTheContract() -> None:
    """
    Every node, of every version, derives the same key from the same text.
    """
    assert deriveSecret("disperse known answer secret") == bytes.fromhex(
        "18bc2ea44d1f35cb6d1848a2f6fcc29a388c1b8cbcc1412dad4581e3d75d9b10"
    )
    # Text that came from bytes that are not UTF-8 (argv on POSIX) works.
    assert len(deriveSecret("sixteen chars \udcff!")) == 32


def test_shortSecretRefused() -> None:
    checkSecretText("x" * 16)
    with pytest.raises(ValueError, match="at least 16 characters") as info:
        deriveSecret("x" * 15)
    assert "has 15" in str(info.value)
    with pytest.raises(ValueError, match="at least 16 characters"):
        checkSecretText("")
