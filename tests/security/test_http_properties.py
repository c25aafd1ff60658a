"""
Hypothesis properties of the whole HTTP front (guarded channel, tokens,
rate limits, public and node-to-node APIs) fed raw bytes in memory: it
never raises, never answers 500, and answers only with statuses it
documents.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disperse.testing.site import ADMIN, READER, WRITER, InMemorySite, inMemorySite

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
DOCUMENTED = {100, 200, 400, 401, 403, 404, 405, 408, 409, 413, 414, 429, 431, 503}

_SITE = inMemorySite()

methods = st.sampled_from(
    [b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS", b"PATCH", b"G\x00T"]
)
paths = st.one_of(
    st.sampled_from(
        [
            b"/cache/k",
            b"/cache/users/1",
            b"/cache/members",
            b"/cache/",
            b"/cache/%ff",
            b"/cache/a%2Fb",
            b"/cluster/members",
            b"/cluster/keys",
            b"/cluster/keys/install",
            b"/internal/v1/apply",
            b"/internal/v1/nope",
            b"/stats",
            b"/health",
            b"/",
            b"*",
        ]
    ),
    st.binary(max_size=40).map(
        lambda b: b"/" + b.replace(b" ", b"").replace(b"\r", b"")
    ),
)
headerNames = st.sampled_from(
    [
        b"Authorization",
        b"Content-Type",
        b"Content-Length",
        b"Transfer-Encoding",
        b"X-Is-Sync",
        b"X-Consistency",
        b"X-TTL",
        b"Connection",
        b"Expect",
    ]
)
headerValues = st.one_of(
    st.sampled_from(
        [
            b"Bearer " + READER.encode(),
            b"Bearer " + WRITER.encode(),
            b"Bearer " + ADMIN.encode(),
            b"bearer x",
            b"application/json",
            b"application/octet-stream",
            b"chunked",
            b"true",
            b"all",
            b"10s",
            b"close",
            b"100-continue",
            b"-1",
            b"99999999999999999999",
        ]
    ),
    st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
bodies = st.one_of(
    st.just(b""),
    st.just(b'{"value": "v", "duration": "1000"}'),
    st.just(b"\x91\x92\xa1k\xc4\x00"),
    st.binary(max_size=200),
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    head = [draw(methods) + b" " + draw(paths) + b" HTTP/1.1"]
    for name, value in draw(st.lists(st.tuples(headerNames, headerValues), max_size=6)):
        head.append(name + b": " + value)
    body = draw(bodies)
    if draw(st.booleans()):
        head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _check(site: InMemorySite, data: bytes, chunk: int) -> None:
    answer = site.exchange(data, chunk=chunk)
    for status in _STATUS.findall(answer):
        assert int(status) in DOCUMENTED, (data, answer)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=3), st.integers(0, 16))
def test_wellFormedishRequests(batch: list[bytes], chunk: int) -> None:
    _check(_SITE, b"".join(batch), chunk)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.integers(0, 16))
def test_anyBytes(data: bytes, chunk: int) -> None:
    _check(_SITE, data, chunk)
