"""
What C{COMMAND INFO} and C{COMMAND DOCS} say about each command beyond
the dispatcher's table (L{disperse.resp.commands}): a one-line summary, the
Redis version it appeared in, its group, its cost, its arguments, its ACL
categories, hints for cluster clients (tips) and what it does to its keys.

Clients read this at start-up: C{redis-cli} 7 builds its help and the
argument hints it shows while typing from C{COMMAND DOCS}; cluster clients
read C{COMMAND} for key positions. The versions, groups, categories, tips,
key flags and argument syntax are Redis 7.2's, since clients compare them
with what they know; the summaries are Disperse's own, and say where
Disperse differs.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

# The Redis version Disperse answers as (INFO's redis_version): the release
# whose commands, arities and key specifications the table follows.
REDIS_VERSION: Final = "7.2.0"
# When Disperse's own commands appeared, in Disperse's versions.
DISPERSE_SINCE: Final = "0.1.0"


@dataclass(frozen=True)
class Argument:
    """
    One argument of a command's syntax, as C{COMMAND DOCS} describes it.

    @ivar type: C{key}, C{string}, C{integer}, C{double}, C{pattern},
        C{unix-time}, C{pure-token} (a keyword alone), C{oneof} (one of
        C{arguments}) or C{block} (all of C{arguments}, in order).
    @ivar token: the keyword that introduces the argument (C{EX}).
    @ivar multiple: it may be repeated.
    @ivar since: the Redis version that added it, when later than the
        command.
    """

    name: str
    type: str
    token: str | None = None
    optional: bool = False
    multiple: bool = False
    since: str | None = None
    arguments: tuple[Argument, ...] = ()


def _key(name: str = "key", *, multiple: bool = False) -> Argument:
    return Argument(name, "key", multiple=multiple)


def _string(
    name: str,
    token: str | None = None,
    *,
    optional: bool = False,
    multiple: bool = False,
    since: str | None = None,
) -> Argument:
    return Argument(name, "string", token, optional, multiple, since)


def _integer(
    name: str,
    token: str | None = None,
    *,
    optional: bool = False,
    since: str | None = None,
) -> Argument:
    return Argument(name, "integer", token, optional, since=since)


def _time(name: str, token: str | None = None, since: str | None = None) -> Argument:
    return Argument(name, "unix-time", token, since=since)


def _word(token: str, since: str | None = None, optional: bool = False) -> Argument:
    # A keyword standing alone; Redis names it by the keyword in lower case.
    return Argument(token.lower(), "pure-token", token, optional, since=since)


def _oneOf(
    name: str, *choices: Argument, optional: bool = True, since: str | None = None
) -> Argument:
    return Argument(name, "oneof", optional=optional, since=since, arguments=choices)


_CONDITIONS: Final = _oneOf(
    "condition", _word("NX"), _word("XX"), _word("GT"), _word("LT"), since="7.0.0"
)


@dataclass(frozen=True)
class CommandDoc:
    """
    The documentation of one command or subcommand.

    @ivar group: Redis's group (C{string}, C{generic}, C{connection},
        C{server}, C{cluster}, C{transactions}).
    @ivar categories: the ACL categories Redis lists for the command itself
        (C{keyspace}, C{string}, C{connection}, C{dangerous},
        C{transaction}), without the C{@}; those that follow from its flags
        (C{read}, C{write}, C{fast} or C{slow}, C{admin}) are added by
        L{aclCategories}.
    @ivar tips: hints for clients, such as how a cluster client should
        spread the command over shards (C{request_policy:multi_shard}).
    @ivar keyFlags: what the command does to its keys (C{RO}, C{RW},
        C{OW}, C{RM}, C{access}, C{update}, C{insert}, C{delete},
        C{variable_flags}): the flags of its key specification.
    @ivar replacedBy: for a deprecated command, what to use instead.
    """

    summary: str
    since: str
    group: str
    complexity: str = "O(1)"
    arguments: tuple[Argument, ...] = ()
    categories: tuple[str, ...] = ()
    tips: tuple[str, ...] = ()
    keyFlags: tuple[str, ...] = ()
    deprecatedSince: str | None = None
    replacedBy: str | None = None


def _strings(
    summary: str,
    since: str,
    *arguments: Argument,
    complexity: str = "O(1)",
    tips: tuple[str, ...] = (),
    keyFlags: tuple[str, ...] = (),
    deprecatedSince: str | None = None,
    replacedBy: str | None = None,
) -> CommandDoc:
    # A command of the string group, whose explicit category is @string.
    return CommandDoc(
        summary,
        since,
        "string",
        complexity,
        arguments,
        ("string",),
        tips,
        keyFlags,
        deprecatedSince,
        replacedBy,
    )


_KEYSPACE: Final = ("keyspace",)
_CONNECTION: Final = ("connection",)
_TRANSACTION: Final = ("transaction",)
_ALL_SHARDS: Final = ("request_policy:all_shards",)
_SUM_OF_SHARDS: Final = ("request_policy:multi_shard", "response_policy:agg_sum")
_READ_ACCESS: Final = ("RO", "access")
_UPDATE: Final = ("RW", "access", "update")
_TTL_CHANGE: Final = ("RW", "update")
_FLUSH: Final = (
    _oneOf("flush-type", _word("ASYNC", since="4.0.0"), _word("SYNC", since="6.2.0")),
)
_EXPIRATION: Final = (
    _integer("seconds", "EX", since="2.6.12"),
    _integer("milliseconds", "PX", since="2.6.12"),
    _time("unix-time-seconds", "EXAT", since="6.2.0"),
    _time("unix-time-milliseconds", "PXAT", since="6.2.0"),
)
_KEY_VALUE_PAIRS: Final = Argument(
    "data", "block", multiple=True, arguments=(_key(), _string("value"))
)
_COMMAND_NAMES: Final = (_string("command-name", optional=True, multiple=True),)

DOCS: Final[Mapping[str, CommandDoc]] = {
    # Connection.
    "ping": CommandDoc(
        "Answers PONG, or the message given: a check that the node is there.",
        "1.0.0",
        "connection",
        arguments=(_string("message", optional=True),),
        categories=_CONNECTION,
        tips=("request_policy:all_shards", "response_policy:all_succeeded"),
    ),
    "echo": CommandDoc(
        "Answers the message given.",
        "1.0.0",
        "connection",
        arguments=(_string("message"),),
        categories=_CONNECTION,
    ),
    "hello": CommandDoc(
        "Chooses RESP2 or RESP3, optionally authenticates and names the"
        " connection, and describes the server.",
        "6.0.0",
        "connection",
        arguments=(
            Argument(
                "arguments",
                "block",
                optional=True,
                arguments=(
                    _integer("protover"),
                    Argument(
                        "auth",
                        "block",
                        "AUTH",
                        optional=True,
                        arguments=(_string("username"), _string("password")),
                    ),
                    _string("clientname", "SETNAME", optional=True),
                ),
            ),
        ),
        categories=_CONNECTION,
    ),
    "auth": CommandDoc(
        "Authenticates the connection with a Disperse token (the username,"
        " if given, is ignored).",
        "1.0.0",
        "connection",
        complexity="O(N), N the length of the token",
        arguments=(
            _string("username", optional=True, since="6.0.0"),
            _string("password"),
        ),
        categories=_CONNECTION,
    ),
    "client": CommandDoc(
        "Commands about client connections.",
        "2.4.0",
        "connection",
        complexity="Depends on the subcommand.",
    ),
    "client|setname": CommandDoc(
        "Names the connection, as CLIENT INFO shows it.",
        "2.6.9",
        "connection",
        arguments=(_string("connection-name"),),
        categories=_CONNECTION,
        tips=("request_policy:all_nodes", "response_policy:all_succeeded"),
    ),
    "client|getname": CommandDoc(
        "Answers the connection's name.",
        "2.6.9",
        "connection",
        categories=_CONNECTION,
    ),
    "client|id": CommandDoc(
        "Answers the connection's id, unique on this node.",
        "5.0.0",
        "connection",
        categories=_CONNECTION,
    ),
    "client|setinfo": CommandDoc(
        "Records the client library's name or version for CLIENT INFO.",
        "7.2.0",
        "connection",
        arguments=(
            _oneOf(
                "attr",
                _string("libname", "lib-name"),
                _string("libver", "lib-ver"),
                optional=False,
            ),
        ),
        categories=_CONNECTION,
        tips=("request_policy:all_nodes", "response_policy:all_succeeded"),
    ),
    "client|info": CommandDoc(
        "Describes this connection in one line.",
        "6.2.0",
        "connection",
        categories=_CONNECTION,
        tips=("nondeterministic_output",),
    ),
    "select": CommandDoc(
        "Chooses the database; Disperse has database 0 only.",
        "1.0.0",
        "connection",
        arguments=(_integer("index"),),
        categories=_CONNECTION,
    ),
    "quit": CommandDoc(
        "Closes the connection once the reply is sent.",
        "1.0.0",
        "connection",
        categories=_CONNECTION,
        deprecatedSince="7.2.0",
        replacedBy="closing the connection",
    ),
    "reset": CommandDoc(
        "Returns the connection to its state when opened: RESP2, no name,"
        " no transaction, not authenticated, the node's consistency levels.",
        "6.2.0",
        "connection",
        categories=_CONNECTION,
    ),
    # Server.
    "command": CommandDoc(
        "Describes every command: arity, flags, key positions.",
        "2.8.13",
        "server",
        complexity="O(N), N the number of commands",
        categories=_CONNECTION,
        tips=("nondeterministic_output_order",),
    ),
    "command|count": CommandDoc(
        "Answers how many commands there are.",
        "2.8.13",
        "server",
        categories=_CONNECTION,
    ),
    "command|info": CommandDoc(
        "Describes the commands named, or all of them.",
        "2.8.13",
        "server",
        complexity="O(N), N the number of commands described",
        arguments=_COMMAND_NAMES,
        categories=_CONNECTION,
        tips=("nondeterministic_output_order",),
    ),
    "command|docs": CommandDoc(
        "Documents the commands named, or all of them: summary, version,"
        " group, arguments.",
        "7.0.0",
        "server",
        complexity="O(N), N the number of commands documented",
        arguments=_COMMAND_NAMES,
        categories=_CONNECTION,
        tips=("nondeterministic_output_order",),
    ),
    "command|getkeys": CommandDoc(
        "Answers which arguments of a command line are keys.",
        "2.8.13",
        "server",
        complexity="O(N), N the number of arguments",
        arguments=(_string("command"), _string("arg", optional=True, multiple=True)),
        categories=_CONNECTION,
    ),
    "command|list": CommandDoc(
        "Lists the names of the commands, subcommands included, optionally"
        " those of an ACL category or matching a pattern.",
        "7.0.0",
        "server",
        complexity="O(N), N the number of commands",
        arguments=(
            Argument(
                "filterby",
                "oneof",
                "FILTERBY",
                optional=True,
                arguments=(
                    _string("module-name", "MODULE"),
                    _string("category", "ACLCAT"),
                    Argument("pattern", "pattern", "PATTERN"),
                ),
            ),
        ),
        categories=_CONNECTION,
        tips=("nondeterministic_output_order",),
    ),
    "command|help": CommandDoc(
        "Lists the COMMAND subcommands.",
        "5.0.0",
        "server",
        categories=_CONNECTION,
    ),
    "info": CommandDoc(
        "Describes the node, its clients, memory, commands and keyspace, in sections.",
        "1.0.0",
        "server",
        arguments=(_string("section", optional=True, multiple=True),),
        categories=("dangerous",),
        tips=(
            "nondeterministic_output",
            "request_policy:all_shards",
            "response_policy:special",
        ),
    ),
    "dbsize": CommandDoc(
        "Answers the number of keys in the whole cluster, from any node.",
        "1.0.0",
        "server",
        categories=_KEYSPACE,
        # Not Redis's all_shards and agg_sum: a client following them
        # would add up the whole cluster's count once per node.
        tips=(),
    ),
    "time": CommandDoc(
        "Answers the node's time: seconds and microseconds since the epoch.",
        "2.6.0",
        "server",
        tips=("nondeterministic_output",),
    ),
    "flushdb": CommandDoc(
        "Deletes every key in the whole cluster, with tombstones (admin tokens only).",
        "1.0.0",
        "server",
        complexity="O(N), N the number of keys",
        arguments=_FLUSH,
        categories=("keyspace", "dangerous"),
        tips=("request_policy:all_shards", "response_policy:all_succeeded"),
    ),
    "flushall": CommandDoc(
        "Deletes every key in the whole cluster, as FLUSHDB does.",
        "1.0.0",
        "server",
        complexity="O(N), N the number of keys",
        arguments=_FLUSH,
        categories=("keyspace", "dangerous"),
        tips=("request_policy:all_shards", "response_policy:all_succeeded"),
    ),
    # Strings.
    "get": _strings(
        "Reads a key's value, at the connection's read level.",
        "1.0.0",
        _key(),
        keyFlags=_READ_ACCESS,
    ),
    "set": _strings(
        "Writes a key's value, with an optional expiry and condition, at"
        " the connection's write level.",
        "1.0.0",
        _key(),
        _string("value"),
        _oneOf("condition", _word("NX"), _word("XX"), since="2.6.12"),
        _word("GET", since="6.2.0", optional=True),
        _oneOf("expiration", *_EXPIRATION, _word("KEEPTTL", since="6.0.0")),
        keyFlags=("RW", "access", "update", "variable_flags"),
    ),
    "setex": _strings(
        "Writes a key's value to expire after a number of seconds.",
        "2.0.0",
        _key(),
        _integer("seconds"),
        _string("value"),
        keyFlags=("OW", "update"),
        deprecatedSince="2.6.12",
        replacedBy="`SET` with `EX`",
    ),
    "psetex": _strings(
        "Writes a key's value to expire after a number of milliseconds.",
        "2.6.0",
        _key(),
        _integer("milliseconds"),
        _string("value"),
        keyFlags=("OW", "update"),
        deprecatedSince="2.6.12",
        replacedBy="`SET` with `PX`",
    ),
    "setnx": _strings(
        "Writes a key's value only if the key has none.",
        "1.0.0",
        _key(),
        _string("value"),
        keyFlags=("OW", "insert"),
        deprecatedSince="2.6.12",
        replacedBy="`SET` with `NX`",
    ),
    "getdel": _strings(
        "Reads a key's value and deletes the key.",
        "6.2.0",
        _key(),
        keyFlags=("RW", "access", "delete"),
    ),
    "getex": _strings(
        "Reads a key's value and changes or removes its expiry.",
        "6.2.0",
        _key(),
        _oneOf(
            "expiration",
            *(Argument(a.name, a.type, a.token) for a in _EXPIRATION),
            _word("PERSIST"),
        ),
        keyFlags=_UPDATE,
    ),
    "getset": _strings(
        "Writes a key's value and answers the value it replaced.",
        "1.0.0",
        _key(),
        _string("value"),
        keyFlags=_UPDATE,
        deprecatedSince="6.2.0",
        replacedBy="`SET` with `GET`",
    ),
    "mget": _strings(
        "Reads the values of several keys.",
        "1.0.0",
        _key(multiple=True),
        complexity="O(N), N the number of keys",
        tips=("request_policy:multi_shard",),
        keyFlags=_READ_ACCESS,
    ),
    "mset": _strings(
        "Writes the values of several keys.",
        "1.0.1",
        _KEY_VALUE_PAIRS,
        complexity="O(N), N the number of keys",
        tips=("request_policy:multi_shard", "response_policy:all_succeeded"),
        keyFlags=("OW", "update"),
    ),
    "msetnx": _strings(
        "Writes several keys' values only if none of the keys has one.",
        "1.0.1",
        _KEY_VALUE_PAIRS,
        complexity="O(N), N the number of keys",
        keyFlags=("OW", "insert"),
    ),
    "append": _strings(
        "Appends to a key's value, creating it if missing; answers the new length.",
        "2.0.0",
        _key(),
        _string("value"),
        keyFlags=("RW", "insert"),
    ),
    "strlen": _strings(
        "Answers the length of a key's value.",
        "2.2.0",
        _key(),
        keyFlags=("RO",),
    ),
    "del": CommandDoc(
        "Deletes keys, leaving tombstones; answers how many existed.",
        "1.0.0",
        "generic",
        complexity="O(N), N the number of keys",
        arguments=(_key(multiple=True),),
        categories=_KEYSPACE,
        tips=_SUM_OF_SHARDS,
        keyFlags=("RM", "delete"),
    ),
    "unlink": CommandDoc(
        "Deletes keys, as DEL does.",
        "4.0.0",
        "generic",
        complexity="O(N), N the number of keys",
        arguments=(_key(multiple=True),),
        categories=_KEYSPACE,
        tips=_SUM_OF_SHARDS,
        keyFlags=("RM", "delete"),
    ),
    "exists": CommandDoc(
        "Answers how many of the keys given exist (a key named twice counts twice).",
        "1.0.0",
        "generic",
        complexity="O(N), N the number of keys",
        arguments=(_key(multiple=True),),
        categories=_KEYSPACE,
        tips=_SUM_OF_SHARDS,
        keyFlags=("RO",),
    ),
    "type": CommandDoc(
        "Answers a key's type: string, or none.",
        "1.0.0",
        "generic",
        arguments=(_key(),),
        categories=_KEYSPACE,
        keyFlags=("RO",),
    ),
    "touch": CommandDoc(
        "Answers how many of the keys given exist, marking them recently used.",
        "3.2.1",
        "generic",
        complexity="O(N), N the number of keys",
        arguments=(_key(multiple=True),),
        categories=_KEYSPACE,
        tips=_SUM_OF_SHARDS,
        keyFlags=("RO",),
    ),
    # Expiry.
    "expire": CommandDoc(
        "Sets a key to expire after a number of seconds.",
        "1.0.0",
        "generic",
        arguments=(_key(), _integer("seconds"), _CONDITIONS),
        categories=_KEYSPACE,
        keyFlags=_TTL_CHANGE,
    ),
    "pexpire": CommandDoc(
        "Sets a key to expire after a number of milliseconds.",
        "2.6.0",
        "generic",
        arguments=(_key(), _integer("milliseconds"), _CONDITIONS),
        categories=_KEYSPACE,
        keyFlags=_TTL_CHANGE,
    ),
    "expireat": CommandDoc(
        "Sets a key to expire at a Unix time in seconds.",
        "1.2.0",
        "generic",
        arguments=(_key(), _time("unix-time-seconds"), _CONDITIONS),
        categories=_KEYSPACE,
        keyFlags=_TTL_CHANGE,
    ),
    "pexpireat": CommandDoc(
        "Sets a key to expire at a Unix time in milliseconds.",
        "2.6.0",
        "generic",
        arguments=(_key(), _time("unix-time-milliseconds"), _CONDITIONS),
        categories=_KEYSPACE,
        keyFlags=_TTL_CHANGE,
    ),
    "ttl": CommandDoc(
        "Answers the seconds until a key expires (-1: never, -2: no key).",
        "1.0.0",
        "generic",
        arguments=(_key(),),
        categories=_KEYSPACE,
        tips=("nondeterministic_output",),
        keyFlags=_READ_ACCESS,
    ),
    "pttl": CommandDoc(
        "Answers the milliseconds until a key expires (-1: never, -2: no key).",
        "2.6.0",
        "generic",
        arguments=(_key(),),
        categories=_KEYSPACE,
        tips=("nondeterministic_output",),
        keyFlags=_READ_ACCESS,
    ),
    "expiretime": CommandDoc(
        "Answers the Unix time in seconds when a key expires.",
        "7.0.0",
        "generic",
        arguments=(_key(),),
        categories=_KEYSPACE,
        keyFlags=_READ_ACCESS,
    ),
    "pexpiretime": CommandDoc(
        "Answers the Unix time in milliseconds when a key expires.",
        "7.0.0",
        "generic",
        arguments=(_key(),),
        categories=_KEYSPACE,
        keyFlags=_READ_ACCESS,
    ),
    "persist": CommandDoc(
        "Removes a key's expiry.",
        "2.2.0",
        "generic",
        arguments=(_key(),),
        categories=_KEYSPACE,
        keyFlags=_TTL_CHANGE,
    ),
    # Counters: convergent on Disperse (increments from every replica add up).
    "incr": _strings(
        "Adds one to a counter; increments made on different nodes all count.",
        "1.0.0",
        _key(),
        keyFlags=_UPDATE,
    ),
    "incrby": _strings(
        "Adds an integer to a counter; increments made on different nodes all count.",
        "1.0.0",
        _key(),
        _integer("increment"),
        keyFlags=_UPDATE,
    ),
    "decr": _strings(
        "Subtracts one from a counter.",
        "1.0.0",
        _key(),
        keyFlags=_UPDATE,
    ),
    "decrby": _strings(
        "Subtracts an integer from a counter.",
        "1.0.0",
        _key(),
        _integer("decrement"),
        keyFlags=_UPDATE,
    ),
    "incrbyfloat": _strings(
        "Adds a floating-point number to a counter.",
        "2.6.0",
        _key(),
        Argument("increment", "double"),
        keyFlags=_UPDATE,
    ),
    # Keys.
    "scan": CommandDoc(
        "Walks the keys a batch at a time, partition by partition, optionally"
        " those matching a pattern or of a type.",
        "2.8.0",
        "generic",
        complexity="O(1) a call, O(N) for a whole walk",
        arguments=(
            _integer("cursor"),
            Argument("pattern", "pattern", "MATCH", optional=True),
            _integer("count", "COUNT", optional=True),
            _string("type", "TYPE", optional=True, since="6.0.0"),
        ),
        categories=_KEYSPACE,
        tips=(
            "nondeterministic_output",
            "request_policy:special",
            "response_policy:special",
        ),
    ),
    "keys": CommandDoc(
        "Lists the keys that match a pattern; slow with many keys, prefer SCAN.",
        "1.0.0",
        "generic",
        complexity="O(N), N the number of keys",
        arguments=(Argument("pattern", "pattern"),),
        categories=("keyspace", "dangerous"),
        # No all_shards: any node lists the whole cluster's keys.
        tips=("nondeterministic_output_order",),
    ),
    "randomkey": CommandDoc(
        "Answers a key chosen at random.",
        "1.0.0",
        "generic",
        categories=_KEYSPACE,
        tips=(
            "request_policy:all_shards",
            "response_policy:special",
            "nondeterministic_output",
        ),
    ),
    # Transactions.
    "multi": CommandDoc(
        "Starts queueing commands for EXEC.",
        "1.2.0",
        "transactions",
        categories=_TRANSACTION,
    ),
    "exec": CommandDoc(
        "Runs the queued commands in order, each at its own level.",
        "1.2.0",
        "transactions",
        complexity="The cost of the commands queued",
        categories=_TRANSACTION,
    ),
    "discard": CommandDoc(
        "Drops the queued commands.",
        "2.0.0",
        "transactions",
        complexity="O(N), N the number of queued commands",
        categories=_TRANSACTION,
    ),
    "watch": CommandDoc(
        "Not supported on Disperse: answers an error that says so.",
        "2.2.0",
        "transactions",
        arguments=(_key(multiple=True),),
        categories=_TRANSACTION,
        keyFlags=("RO",),
    ),
    "unwatch": CommandDoc(
        "Forgets the watched keys; as Disperse watches none, answers OK.",
        "2.2.0",
        "transactions",
        categories=_TRANSACTION,
    ),
    # Cluster.
    "cluster": CommandDoc(
        "Commands about the cluster's topology.",
        "3.0.0",
        "cluster",
        complexity="Depends on the subcommand.",
    ),
    "cluster|slots": CommandDoc(
        "Maps slot ranges to the nodes that hold them: each partition's"
        " first owner as master, the others as replicas.",
        "3.0.0",
        "cluster",
        complexity="O(N), N the number of partitions",
        tips=("nondeterministic_output",),
        deprecatedSince="7.0.0",
        replacedBy="`CLUSTER SHARDS`",
    ),
    "cluster|shards": CommandDoc(
        "Describes each group of slots and the nodes that hold it.",
        "7.0.0",
        "cluster",
        complexity="O(N), N the number of partitions",
        tips=("nondeterministic_output",),
    ),
    "cluster|nodes": CommandDoc(
        "Describes the cluster's nodes and their slots, one line each.",
        "3.0.0",
        "cluster",
        complexity="O(N), N the number of nodes",
        tips=("nondeterministic_output",),
    ),
    "cluster|info": CommandDoc(
        "Describes the cluster's state.",
        "3.0.0",
        "cluster",
        tips=("nondeterministic_output",),
    ),
    "cluster|myid": CommandDoc("Answers this node's id.", "3.0.0", "cluster"),
    "cluster|keyslot": CommandDoc(
        "Answers a key's slot (its partition is the slot divided by 16).",
        "3.0.0",
        "cluster",
        complexity="O(N), N the length of the key",
        arguments=(_string("key"),),
    ),
    "readonly": CommandDoc(
        "Lets a cluster client read from replicas; Disperse serves any key"
        " on any node either way.",
        "3.0.0",
        "cluster",
        categories=_CONNECTION,
    ),
    "readwrite": CommandDoc(
        "Undoes READONLY.",
        "3.0.0",
        "cluster",
        categories=_CONNECTION,
    ),
    # Disperse's own.
    "disperse": CommandDoc(
        "Disperse's own commands.",
        DISPERSE_SINCE,
        "connection",
        complexity="Depends on the subcommand.",
    ),
    "disperse|consistency": CommandDoc(
        "Chooses the consistency level of this connection's reads and"
        " writes: one, quorum or all.",
        DISPERSE_SINCE,
        "connection",
        arguments=(
            _oneOf(
                "level",
                _word("ONE"),
                _word("QUORUM"),
                _word("ALL"),
                optional=False,
            ),
        ),
        categories=_CONNECTION,
    ),
}

# Redis's ACL categories in the order it lists them.
_CATEGORY_ORDER: Final = (
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
)


def docFor(name: str) -> CommandDoc:
    """
    The documentation of command C{name} (lower case, a subcommand as
    C{container|sub}); a bare one for a command nobody documented yet, so
    that C{COMMAND} never fails for want of a summary.
    """
    doc = DOCS.get(name)
    if doc is None:
        container = name.partition("|")[0]
        group = DOCS[container].group if container in DOCS else "generic"
        return CommandDoc("", DISPERSE_SINCE, group)
    return doc


def aclCategories(name: str, flags: tuple[str, ...]) -> tuple[str, ...]:
    """
    The ACL categories of command C{name} with C{flags}, as Redis derives
    them: those listed for the command, plus C{write}, C{read}, C{admin}
    and C{dangerous}, and C{fast} or else C{slow}, from its flags; in
    Redis's order, without the C{@}.
    """
    found = set(docFor(name).categories)
    if "write" in flags:
        found.add("write")
    if "readonly" in flags:
        found.add("read")
    if "admin" in flags:
        found.update(("admin", "dangerous"))
    found.add("fast" if "fast" in flags else "slow")
    return tuple(category for category in _CATEGORY_ORDER if category in found)
