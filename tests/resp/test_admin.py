"""
Tests for L{disperse.resp.admin}: C{COMMAND} and its subcommands, C{INFO}
and C{TIME}, called in memory over a node on a L{Clock}.

The expected C{COMMAND INFO} bytes were answered by C{redis-server} 7.0.15
for commands whose metadata Redis 7.2 did not change; the tests do not
need a Redis server.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from disperse.config import NodeConfig
from disperse.resp.admin import (
    KEYSPACE_SAMPLE,
    chosenSections,
    commandDocs,
    keyspaceFigures,
)
from disperse.resp.commands import COMMANDS, CommandError
from disperse.resp.context import Session
from disperse.resp.docs import DOCS, REDIS_VERSION, aclCategories
from disperse.resp.replies import Reply, SetReply, Simple, Verbatim, encodeReply
from disperse.resp.stats import RespStats
from disperse.resp.wire import ReplyEncoder
from disperse.testing.node import makeNode
from disperse.testing.resp import FakeServer, handlerContext, runCommand

NOW = 1_700_000_000.25


def encoded(reply: Reply, protocol: int) -> bytes:
    encoder = ReplyEncoder(protocol)
    encodeReply(encoder, reply)
    return encoder.take()


# COMMAND INFO <name>, as redis-server 7 answers it over RESP3.
_KEY_SPEC_TAIL = (
    b"$12\r\nbegin_search\r\n%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n"
    b"%1\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n$5\r\n"
    b"range\r\n$4\r\nspec\r\n%3\r\n$7\r\nlastkey\r\n:LAST\r\n$7\r\nkeystep\r\n"
    b":STEP\r\n$5\r\nlimit\r\n:0\r\n~0\r\n"
)


def keySpecTail(last: int, step: int) -> bytes:
    return _KEY_SPEC_TAIL.replace(b"LAST", b"%d" % last).replace(b"STEP", b"%d" % step)


REDIS_RESP3 = {
    "get": b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n"
    b":1\r\n~3\r\n+@read\r\n+@string\r\n+@fast\r\n~0\r\n~1\r\n%3\r\n$5\r\nflags\r\n"
    b"~2\r\n+RO\r\n+access\r\n" + keySpecTail(0, 1),
    "mset": b"*1\r\n*10\r\n$4\r\nmset\r\n:-3\r\n~2\r\n+write\r\n+denyoom\r\n:1\r\n"
    b":-1\r\n:2\r\n~3\r\n+@write\r\n+@string\r\n+@slow\r\n~2\r\n$26\r\n"
    b"request_policy:multi_shard\r\n$29\r\nresponse_policy:all_succeeded\r\n"
    b"~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+OW\r\n+update\r\n" + keySpecTail(-1, 2),
    "del": b"*1\r\n*10\r\n$3\r\ndel\r\n:-2\r\n~1\r\n+write\r\n:1\r\n:-1\r\n:1\r\n"
    b"~3\r\n+@keyspace\r\n+@write\r\n+@slow\r\n~2\r\n$26\r\n"
    b"request_policy:multi_shard\r\n$23\r\nresponse_policy:agg_sum\r\n~1\r\n"
    b"%3\r\n$5\r\nflags\r\n~2\r\n+RM\r\n+delete\r\n" + keySpecTail(-1, 1),
    "watch": b"*1\r\n*10\r\n$5\r\nwatch\r\n:-2\r\n~5\r\n+noscript\r\n+loading\r\n"
    b"+stale\r\n+fast\r\n+allow_busy\r\n:1\r\n:-1\r\n:1\r\n~2\r\n+@fast\r\n"
    b"+@transaction\r\n~0\r\n~1\r\n%3\r\n$5\r\nflags\r\n~1\r\n+RO\r\n"
    + keySpecTail(-1, 1),
    "ttl": b"*1\r\n*10\r\n$3\r\nttl\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n"
    b":1\r\n~3\r\n+@keyspace\r\n+@read\r\n+@fast\r\n~1\r\n$23\r\n"
    b"nondeterministic_output\r\n~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+RO\r\n"
    b"+access\r\n" + keySpecTail(0, 1),
    "exec": b"*1\r\n*10\r\n$4\r\nexec\r\n:1\r\n~4\r\n+noscript\r\n+loading\r\n"
    b"+stale\r\n+skip_slowlog\r\n:0\r\n:0\r\n:0\r\n~2\r\n+@slow\r\n+@transaction\r\n"
    b"~0\r\n~0\r\n~0\r\n",
}
# The same for GET over RESP2: sets and maps become arrays.
REDIS_GET_RESP2 = (
    b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n"
    b"*3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n"
    b"+RO\r\n+access\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n"
    b"$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n"
    b"$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n"
    b":1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n"
)


def everyName() -> list[str]:
    names = []
    for command in COMMANDS.values():
        names.append(command.name)
        names.extend(sub.name for sub in command.subcommands.values())
    return names


class AdminTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.node = makeNode(NodeConfig(nodeName="a"), self.clock)
        self.ctx = handlerContext(self.node)

    def run_(self, *line: bytes) -> Any:
        reply = runCommand(self.ctx, *line)
        # These commands answer at once.
        self.assertNotIsInstance(reply, Deferred)
        return reply

    def refused(self, *line: bytes) -> str:
        error = self.assertRaises(CommandError, runCommand, self.ctx, *line)
        message: str = error.message
        return message


class CommandInfoTests(AdminTestCase):
    def test_sameBytesAsRedis(self) -> None:
        """
        C{COMMAND INFO} answers what Redis 7 answers, byte for byte, in both
        protocols: flags, categories and tips as sets of status or bulk
        strings in Redis's order, and a key specification.
        """
        for name, expected in REDIS_RESP3.items():
            reply = self.run_(b"COMMAND", b"INFO", name.encode())
            self.assertEqual(encoded(reply, 3), expected, name)
        reply = self.run_(b"COMMAND", b"INFO", b"get")
        self.assertEqual(encoded(reply, 2), REDIS_GET_RESP2)

    def test_unknownIsNull(self) -> None:
        reply = self.run_(b"command", b"info", b"nosuch", b"GET", b"Client|SetName")
        self.assertIsNone(reply[0])
        self.assertEqual(reply[1][0], "get")
        self.assertEqual(reply[2][:2], ["client|setname", 3])
        self.assertEqual(self.run_(b"COMMAND", b"INFO", b"client|nosuch"), [None])

    def test_container(self) -> None:
        """
        A container lists its subcommands, each in the same form, as an
        array; a command without subcommands has an empty set there.
        """
        (client,) = self.run_(b"COMMAND", b"INFO", b"client")
        self.assertEqual(client[:6], ["client", -2, SetReply(), 0, 0, 0])
        self.assertEqual(client[6], SetReply((Simple("@slow"),)))
        names = [sub[0] for sub in client[9]]
        self.assertEqual(
            names,
            [
                "client|setname",
                "client|getname",
                "client|id",
                "client|setinfo",
                "client|info",
            ],
        )
        self.assertIsInstance(client[9], list)

    def test_everyCommand(self) -> None:
        """
        C{COMMAND} and C{COMMAND INFO} alone describe every command of the
        table, and C{COMMAND COUNT} counts them.
        """
        everything = self.run_(b"COMMAND")
        self.assertEqual([info[0] for info in everything], list(COMMANDS))
        self.assertEqual(self.run_(b"COMMAND", b"INFO"), everything)
        self.assertEqual(self.run_(b"COMMAND", b"COUNT"), len(COMMANDS))
        for info in everything:
            self.assertEqual(len(info), 10)
            command = COMMANDS[info[0]]
            self.assertEqual(
                tuple(info[1:6]),
                (
                    command.arity,
                    info[2],
                    command.firstKey,
                    command.lastKey,
                    command.step,
                ),
            )
            # A key specification exactly for the commands with keys.
            self.assertEqual(len(info[8]), 1 if command.firstKey else 0)

    def test_clusterClientReadsKeys(self) -> None:
        """
        The key positions a cluster client derives from C{COMMAND} (first,
        last counted from the end when negative, step) pick the keys of a
        command line, as C{COMMAND GETKEYS} does.
        """
        info = {entry[0]: entry for entry in self.run_(b"COMMAND")}
        line = [b"MSET", b"a", b"1", b"b", b"2"]
        first, last, step = info["mset"][3:6]
        last = last + len(line) if last < 0 else last
        fromInfo = line[first : last + 1 : step]
        self.assertEqual(fromInfo, [b"a", b"b"])
        self.assertEqual(self.run_(b"COMMAND", b"GETKEYS", *line), fromInfo)


class CategoryTests(SynchronousTestCase):
    def test_derivedAsRedisDoes(self) -> None:
        """
        Categories are the command's own plus those its flags imply, as
        Redis 7.2 lists them.
        """
        expected = {
            "get": ("read", "string", "fast"),
            "set": ("write", "string", "slow"),
            "del": ("keyspace", "write", "slow"),
            "info": ("slow", "dangerous"),
            "flushall": ("keyspace", "write", "slow", "dangerous"),
            "ping": ("fast", "connection"),
            "time": ("fast",),
            "client": ("slow",),
            "client|setname": ("slow", "connection"),
            "keys": ("keyspace", "read", "slow", "dangerous"),
            "multi": ("fast", "transaction"),
            "cluster|slots": ("slow",),
            "command|docs": ("slow", "connection"),
        }
        for name, categories in expected.items():
            container, _, sub = name.partition("|")
            command = COMMANDS[container]
            if sub:
                command = command.subcommands[sub]
            self.assertEqual(aclCategories(name, command.flags), categories, name)


class CommandDocsTests(AdminTestCase):
    def test_everyCommandDocumented(self) -> None:
        """
        Every command and subcommand has a summary, and nothing else is
        documented.
        """
        self.assertEqual(sorted(DOCS), sorted(everyName()))
        for name, doc in DOCS.items():
            self.assertTrue(doc.summary.endswith("."), name)
            self.assertTrue(doc.since, name)

    def test_keysDocumentedAsKeys(self) -> None:
        """
        A command with keys documents a key argument and how it treats its
        keys; a command without has neither.
        """
        for name in everyName():
            container, _, sub = name.partition("|")
            command = COMMANDS[container]
            if sub:
                command = command.subcommands[sub]
            doc = DOCS[name]
            types = set()
            pending = list(doc.arguments)
            while pending:
                argument = pending.pop()
                types.add(argument.type)
                pending.extend(argument.arguments)
            self.assertEqual("key" in types, bool(command.firstKey), name)
            self.assertEqual(bool(doc.keyFlags), bool(command.firstKey), name)

    def test_shape(self) -> None:
        """
        A command's documentation is a map in Redis's key order: summary,
        since, group, complexity, deprecation, arguments, each argument a
        map of name, type, display text, key index, token, since and flags.
        """
        docs = self.run_(b"COMMAND", b"DOCS", b"setex")
        setex = docs["setex"]
        self.assertEqual(
            list(setex),
            [
                "summary",
                "since",
                "group",
                "complexity",
                "doc_flags",
                "deprecated_since",
                "replaced_by",
                "arguments",
            ],
        )
        self.assertEqual(setex["doc_flags"], SetReply((Simple("deprecated"),)))
        self.assertEqual(
            setex["arguments"][0],
            {"name": "key", "type": "key", "display_text": "key", "key_spec_index": 0},
        )
        (setArguments,) = self.run_(b"COMMAND", b"DOCS", b"set").values()
        condition = setArguments["arguments"][2]
        self.assertEqual(
            condition,
            {
                "name": "condition",
                "type": "oneof",
                "since": "2.6.12",
                "flags": SetReply((Simple("optional"),)),
                "arguments": [
                    {
                        "name": "nx",
                        "type": "pure-token",
                        "display_text": "nx",
                        "token": "NX",
                    },
                    {
                        "name": "xx",
                        "type": "pure-token",
                        "display_text": "xx",
                        "token": "XX",
                    },
                ],
            },
        )

    def test_subcommandsByFullName(self) -> None:
        """
        A container's subcommands are a map keyed by their full names
        (C{redis-cli} 7.0 takes the subcommand's name after the C{|}).
        """
        (cluster,) = self.run_(b"COMMAND", b"DOCS", b"cluster").values()
        self.assertEqual(
            list(cluster["subcommands"]),
            [f"cluster|{sub}" for sub in COMMANDS["cluster"].subcommands],
        )
        self.assertEqual(
            list(self.run_(b"COMMAND", b"DOCS", b"cluster|myid")), ["cluster|myid"]
        )

    def test_unknownLeftOut(self) -> None:
        self.assertEqual(self.run_(b"COMMAND", b"DOCS", b"nosuch"), {})
        self.assertEqual(
            list(self.run_(b"COMMAND", b"DOCS", b"nosuch", b"GET")), ["get"]
        )
        self.assertEqual(list(self.run_(b"COMMAND", b"DOCS")), list(COMMANDS))

    def test_whatRedisCliAssumes(self) -> None:
        """
        C{redis-cli} asserts on the type of every field of C{COMMAND DOCS}
        while it builds its help: strings where it reads text, an array of
        maps for arguments, each with a name and a type, a set (or array)
        of status replies for flags, and a map for subcommands. A wrong type
        aborts it.
        """

        def checkArgument(argument: Any) -> None:
            self.assertIsInstance(argument, dict)
            self.assertIsInstance(argument["name"], str)
            self.assertIn(
                argument["type"],
                {
                    "key",
                    "string",
                    "integer",
                    "double",
                    "pattern",
                    "unix-time",
                    "pure-token",
                    "oneof",
                    "block",
                },
            )
            for key in ("display_text", "token", "since"):
                if key in argument:
                    self.assertIsInstance(argument[key], str)
            for flag in argument.get("flags", ()):
                self.assertIs(type(flag), Simple)
            for nested in argument.get("arguments", ()):
                checkArgument(nested)
            self.assertEqual(
                "arguments" in argument, argument["type"] in ("oneof", "block")
            )

        def checkCommand(doc: Any) -> None:
            for key in ("summary", "since", "group", "complexity"):
                self.assertIsInstance(doc[key], str)
            self.assertIsInstance(doc.get("arguments", []), list)
            for argument in doc.get("arguments", []):
                checkArgument(argument)
            for name, sub in doc.get("subcommands", {}).items():
                self.assertIn("|", name)
                checkCommand(sub)

        for doc in self.run_(b"COMMAND", b"DOCS").values():
            checkCommand(doc)
        # And it encodes: nothing in it is outside the reply types.
        self.assertTrue(encoded(self.run_(b"COMMAND", b"DOCS"), 2))
        self.assertTrue(encoded(self.run_(b"COMMAND", b"DOCS"), 3))

    def test_docsOfOneCommand(self) -> None:
        doc: Any = commandDocs(COMMANDS["disperse"])
        self.assertEqual(doc["group"], "connection")
        consistency = doc["subcommands"]["disperse|consistency"]
        tokens = [a["token"] for a in consistency["arguments"][0]["arguments"]]
        self.assertEqual(tokens, ["ONE", "QUORUM", "ALL"])


class GetKeysAndListTests(AdminTestCase):
    def test_getKeys(self) -> None:
        self.assertEqual(
            self.run_(b"COMMAND", b"GETKEYS", b"MSET", b"a", b"1", b"b", b"2"),
            [b"a", b"b"],
        )
        self.assertEqual(
            self.run_(b"COMMAND", b"GETKEYS", b"del", b"x", b"y", b"z"),
            [b"x", b"y", b"z"],
        )
        self.assertEqual(
            self.refused(b"COMMAND", b"GETKEYS", b"nosuch", b"a"),
            "ERR Invalid command specified",
        )
        self.assertEqual(
            self.refused(b"COMMAND", b"GETKEYS", b"ping", b"a"),
            "ERR The command has no key arguments",
        )
        self.assertEqual(
            self.refused(b"COMMAND", b"GETKEYS", b"get", b"a", b"b"),
            "ERR Invalid number of arguments specified for command",
        )

    def test_list(self) -> None:
        """
        C{COMMAND LIST} names subcommands too, each after its container.
        """
        names = self.run_(b"COMMAND", b"LIST")
        self.assertEqual(names, everyName())
        self.assertLess(names.index("client"), names.index("client|setname"))

    def test_listFiltered(self) -> None:
        self.assertEqual(
            self.run_(b"COMMAND", b"LIST", b"FILTERBY", b"ACLCAT", b"transaction"),
            ["multi", "exec", "discard", "watch", "unwatch"],
        )
        self.assertEqual(
            self.run_(b"command", b"list", b"filterby", b"pattern", b"*ttl"),
            ["ttl", "pttl"],
        )
        self.assertEqual(
            self.run_(b"COMMAND", b"LIST", b"FILTERBY", b"PATTERN", b"CLIENT|*NAME"),
            ["client|setname", "client|getname"],
        )
        self.assertEqual(
            self.run_(b"COMMAND", b"LIST", b"FILTERBY", b"MODULE", b"json"), []
        )
        self.assertEqual(
            self.run_(b"COMMAND", b"LIST", b"FILTERBY", b"ACLCAT", b"nosuch"), []
        )
        for line in (
            (b"COMMAND", b"LIST", b"x"),
            (b"COMMAND", b"LIST", b"FILTERBY", b"colour", b"red"),
            (b"COMMAND", b"LIST", b"FILTERBY", b"ACLCAT"),
        ):
            self.assertEqual(self.refused(*line), "ERR syntax error")

    def test_help(self) -> None:
        lines = self.run_(b"COMMAND", b"HELP")
        self.assertTrue(all(type(line) is Simple for line in lines))
        self.assertIn("GETKEYS <full-command>", lines)


class TimeTests(AdminTestCase):
    def test_time(self) -> None:
        """
        C{TIME} answers the node's clock: seconds and microseconds, both as
        bulk strings.
        """
        self.assertEqual(self.run_(b"TIME"), [b"1700000000", b"250000"])
        self.clock.advance(1.5)
        self.assertEqual(self.run_(b"time"), [b"1700000001", b"750000"])


def infoFields(reply: Any) -> dict[str, dict[str, str]]:
    """
    An INFO text as sections of fields, checking its layout on the way:
    CRLF line ends, a title per section, a blank line between sections.
    """
    assert isinstance(reply, Verbatim)
    text = bytes(reply).decode()
    assert text.endswith("\r\n")
    sections: dict[str, dict[str, str]] = {}
    for block in text.split("\r\n\r\n"):
        lines = block.strip("\r\n").split("\r\n")
        assert lines[0].startswith("# "), lines
        fields = sections[lines[0][2:]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name] = value
    return sections


class InfoTests(AdminTestCase):
    def setUp(self) -> None:
        super().setUp()
        server = self.ctx.server
        assert isinstance(server, FakeServer)
        server.startedMs = int((NOW - 90_000) * 1000)
        server.stats = {"get": (4, 0.0002, 1), "client|setname": (1, 0.00001, 0)}
        server.open.append(Session(clientId=2, address="127.0.0.1:50001"))
        self.resp = RespStats(connections=2, accepted=7, rejected=1, protocolErrors=2)
        self.node.respStats = self.resp

    def info(self, *sections: bytes) -> dict[str, dict[str, str]]:
        return infoFields(self.run_(b"INFO", *sections))

    def test_defaultSections(self) -> None:
        self.assertEqual(
            list(self.info()),
            [
                "Server",
                "Clients",
                "Memory",
                "Persistence",
                "Stats",
                "Replication",
                "CPU",
                "Cluster",
                "Keyspace",
            ],
        )
        self.assertEqual(list(self.info(b"default")), list(self.info()))
        every = list(self.info(b"ALL"))
        self.assertEqual(every[-3:], ["Commandstats", "Cluster", "Keyspace"])
        self.assertEqual(list(self.info(b"everything")), every)

    def test_chosenSections(self) -> None:
        """
        Sections come in Redis's order whatever order they are asked in, in
        any case; unknown names are ignored, and only unknown ones make an
        empty reply.
        """
        self.assertEqual(
            list(self.info(b"Keyspace", b"SERVER")), ["Server", "Keyspace"]
        )
        self.assertEqual(self.run_(b"INFO", b"nosuch"), Verbatim(b""))
        self.assertEqual(
            chosenSections([b"commandstats", b"default"])[-3:],
            ["commandstats", "cluster", "keyspace"],
        )

    def test_server(self) -> None:
        server = self.info(b"server")["Server"]
        self.assertEqual(server["redis_version"], REDIS_VERSION)
        self.assertEqual(server["redis_mode"], "cluster")
        self.assertEqual(server["tcp_port"], "6380")
        self.assertEqual(server["uptime_in_seconds"], "90000")
        self.assertEqual(server["uptime_in_days"], "1")
        self.assertEqual(server["disperse_node"], "a")
        self.assertEqual(server["arch_bits"], "64")
        self.assertEqual(len(server["run_id"]), 40)
        self.assertEqual(server["server_time_usec"], "1700000000250000")
        self.assertTrue(server["process_id"].isdigit())

    def test_clientsAndStats(self) -> None:
        info = self.info(b"clients", b"stats")
        self.assertEqual(info["Clients"]["connected_clients"], "2")
        stats = info["Stats"]
        self.assertEqual(stats["total_connections_received"], "7")
        self.assertEqual(stats["rejected_connections"], "1")
        self.assertEqual(stats["total_commands_processed"], "5")
        self.assertEqual(stats["total_error_replies"], "1")
        self.assertEqual(stats["disperse_protocol_errors"], "2")
        self.node.store.get("missing")
        self.assertEqual(self.info(b"stats")["Stats"]["keyspace_misses"], "1")

    def test_withoutRespStats(self) -> None:
        """
        Handlers called without the server's counters report zeros rather
        than fail.
        """
        self.node.respStats = None
        stats = self.info(b"stats")["Stats"]
        self.assertEqual(stats["total_connections_received"], "0")

    def test_memoryAndReplication(self) -> None:
        self.node.putLocal("k", b"value")
        info = self.info(b"memory", b"replication", b"cluster")
        memory = info["Memory"]
        used = self.node.store.stats().bytes
        self.assertEqual(memory["used_memory"], str(used))
        self.assertEqual(memory["maxmemory"], str(self.node.config.maxMemory))
        self.assertEqual(memory["maxmemory_human"], "244.14M")
        self.assertEqual(info["Replication"]["role"], "master")
        self.assertEqual(info["Replication"]["connected_slaves"], "0")
        self.assertEqual(info["Cluster"], {"cluster_enabled": "1"})

    def test_commandStats(self) -> None:
        self.assertEqual(
            self.info(b"commandstats")["Commandstats"],
            {
                "cmdstat_client|setname": "calls=1,usec=10,usec_per_call=10.00"
                ",rejected_calls=0,failed_calls=0",
                "cmdstat_get": "calls=4,usec=200,usec_per_call=50.00"
                ",rejected_calls=0,failed_calls=1",
            },
        )

    def test_keyspace(self) -> None:
        """
        The keyspace line counts keys, those that expire and their mean time
        to live; without keys the section is empty, as in Redis.
        """
        self.assertEqual(self.info(b"keyspace"), {"Keyspace": {}})
        self.node.putLocal("a", b"1")
        self.node.putLocal("b", b"2", 10_000)
        self.node.putLocal("c", b"3", 20_000)
        self.node.deleteLocal("a")
        self.node.putLocal("d", b"4")
        self.assertEqual(
            self.info(b"keyspace")["Keyspace"],
            {"db0": "keys=3,expires=2,avg_ttl=15000"},
        )

    def test_keyspaceSampled(self) -> None:
        """
        On a node with many keys, the expiring ones are counted on a sample
        and scaled, close to the true count.
        """
        keys = 4 * KEYSPACE_SAMPLE
        for i in range(keys):
            self.node.putLocal(f"key{i}", b"v", 60_000 if i % 4 == 0 else 0)
        total, expires, averageTtl = keyspaceFigures(self.ctx)
        self.assertEqual(total, keys)
        self.assertTrue(0.8 < expires / (keys // 4) < 1.2, expires)
        self.assertEqual(averageTtl, 60_000)

    def test_protocols(self) -> None:
        """
        C{INFO} is a verbatim text in RESP3 and a bulk string in RESP2.
        """
        reply = self.run_(b"INFO", b"cluster")
        self.assertEqual(
            encoded(reply, 2), b"$30\r\n# Cluster\r\ncluster_enabled:1\r\n\r\n"
        )
        self.assertEqual(
            encoded(reply, 3), b"=34\r\ntxt:# Cluster\r\ncluster_enabled:1\r\n\r\n"
        )
