"""
Tests for the C{disperse} command line: every command against real
C{twistd disperse} nodes on loopback (run in-process through
L{disperse.cli.main.main}, and once as the installed console script). The
pieces that need no node are in L{tests.cli.test_cli}.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from disperse.cli import keys as keyring
from disperse.cli.client import (
    EXIT_CONNECT,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SERVER,
    EXIT_USAGE,
)
from disperse.testing.cluster import NodeProcess, runningNode, startLoopbackNode
from tests.cli.support import cli

DEADLINE = 20.0
DISPERSE = str(Path(sys.executable).with_name("disperse"))


def until(condition: Callable[[], bool], what: str) -> None:
    """
    Wait (up to L{DEADLINE}) for C{condition} to hold, checking often.
    """
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.05)


# Against a real node


@pytest.fixture(scope="module")
def node() -> Iterator[NodeProcess]:
    with runningNode("--node-name", "solo", "--profile", "local") as running:
        yield running


@pytest.mark.integration
def test_putGetDelete(node: NodeProcess) -> None:
    put = cli(node.url, "put", "greeting", "hello")
    assert (put.status, put.text) == (EXIT_OK, "stored greeting (1 of 1 replicas)\n")
    got = cli(node.url, "get", "greeting")
    assert (got.status, got.stdout) == (EXIT_OK, b"hello")
    assert cli(node.url, "--json", "get", "greeting").json() == {
        "key": "greeting",
        "binary": False,
        "value": "hello",
        "replicas": 1,
        "answered": 1,
    }
    deleted = cli(node.url, "delete", "greeting", "--json")
    assert (deleted.status, deleted.json()["result"]) == (EXIT_OK, "deleted")
    missing = cli(node.url, "get", "greeting")
    assert missing.status == EXIT_NOT_FOUND
    assert "not found" in missing.stderr
    assert cli(node.url, "get", "greeting", "--json").json()["status"] == 404


@pytest.mark.integration
def test_keysAreEscaped(node: NodeProcess) -> None:
    for key in ["users/42", "a?b", "50%", "spaced key", "ключ"]:
        assert cli(node.url, "put", key, "v").status == EXIT_OK, key
        assert cli(node.url, "get", key).stdout == b"v", key
    # A slash in a key is the same key, percent-encoded or not.
    with urllib.request.urlopen(f"{node.url}/cache/users/42", timeout=10) as answer:
        assert answer.read() == b"v"


@pytest.mark.integration
def test_putFromFileIsBinary(node: NodeProcess, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4
    (tmp_path / "blob").write_bytes(data)
    assert cli(node.url, "put", "blob", "--file", str(tmp_path / "blob")).status == 0
    assert cli(node.url, "get", "blob").stdout == data
    shown = cli(node.url, "get", "blob", "--json").json()
    assert shown["binary"] is True
    assert base64.b64decode(shown["value_base64"]) == data


@pytest.mark.integration
def test_consoleScriptReadsStdin(node: NodeProcess) -> None:
    """
    The installed C{disperse} script; a value piped in is stored as bytes.
    """
    env = {"DISPERSE_NODE": node.url, "PATH": "/usr/bin:/bin"}
    put = subprocess.run(
        [DISPERSE, "put", "piped", "--ttl", "1h"],
        input=b"from a pipe\n",
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert put.returncode == 0, put.stderr
    got = subprocess.run(
        [DISPERSE, "get", "piped"],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (got.returncode, got.stdout) == (0, b"from a pipe\n")


@pytest.mark.integration
def test_emptyValueOnlyAsBinary(node: NodeProcess, tmp_path: Path) -> None:
    """
    An empty value is stored only with C{--binary}, whether it is given as
    an argument, a file or standard input.
    """
    env = {"DISPERSE_NODE": node.url, "PATH": "/usr/bin:/bin"}
    refusal = "disperse: an empty value can only be stored as --binary\n"
    for extra in ([], ["--text"]):
        piped = subprocess.run(
            [DISPERSE, "put", "nothing", *extra],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert (piped.returncode, piped.stdout, piped.stderr.decode()) == (
            EXIT_USAGE,
            b"",
            refusal,
        )
    (tmp_path / "empty").write_bytes(b"")
    for argv in (["nothing", ""], ["nothing", "--file", str(tmp_path / "empty")]):
        refused = cli(node.url, "put", *argv)
        assert (refused.status, refused.stderr) == (EXIT_USAGE, refusal)
    assert cli(node.url, "get", "nothing").status == EXIT_NOT_FOUND
    stored = subprocess.run(
        [DISPERSE, "put", "nothing", "--binary"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert stored.returncode == EXIT_OK, stored.stderr
    assert cli(node.url, "get", "nothing").stdout == b""
    assert cli(node.url, "put", "nothing2", "", "--binary").status == EXIT_OK
    assert cli(node.url, "get", "nothing2", "--json").json()["value_base64"] == ""


@pytest.mark.integration
def test_loadTakesEmptyValuesOnlyAsBase64(node: NodeProcess, tmp_path: Path) -> None:
    lines = tmp_path / "empty.jsonl"
    lines.write_text(
        '{"key": "loaded-empty", "value_base64": ""}\n'
        '{"key": "loaded-text", "value": ""}\n'
    )
    report = cli(node.url, "load", str(lines), "--json").json()
    assert (report["loaded"], report["malformed"]) == (
        1,
        [
            {
                "line": 2,
                "error": "value must be a non-empty string"
                " (an empty value can only be loaded as value_base64)",
            }
        ],
    )
    assert cli(node.url, "get", "loaded-empty").stdout == b""
    assert cli(node.url, "get", "loaded-text").status == EXIT_NOT_FOUND


@pytest.mark.integration
def test_ttl(node: NodeProcess) -> None:
    assert cli(node.url, "put", "brief", "v", "--ttl", "300ms").status == EXIT_OK
    until(
        lambda: cli(node.url, "get", "brief").status == EXIT_NOT_FOUND,
        "the key to expire",
    )


@pytest.mark.integration
def test_usageErrors(node: NodeProcess, tmp_path: Path) -> None:
    assert cli(node.url, "put", "k", "v", "--ttl", "soon").status == EXIT_USAGE
    assert cli(node.url, "put", "k", "v", "--file", "x").status == EXIT_USAGE
    assert cli(node.url, "nonsense").status == EXIT_USAGE
    assert cli(node.url, "bench", "--concurrency", "0").status == EXIT_USAGE
    # The node says what was wrong; that is the user's input too.
    tooLong = cli(node.url, "put", "k" * 2000, "v")
    assert tooLong.status == EXIT_USAGE
    assert "longer than 1024 bytes" in tooLong.stderr


@pytest.mark.integration
def test_clusterViews(node: NodeProcess) -> None:
    members = cli(node.url, "members")
    assert members.status == EXIT_OK
    header, row = members.text.splitlines()
    assert header.split() == ["NAME", "STATE", "GOSSIP", "HTTP", "ZONE", "INCARNATION"]
    assert row.split()[:2] == ["solo", "alive"]
    [member] = cli(node.url, "members", "--json").json()
    assert member["http_addr"] == f"127.0.0.1:{node.httpPort}"

    stats = cli(node.url, "stats")
    assert stats.status == EXIT_OK
    assert re.search(r"^store +\d+ keys", stats.text, re.M), stats.text
    assert re.search(r"^members +1 alive", stats.text, re.M), stats.text
    assert "hits" in cli(node.url, "stats", "--json").json()

    partitions = cli(node.url, "partitions")
    assert "1,024 partitions" in partitions.text
    assert re.search(r"^solo +1,024 +0 +1,024$", partitions.text, re.M)
    every = cli(node.url, "partitions", "--all").text.splitlines()
    assert len(every) == 1 + 1 + 1024
    assert len(cli(node.url, "partitions", "--json").json()["partitions"]) == 1024


@pytest.mark.integration
def test_load(node: NodeProcess, tmp_path: Path) -> None:
    lines = [json.dumps({"key": f"j{i}", "value": f"value {i}"}) for i in range(200)]
    lines += [
        json.dumps({"key": "bin", "value_base64": base64.b64encode(b"\0\1").decode()}),
        json.dumps({"key": "short", "value": "v", "ttl": "1h"}),
        "not json",
        json.dumps({"key": "novalue"}),
        "",
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(lines))
    loaded = cli(node.url, "load", str(tmp_path / "data.jsonl"), "--json")
    # Malformed lines are reported and skipped; the rest is loaded.
    assert loaded.status == EXIT_USAGE
    report = loaded.json()
    assert (report["loaded"], report["failed"]) == (202, 0)
    assert [bad["line"] for bad in report["malformed"]] == [203, 204]
    assert cli(node.url, "get", "j199").stdout == b"value 199"
    assert cli(node.url, "get", "bin").stdout == b"\0\1"

    (tmp_path / "data.csv").write_text(
        'key,value,ttl\nc1,"one, with a comma",\nc2,two,30s\n'
    )
    human = cli(node.url, "load", str(tmp_path / "data.csv"))
    assert human.status == EXIT_OK, human.stderr
    assert human.text.startswith("loaded 2 keys in ")
    assert cli(node.url, "get", "c1").stdout == b"one, with a comma"

    (tmp_path / "bad.csv").write_text("name,data\na,b\n")
    assert cli(node.url, "load", str(tmp_path / "bad.csv")).status == EXIT_USAGE
    assert cli(node.url, "load", str(tmp_path / "absent.jsonl")).status == EXIT_USAGE


@pytest.mark.integration
def test_bench(node: NodeProcess) -> None:
    summary = cli(
        node.url,
        "bench",
        "--requests",
        "300",
        "--duration",
        "20s",
        "--concurrency",
        "3",
        "--keys",
        "20",
        "--seed",
        "7",
        "--json",
    )
    assert summary.status == EXIT_OK, summary.stdout
    result = summary.json()
    assert result["requests"] == 300
    assert result["errors"] == {}
    everything = result["operations"]["all"]
    assert everything["requests"] == 300
    assert 0 < everything["p50"] <= everything["p90"] <= everything["p99"]
    assert result["hits"] + result["misses"] == result["operations"]["get"]["requests"]

    table = cli(node.url, "bench", "--requests", "50", "--concurrency", "2")
    assert table.status == EXIT_OK
    # Columns are as wide as their widest value (a fast run's req/s too).
    assert re.search(
        r"^OPERATION +REQUESTS +ERRORS +REQ/S +P50 +P90 +P99 +MAX$", table.text, re.M
    ), table.text
    assert re.search(r"^all +50 +0 ", table.text, re.M), table.text


@pytest.mark.integration
def test_benchStopsAtItsDuration(node: NodeProcess) -> None:
    started = time.monotonic()
    result = cli(
        node.url,
        "bench",
        "--requests",
        "100000000",
        "--duration",
        "500ms",
        "--concurrency",
        "2",
        "--json",
    ).json()
    assert time.monotonic() - started < 10
    assert 0 < result["requests"] < 100000000


def test_cannotConnect(tmp_path: Path) -> None:
    with socket.socket() as unused:
        # Bound but not listening: connections to it are refused.
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
        for argv in (["get", "k"], ["members"], ["bench", "--requests", "5"]):
            run = cli(url, *argv)
            assert run.status == EXIT_CONNECT, argv
            assert "cannot reach" in run.stderr
        (tmp_path / "one.jsonl").write_text('{"key": "k", "value": "v"}')
        loaded = cli(url, "load", str(tmp_path / "one.jsonl"), "--json")
        assert loaded.status == EXIT_CONNECT
        assert loaded.json()["aborted"].startswith("cannot reach")


# Gossip keys, across two members


def _start(name: str, key: bytes, *args: str) -> NodeProcess:
    return startLoopbackNode(
        "--profile",
        "local",
        "--node-name",
        name,
        "--gossip-key",
        base64.b64encode(key).decode(),
        *args,
    )


@pytest.mark.integration
def test_keysRotate() -> None:
    old = b"o" * 32
    first = _start("k0", old)
    try:
        second = _start("k1", old, "--peer", f"127.0.0.1:{first.gossipPort}")
        try:
            _rotate(first, second, old)
        finally:
            second.kill()
    finally:
        first.kill()


def _rotate(first: NodeProcess, second: NodeProcess, old: bytes) -> None:
    def placed() -> bool:
        # Both hold data in both nodes' partition tables.
        return all(
            cli(n.url, "stats", "--json").json()["replication"]["members"] == 2
            for n in (first, second)
        )

    until(placed, "both members to hold data")
    listed = cli(first.url, "keys", "--json").json()
    assert [(m["member"], m["primary"]) for m in listed] == [
        ("k0", keyring.fingerprint(old)),
        ("k1", keyring.fingerprint(old)),
    ]

    rotated = cli(
        first.url,
        "keys",
        "rotate",
        "--json",
        DISPERSE_GOSSIP_KEY=base64.b64encode(old).decode(),
    )
    assert rotated.status == EXIT_OK, rotated.stdout
    result = rotated.json()
    new = base64.b64decode(result["key"])
    assert len(new) == 32
    assert result["removed"] == keyring.fingerprint(old)
    for member in cli(second.url, "keys", "--json").json():
        assert member["keys"] == [keyring.fingerprint(new)], member

    # The members still talk, with the new key only.
    mark = second.mark()
    assert cli(second.url, "put", "after", "rotation").status == EXIT_OK
    got = cli(first.url, "get", "after")
    assert got.stdout == b"rotation", got.stderr
    assert not any("decrypt" in line for line in second.lines[mark:])

    # One step by hand, on this node only.
    human = cli(
        second.url, "keys", "install", base64.b64encode(old).decode(), "--this-node"
    )
    assert human.status == EXIT_OK
    assert human.text == f"install {keyring.fingerprint(old)}: done on k1\n"
    refused = cli(second.url, "keys", "remove", base64.b64encode(new).decode())
    # The primary key cannot be removed (409): a step that fails anywhere
    # fails the command.
    assert refused.status == EXIT_SERVER
    assert "remove failed on 2 member(s)" in refused.stderr
