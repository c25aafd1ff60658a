"""
C{redis-cli} (Debian's C{redis-tools}, unmodified) against a real node:
every command family the Redis front end serves, typed into one
connection as a person would pipe them in, each reply compared with what
Redis itself prints; and a pipeline of 10,000 commands (C{--pipe}).

C{redis-cli} reads the commands of a session from its standard input and
runs them one after the other on one connection. Between two steps the
session also sends C{ECHO "@<n>"}, whose reply marks where a step's
replies end, so that each step's output can be told apart. Output is
C{--no-raw}: typed as in a terminal (C{(integer) 1}, C{"v"}, C{(nil)},
C{(error) ...}).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from disperse.testing.cluster import LOOPBACK
from tests.redisclients.nodes import RedisNode, emptied, redisNode, waitUntil

pytestmark = pytest.mark.redisclients

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

# A step: the command lines typed (several for a transaction, whose
# commands cannot be told apart by markers), and the output expected: the
# exact text, or a pattern the whole of it must match.
Step = tuple[str, "str | re.Pattern[str]"]


def runCli(
    port: int, *args: str, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """
    One C{redis-cli} run against C{port}.
    """
    return subprocess.run(
        [REDIS_CLI, "-h", LOOPBACK, "-p", str(port), *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def cli(port: int, *args: str, stdin: bytes | None = None, timeout: float = 60) -> str:
    """
    One C{redis-cli} run against C{port}; its standard output, which must
    be all it printed.
    """
    done = runCli(port, *args, stdin=stdin, timeout=timeout)
    assert (done.returncode, done.stderr) == (0, b""), done
    return done.stdout.decode()


def converse(
    port: int, steps: Sequence[Step], *options: str, marked: bool = True
) -> None:
    """
    Type every step's commands into one C{redis-cli} session; each step's
    output must be as expected.

    @param marked: whether to mark where each step's output ends. Without
        markers (for a connection that may not run ECHO, not being
        authenticated), each step must be one command answered in one line.
    """
    script = []
    for index, (commands, _) in enumerate(steps):
        if marked:
            script.append(f'echo "@{index}"')
        script.append(commands)
    output = cli(port, "--no-raw", *options, stdin="\n".join(script).encode() + b"\n")
    if marked:
        # Text before the first marker, then each marker's number and the
        # text after it.
        parts = re.split(r'^"@(\d+)"\n', output, flags=re.MULTILINE)
        assert parts[0] == "", output
        got = {
            int(parts[i]): parts[i + 1].rstrip("\n")
            for i in range(1, len(parts) - 1, 2)
        }
    else:
        got = dict(enumerate(output.splitlines()))
    wrong = []
    for index, (commands, expected) in enumerate(steps):
        text = got.get(index, "<no output: the session ended before this step>")
        if isinstance(expected, str):
            ok = text == expected
            shown = expected
        else:
            ok = expected.fullmatch(text) is not None
            shown = f"/{expected.pattern}/"
        if not ok:
            wrong.append(f"> {commands}\n  expected: {shown!r}\n  got:      {text!r}")
    assert not wrong, "\n".join(wrong)


def pattern(text: str) -> re.Pattern[str]:
    return re.compile(text, re.DOTALL)


ERROR = pattern(r"\(error\) ERR .+")


def test_connection(solo: RedisNode) -> None:
    """
    PING, ECHO, HELLO (to RESP3 and back), CLIENT's subcommands, SELECT,
    AUTH on a node without tokens, RESET.
    """
    converse(
        solo.redisPort,
        [
            ("ping", "PONG"),
            ("ping hello", '"hello"'),
            ('echo "two words"', '"two words"'),
            ('echo ""', '""'),
            ("echo a b", "(error) ERR wrong number of arguments for 'echo' command"),
            (
                "hello 3",
                pattern(
                    r'1# "server" => "[^"]+"\n'
                    r'2# "version" => "[^"]+"\n'
                    r'3# "proto" => \(integer\) 3\n'
                    r'4# "id" => \(integer\) \d+\n'
                    r'5# "mode" => "(standalone|cluster)"\n'
                    r'6# "role" => "master"\n'
                    r'7# "modules" => .*'
                ),
            ),
            # RESP3 types: a map, then a double.
            ("ping", "PONG"),
            (
                "hello 2",
                pattern(
                    r' 1\) "server"\n 2\) "[^"]+"\n.*"proto"\n 6\) \(integer\) 2\n.*'
                ),
            ),
            ("hello 4", "(error) NOPROTO unsupported protocol version"),
            ("client setname cli-test", "OK"),
            ("client getname", '"cli-test"'),
            (
                "client setname two words",
                "(error) ERR wrong number of arguments for 'client|setname' command",
            ),
            (
                'client setname "two words"',
                "(error) ERR Client names cannot contain spaces, newlines or special"
                " characters.",
            ),
            ("client id", pattern(r"\(integer\) [1-9]\d*")),
            ("client setinfo lib-name cli-test-lib", "OK"),
            ("client setinfo lib-ver 1.2.3", "OK"),
            (
                "client info",
                pattern(
                    r"id=\d+ addr=127\.0\.0\.1:\d+ .*name=cli-test .*"
                    r"lib-name=cli-test-lib lib-ver=1\.2\.3.*"
                ),
            ),
            (
                "client nosuch",
                "(error) ERR unknown subcommand 'nosuch'. Try CLIENT HELP.",
            ),
            ("select 0", "OK"),
            ("select 1", ERROR),
            ("select x", ERROR),
            ("auth secret", ERROR),
            ("reset", "RESET"),
            ("client getname", "(nil)"),
            ("ping", "PONG"),
        ],
    )


def test_quitAnswersOkAndCloses(solo: RedisNode) -> None:
    """
    C{QUIT} given as arguments is sent (typed into a session, C{redis-cli}
    handles it itself): the node answers OK.
    """
    assert cli(solo.redisPort, "--no-raw", "quit") == "OK\n"


def test_auth(tmp_path: Path) -> None:
    """
    With C{--auth-tokens}: C{-NOAUTH} before C{AUTH}, C{WRONGPASS} for an
    unknown token, then the token's scopes and key prefix; C{redis-cli -a}
    and C{--user default --pass} authenticate too.
    """
    admin, reader, prefixed = "a" * 32, "r" * 32, "p" * 32
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{admin} admin\n{reader} read\n{prefixed} read,write app:\n")
    with redisNode("auth", "--auth-tokens", str(tokens)) as node:
        port = node.redisPort
        converse(
            port,
            [
                ("ping", "(error) NOAUTH Authentication required."),
                ("echo x", "(error) NOAUTH Authentication required."),
                ("get k", "(error) NOAUTH Authentication required."),
                ("auth " + "x" * 32, pattern(r"\(error\) WRONGPASS .+")),
                ("auth " + reader, "OK"),
                ("get k", "(nil)"),
                ("set k v", pattern(r"\(error\) NOPERM .+")),
                ("auth default " + prefixed, "OK"),
                ("set app:k v", "OK"),
                ("get app:k", '"v"'),
                ("set other v", pattern(r"\(error\) NOPERM .+")),
                ("flushall", pattern(r"\(error\) NOPERM .+")),
                ("reset", "RESET"),
                ("get app:k", "(error) NOAUTH Authentication required."),
                ("hello 3", pattern(r"\(error\) NOAUTH HELLO must be called .+")),
                ("auth nobody " + admin, pattern(r"\(error\) WRONGPASS .+")),
                ("auth default " + admin, "OK"),
                ("flushall", "OK"),
                ("get app:k", "(nil)"),
            ],
            marked=False,
        )
        assert cli(port, "--no-raw", "set", "app:k", "v").startswith("(error) NOAUTH")
        hello = cli(port, "--no-raw", "hello", "3", "auth", "default", admin, "set")
        assert hello.startswith("(error) ERR Syntax error in HELLO option 'set'")
        hello = cli(port, "--no-raw", "hello", "3", "auth", "default", admin)
        assert re.match(r'1# "server" => "[^"]+"\n', hello), hello
        quiet = ("--no-raw", "--no-auth-warning")
        assert cli(port, *quiet, "-a", prefixed, "set", "app:k", "v") == "OK\n"
        assert cli(port, *quiet, "-a", admin, "get", "app:k") == '"v"\n'
        assert (
            cli(port, *quiet, "--user", "default", "--pass", reader, "get", "app:k")
            == '"v"\n'
        )
        refused = runCli(port, *quiet, "-a", "y" * 32, "get", "app:k")
        assert refused.stderr.startswith(b"AUTH failed: WRONGPASS"), refused
        assert refused.stdout.startswith(b"(error) NOAUTH"), refused


def test_server(solo: RedisNode) -> None:
    """
    COMMAND and its subcommands, INFO, DBSIZE, TIME, FLUSHDB, FLUSHALL.
    """
    emptied(solo.client())
    converse(
        solo.redisPort,
        [
            ("flushall", "OK"),
            ("dbsize", "(integer) 0"),
            ("mset srv:a 1 srv:b 2 srv:c 3", "OK"),
            ("dbsize", "(integer) 3"),
            ("command count", pattern(r"\(integer\) [1-9]\d*")),
            (
                "command info get",
                pattern(
                    r'1\)  1\) "get"\n    2\) \(integer\) 2\n    3\) 1\) readonly\n.*'
                ),
            ),
            (
                "command info mset",
                pattern(
                    r'1\)  1\) "mset"\n    2\) \(integer\) -3\n.*'
                    r"    4\) \(integer\) 1\n    5\) \(integer\) -1\n"
                    r"    6\) \(integer\) 2\n.*"
                ),
            ),
            ("command info nosuch", "1) (nil)"),
            ("command docs get", pattern(r'1\) "get"\n2\) .*summary.*')),
            ("command getkeys set k v", '1) "k"'),
            ("command getkeys mset a 1 b 2", '1) "a"\n2) "b"'),
            ("command getkeys del x y z", '1) "x"\n2) "y"\n3) "z"'),
            ("command getkeys ping x", "(error) ERR The command has no key arguments"),
            ("command getkeys nosuch k", "(error) ERR Invalid command specified"),
            ("time", pattern(r'1\) "\d{10}"\n2\) "\d{1,6}"')),
            ("flushdb", "OK"),
            ("dbsize", "(integer) 0"),
            ("get srv:a", "(nil)"),
            ("set srv:d 4", "OK"),
            ("flushall", "OK"),
            ("exists srv:d", "(integer) 0"),
        ],
    )
    seconds = int(cli(solo.redisPort, "time").split()[0])
    assert abs(seconds - time.time()) < 60


def test_info(solo: RedisNode) -> None:
    """
    INFO's sections, each a C{# Title} and C{field:value} lines
    (C{redis-cli} prints INFO's text as it is).
    """
    cli(solo.redisPort, "set", "info:k", "v")
    everything = cli(solo.redisPort, "info")
    for section in ("Server", "Clients", "Memory", "Stats", "Replication", "Keyspace"):
        assert f"# {section}\r\n" in everything
    assert re.search(r"^redis_version:\S+\r$", everything, re.MULTILINE)
    assert re.search(r"^connected_clients:[1-9]\d*\r$", everything, re.MULTILINE)
    assert re.search(r"^db0:keys=[1-9]\d*,expires=\d+", everything, re.MULTILINE)
    keyspace = cli(solo.redisPort, "info", "keyspace")
    assert keyspace.startswith("# Keyspace\r\n")
    assert "# Server" not in keyspace
    cluster = cli(solo.redisPort, "info", "cluster")
    assert re.search(r"^cluster_enabled:[01]\r$", cluster, re.MULTILINE)


def test_strings(solo: RedisNode) -> None:
    """
    GET, SET with every option, SETEX, PSETEX, SETNX, GETDEL, GETEX,
    GETSET, MGET, MSET, MSETNX, APPEND, STRLEN, DEL, UNLINK, EXISTS, TYPE,
    TOUCH, and their errors.
    """
    later = int(time.time()) + 1000
    converse(
        solo.redisPort,
        [
            (
                "del s:a s:b s:c s:d s:e s:n s:gs s:ap s:m1 s:m2 s:m3 s:m4 s:m5",
                pattern(r"\(integer\) \d+"),
            ),
            ("get s:a", "(nil)"),
            ("set s:a hello", "OK"),
            ("get s:a", '"hello"'),
            ('set s:b "with \\"quotes\\" and \\x00 zero"', "OK"),
            ("get s:b", '"with \\"quotes\\" and \\x00 zero"'),
            ("strlen s:b", "(integer) 24"),
            ("set s:a v nx", "(nil)"),
            ("set s:a v2 xx", "OK"),
            ("set s:c v xx", "(nil)"),
            ("set s:c v nx", "OK"),
            ("set s:a v3 get", '"v2"'),
            ("set s:n v get", "(nil)"),
            ("set s:a v4 xx get", '"v3"'),
            ("set s:a v nx xx", "(error) ERR syntax error"),
            ("set s:a v ex 10 px 100", "(error) ERR syntax error"),
            ("set s:a v ex 0", "(error) ERR invalid expire time in 'set' command"),
            ("set s:a v ex -5", "(error) ERR invalid expire time in 'set' command"),
            ("set s:a v ex x", "(error) ERR value is not an integer or out of range"),
            ("set s:a v bogus", "(error) ERR syntax error"),
            ("set s:a v ex 100", "OK"),
            ("ttl s:a", pattern(r"\(integer\) (99|100)")),
            ("set s:a v px 100000", "OK"),
            ("pttl s:a", pattern(r"\(integer\) \d{5,6}")),
            (f"set s:a v exat {later}", "OK"),
            ("ttl s:a", pattern(r"\(integer\) (99[0-9]|1000)")),
            (f"set s:a v pxat {later * 1000}", "OK"),
            ("expiretime s:a", f"(integer) {later}"),
            ("set s:a w keepttl", "OK"),
            ("expiretime s:a", f"(integer) {later}"),
            ("set s:a w", "OK"),
            ("ttl s:a", "(integer) -1"),
            ("set s:a v keepttl ex 5", "(error) ERR syntax error"),
            ("setex s:d 100 v", "OK"),
            ("ttl s:d", pattern(r"\(integer\) (99|100)")),
            ("setex s:d 0 v", "(error) ERR invalid expire time in 'setex' command"),
            ("setex s:d x v", "(error) ERR value is not an integer or out of range"),
            ("psetex s:d 100000 v", "OK"),
            ("pttl s:d", pattern(r"\(integer\) \d{5,6}")),
            ("psetex s:d -1 v", "(error) ERR invalid expire time in 'psetex' command"),
            ("setnx s:d x", "(integer) 0"),
            ("setnx s:e x", "(integer) 1"),
            ("getdel s:e", '"x"'),
            ("getdel s:e", "(nil)"),
            ("exists s:e", "(integer) 0"),
            ("getex s:a ex 100", '"w"'),
            ("ttl s:a", pattern(r"\(integer\) (99|100)")),
            ("getex s:a persist", '"w"'),
            ("ttl s:a", "(integer) -1"),
            ("getex s:a px 100000", '"w"'),
            ("getex s:a", '"w"'),
            ("pttl s:a", pattern(r"\(integer\) \d{5,6}")),
            (f"getex s:a exat {later}", '"w"'),
            (f"getex s:a pxat {later * 1000}", '"w"'),
            ("expiretime s:a", f"(integer) {later}"),
            ("getex s:a ex 10 px 10", "(error) ERR syntax error"),
            ("getex s:nosuch ex 10", "(nil)"),
            ("getset s:a new", '"w"'),
            ("ttl s:a", "(integer) -1"),
            ("getset s:gs new", "(nil)"),
            ("mset s:m1 1 s:m2 2 s:m3 3", "OK"),
            (
                "mset s:m1 1 s:m2",
                "(error) ERR wrong number of arguments for 'mset' command",
            ),
            ("mget s:m1 s:nope s:m3", '1) "1"\n2) (nil)\n3) "3"'),
            ("msetnx s:m3 x s:m4 y", "(integer) 0"),
            ("exists s:m4", "(integer) 0"),
            ("msetnx s:m4 x s:m5 y", "(integer) 1"),
            ("mget s:m4 s:m5", '1) "x"\n2) "y"'),
            ("append s:ap hello", "(integer) 5"),
            ('append s:ap " world"', "(integer) 11"),
            ("get s:ap", '"hello world"'),
            ("strlen s:ap", "(integer) 11"),
            ("strlen s:nosuch", "(integer) 0"),
            ("exists s:m1 s:m2 s:nosuch s:m1", "(integer) 3"),
            ("type s:m1", "string"),
            ("type s:nosuch", "none"),
            ("touch s:m1 s:m2 s:nosuch", "(integer) 2"),
            ("del s:m1 s:m2 s:nosuch", "(integer) 2"),
            ("unlink s:m3 s:m4 s:nosuch", "(integer) 2"),
            (
                "mget s:m1 s:m2 s:m3 s:m4 s:m5",
                '1) (nil)\n2) (nil)\n3) (nil)\n4) (nil)\n5) "y"',
            ),
            ("get", "(error) ERR wrong number of arguments for 'get' command"),
            ("set k", "(error) ERR wrong number of arguments for 'set' command"),
        ],
    )


def test_expiry(solo: RedisNode) -> None:
    """
    EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT with NX, XX, GT and LT; TTL,
    PTTL, EXPIRETIME, PEXPIRETIME, PERSIST; a key whose time ran out is
    gone.
    """
    at = int(time.time()) + 5000
    converse(
        solo.redisPort,
        [
            ("del e:a e:b", pattern(r"\(integer\) \d")),
            ("set e:a v", "OK"),
            ("ttl e:a", "(integer) -1"),
            ("pttl e:a", "(integer) -1"),
            ("expiretime e:a", "(integer) -1"),
            ("pexpiretime e:a", "(integer) -1"),
            ("ttl e:nosuch", "(integer) -2"),
            ("pttl e:nosuch", "(integer) -2"),
            ("expiretime e:nosuch", "(integer) -2"),
            ("pexpiretime e:nosuch", "(integer) -2"),
            ("expire e:nosuch 100", "(integer) 0"),
            ("expire e:a 100 xx", "(integer) 0"),
            ("expire e:a 100 gt", "(integer) 0"),
            ("expire e:a 100 lt", "(integer) 1"),
            ("ttl e:a", pattern(r"\(integer\) (99|100)")),
            ("expire e:a 200 nx", "(integer) 0"),
            ("expire e:a 50 gt", "(integer) 0"),
            ("expire e:a 200 gt", "(integer) 1"),
            ("expire e:a 300 lt", "(integer) 0"),
            ("expire e:a 150 lt", "(integer) 1"),
            ("expire e:a 160 xx", "(integer) 1"),
            ("ttl e:a", pattern(r"\(integer\) (159|160)")),
            ("persist e:a", "(integer) 1"),
            ("persist e:a", "(integer) 0"),
            ("persist e:nosuch", "(integer) 0"),
            ("expire e:a 100 nx", "(integer) 1"),
            ("pexpire e:a 100000", "(integer) 1"),
            ("pttl e:a", pattern(r"\(integer\) \d{5,6}")),
            (f"expireat e:a {at}", "(integer) 1"),
            ("expiretime e:a", f"(integer) {at}"),
            ("pexpiretime e:a", f"(integer) {at * 1000}"),
            (f"pexpireat e:a {at * 1000 + 500}", "(integer) 1"),
            ("pexpiretime e:a", f"(integer) {at * 1000 + 500}"),
            (f"expireat e:a {at - 10} gt", "(integer) 0"),
            (f"pexpireat e:a {at * 1000 - 10} lt", "(integer) 1"),
            (
                "expire e:a 10 nx gt",
                "(error) ERR NX and XX, GT or LT options at the same time are not"
                " compatible",
            ),
            (
                "expire e:a 10 gt lt",
                "(error) ERR GT and LT options at the same time are not compatible",
            ),
            ("expire e:a 10 bogus", "(error) ERR Unsupported option bogus"),
            ("expire e:a x", "(error) ERR value is not an integer or out of range"),
            # A time in the past deletes the key.
            ("set e:b v", "OK"),
            ("expire e:b -1", "(integer) 1"),
            ("exists e:b", "(integer) 0"),
            ("set e:b v", "OK"),
            ("expireat e:b 1000", "(integer) 1"),
            ("get e:b", "(nil)"),
            ("set e:b v px 1", "OK"),
        ],
    )
    # The last key expires a millisecond after it was written.
    waitUntil(
        lambda: cli(solo.redisPort, "--no-raw", "exists", "e:b") == "(integer) 0\n",
        "e:b to expire",
        5,
    )
    assert cli(solo.redisPort, "--no-raw", "get", "e:b") == "(nil)\n"


def test_counters(solo: RedisNode) -> None:
    """
    INCR, INCRBY, DECR, DECRBY, INCRBYFLOAT, on new keys, counters and
    values set with SET; their errors.
    """
    converse(
        solo.redisPort,
        [
            ("del c:a c:b c:f c:s", pattern(r"\(integer\) \d")),
            ("incr c:a", "(integer) 1"),
            ("incr c:a", "(integer) 2"),
            ("incrby c:a 10", "(integer) 12"),
            ("decr c:a", "(integer) 11"),
            ("decrby c:a 20", "(integer) -9"),
            ("incrby c:a -1", "(integer) -10"),
            ("get c:a", '"-10"'),
            ("type c:a", "string"),
            ("strlen c:a", "(integer) 3"),
            ("decr c:b", "(integer) -1"),
            ("set c:a 100", "OK"),
            ("incr c:a", "(integer) 101"),
            ("get c:a", '"101"'),
            ("set c:s hello", "OK"),
            ("incr c:s", "(error) ERR value is not an integer or out of range"),
            ("incrby c:a x", "(error) ERR value is not an integer or out of range"),
            ("incrby c:a 1.5", "(error) ERR value is not an integer or out of range"),
            ("set c:a 9223372036854775807", "OK"),
            ("incr c:a", "(error) ERR increment or decrement would overflow"),
            ("incrbyfloat c:f 1.5", '"1.5"'),
            ("incrbyfloat c:f 2", '"3.5"'),
            ("incrbyfloat c:f -0.25", '"3.25"'),
            ("get c:f", '"3.25"'),
            ("incrbyfloat c:f x", "(error) ERR value is not a valid float"),
            ("incrbyfloat c:s 1", "(error) ERR value is not a valid float"),
            ("set c:f 10", "OK"),
            ("incrbyfloat c:f 0.1", '"10.1"'),
            ("del c:a", "(integer) 1"),
            ("incr c:a", "(integer) 1"),
            ("expire c:a 100", "(integer) 1"),
            ("incr c:a", "(integer) 2"),
            ("ttl c:a", pattern(r"\(integer\) (99|100)")),
        ],
    )


def cliScan(port: int, *options: str) -> list[str]:
    """
    Every key C{SCAN} returns with C{options}, following its cursor from
    0 back to 0 (at most 10,000 calls), one C{redis-cli} per call.
    """
    keys: list[str] = []
    cursor = "0"
    for _ in range(10_000):
        lines = cli(port, "scan", cursor, *options).splitlines()
        # An empty page prints an empty line.
        cursor, found = lines[0], [line for line in lines[1:] if line]
        keys.extend(found)
        if cursor == "0":
            return keys
    raise AssertionError("SCAN's cursor did not come back to 0")


def test_keys(solo: RedisNode) -> None:
    """
    SCAN with MATCH, COUNT and TYPE (by hand and as C{redis-cli --scan}),
    KEYS, RANDOMKEY.
    """
    port = solo.redisPort
    emptied(solo.client())
    assert cli(port, "--no-raw", "randomkey") == "(nil)\n"
    assert cli(port, "--no-raw", "keys", "*") == "(empty array)\n"
    names = [f"k:{i}" for i in range(60)] + ["other:1", "other:2"]
    cli(port, "mset", *[word for name in names for word in (name, "v")])
    cli(port, "incr", "k:counter")
    assert cli(port, "--no-raw", "dbsize") == "(integer) 63\n"

    everything = cliScan(port)
    assert sorted(everything) == sorted([*names, "k:counter"])
    assert sorted(cliScan(port, "match", "other:*")) == ["other:1", "other:2"]
    assert sorted(cliScan(port, "match", "k:*", "count", "3")) == sorted(
        [*names[:60], "k:counter"]
    )
    assert sorted(cliScan(port, "type", "string")) == sorted(everything)
    assert cliScan(port, "type", "hash") == []
    assert cliScan(port, "match", "nothing*") == []
    scanned = cli(port, "--scan", "--pattern", "k:1*").split()
    assert sorted(scanned) == sorted(n for n in names if n.startswith("k:1"))
    assert cli(port, "--no-raw", "scan", "x") == "(error) ERR invalid cursor\n"
    assert (
        cli(port, "--no-raw", "scan", "0", "count", "0") == "(error) ERR syntax error\n"
    )

    assert sorted(cli(port, "keys", "other:*").split()) == ["other:1", "other:2"]
    assert sorted(cli(port, "keys", "k:?").split()) == [f"k:{i}" for i in range(10)]
    assert sorted(cli(port, "keys", "*").split()) == sorted(everything)
    assert cli(port, "randomkey").strip() in everything


def test_transactions(solo: RedisNode) -> None:
    """
    MULTI/EXEC run the queued commands in order and answer all their
    replies; DISCARD drops them; a command refused while queueing aborts
    EXEC; a command failing while running does not stop the others; WATCH
    is refused with a clear error, and the connection goes on.
    """
    converse(
        solo.redisPort,
        [
            ("del t:a t:b", pattern(r"\(integer\) \d")),
            (
                "multi\nset t:a 1\nincr t:a\nincrby t:b 5\nmget t:a t:b\nexec",
                "OK\nQUEUED\nQUEUED\nQUEUED\nQUEUED\n"
                '1) OK\n2) (integer) 2\n3) (integer) 5\n4) 1) "2"\n   2) "5"',
            ),
            ("multi\nset t:a 100\ndiscard", "OK\nQUEUED\nOK"),
            ("get t:a", '"2"'),
            (
                "multi\nset t:a 3\nget\nexec",
                "OK\nQUEUED\n(error) ERR wrong number of arguments for 'get' command\n"
                "(error) EXECABORT Transaction discarded because of previous errors.",
            ),
            ("get t:a", '"2"'),
            (
                "multi\nset t:s text\nincr t:s\nincr t:a\nexec",
                "OK\nQUEUED\nQUEUED\nQUEUED\n1) OK\n"
                "2) (error) ERR value is not an integer or out of range\n"
                "3) (integer) 3",
            ),
            (
                "multi\nmulti\ndiscard",
                "OK\n(error) ERR MULTI calls can not be nested\nOK",
            ),
            ("multi\nexec", "OK\n(empty array)"),
            ("exec", "(error) ERR EXEC without MULTI"),
            ("discard", "(error) ERR DISCARD without MULTI"),
            ("watch t:a", pattern(r"(?i)\(error\) ERR .*\bwatch\b.*not supported.*")),
            ("get t:a", '"3"'),
            (
                "multi\nwatch t:a\ndiscard",
                pattern(r"(?i)OK\n\(error\) ERR .*\bwatch\b.*\nOK"),
            ),
            ("ping", "PONG"),
        ],
    )


def test_unknownCommandKeepsTheConnection(solo: RedisNode) -> None:
    """
    An unknown command, an unknown subcommand and a wrong arity are each
    answered with Redis's error; the same connection goes on.
    """
    converse(
        solo.redisPort,
        [
            ("client setname keeper", "OK"),
            (
                "frobnicate a b",
                "(error) ERR unknown command 'frobnicate', with args beginning with:"
                " 'a' 'b' ",
            ),
            (
                "frobnicate",
                "(error) ERR unknown command 'frobnicate', with args beginning with: ",
            ),
            (
                "hset h f v",
                "(error) ERR unknown command 'hset', with args beginning with:"
                " 'h' 'f' 'v' ",
            ),
            (
                "cluster nosuch",
                "(error) ERR unknown subcommand 'nosuch'. Try CLUSTER HELP.",
            ),
            ("incr", "(error) ERR wrong number of arguments for 'incr' command"),
            ("client getname", '"keeper"'),
        ],
    )


def test_resp3(solo: RedisNode) -> None:
    """
    A session started in RESP3 (C{redis-cli -3}): nulls, maps from
    HELLO, and the same strings and integers.
    """
    converse(
        solo.redisPort,
        [
            ("set r3:a v", "OK"),
            ("get r3:a", '"v"'),
            ("get r3:nosuch", "(nil)"),
            ("incr r3:c", pattern(r"\(integer\) \d+")),
            ("mget r3:a r3:nosuch", '1) "v"\n2) (nil)'),
            ("hello", pattern(r'1# "server" => .*3# "proto" => \(integer\) 3\n.*')),
        ],
        "-3",
    )


def test_pipeOfTenThousandCommands(solo: RedisNode) -> None:
    """
    C{redis-cli --pipe}: 10,000 commands in Redis's protocol in one
    stream (5,000 SETs of distinct keys interleaved with 5,000 INCRs of
    one counter), every reply received, none an error, all applied.
    """
    port = solo.redisPort
    cli(port, "del", "pipe:counter")
    commands: list[tuple[bytes, ...]] = []
    for i in range(5000):
        commands.append((b"SET", b"pipe:%d" % i, b"value-%d" % i))
        commands.append((b"INCR", b"pipe:counter"))
    stream = b"".join(
        b"*%d\r\n" % len(words)
        + b"".join(b"$%d\r\n%s\r\n" % (len(word), word) for word in words)
        for words in commands
    )
    started = time.monotonic()
    output = cli(port, "--pipe", stdin=stream, timeout=120)
    took = time.monotonic() - started
    assert "errors: 0, replies: 10000" in output, output
    assert cli(port, "get", "pipe:counter") == "5000\n"
    assert cli(port, "get", "pipe:4321") == "value-4321\n"
    keys = cli(port, "--scan", "--pattern", "pipe:*").split()
    assert len(keys) == 5001
    assert len(set(keys)) == 5001
    # Not a benchmark, but a pipeline must not take seconds per thousand.
    assert took < 30, took


def test_pipedSessionOfTenThousandCommands(solo: RedisNode) -> None:
    """
    10,000 commands typed into one session through a pipe (inline
    commands as a person would write them), each answered in order.
    """
    port = solo.redisPort
    cli(port, "del", "typed:counter")
    lines = []
    for i in range(10_000):
        lines.append("incr typed:counter" if i % 2 else f"set typed:{i} {i}")
    output = cli(port, stdin="\n".join(lines).encode() + b"\n", timeout=120)
    replies = output.splitlines()
    assert len(replies) == 10_000
    assert replies[0::2] == ["OK"] * 5000
    assert replies[1::2] == [str(n) for n in range(1, 5001)]
