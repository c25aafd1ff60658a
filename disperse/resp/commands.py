"""
The commands the Redis front end answers: the table, its lookup, arity
checks and key positions.

Arity, flags and key positions are those Redis 7.2 reports in
C{COMMAND INFO}, because cluster clients read them at start-up to route
each command to the owner of its keys. Arity counts the command's name (and
a subcommand's, for C{CLIENT SETNAME}); a negative arity is a minimum.
Key positions are C{firstKey}, C{lastKey} (negative counts from the end)
and C{step}, all zero for a command without keys.

C{scope} is the token scope Disperse requires, as for the HTTP API
(L{disperse.security.tokens}); L{None} means any authenticated connection
may run the command.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from disperse.security.tokens import ADMIN, READ, WRITE


@dataclass(frozen=True)
class Command:
    """
    One command, or one subcommand of a container such as C{CLIENT}.

    @ivar name: lower case; a subcommand's is C{container|sub}, as Redis
        names it in errors and C{COMMAND INFO}.
    @ivar subcommands: a container's subcommands by lower-case name.
    """

    name: str
    arity: int
    flags: tuple[str, ...]
    firstKey: int = 0
    lastKey: int = 0
    step: int = 0
    scope: str | None = None
    # Left out of equality and hashing: a mapping cannot be hashed, and a
    # command is known by its name and metadata.
    subcommands: Mapping[str, Command] = field(
        default_factory=dict, compare=False, hash=False
    )

    @property
    def isContainer(self) -> bool:
        return bool(self.subcommands)

    def arityAccepts(self, argumentCount: int) -> bool:
        """
        Whether a command line of C{argumentCount} words (name included)
        satisfies the arity.
        """
        if self.arity >= 0:
            return argumentCount == self.arity
        return argumentCount >= -self.arity


class CommandError(Exception):
    """
    A command line refused before it runs; C{message} is the error reply's
    text, in Redis's words.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Flag sets that recur, as Redis reports them.
_CONNECTION: Final = ("noscript", "loading", "stale")
_NO_AUTH: Final = ("noscript", "loading", "stale", "fast", "no_auth", "allow_busy")
_READ_FAST: Final = ("readonly", "fast")
_WRITE_FAST: Final = ("write", "fast")
_WRITE_GROW: Final = ("write", "denyoom")
_WRITE_GROW_FAST: Final = ("write", "denyoom", "fast")
_TOPOLOGY: Final = ("loading", "stale")
_TRANSACTION: Final = ("noscript", "loading", "stale", "fast", "allow_busy")


def _one(name: str, arity: int, flags: tuple[str, ...], scope: str | None) -> Command:
    # A command whose only key is its first argument.
    return Command(name, arity, flags, 1, 1, 1, scope)


def _many(
    name: str, arity: int, flags: tuple[str, ...], scope: str | None, step: int = 1
) -> Command:
    # A command whose every argument (or every step-th) is a key.
    return Command(name, arity, flags, 1, -1, step, scope)


def _container(
    name: str, arity: int, flags: tuple[str, ...], subcommands: Iterable[Command]
) -> Command:
    return Command(
        name,
        arity,
        flags,
        subcommands={sub.name.partition("|")[2]: sub for sub in subcommands},
    )


