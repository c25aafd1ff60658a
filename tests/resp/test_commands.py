"""
Tests for L{disperse.resp.commands}: the table against Redis's metadata,
lookup, arity errors and key positions.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from disperse.resp.commands import (
    COMMANDS,
    CommandError,
    getKeys,
    keyPositions,
    lookupCommand,
    resolveCommand,
)
from disperse.security.tokens import ADMIN, READ, WRITE

# name: (arity, first key, last key, step), as Redis 7.2's COMMAND INFO
# reports them (src/commands/*.json).
REDIS: dict[str, tuple[int, int, int, int]] = {
    "ping": (-1, 0, 0, 0),
    "echo": (2, 0, 0, 0),
    "hello": (-1, 0, 0, 0),
    "auth": (-2, 0, 0, 0),
    "client": (-2, 0, 0, 0),
    "client|setname": (3, 0, 0, 0),
    "client|getname": (2, 0, 0, 0),
    "client|id": (2, 0, 0, 0),
    "client|setinfo": (4, 0, 0, 0),
    "client|info": (2, 0, 0, 0),
    "select": (2, 0, 0, 0),
    "quit": (-1, 0, 0, 0),
    "reset": (1, 0, 0, 0),
    "command": (-1, 0, 0, 0),
    "command|count": (2, 0, 0, 0),
    "command|info": (-2, 0, 0, 0),
    "command|docs": (-2, 0, 0, 0),
    "command|getkeys": (-3, 0, 0, 0),
    "command|list": (-2, 0, 0, 0),
    "command|help": (2, 0, 0, 0),
    "info": (-1, 0, 0, 0),
    "dbsize": (1, 0, 0, 0),
    "time": (1, 0, 0, 0),
    "flushdb": (-1, 0, 0, 0),
    "flushall": (-1, 0, 0, 0),
    "get": (2, 1, 1, 1),
    "set": (-3, 1, 1, 1),
    "setex": (4, 1, 1, 1),
    "psetex": (4, 1, 1, 1),
    "setnx": (3, 1, 1, 1),
    "getdel": (2, 1, 1, 1),
    "getex": (-2, 1, 1, 1),
    "getset": (3, 1, 1, 1),
    "mget": (-2, 1, -1, 1),
    "mset": (-3, 1, -1, 2),
    "msetnx": (-3, 1, -1, 2),
    "append": (3, 1, 1, 1),
    "strlen": (2, 1, 1, 1),
    "del": (-2, 1, -1, 1),
    "unlink": (-2, 1, -1, 1),
    "exists": (-2, 1, -1, 1),
    "type": (2, 1, 1, 1),
    "touch": (-2, 1, -1, 1),
    "expire": (-3, 1, 1, 1),
    "pexpire": (-3, 1, 1, 1),
    "expireat": (-3, 1, 1, 1),
    "pexpireat": (-3, 1, 1, 1),
    "ttl": (2, 1, 1, 1),
    "pttl": (2, 1, 1, 1),
    "expiretime": (2, 1, 1, 1),
    "pexpiretime": (2, 1, 1, 1),
    "persist": (2, 1, 1, 1),
    "incr": (2, 1, 1, 1),
    "incrby": (3, 1, 1, 1),
    "decr": (2, 1, 1, 1),
    "decrby": (3, 1, 1, 1),
    "incrbyfloat": (3, 1, 1, 1),
    "scan": (-2, 0, 0, 0),
    "keys": (2, 0, 0, 0),
    "randomkey": (1, 0, 0, 0),
    "multi": (1, 0, 0, 0),
    "exec": (1, 0, 0, 0),
    "discard": (1, 0, 0, 0),
    "watch": (-2, 1, -1, 1),
    "unwatch": (1, 0, 0, 0),
    "cluster": (-2, 0, 0, 0),
    "cluster|slots": (2, 0, 0, 0),
    "cluster|shards": (2, 0, 0, 0),
    "cluster|nodes": (2, 0, 0, 0),
    "cluster|info": (2, 0, 0, 0),
    "cluster|myid": (2, 0, 0, 0),
    "cluster|keyslot": (3, 0, 0, 0),
    "readonly": (1, 0, 0, 0),
    "readwrite": (1, 0, 0, 0),
    "disperse": (-2, 0, 0, 0),
    "disperse|consistency": (3, 0, 0, 0),
}


def allCommands() -> dict[str, tuple[int, int, int, int]]:
    found = {}
    for command in COMMANDS.values():
        for each in (command, *command.subcommands.values()):
            found[each.name] = (each.arity, each.firstKey, each.lastKey, each.step)
    return found


class TableTests(SynchronousTestCase):
    def test_matchesRedis(self) -> None:
        """
        Exactly the listed commands, each with Redis's arity and key
        positions.
        """
        self.assertEqual(allCommands(), REDIS)

    def test_flags(self) -> None:
        """
        Reading and writing commands say so, as cluster clients and
        C{READONLY} routing rely on it.
        """
        for command in COMMANDS.values():
            if command.scope == READ and command.firstKey:
                self.assertIn("readonly", command.flags, command.name)
            if command.scope == WRITE:
                self.assertIn("write", command.flags, command.name)
        self.assertEqual(COMMANDS["set"].flags, ("write", "denyoom"))
        self.assertEqual(COMMANDS["get"].flags, ("readonly", "fast"))
        self.assertIn("no_auth", COMMANDS["auth"].flags)
        self.assertIn("no_auth", COMMANDS["hello"].flags)

    def test_hashable(self) -> None:
        """
        Commands can key a dictionary (per-command counters), containers too.
        """
        counts = {command: 0 for command in COMMANDS.values()}
        self.assertEqual(len(counts), len(COMMANDS))

    def test_scopes(self) -> None:
        self.assertEqual(
            {
                name: COMMANDS[name].scope
                for name in ("get", "set", "del", "flushall", "ping", "multi")
            },
            {
                "get": READ,
                "set": WRITE,
                "del": WRITE,
                "flushall": ADMIN,
                "ping": None,
                "multi": None,
            },
        )
        self.assertEqual(COMMANDS["cluster"].subcommands["slots"].scope, READ)


class LookupTests(SynchronousTestCase):
    def test_anyCase(self) -> None:
        get = COMMANDS["get"]
        for name in (b"get", b"GET", b"gEt"):
            self.assertIs(lookupCommand(name), get)
        self.assertIsNone(lookupCommand(b"nope"))
        self.assertIsNone(lookupCommand(b"\xff"))

    def test_resolve(self) -> None:
        self.assertIs(resolveCommand([b"GET", b"k"]), COMMANDS["get"])
        self.assertIs(
            resolveCommand([b"client", b"SetName", b"x"]),
            COMMANDS["client"].subcommands["setname"],
        )

    def assertRefused(self, arguments: list[bytes], message: str) -> None:
        error = self.assertRaises(CommandError, resolveCommand, arguments)
        self.assertEqual(error.message, message)

    def test_arity(self) -> None:
        self.assertRefused([b"GET"], "ERR wrong number of arguments for 'get' command")
        self.assertRefused(
            [b"get", b"a", b"b"], "ERR wrong number of arguments for 'get' command"
        )
        self.assertRefused(
            [b"SET", b"k"], "ERR wrong number of arguments for 'set' command"
        )
        self.assertRefused(
            [b"CLIENT"], "ERR wrong number of arguments for 'client' command"
        )
        self.assertRefused(
            [b"client", b"setname"],
            "ERR wrong number of arguments for 'client|setname' command",
        )
        for name, (arity, *_) in REDIS.items():
            if COMMANDS.get(name, COMMANDS["get"]).isContainer:
                continue  # an argument would be taken for a subcommand
            words = [part.encode() for part in name.split("|")]
            minimum = max(abs(arity), len(words))
            line = words + [b"x"] * (minimum - len(words))
            self.assertEqual(resolveCommand(line).name, name)

    def test_unknown(self) -> None:
        self.assertRefused(
            [b"foo", b"a", b"b"],
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' ",
        )
        self.assertRefused(
            [b"FOO"], "ERR unknown command 'FOO', with args beginning with: "
        )
        self.assertRefused(
            [b"client", b"kill", b"x"],
            "ERR unknown subcommand 'kill'. Try CLIENT HELP.",
        )
        # Arguments are shown up to about 128 bytes.
        long = resolveFails([b"foo", b"x" * 200, b"y"])
        self.assertEqual(
            long,
            "ERR unknown command 'foo', with args beginning with: '" + "x" * 128 + "' ",
        )


def resolveFails(arguments: list[bytes]) -> str:
    try:
        resolveCommand(arguments)
    except CommandError as error:
        return error.message
    raise AssertionError("accepted")


class KeyTests(SynchronousTestCase):
    def test_positions(self) -> None:
        self.assertEqual(list(keyPositions(COMMANDS["get"], 2)), [1])
        self.assertEqual(list(keyPositions(COMMANDS["mset"], 7)), [1, 3, 5])
        self.assertEqual(list(keyPositions(COMMANDS["del"], 4)), [1, 2, 3])
        self.assertEqual(list(keyPositions(COMMANDS["ping"], 1)), [])

    def test_getKeys(self) -> None:
        cases: list[tuple[list[bytes], list[bytes]]] = [
            ([b"GET", b"k"], [b"k"]),
            ([b"set", b"k", b"v", b"EX", b"10"], [b"k"]),
            ([b"MSET", b"a", b"1", b"b", b"2"], [b"a", b"b"]),
            ([b"mget", b"a", b"b", b"c"], [b"a", b"b", b"c"]),
            ([b"expire", b"k", b"10", b"NX"], [b"k"]),
            ([b"WATCH", b"a", b"b"], [b"a", b"b"]),
        ]
        for line, keys in cases:
            self.assertEqual(getKeys(line), keys)

    def test_getKeysRefused(self) -> None:
        cases = {
            (b"nope", b"k"): "ERR Invalid command specified",
            (b"ping",): "ERR The command has no key arguments",
            (b"cluster", b"slots"): "ERR The command has no key arguments",
            (b"get",): "ERR Invalid number of arguments specified for command",
            (b"get", b"a", b"b"): (
                "ERR Invalid number of arguments specified for command"
            ),
        }
        for line, message in cases.items():
            error = self.assertRaises(CommandError, getKeys, list(line))
            self.assertEqual(error.message, message)
