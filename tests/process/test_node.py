"""
Integration tests: real C{twistd disperse} processes on loopback, driven
with the original project's curl commands.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from disperse.testing.cluster import runningNode, tool

pytestmark = pytest.mark.integration

CURL = shutil.which("curl")

TWISTD = tool("twistd")


def curl(*args: str) -> tuple[int, str]:
    """
    Run curl as a user would; the status code and the body.
    """
    assert CURL is not None, "curl is needed for the integration tests"
    result = subprocess.run(
        [CURL, "-s", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, code = result.stdout.rpartition("\n")
    return int(code), body


def test_seedCurlCommands() -> None:
    """
    The original README's PUT, GET and DELETE commands, verbatim but for
    the port, answer as the original did.
    """
    with runningNode("--node-name", "alpha") as node:
        url = f"{node.url}/cache/John10"
        assert curl(
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"value": "test", "duration": "9000000000000"}',
            url,
        ) == (200, "OK")
        assert curl("-X", "GET", "-H", "Content-Type: application/json", url) == (
            200,
            "test",
        )
        assert curl("-X", "DELETE", "-H", "Content-Type: application/json", url) == (
            200,
            "OK",
        )
        assert curl("-X", "GET", "-H", "Content-Type: application/json", url) == (
            404,
            "Not Found",
        )

        code, body = curl(f"{node.url}/cache/members")
        assert code == 200
        [member] = json.loads(body)
        assert (member["name"], member["http_port"]) == ("alpha", node.httpPort)

        code, body = curl(f"{node.url}/stats")
        stats = json.loads(body)
        assert (stats["sets"], stats["deletes"], stats["hits"], stats["misses"]) == (
            1,
            1,
            1,
            1,
        )
        # Values never reach the log.
        assert not any('"test"' in line or " test" in line for line in node.lines)

        # twistd shuts down cleanly on SIGTERM, then exits by the same signal
        # so that supervisors see why it stopped.
        assert node.terminate() == -signal.SIGTERM
        node.waitFor(re.compile("Server Shut Down"))


def test_binaryRoundTrip(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4096
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    copy = tmp_path / "copy.bin"
    with runningNode() as node:
        assert curl(
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            f"@{source}",
            f"{node.url}/cache/blob?ttl=1h",
        ) == (200, "OK")
        code, _ = curl("-o", str(copy), f"{node.url}/cache/blob")
        assert code == 200
        assert copy.read_bytes() == payload


def test_badOptionIsOneLine() -> None:
    """
    A bad or unknown flag is said in one line on standard error, with a
    hint to C{--help}, instead of twistd's whole usage or a traceback; exit
    status 1.
    """
    for argv, error in [
        (["--port", "x"], "--port: 'x' is not a port number"),
        (
            ["--max-memory", "banana"],
            "--max-memory: 'banana' is not a size; use bytes or a unit such as"
            " 64MB, 1GiB, 512K",
        ),
        (["--no-such-flag"], "option --no-such-flag not recognized"),
        # Checked only while the node is built, and said the same way.
        (
            ["--http-port", "tcp:notaport"],
            "--http-port: 'tcp:notaport': invalid literal for int() with base"
            " 10: 'notaport'",
        ),
        (
            ["--cluster-ca", __file__, "--node-cert", __file__],
            "--cluster-ca: not a PEM certificate ([('PEM routines', '', 'no start"
            " line')])",
        ),
    ]:
        result = subprocess.run(
            [TWISTD, "--nodaemon", "disperse", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            f"twistd disperse: {error} (see twistd disperse --help)\n",
        )


def test_portInUse() -> None:
    with runningNode() as first:
        result = subprocess.run(
            [
                TWISTD,
                "--nodaemon",
                "--pidfile=",
                "disperse",
                "--bind",
                "127.0.0.1",
                "--http-port",
                f"tcp:{first.httpPort}:interface=127.0.0.1",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert "Traceback" not in result.stdout + result.stderr
        assert "HTTP API cannot listen" in result.stdout