_TABLE: Final[tuple[Command, ...]] = (
    # Connection.
    Command("ping", -1, ("fast",)),
    Command("echo", 2, ("loading", "stale", "fast")),
    Command("hello", -1, _NO_AUTH),
    Command("auth", -2, _NO_AUTH),
    _container(
        "client",
        -2,
        (),
        (
            Command("client|setname", 3, _CONNECTION),
            Command("client|getname", 2, _CONNECTION),
            Command("client|id", 2, _CONNECTION),
            Command("client|setinfo", 4, _CONNECTION),
            Command("client|info", 2, _CONNECTION),
        ),
    ),
    Command("select", 2, ("loading", "stale", "fast")),
    Command(
        "quit", -1, ("allow_busy", "noscript", "loading", "stale", "fast", "no_auth")
    ),
    Command("reset", 1, _NO_AUTH),
    # Server.
    _container(
        "command",
        -1,
        _TOPOLOGY,
        (
            Command("command|count", 2, _TOPOLOGY),
            Command("command|info", -2, _TOPOLOGY),
            Command("command|docs", -2, _TOPOLOGY),
            Command("command|getkeys", -3, _TOPOLOGY),
            Command("command|list", -2, _TOPOLOGY),
            Command("command|help", 2, _TOPOLOGY),
        ),
    ),
    Command("info", -1, _TOPOLOGY, scope=READ),
    Command("dbsize", 1, _READ_FAST, scope=READ),
    Command("time", 1, ("loading", "stale", "fast")),
    Command("flushdb", -1, ("write",), scope=ADMIN),
    Command("flushall", -1, ("write",), scope=ADMIN),
    # Strings.
    _one("get", 2, _READ_FAST, READ),
    _one("set", -3, _WRITE_GROW, WRITE),
    _one("setex", 4, _WRITE_GROW, WRITE),
    _one("psetex", 4, _WRITE_GROW, WRITE),
    _one("setnx", 3, _WRITE_GROW_FAST, WRITE),
    _one("getdel", 2, _WRITE_FAST, WRITE),
    _one("getex", -2, _WRITE_FAST, WRITE),
    _one("getset", 3, _WRITE_GROW_FAST, WRITE),
    _many("mget", -2, _READ_FAST, READ),
    _many("mset", -3, _WRITE_GROW, WRITE, step=2),
    _many("msetnx", -3, _WRITE_GROW, WRITE, step=2),
    _one("append", 3, _WRITE_GROW_FAST, WRITE),
    _one("strlen", 2, _READ_FAST, READ),
    _many("del", -2, ("write",), WRITE),
    _many("unlink", -2, _WRITE_FAST, WRITE),
    _many("exists", -2, _READ_FAST, READ),
    _one("type", 2, _READ_FAST, READ),
    _many("touch", -2, _READ_FAST, READ),
    # Expiry.
    _one("expire", -3, _WRITE_FAST, WRITE),
    _one("pexpire", -3, _WRITE_FAST, WRITE),
    _one("expireat", -3, _WRITE_FAST, WRITE),
    _one("pexpireat", -3, _WRITE_FAST, WRITE),
    _one("ttl", 2, _READ_FAST, READ),
    _one("pttl", 2, _READ_FAST, READ),
    _one("expiretime", 2, _READ_FAST, READ),
    _one("pexpiretime", 2, _READ_FAST, READ),
    _one("persist", 2, _WRITE_FAST, WRITE),
    # Counters.
    _one("incr", 2, _WRITE_GROW_FAST, WRITE),
    _one("incrby", 3, _WRITE_GROW_FAST, WRITE),
    _one("decr", 2, _WRITE_GROW_FAST, WRITE),
    _one("decrby", 3, _WRITE_GROW_FAST, WRITE),
    _one("incrbyfloat", 3, _WRITE_GROW_FAST, WRITE),
    # Keys.
    Command("scan", -2, ("readonly",), scope=READ),
    Command("keys", 2, ("readonly",), scope=READ),
    Command("randomkey", 1, ("readonly",), scope=READ),
    # Transactions: each queued command is checked at its own scope.
    Command("multi", 1, _TRANSACTION),
    Command("exec", 1, ("noscript", "loading", "stale", "skip_slowlog")),
    Command("discard", 1, _TRANSACTION),
    _many("watch", -2, _TRANSACTION, None),
    Command("unwatch", 1, _TRANSACTION),
    # Cluster.
    _container(
        "cluster",
        -2,
        (),
        (
            Command("cluster|slots", 2, _TOPOLOGY, scope=READ),
            Command("cluster|shards", 2, _TOPOLOGY, scope=READ),
            Command("cluster|nodes", 2, ("stale",), scope=READ),
            Command("cluster|info", 2, ("stale",), scope=READ),
            Command("cluster|myid", 2, ("stale",), scope=READ),
            Command("cluster|keyslot", 3, ("stale",), scope=READ),
        ),
    ),
    Command("readonly", 1, ("loading", "stale", "fast")),
    Command("readwrite", 1, ("loading", "stale", "fast")),
    # Disperse's own: the connection's consistency level.
    _container(
        "disperse",
        -2,
        (),
        (Command("disperse|consistency", 3, ("loading", "stale", "fast")),),
    ),
)

