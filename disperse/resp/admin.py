"""
Server commands: C{COMMAND} and its subcommands, C{INFO} and C{TIME}.

C{COMMAND} describes the dispatcher's table (L{disperse.resp.commands})
with the documentation of L{disperse.resp.docs}, in the shapes Redis 7.2
gives them, because clients read them at start-up: cluster clients take
key positions from C{COMMAND}, C{redis-cli} its help and argument hints
from C{COMMAND DOCS}, and C{redis-cli} asserts on the type of every field.

C{INFO} reports the node in Redis's sections and field names, from the
store's counters, the RESP server's state and counters
(L{disperse.resp.stats.RespStats}, C{node.respStats}) and the process.
"""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import struct
from collections.abc import Callable, Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Final

from disperse import __version__
from disperse.resp.commands import (
    COMMANDS,
    Command,
    CommandError,
    getKeys,
)
from disperse.resp.context import Context, handles
from disperse.resp.docs import (
    REDIS_VERSION,
    Argument,
    aclCategories,
    docFor,
)
from disperse.resp.replies import Reply, SetReply, Simple, Verbatim
from disperse.resp.stats import RespStats
from disperse.store.partition import PARTITION_COUNT

# The order Redis lists command flags and key-specification flags in
# (whatever order a table entry gives them).
_FLAG_ORDER: Final = (
    "write",
    "readonly",
    "denyoom",
    "module",
    "admin",
    "pubsub",
    "noscript",
    "blocking",
    "loading",
    "stale",
    "skip_monitor",
    "skip_slowlog",
    "asking",
    "fast",
    "no_auth",
    "no_mandatory_keys",
    "no_async_loading",
    "no_multi",
    "movablekeys",
    "allow_busy",
)
_KEY_FLAG_ORDER: Final = (
    "RO",
    "RW",
    "OW",
    "RM",
    "access",
    "update",
    "insert",
    "delete",
    "not_key",
    "incomplete",
    "variable_flags",
)


def _ordered(flags: Iterable[str], order: Sequence[str]) -> SetReply:
    chosen = set(flags)
    return SetReply(Simple(flag) for flag in order if flag in chosen)


def findCommand(name: bytes) -> Command | None:
    """
    The command or subcommand called C{name} in any case, a subcommand as
    C{container|sub} (how C{COMMAND INFO} and C{COMMAND DOCS} name them).
    """
    try:
        text = name.decode("ascii").lower()
    except UnicodeDecodeError:
        return None
    container, _, sub = text.partition("|")
    command = COMMANDS.get(container)
    if command is None or not sub:
        return command
    return command.subcommands.get(sub)


def _keySpecs(command: Command) -> SetReply:
    # The table's key positions are one range, which Redis describes as a
    # key specification: the first key's index, then the last key relative
    # to it (or from the end, if negative) and the step.
    if command.firstKey == 0:
        return SetReply()
    last = command.lastKey
    relative = last - command.firstKey if last >= 0 else last
    spec: dict[Reply, Reply] = {
        "flags": _ordered(docFor(command.name).keyFlags, _KEY_FLAG_ORDER),
        "begin_search": {"type": "index", "spec": {"index": command.firstKey}},
        "find_keys": {
            "type": "range",
            "spec": {"lastkey": relative, "keystep": command.step, "limit": 0},
        },
    }
    return SetReply((spec,))


def commandInfo(command: Command) -> Reply:
    """
    What C{COMMAND INFO} says of C{command}: name, arity, flags, first key,
    last key, step, ACL categories, tips, key specifications and
    subcommands, in Redis 7's ten-element form.
    """
    doc = docFor(command.name)
    subcommands: Reply = (
        [commandInfo(sub) for sub in command.subcommands.values()]
        if command.isContainer
        else SetReply()
    )
    return [
        command.name,
        command.arity,
        _ordered(command.flags, _FLAG_ORDER),
        command.firstKey,
        command.lastKey,
        command.step,
        SetReply(
            Simple("@" + category)
            for category in aclCategories(command.name, command.flags)
        ),
        SetReply(doc.tips),
        _keySpecs(command),
        subcommands,
    ]


def _argumentDocs(argument: Argument) -> dict[Reply, Reply]:
    described: dict[Reply, Reply] = {"name": argument.name, "type": argument.type}
    nested = argument.type in ("oneof", "block")
    if not nested:
        described["display_text"] = argument.name
    if argument.type == "key":
        # Every key of these commands is found by the one key specification.
        described["key_spec_index"] = 0
    if argument.token is not None:
        described["token"] = argument.token
    if argument.since is not None:
        described["since"] = argument.since
    flags = [
        name
        for name, present in (
            ("optional", argument.optional),
            ("multiple", argument.multiple),
        )
        if present
    ]
    if flags:
        described["flags"] = SetReply(Simple(flag) for flag in flags)
    if nested:
        described["arguments"] = [_argumentDocs(a) for a in argument.arguments]
    return described


