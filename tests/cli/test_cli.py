"""
Tests for the pieces of the C{disperse} command line that need no node:
exit statuses, usage errors, tokens, node addresses, progress and tables.
The commands against real nodes are in L{tests.process.test_cli}.
"""

from __future__ import annotations

import http.server
import io
import threading
from typing import Any

import pytest

from disperse.cli.bench import percentile
from disperse.cli.client import (
    EXIT_DENIED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SERVER,
    EXIT_USAGE,
    Client,
    ClientError,
    Response,
    check,
    keyPath,
    normaliseNode,
)
from disperse.cli.main import _wantsJSON
from disperse.cli.terminal import Progress, duration, size, table
from tests.cli.support import cli


def test_usageErrorsAreJSONUnderJSON() -> None:
    """
    With C{--json} anywhere among the options, a command line that does
    not parse is reported as the JSON error document, on standard output.
    """
    for argv, error in [
        (["--json", "nonsense"], "argument COMMAND: invalid choice: 'nonsense'"),
        (["put", "--json"], "the following arguments are required: key"),
        (["--json"], "the following arguments are required: COMMAND"),
        (
            ["bench", "--concurrency", "0", "--js"],
            "argument --concurrency: '0' must be positive",
        ),
        (["get", "k", "--json", "--consistency", "most"], "argument --consistency"),
    ]:
        run = cli(None, *argv)
        assert (run.status, run.stderr) == (EXIT_USAGE, ""), argv
        document = run.json()
        assert document["status"] is None, argv
        assert document["error"].startswith(error), (argv, document)
    badNode = cli("ftp://x", "--json", "get", "k")
    assert (badNode.status, badNode.stderr) == (EXIT_USAGE, "")
    assert badNode.json()["error"].startswith("DISPERSE_NODE: ")


def test_usageErrorsAreTextOtherwise() -> None:
    run = cli(None, "put")
    assert (run.status, run.stdout) == (EXIT_USAGE, b"")
    lines = run.stderr.splitlines()
    assert lines[0].startswith("usage: disperse put ")
    assert lines[-1] == (
        "disperse put: error: the following arguments are required: key"
    )
    # "--json" after "--" is a value, not the option.
    assert _wantsJSON(["put", "k", "--", "--json"]) is False


def test_exitStatusOfAnswers() -> None:
    def status(code: int) -> int:
        try:
            check(Response(code, {}, b'{"error": "why"}'), "doing")
        except ClientError as e:
            assert e.message == f"doing: why (HTTP {code})"
            return e.exitStatus
        return EXIT_OK

    assert [status(c) for c in (200, 404, 400, 413, 401, 403, 500, 503)] == [
        EXIT_OK,
        EXIT_NOT_FOUND,
        EXIT_USAGE,
        EXIT_USAGE,
        EXIT_DENIED,
        EXIT_DENIED,
        EXIT_SERVER,
        EXIT_SERVER,
    ]


def test_tokenFromEnvironment() -> None:
    """
    C{DISPERSE_TOKEN} goes out as a bearer token; a 401 is exit status 5.
    """
    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            body = b'{"error": "token required"}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        run = cli(url, "stats", DISPERSE_TOKEN="s3cret")
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["Bearer s3cret"]
    assert run.status == EXIT_DENIED
    assert "token required" in run.stderr


def test_nodeAddresses() -> None:
    assert normaliseNode("127.0.0.1:8001") == "http://127.0.0.1:8001"
    assert normaliseNode("http://h:1/") == "http://h:1"
    with pytest.raises(ValueError):
        normaliseNode("ftp://h")
    assert keyPath("a/b c?") == "/cache/a%2Fb%20c%3F"
    assert Client("h:1").node == "http://h:1"
    assert cli("not a url at all://", "stats").status == EXIT_USAGE


def test_progressOnlyOnTerminals() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [0.0]
    screen = Terminal()
    progress = Progress(screen, timer=lambda: now[0])
    progress.show(5, 10, "half")
    progress.show(6, 10, "too soon")
    now[0] = 1.0
    progress.show(10, 10, "done")
    progress.clear()
    # Two lines drawn, then erased (back to the start, blanks, back).
    assert screen.getvalue().count("\r") == 4
    assert "[############............]  50%  half" in screen.getvalue()
    assert "too soon" not in screen.getvalue()

    pipe = io.StringIO()
    Progress(pipe).show(1, 2, "x")
    assert pipe.getvalue() == ""


def test_formatting() -> None:
    assert table(["A", "NUMBER"], [["x", 1000], ["long", 2]]) == (
        "A     NUMBER\nx      1,000\nlong       2"
    )
    assert (size(512), size(1536), size(3 * 2**30)) == ("512 B", "1.5 KiB", "3.0 GiB")
    assert (duration(0.0004), duration(0.0123), duration(2.5)) == (
        "400 us",
        "12.3 ms",
        "2.5 s",
    )
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert percentile([], 50) == 0.0