COMMANDS: Final[Mapping[str, Command]] = {command.name: command for command in _TABLE}


def lookupCommand(name: bytes) -> Command | None:
    """
    The command called C{name}, in any case, or L{None}.
    """
    try:
        return COMMANDS.get(name.decode("ascii").lower())
    except UnicodeDecodeError:
        return None


def resolveCommand(arguments: Sequence[bytes]) -> Command:
    """
    The command (or subcommand) a command line calls, with its arity
    checked, as Redis checks them before running anything.

    @param arguments: the command line, name first; not empty.
    @raise CommandError: for an unknown command or subcommand, or the
        wrong number of arguments.
    """
    command = lookupCommand(arguments[0])
    if command is None:
        raise CommandError(unknownCommandMessage(arguments))
    if command.isContainer and len(arguments) >= 2:
        sub = command.subcommands.get(arguments[1].decode("utf-8", "replace").lower())
        if sub is None:
            raise CommandError(
                f"ERR unknown subcommand '{_quoted(arguments[1])}'."
                f" Try {command.name.upper()} HELP."
            )
        command = sub
    if not command.arityAccepts(len(arguments)):
        raise CommandError(
            f"ERR wrong number of arguments for '{command.name}' command"
        )
    return command


def _quoted(text: bytes, limit: int = 128) -> str:
    # Redis prints at most 128 bytes of a name and turns line breaks into
    # spaces so that the error stays on one line.
    shown = text[:limit].decode("utf-8", "replace")
    return shown.replace("\r", " ").replace("\n", " ")


def unknownCommandMessage(arguments: Sequence[bytes]) -> str:
    """
    Redis's error for an unknown command: its name and the start of its
    arguments, each quoted and followed by a space, up to about 128 bytes.
    """
    shown = bytearray()
    for argument in arguments[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + argument[: 128 - len(shown)] + b"' "
    return (
        f"ERR unknown command '{_quoted(arguments[0])}', with args beginning"
        f" with: {_quoted(bytes(shown), len(shown))}"
    )


def keyPositions(command: Command, argumentCount: int) -> range:
    """
    The indexes of the keys in a command line of C{argumentCount} words
    that calls C{command} (whose arity it satisfies).
    """
    if command.firstKey == 0:
        return range(0)
    last = command.lastKey
    if last < 0:
        last += argumentCount
    return range(command.firstKey, last + 1, command.step)


def getKeys(arguments: Sequence[bytes]) -> list[bytes]:
    """
    The keys of a command line, as C{COMMAND GETKEYS} reports them.

    @raise CommandError: with Redis's texts for an unknown command, a
        wrong arity, or a command without keys.
    """
    command = lookupCommand(arguments[0])
    if command is not None and command.isContainer and len(arguments) >= 2:
        command = command.subcommands.get(
            arguments[1].decode("utf-8", "replace").lower()
        )
    # Redis's order of checks: the command, whether it has keys, arity.
    if command is None:
        raise CommandError("ERR Invalid command specified")
    if command.firstKey == 0:
        raise CommandError("ERR The command has no key arguments")
    if not command.arityAccepts(len(arguments)):
        raise CommandError("ERR Invalid number of arguments specified for command")
    return [arguments[index] for index in keyPositions(command, len(arguments))]