def commandDocs(command: Command) -> dict[Reply, Reply]:
    """
    What C{COMMAND DOCS} says of C{command}: a map of its summary, the
    version it appeared in, its group, complexity, deprecation, arguments
    and subcommands, with the keys in Redis's order.
    """
    doc = docFor(command.name)
    described: dict[Reply, Reply] = {
        "summary": doc.summary,
        "since": doc.since,
        "group": doc.group,
        "complexity": doc.complexity,
    }
    if doc.deprecatedSince is not None:
        described["doc_flags"] = SetReply((Simple("deprecated"),))
        described["deprecated_since"] = doc.deprecatedSince
    if doc.replacedBy is not None:
        described["replaced_by"] = doc.replacedBy
    if doc.arguments:
        described["arguments"] = [_argumentDocs(a) for a in doc.arguments]
    if command.isContainer:
        described["subcommands"] = {
            sub.name: commandDocs(sub) for sub in command.subcommands.values()
        }
    return described


def _everyCommand() -> Iterable[Command]:
    for command in COMMANDS.values():
        yield command
        yield from command.subcommands.values()


@handles("command")
def command(ctx: Context, args: list[bytes]) -> Reply:
    return [commandInfo(each) for each in COMMANDS.values()]


@handles("command|count")
def commandCount(ctx: Context, args: list[bytes]) -> Reply:
    return len(COMMANDS)


@handles("command|info")
def commandInfoHandler(ctx: Context, args: list[bytes]) -> Reply:
    if len(args) == 2:
        return command(ctx, args)
    found = (findCommand(name) for name in args[2:])
    return [None if each is None else commandInfo(each) for each in found]


@handles("command|docs")
def commandDocsHandler(ctx: Context, args: list[bytes]) -> Reply:
    if len(args) == 2:
        chosen: Iterable[Command | None] = COMMANDS.values()
    else:
        # Unknown names are left out, as Redis leaves them out.
        chosen = (findCommand(name) for name in args[2:])
    return {each.name: commandDocs(each) for each in chosen if each is not None}


@handles("command|getkeys")
def commandGetKeys(ctx: Context, args: list[bytes]) -> Reply:
    keys: list[Reply] = list(getKeys(args[2:]))
    return keys


def _globMatch(pattern: bytes, name: str) -> bool:
    # Command names are plain lower-case words: the shell's glob (*, ?,
    # [set]) selects them as Redis's does, in any case.
    return fnmatchcase(name, pattern.decode("latin-1").lower())


@handles("command|list")
def commandList(ctx: Context, args: list[bytes]) -> Reply:
    names: list[Reply] = [each.name for each in _everyCommand()]
    if len(args) == 2:
        return names
    if len(args) != 5 or args[2].lower() != b"filterby":
        raise CommandError("ERR syntax error")
    kind, value = args[3].lower(), args[4]
    if kind == b"module":
        # Disperse loads no modules.
        return []
    if kind == b"aclcat":
        category = value.decode("utf-8", "replace").lower()
        return [
            each.name
            for each in _everyCommand()
            if category in aclCategories(each.name, each.flags)
        ]
    if kind == b"pattern":
        return [each.name for each in _everyCommand() if _globMatch(value, each.name)]
    raise CommandError("ERR syntax error")


@handles("command|help")
def commandHelp(ctx: Context, args: list[bytes]) -> Reply:
    return [
        Simple(line)
        for line in (
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Describe every command.",
            "COUNT",
            "    The number of commands.",
            "INFO [<command-name> ...]",
            "    Describe the commands named, or all of them.",
            "DOCS [<command-name> ...]",
            "    Document the commands named, or all of them.",
            "GETKEYS <full-command>",
            "    The keys of a full command line.",
            "LIST [FILTERBY (MODULE <name>|ACLCAT <category>|PATTERN <pattern>)]",
            "    The names of the commands, subcommands included.",
            "HELP",
            "    This text.",
        )
    ]


