"""
Integration tests: a real C{twistd disperse} node with C{--redis-port},
driven over a bare socket (no Redis client library, no C{redis-cli}; the
client suites test those).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import hiredis
import pytest

from disperse.testing.cluster import getJSON, httpRequest, runningNode
from disperse.testing.resp import RespClient
from tests.security.certs import makeAuthority, makeNode

pytestmark = pytest.mark.integration

REDIS = ("--redis-port", "tcp:0:interface=127.0.0.1")


def test_setGetSharedWithHTTP() -> None:
    """
    SET then GET over the Redis port; a pipeline of 10,000 SETs and GETs,
    sent in one write, answered in order; what was set is read over HTTP,
    and what HTTP wrote is read over the Redis port.
    """
    with runningNode("--node-name", "gamma", *REDIS) as node:
        with RespClient(node.waitRedis()) as client:
            assert client.call(b"SET", b"k", b"v") == b"OK"
            assert client.call(b"GET", b"k") == b"v"
            count = 5_000
            client.send(
                *(
                    line
                    for index in range(count)
                    for line in (
                        [b"SET", b"p%d" % index, b"%d" % index],
                        [b"GET", b"p%d" % index],
                    )
                )
            )
            replies = [client.read() for _ in range(2 * count)]
            assert replies == [
                reply for index in range(count) for reply in (b"OK", b"%d" % index)
            ]
        assert httpRequest(node.httpPort, "GET", "/cache/k") == (200, b"v")
        assert httpRequest(node.httpPort, "GET", "/cache/p4999") == (200, b"4999")
        status, _ = httpRequest(
            node.httpPort,
            "PUT",
            "/cache/fromhttp",
            body=b'{"value": "h"}',
            headers={"Content-Type": "application/json"},
        )
        assert status == 200
        with RespClient(node.redisPort) as client:
            assert client.call(b"GET", b"fromhttp") == b"h"


def test_pipelineInlineAndErrors() -> None:
    """
    A pipeline of 10,000 commands sent in one write is answered in order;
    inline commands work; an unknown command is an error and the
    connection stays; a malformed frame is an error and the connection
    closes. /stats counts it all.
    """
    with runningNode("--node-name", "alpha", *REDIS) as node:
        port = node.waitRedis()
        with RespClient(port) as client:
            assert client.call(b"PING") == b"PONG"
            count = 10_000
            client.send(*([b"ECHO", b"%d" % index] for index in range(count)))
            replies = [client.read() for _ in range(count)]
            assert replies == [b"%d" % index for index in range(count)]

            client.sendRaw(b'PING\r\nECHO "a b"\r\n')
            assert (client.read(), client.read()) == (b"PONG", b"a b")

            error = client.call(b"NOPE", b"x")
            assert isinstance(error, hiredis.ReplyError)
            assert str(error).startswith("ERR unknown command 'NOPE'")
            assert client.call(b"CLIENT", b"ID") == 1

            client.sendRaw(b"*1\r\n$x\r\n")
            error = client.read()
            assert isinstance(error, hiredis.ReplyError)
            assert str(error) == "ERR Protocol error: invalid bulk length"
            with pytest.raises(ConnectionError):
                client.read()

        stats = getJSON(node.httpPort, "/stats")["redis"]
        assert stats["accepted"] == 1
        assert stats["protocolErrors"] == 1
        assert stats["perCommand"]["echo"]["calls"] == count + 1


def test_tokens(tmp_path: Path) -> None:
    """
    With --auth-tokens, commands are refused until AUTH with a token.
    """
    token = "redis-test-token-0123456789abcdef"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{token} read\n", encoding="utf-8")
    with (
        runningNode(
            "--node-name", "beta", "--auth-tokens", str(tokens), *REDIS
        ) as node,
        RespClient(node.waitRedis()) as client,
    ):
        error = client.call(b"PING")
        assert isinstance(error, hiredis.ReplyError)
        assert str(error) == "NOAUTH Authentication required."
        error = client.call(b"AUTH", b"not-a-token-of-this-node")
        assert isinstance(error, hiredis.ReplyError)
        assert str(error).startswith("WRONGPASS")
        assert client.call(b"AUTH", b"default", token.encode()) == b"OK"
        assert client.call(b"PING") == b"PONG"


def test_tlsLikeHTTP(tmp_path: Path) -> None:
    """
    When the HTTP API is served over TLS, a --redis-port given as a number
    is too, with the same certificate; a client that does not speak TLS
    gets nothing.
    """
    authority = makeAuthority(tmp_path, "public-ca")
    cert, key = makeNode(tmp_path, authority, "public")
    with runningNode(
        "--node-name",
        "delta",
        "--http-port",
        f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        "--redis-port",
        "0",
    ) as node:
        port = node.waitRedis()
        context = ssl.create_default_context(cafile=str(authority.path))
        with RespClient(port, tls=context) as client:
            assert client.call(b"SET", b"k", b"v") == b"OK"
            assert client.call(b"GET", b"k") == b"v"
        with RespClient(port, timeout=5) as plain:
            plain.send([b"PING"])
            # A closed connection, or a TLS alert that is no reply.
            with pytest.raises((OSError, hiredis.ProtocolError)):
                plain.read()
