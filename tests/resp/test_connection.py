"""
Tests for L{disperse.resp.connection}: the connection commands, called in
memory as the dispatcher calls them.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.cluster.coordinator import Consistency
from disperse.config import NodeConfig
from disperse.resp.arguments import ArgumentError
from disperse.resp.commands import CommandError
from disperse.resp.connection import AUTH_UNCONFIGURED, HELLO_NOAUTH, WRONGPASS
from disperse.resp.replies import OK, PONG, Reply, Simple, Verbatim
from disperse.security.tokens import parseTokens
from disperse.testing.node import makeNode
from disperse.testing.resp import FakeServer, handlerContext, runCommand

TOKEN = b"t" * 32
TOKENS = parseTokens(f"{TOKEN.decode()} read app:\n")


class ConnectionCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.node = makeNode(NodeConfig(nodeName="a"), self.clock)
        self.ctx = handlerContext(self.node)
        self.session = self.ctx.session

    def call(self, *line: bytes) -> Reply:
        reply = runCommand(self.ctx, *line)
        assert not isinstance(reply, Deferred)
        return reply

    def refused(self, *line: bytes) -> str:
        error = self.assertRaises(
            (CommandError, ArgumentError), runCommand, self.ctx, *line
        )
        assert isinstance(error, CommandError | ArgumentError)
        return error.message

    def withTokens(self) -> None:
        cast(FakeServer, self.ctx.server).tokens = TOKENS
        self.session.authenticated = False


class PingEchoTests(ConnectionCase):
    def test_ping(self) -> None:
        self.assertEqual(self.call(b"PING"), PONG)
        self.assertEqual(self.call(b"ping", b"hi"), b"hi")
        self.assertEqual(
            self.refused(b"PING", b"a", b"b"),
            "ERR wrong number of arguments for 'ping' command",
        )

    def test_echo(self) -> None:
        self.assertEqual(self.call(b"ECHO", b"x y"), b"x y")


class HelloTests(ConnectionCase):
    def test_defaults(self) -> None:
        """
        HELLO without a version answers Redis 7's map in the current
        protocol.
        """
        self.assertEqual(
            self.call(b"HELLO"),
            {
                "server": "redis",
                "version": "7.2.0",
                "proto": 2,
                "id": 1,
                "mode": "cluster",
                "role": "master",
                "modules": [],
            },
        )

    def test_protocol(self) -> None:
        reply = self.call(b"HELLO", b"3")
        assert isinstance(reply, dict)
        self.assertEqual(reply["proto"], 3)
        self.assertEqual(self.session.protocol, 3)
        self.call(b"HELLO", b"2")
        self.assertEqual(self.session.protocol, 2)

    def test_badVersions(self) -> None:
        self.assertEqual(
            self.refused(b"HELLO", b"4"), "NOPROTO unsupported protocol version"
        )
        self.assertEqual(
            self.refused(b"HELLO", b"1"), "NOPROTO unsupported protocol version"
        )
        self.assertEqual(
            self.refused(b"HELLO", b"three"),
            "ERR Protocol version is not an integer or out of range",
        )
        self.assertEqual(self.session.protocol, 2)

    def test_options(self) -> None:
        self.call(b"HELLO", b"3", b"SETNAME", b"web-1")
        self.assertEqual(self.session.name, b"web-1")
        self.assertEqual(
            self.refused(b"HELLO", b"3", b"BOGUS"),
            "ERR Syntax error in HELLO option 'BOGUS'",
        )
        # AUTH needs both its arguments.
        self.assertEqual(
            self.refused(b"HELLO", b"3", b"AUTH", b"default"),
            "ERR Syntax error in HELLO option 'AUTH'",
        )
        self.assertEqual(
            self.refused(b"HELLO", b"3", b"SETNAME", b"a b"),
            "ERR Client names cannot contain spaces, newlines or special characters.",
        )

    def test_authentication(self) -> None:
        """
        With tokens, HELLO needs an authenticated connection, or AUTH in
        itself; nothing changes when it is refused.
        """
        self.withTokens()
        self.assertEqual(self.refused(b"HELLO", b"3"), HELLO_NOAUTH)
        self.assertEqual(
            self.refused(b"HELLO", b"3", b"AUTH", b"default", b"x" * 32), WRONGPASS
        )
        self.assertEqual(self.session.protocol, 2)
        self.call(b"HELLO", b"3", b"AUTH", b"default", TOKEN, b"SETNAME", b"n")
        self.assertTrue(self.session.authenticated)
        assert self.session.grant is not None
        self.assertEqual(self.session.grant.prefix, b"app:")
        self.assertEqual((self.session.protocol, self.session.name), (3, b"n"))


class AuthTests(ConnectionCase):
    def test_withoutTokens(self) -> None:
        """
        Without tokens AUTH <password> is Redis's configuration error; the
        default user with any password is accepted, as on a Redis without
        a password.
        """
        self.assertEqual(self.refused(b"AUTH", b"secret"), AUTH_UNCONFIGURED)
        self.assertEqual(self.call(b"AUTH", b"default", b"anything"), OK)
        self.assertEqual(self.refused(b"AUTH", b"bob", b"anything"), WRONGPASS)

    def test_token(self) -> None:
        self.withTokens()
        self.assertEqual(self.refused(b"AUTH", b"x" * 32), WRONGPASS)
        self.assertFalse(self.session.authenticated)
        self.assertEqual(self.call(b"AUTH", TOKEN), OK)
        self.assertTrue(self.session.authenticated)
        assert self.session.grant is not None
        self.assertTrue(self.session.grant.allows("read"))
        self.assertFalse(self.session.grant.allows("write"))

    def test_user(self) -> None:
        """
        The token may be given as the default user's password, and only
        that user's.
        """
        self.withTokens()
        self.assertEqual(self.refused(b"AUTH", b"admin", TOKEN), WRONGPASS)
        self.assertEqual(self.call(b"AUTH", b"default", TOKEN), OK)

    def test_failedKeepsPrevious(self) -> None:
        self.withTokens()
        self.call(b"AUTH", TOKEN)
        self.refused(b"AUTH", b"x" * 32)
        self.assertTrue(self.session.authenticated)
        self.assertIsNotNone(self.session.grant)

    def test_syntax(self) -> None:
        self.assertEqual(self.refused(b"AUTH", b"a", b"b", b"c"), "ERR syntax error")


class ClientTests(ConnectionCase):
    def test_name(self) -> None:
        self.assertIsNone(self.call(b"CLIENT", b"GETNAME"))
        self.assertEqual(self.call(b"client", b"setname", b"worker"), OK)
        self.assertEqual(self.call(b"CLIENT", b"GETNAME"), b"worker")
        self.assertIn(
            "cannot contain spaces",
            self.refused(b"CLIENT", b"SETNAME", b"a\nb"),
        )
        self.assertEqual(self.call(b"CLIENT", b"SETNAME", b""), OK)
        self.assertIsNone(self.call(b"CLIENT", b"GETNAME"))

    def test_id(self) -> None:
        self.assertEqual(self.call(b"CLIENT", b"ID"), 1)

    def test_setinfo(self) -> None:
        self.assertEqual(self.call(b"CLIENT", b"SETINFO", b"LIB-NAME", b"redis-py"), OK)
        self.assertEqual(self.call(b"CLIENT", b"SETINFO", b"lib-ver", b"5.0.1"), OK)
        self.assertEqual(
            (self.session.libName, self.session.libVersion), (b"redis-py", b"5.0.1")
        )
        self.assertEqual(
            self.refused(b"CLIENT", b"SETINFO", b"color", b"x"),
            "ERR Unrecognized option 'color'",
        )
        self.assertEqual(
            self.refused(b"CLIENT", b"SETINFO", b"lib-name", b"a b"),
            "ERR lib-name cannot contain spaces, newlines or special characters.",
        )

    def test_info(self) -> None:
        """
        CLIENT INFO describes the connection in Redis's format, one line of
        name=value fields.
        """
        self.session.address = "127.0.0.1:50000"
        self.session.localAddress = "127.0.0.1:6380"
        self.session.createdMs = 1000_000 - 65_000
        self.session.lastCommandMs = 1000_000 - 2_000
        self.session.lastCommand = "client|info"
        self.session.readonly = True
        self.call(b"CLIENT", b"SETNAME", b"w")
        reply = self.call(b"CLIENT", b"INFO")
        assert isinstance(reply, Verbatim)
        self.assertTrue(reply.endswith(b"\n"))
        fields = dict(
            field.split("=", 1) for field in reply.decode().rstrip("\n").split(" ")
        )
        self.assertEqual(
            {key: fields[key] for key in ("id", "addr", "laddr", "name", "age")},
            {
                "id": "1",
                "addr": "127.0.0.1:50000",
                "laddr": "127.0.0.1:6380",
                "name": "w",
                "age": "65",
            },
        )
        self.assertEqual(fields["flags"], "r")
        self.assertEqual(
            (fields["db"], fields["multi"], fields["resp"]), ("0", "-1", "2")
        )
        self.assertEqual((fields["cmd"], fields["user"]), ("client|info", "default"))
        self.assertEqual(list(fields)[-2:], ["lib-name", "lib-ver"])


class StateTests(ConnectionCase):
    def test_select(self) -> None:
        self.assertEqual(self.call(b"SELECT", b"0"), OK)
        self.assertEqual(self.refused(b"SELECT", b"1"), "ERR DB index is out of range")
        self.assertEqual(
            self.refused(b"SELECT", b"x"), "ERR value is not an integer or out of range"
        )

    def test_quit(self) -> None:
        self.assertEqual(self.call(b"QUIT"), OK)
        self.assertTrue(self.session.closing)

    def test_reset(self) -> None:
        """
        RESET brings the connection back to how it started: name, protocol,
        level, transaction, and authentication when the node has tokens.
        """
        self.withTokens()
        self.call(b"HELLO", b"3", b"AUTH", b"default", TOKEN, b"SETNAME", b"n")
        self.call(b"DISPERSE", b"CONSISTENCY", b"one")
        self.call(b"READONLY")
        self.session.queued = [[b"GET", b"a"]]
        self.assertEqual(self.call(b"RESET"), Simple("RESET"))
        s = self.session
        self.assertEqual(
            (s.name, s.protocol, s.level, s.queued, s.readonly),
            (b"", 2, None, None, False),
        )
        self.assertFalse(s.authenticated)
        self.assertIsNone(s.grant)

    def test_resetWithoutTokens(self) -> None:
        self.call(b"RESET")
        self.assertTrue(self.session.authenticated)

    def test_readonly(self) -> None:
        self.assertEqual(self.call(b"READONLY"), OK)
        self.assertTrue(self.session.readonly)
        self.assertEqual(self.call(b"READWRITE"), OK)
        self.assertFalse(self.session.readonly)


class ConsistencyTests(ConnectionCase):
    def test_level(self) -> None:
        """
        DISPERSE CONSISTENCY sets the level of the connection's reads and
        writes; default goes back to the node's.
        """
        self.assertEqual(self.ctx.readLevel, Consistency.quorum)
        self.assertEqual(self.call(b"DISPERSE", b"CONSISTENCY", b"ONE"), OK)
        self.assertEqual(self.ctx.readLevel, Consistency.one)
        self.assertEqual(self.ctx.writeLevel, Consistency.one)
        self.call(b"disperse", b"consistency", b"default")
        self.assertIsNone(self.session.level)

    def test_badLevel(self) -> None:
        self.assertEqual(
            self.refused(b"DISPERSE", b"CONSISTENCY", b"most"),
            "ERR consistency level must be one, quorum, all or default (not 'most')",
        )
        self.assertEqual(
            self.refused(b"DISPERSE", b"CONSISTENCY"),
            "ERR wrong number of arguments for 'disperse|consistency' command",
        )