@handles("time")
def time(ctx: Context, args: list[bytes]) -> Reply:
    micros = int(ctx.node.clock.seconds() * 1_000_000)
    return [b"%d" % (micros // 1_000_000), b"%d" % (micros % 1_000_000)]


# INFO

# The sections INFO answers with no argument, or "default", in the order
# they are always written.
_DEFAULT_SECTIONS: Final = (
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "cluster",
    "keyspace",
)
# All sections, in order: "all" and "everything" add the per-command ones.
_SECTIONS: Final = (*_DEFAULT_SECTIONS[:7], "commandstats", *_DEFAULT_SECTIONS[7:])
# Expiring keys are counted on a sample of about this many keys, as Redis
# estimates avg_ttl on a sample: counting every key would stall the node.
KEYSPACE_SAMPLE: Final = 1000

_Fields = list[tuple[str, object]]


def _human(size: int) -> str:
    # Redis's bytesToHuman: B, then K, M, G... with two decimals.
    if size < 1024:
        return f"{size}B"
    value = float(size)
    for unit in "KMGTPE":
        value /= 1024
        if value < 1024 or unit == "E":
            return f"{value:.2f}{unit}"
    raise AssertionError("unreachable")


def _respStats(ctx: Context) -> RespStats:
    stats = ctx.node.respStats
    # Handlers run only under the RESP server, which records into one; an
    # empty one stands in when a test calls a handler without it.
    return stats if isinstance(stats, RespStats) else RespStats()


def _runId(ctx: Context) -> str:
    # Redis makes a random id at each start; this one is as unique per
    # start and stable while the process runs.
    seed = f"{ctx.node.config.nodeName}:{ctx.server.startedMs}:{os.getpid()}"
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def _server(ctx: Context) -> _Fields:
    nowMs = ctx.nowMs()
    uptime = max(0, nowMs - ctx.server.startedMs) // 1000
    return [
        ("redis_version", REDIS_VERSION),
        ("redis_git_sha1", "00000000"),
        ("redis_git_dirty", 0),
        ("redis_mode", "cluster"),
        ("disperse_version", __version__),
        ("disperse_node", ctx.node.config.nodeName),
        ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("arch_bits", struct.calcsize("P") * 8),
        ("process_id", os.getpid()),
        ("process_supervised", "no"),
        ("run_id", _runId(ctx)),
        ("tcp_port", ctx.server.port or 0),
        ("server_time_usec", nowMs * 1000),
        ("uptime_in_seconds", uptime),
        ("uptime_in_days", uptime // 86400),
    ]


def _clients(ctx: Context) -> _Fields:
    return [
        ("connected_clients", sum(1 for _ in ctx.server.sessions())),
        ("cluster_connections", 0),
        ("blocked_clients", 0),
        ("tracking_clients", 0),
        ("pubsub_clients", 0),
        ("watching_clients", 0),
        ("clients_in_timeout_table", 0),
        ("total_watched_keys", 0),
        ("total_blocking_keys", 0),
    ]


def _memory(ctx: Context) -> _Fields:
    stats = ctx.node.store.stats()
    budget = stats.maxBytes or 0
    return [
        # What the store accounts for (keys, values, per-entry overhead),
        # the figure its budget is held to; not the process's whole size.
        ("used_memory", stats.bytes),
        ("used_memory_human", _human(stats.bytes)),
        ("maxmemory", budget),
        ("maxmemory_human", _human(budget)),
        # Over budget, the store evicts by approximate LRU among all keys.
        ("maxmemory_policy", "allkeys-lru"),
    ]


def _persistence(ctx: Context) -> _Fields:
    # Disperse keeps nothing on disk: its replicas are its durability.
    # Clients and tools read these to know the data set is loaded.
    return [
        ("loading", 0),
        ("async_loading", 0),
        ("rdb_changes_since_last_save", 0),
        ("rdb_bgsave_in_progress", 0),
        ("rdb_last_save_time", ctx.server.startedMs // 1000),
        ("rdb_last_bgsave_status", "ok"),
        ("aof_enabled", 0),
        ("aof_rewrite_in_progress", 0),
    ]


def _stats(ctx: Context) -> _Fields:
    store = ctx.node.store.stats()
    resp = _respStats(ctx)
    commands = ctx.server.commandStats().values()
    return [
        ("total_connections_received", resp.accepted),
        ("total_commands_processed", sum(calls for calls, _, _ in commands)),
        ("rejected_connections", resp.rejected),
        ("expired_keys", store.expirations),
        ("evicted_keys", store.evictions),
        # Every read of this node's store, over HTTP and RESP and for other
        # coordinators alike.
        ("keyspace_hits", store.hits),
        ("keyspace_misses", store.misses),
        ("total_error_replies", sum(failed for _, _, failed in commands)),
        ("disperse_protocol_errors", resp.protocolErrors),
        ("disperse_idle_closed", resp.idleClosed),
        ("disperse_rate_limited", resp.rateLimited),
    ]


def _replication(ctx: Context) -> _Fields:
    # Disperse has no master/replica streams: every node coordinates reads
    # and writes for any key, and each partition has R owners that take
    # every write (at the request's consistency level) and repair each
    # other by read repair, hints and anti-entropy. Each node is thus a
    # master of its own with no replicas attached; CLUSTER SHARDS shows a
    # partition's owners, its first owner as master and the rest as
    # replicas, which is what cluster clients need.
    return [
        ("role", "master"),
        ("connected_slaves", 0),
        ("master_failover_state", "no-failover"),
        ("master_replid", _runId(ctx)),
        ("master_replid2", "0" * 40),
        ("master_repl_offset", 0),
        ("second_repl_offset", -1),
        ("repl_backlog_active", 0),
    ]


def _cpu(ctx: Context) -> _Fields:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return [
        ("used_cpu_sys", f"{usage.ru_stime:.6f}"),
        ("used_cpu_user", f"{usage.ru_utime:.6f}"),
        ("used_cpu_sys_children", f"{children.ru_stime:.6f}"),
        ("used_cpu_user_children", f"{children.ru_utime:.6f}"),
    ]


def _commandStats(ctx: Context) -> _Fields:
    fields: _Fields = []
    for name, (calls, seconds, failed) in sorted(ctx.server.commandStats().items()):
        usec = round(seconds * 1_000_000)
        perCall = usec / calls if calls else 0.0
        fields.append(
            (
                f"cmdstat_{name}",
                f"calls={calls},usec={usec},usec_per_call={perCall:.2f}"
                f",rejected_calls=0,failed_calls={failed}",
            )
        )
    return fields


def _cluster(ctx: Context) -> _Fields:
    return [("cluster_enabled", 1)]


def keyspaceFigures(ctx: Context) -> tuple[int, int, int]:
    """
    The keys this node holds, how many of them expire, and their mean time
    to live in milliseconds. The last two are counted on the keys of the
    first partitions up to L{KEYSPACE_SAMPLE} keys (exact for a node that
    holds fewer), then scaled: keys spread over partitions by hash.

    This node's replica alone, as Redis's C{INFO} reports one node, and
    cheaply: with each key held by several owners, these keys add up over
    the members to about the replication factor times C{DBSIZE}, which
    counts the whole cluster (L{disperse.resp.keyspace}).
    """
    store = ctx.node.store
    keys = store.stats().keys
    nowMs = ctx.nowMs()
    sampled = expiring = remainingMs = 0
    partition = 0
    while partition < PARTITION_COUNT and sampled < KEYSPACE_SAMPLE:
        for _, record in store.partitionContents(partition):
            if record.tombstone:
                continue
            sampled += 1
            if record.expiresAtMs:
                expiring += 1
                remainingMs += record.expiresAtMs - nowMs
        partition += 1
    if not sampled:
        return keys, 0, 0
    expires = expiring if partition == PARTITION_COUNT else expiring * keys // sampled
    return keys, min(expires, keys), remainingMs // expiring if expiring else 0


def _keyspace(ctx: Context) -> _Fields:
    keys, expires, averageTtl = keyspaceFigures(ctx)
    if not keys:
        return []
    return [("db0", f"keys={keys},expires={expires},avg_ttl={averageTtl}")]


_WRITERS: Final[dict[str, Callable[[Context], _Fields]]] = {
    "server": _server,
    "clients": _clients,
    "memory": _memory,
    "persistence": _persistence,
    "stats": _stats,
    "replication": _replication,
    "cpu": _cpu,
    "commandstats": _commandStats,
    "cluster": _cluster,
    "keyspace": _keyspace,
}
_TITLES: Final = {"cpu": "CPU", "commandstats": "Commandstats"}


def chosenSections(arguments: Sequence[bytes]) -> list[str]:
    """
    The sections an C{INFO} with C{arguments} asks for, in the order they
    are written: the default ones for none or C{default}, every one for
    C{all} or C{everything}; names in any case, unknown ones ignored.
    """
    if not arguments:
        return list(_DEFAULT_SECTIONS)
    wanted: set[str] = set()
    for argument in arguments:
        name = argument.decode("utf-8", "replace").lower()
        if name in ("all", "everything"):
            wanted.update(_SECTIONS)
        elif name == "default":
            wanted.update(_DEFAULT_SECTIONS)
        else:
            wanted.add(name)
    return [section for section in _SECTIONS if section in wanted]


def infoText(ctx: Context, sections: Iterable[str]) -> bytes:
    """
    C{INFO}'s text: each section a C{# Title} line and its C{field:value}
    lines, a blank line between sections, every line ending in CRLF.
    """
    parts = []
    for section in sections:
        title = _TITLES.get(section, section.capitalize())
        lines = [f"# {title}\r\n"]
        lines += [f"{field}:{value}\r\n" for field, value in _WRITERS[section](ctx)]
        parts.append("".join(lines))
    return "\r\n".join(parts).encode("utf-8")


@handles("info")
def info(ctx: Context, args: list[bytes]) -> Reply:
    return Verbatim(infoText(ctx, chosenSections(args[1:])))
