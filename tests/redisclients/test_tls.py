"""
The Redis port over TLS, with a certificate the node's own authority
signed (as for its HTTP port): C{redis-cli --tls} and redis-py with
C{ssl=True} verify it and work as over TCP; a client speaking plain TCP
to it gets no answer.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from disperse.testing.cluster import LOOPBACK
from tests.redisclients.nodes import TLSFiles, redisNode
from tests.security.certs import makeAuthority, makeNode

pytestmark = pytest.mark.redisclients

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
# Failures are the point here: no retries to wait through.
ONCE = Retry(NoBackoff(), 0)


def test_tls(tmp_path: Path) -> None:
    authority = makeAuthority(tmp_path, "redis-ca")
    certificate, key = makeNode(tmp_path, authority, "tls")
    files = TLSFiles(certificate, key, authority.path)
    with redisNode("tls", tls=files) as node:
        tls = [
            REDIS_CLI,
            "-h",
            LOOPBACK,
            "-p",
            str(node.redisPort),
            "--tls",
            "--cacert",
            str(authority.path),
        ]
        for command, expected in (
            (["set", "tls:k", "secret"], b"OK\n"),
            (["get", "tls:k"], b"secret\n"),
            (["incr", "tls:n"], b"1\n"),
        ):
            done = subprocess.run(
                [*tls, *command], capture_output=True, timeout=30, check=False
            )
            assert (done.returncode, done.stdout, done.stderr) == (0, expected, b"")

        r = node.client(decode_responses=True)
        try:
            assert r.get("tls:k") == "secret"
            pipe = r.pipeline()
            pipe.set("tls:a", "1").incr("tls:a").get("tls:a")
            assert pipe.execute() == [True, 2, "2"]
        finally:
            r.close()

        # A client that does not verify against this authority refuses it.
        other = makeAuthority(tmp_path, "other-ca")
        stranger = node.client(
            ssl_ca_certs=str(other.path), socket_timeout=5, retry=ONCE
        )
        with pytest.raises(redis.ConnectionError):
            stranger.ping()
        stranger.close()

        plain = redis.Redis(
            host=LOOPBACK, port=node.redisPort, socket_timeout=2, retry=ONCE
        )
        with pytest.raises(redis.RedisError):
            plain.ping()
        plain.close()
