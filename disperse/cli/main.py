"""
The C{disperse} command: read, write and administer a cluster from a
shell or a script.

Human-readable output by default; C{--json} prints one JSON document on
standard output instead (errors included, as C{{"error": ...}}). The
exit status says what happened (see L{EXIT_STATUSES}).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import IO, Any, NoReturn

from disperse import __version__
from disperse.cli import bench as benchmark
from disperse.cli import keys as keyring
from disperse.cli.client import (
    DEFAULT_NODE,
    DEFAULT_TIMEOUT,
    EXIT_CONNECT,
    EXIT_DENIED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SERVER,
    EXIT_USAGE,
    CannotConnect,
    Client,
    ClientError,
    NotFound,
    Response,
    check,
    normaliseNode,
)
from disperse.cli.load import FORMATS, EntryReader, LoadReport, load, parseTtl
from disperse.cli.terminal import Progress, duration, size, table
from disperse.persist.datadir import DataDirError
from disperse.persist.verify import verify

# verify: the data directory holds damaged files.
EXIT_DAMAGED = 6

EXIT_STATUSES = {
    EXIT_OK: "success",
    EXIT_NOT_FOUND: "the key does not exist (get)",
    EXIT_USAGE: "bad arguments or input, or the node rejected the request as"
    " malformed (4xx)",
    EXIT_SERVER: "the node failed: consistency level not met (503) or another"
    " server error; a bench or load that saw errors",
    EXIT_CONNECT: "cannot connect to the node",
    EXIT_DENIED: "the node refused the credentials (401, 403; see DISPERSE_TOKEN)",
    EXIT_DAMAGED: "verify found damage in the data directory",
}
LEVELS = ("one", "quorum", "all")


class UsageError(ClientError):
    exitStatus = EXIT_USAGE


class _BadArguments(Exception):
    """
    The command line does not parse; C{parser} is the (sub)command's.
    """

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """
    An argument parser that raises its errors instead of printing them and
    exiting, so that L{main} reports them like any other error: as JSON
    under C{--json}.
    """

    def error(self, message: str) -> NoReturn:
        raise _BadArguments(self, message)


def _wantsJSON(argv: Sequence[str]) -> bool:
    """
    Whether C{--json} (or an abbreviation argparse accepts) is anywhere
    among the options of C{argv}, known before they are parsed.
    """
    for word in argv:
        if word == "--":
            return False
        if len(word) > 2 and "--json".startswith(word):
            return True
    return False


class Output:
    """
    Where a command's results go: standard output (text, bytes or JSON)
    and standard error (notes and progress for people).
    """

    def __init__(self, asJSON: bool, stdout: IO[str], stderr: IO[str]) -> None:
        self.asJSON = asJSON
        self.stdout = stdout
        self.stderr = stderr

    def json(self, document: Any) -> None:
        self.stdout.write(json.dumps(document) + "\n")

    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def note(self, text: str) -> None:
        self.stderr.write(f"disperse: {text}\n")

    def raw(self, data: bytes) -> None:
        buffer = getattr(self.stdout, "buffer", None)
        if buffer is None:
            self.stdout.write(data.decode("utf-8", "replace"))
        else:
            self.stdout.flush()
            buffer.write(data)
            buffer.flush()


class Context:
    """
    What every command gets: its arguments, how to reach nodes, output.
    """

    def __init__(
        self, args: argparse.Namespace, output: Output, environ: Mapping[str, str]
    ) -> None:
        self.args = args
        self.output = output
        self.environ = environ
        self.node: str = args.node
        self.token: str | None = environ.get("DISPERSE_TOKEN") or None
        self.timeout: float = args.timeout

    def client(self, node: str | None = None) -> Client:
        return Client(node or self.node, token=self.token, timeout=self.timeout)


# The cache


def cmdGet(context: Context) -> int:
    args, out = context.args, context.output
    client = context.client()
    response = client.get(args.key, args.consistency)
    if response.status == 404:
        raise NotFound(f"key {args.key!r} not found", 404)
    check(response, f"reading {args.key!r}")
    binary = response.header("content-type") == "application/octet-stream"
    if out.asJSON:
        document: dict[str, Any] = {"key": args.key, "binary": binary}
        try:
            if binary:
                document["value_base64"] = base64.b64encode(response.body).decode()
            else:
                document["value"] = response.body.decode("utf-8")
        except UnicodeDecodeError:
            document["value_base64"] = base64.b64encode(response.body).decode()
        document.update(_replicaHeaders(response))
        out.json(document)
        return EXIT_OK
    out.raw(response.body)
    if out.stdout.isatty() and not response.body.endswith(b"\n"):
        out.line()
    return EXIT_OK


def _replicaHeaders(response: Response) -> dict[str, int]:
    found = {}
    for header, name in (
        ("x-disperse-replicas", "replicas"),
        ("x-disperse-acks", "acks"),
        ("x-disperse-answered", "answered"),
    ):
        text = response.header(header)
        if text is not None and text.isdigit():
            found[name] = int(text)
    return found


def cmdPut(context: Context) -> int:
    args = context.args
    try:
        ttl = parseTtl(args.ttl) if args.ttl else None
    except ValueError as e:
        raise UsageError(f"--ttl: {e}") from None
    if args.value is not None and args.file is not None:
        raise UsageError("give a value or --file, not both")
    if args.value is not None and args.value != "-":
        value, binary = args.value.encode("utf-8"), args.binary
    else:
        value, binary = _readValue(args.file, context), not args.text
    # One rule for every input: an empty value is a value only when asked
    # for as bytes (an empty pipe is more often a mistake than a value).
    if not value and not args.binary:
        raise UsageError("an empty value can only be stored as --binary")
    if not binary:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError("--text values must be UTF-8") from None
    response = context.client().put(
        args.key, value, ttl, binary=binary, consistency=args.consistency
    )
    check(response, f"writing {args.key!r}")
    _reportWrite(context, args.key, response, "stored")
    return EXIT_OK


def _readValue(path: str | None, context: Context) -> bytes:
    if path is None or path == "-":
        stdin = sys.stdin
        if stdin.isatty():
            raise UsageError("give a value, --file, or pipe the value in")
        return stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"--file: {e.strerror}: {path}") from None


def _reportWrite(context: Context, key: str, response: Response, did: str) -> None:
    headers = _replicaHeaders(response)
    if context.output.asJSON:
        context.output.json({"key": key, "result": did, **headers})
        return
    replicas = headers.get("replicas")
    acks = headers.get("acks")
    detail = f" ({acks} of {replicas} replicas)" if replicas is not None else ""
    context.output.line(f"{did} {key}{detail}")


def cmdDelete(context: Context) -> int:
    args = context.args
    response = context.client().delete(args.key, args.consistency)
    check(response, f"deleting {args.key!r}")
    _reportWrite(context, args.key, response, "deleted")
    return EXIT_OK


# The cluster


def cmdMembers(context: Context) -> int:
    out = context.output
    members = context.client().getJSON("/cluster/members", "listing members")
    if out.asJSON:
        out.json(members)
        return EXIT_OK
    rows = [
        [
            m.get("name"),
            m.get("state"),
            m.get("gossip_addr"),
            m.get("http_addr"),
            m.get("zone") or "-",
            m.get("incarnation"),
        ]
        for m in sorted(members, key=lambda m: str(m.get("name")))
    ]
    out.line(table(["NAME", "STATE", "GOSSIP", "HTTP", "ZONE", "INCARNATION"], rows))
    return EXIT_OK


def cmdStats(context: Context) -> int:
    out = context.output
    stats = context.client().getJSON("/stats", "reading statistics")
    if out.asJSON:
        out.json(stats)
        return EXIT_OK
    for label, text in _describeStats(stats):
        out.line(f"{label:<13}{text}")
    return EXIT_OK


def _describeStats(stats: dict[str, Any]) -> list[tuple[str, str]]:
    def n(section: dict[str, Any], name: str) -> str:
        value = section.get(name, 0)
        return f"{value:,}" if isinstance(value, int) else str(value)

    lines = [("node", str(stats.get("node")))]
    budget = stats.get("maxBytes")
    used = stats.get("bytes", 0)
    share = f" ({100 * used / budget:.1f}%)" if budget else ""
    lines.append(
        (
            "store",
            f"{n(stats, 'keys')} keys, {size(used)}"
            + (f" of {size(budget)}{share}" if budget else "")
            + f", {n(stats, 'tombstones')} tombstones",
        )
    )
    hits, misses = stats.get("hits", 0), stats.get("misses", 0)
    ratio = f" ({100 * hits / (hits + misses):.1f}% hits)" if hits + misses else ""
    lines.append(("reads", f"{hits:,} hits, {misses:,} misses{ratio}"))
    lines.append(
        (
            "writes",
            f"{n(stats, 'sets')} sets, {n(stats, 'deletes')} deletes,"
            f" {n(stats, 'evictions')} evictions,"
            f" {n(stats, 'expirations')} expirations",
        )
    )
    gossip = stats.get("gossip")
    if isinstance(gossip, dict):
        states = gossip.get("members", {})
        lines.append(
            (
                "members",
                ", ".join(f"{count} {state}" for state, count in states.items()),
            )
        )
        lines.append(
            (
                "gossip",
                f"{n(gossip, 'packetsIn')} packets in, {n(gossip, 'packetsOut')} out;"
                f" {size(gossip.get('bytesIn', 0))} in,"
                f" {size(gossip.get('bytesOut', 0))} out;"
                f" {n(gossip, 'decryptFailures')} decrypt failures;"
                f" health {n(gossip, 'healthScore')}",
            )
        )
        lines.append(
            (
                "probes",
                f"{n(gossip, 'probes')} probes, {n(gossip, 'probesFailed')} failed,"
                f" {n(gossip, 'suspicions')} suspicions,"
                f" {n(gossip, 'refutations')} refutations",
            )
        )
    replication = stats.get("replication")
    if isinstance(replication, dict):
        lines.append(
            (
                "replication",
                f"{n(replication, 'writes')} writes"
                f" ({n(replication, 'writesUnderReplicated')} under-replicated),"
                f" {n(replication, 'reads')} reads"
                f" ({n(replication, 'readsUnderReplicated')} under-replicated),"
                f" {n(replication, 'readRepairs')} read repairs,"
                f" {n(replication, 'readRetries')} read retries,"
                f" {n(replication, 'remoteFailures')} remote failures",
            )
        )
        lines.append(
            (
                "hints",
                f"{n(replication, 'hintsPending')} pending,"
                f" {n(replication, 'hintsQueued')} queued,"
                f" {n(replication, 'hintsDelivered')} delivered,"
                f" {n(replication, 'hintsDropped')} dropped",
            )
        )
        lines.append(
            (
                "placement",
                f"{n(replication, 'members')} members hold data,"
                f" table {replication.get('table')}",
            )
        )
    antiEntropy = stats.get("antiEntropy")
    if isinstance(antiEntropy, dict):
        lines.append(
            (
                "anti-entropy",
                f"{n(antiEntropy, 'rounds')} rounds,"
                f" {n(antiEntropy, 'differing')} differing,"
                f" {n(antiEntropy, 'keysPulled')} keys pulled,"
                f" {n(antiEntropy, 'keysPushed')} pushed,"
                f" {n(antiEntropy, 'failures')} failures",
            )
        )
    return lines


def cmdPartitions(context: Context) -> int:
    args, out = context.args, context.output
    view = context.client().getJSON("/cluster/partitions", "reading partitions")
    if out.asJSON:
        out.json(view)
        return EXIT_OK
    partitions = view.get("partitions", [])
    out.line(
        f"node {view.get('node')}, table {view.get('table')},"
        f" {len(partitions):,} partitions"
    )
    if args.all:
        out.line(
            table(
                ["PARTITION", "OWNERS", "HELD", "ENTRIES", "ROOT"],
                [
                    [
                        p["partition"],
                        ",".join(p["owners"]) or "-",
                        "yes" if p["held"] else "no",
                        p["entries"],
                        p["root"][:16],
                    ]
                    for p in partitions
                ],
            )
        )
        return EXIT_OK
    primaries: Counter[str] = Counter()
    replicas: Counter[str] = Counter()
    for p in partitions:
        owners = p.get("owners", [])
        primaries.update(owners[:1])
        replicas.update(owners[1:])
    names = sorted(set(primaries) | set(replicas))
    out.line(
        table(
            ["MEMBER", "PRIMARY", "REPLICA", "TOTAL"],
            [
                [
                    name,
                    primaries[name],
                    replicas[name],
                    primaries[name] + replicas[name],
                ]
                for name in names
            ],
        )
    )
    held = [p for p in partitions if p.get("held")]
    out.line(
        f"this node holds {len(held):,} partitions,"
        f" {sum(p.get('entries', 0) for p in partitions):,} entries"
    )
    return EXIT_OK


# Gossip keys


def _keyArgument(text: str | None, what: str) -> bytes:
    if text is None or text == "-":
        if sys.stdin.isatty():
            raise UsageError(f"give the {what} (base64), or pipe it in")
        text = sys.stdin.readline()
    try:
        return keyring.decodeKey(text)
    except ValueError as e:
        raise UsageError(f"{what}: {e}") from None


def cmdKeys(context: Context) -> int:
    args, out = context.args, context.output
    operation = args.operation or "list"
    chosen, skipped = keyring.targets(context.client(), not args.this_node)
    for name in skipped:
        out.note(f"skipping {name}: not running")
    if operation == "list":
        outcomes = keyring.keyrings(chosen, context.client)
        if out.asJSON:
            out.json([_outcomeJSON(o) for o in outcomes])
        else:
            out.line(
                table(
                    ["MEMBER", "PRIMARY", "KEYS"],
                    [_outcomeRow(o) for o in outcomes],
                )
            )
        failed = any(o.error is not None for o in outcomes)
        return EXIT_SERVER if failed else EXIT_OK
    if operation == "rotate":
        return _rotate(context, chosen)
    key = _keyArgument(args.key, "key")
    outcomes = keyring.step(chosen, operation, key, context.client)
    if out.asJSON:
        out.json([_outcomeJSON(o) for o in outcomes])
    else:
        names = ", ".join(o.member for o in outcomes)
        out.line(f"{operation} {keyring.fingerprint(key)}: done on {names}")
    return EXIT_OK


def _rotate(context: Context, chosen: list[keyring.Target]) -> int:
    args, out = context.args, context.output
    oldText = args.old_key or context.environ.get("DISPERSE_GOSSIP_KEY")
    old = _keyArgument(oldText, "old key") if oldText else None

    def progressed(step: str, outcomes: list[keyring.Outcome]) -> None:
        if not out.asJSON:
            out.note(f"{step}: done on {len(outcomes)} member(s)")

    new, outcomes = keyring.rotate(chosen, context.client, old, onStep=progressed)
    encoded = base64.b64encode(new).decode("ascii")
    if out.asJSON:
        out.json(
            {
                "key": encoded,
                "fingerprint": keyring.fingerprint(new),
                "removed": keyring.fingerprint(old) if old else None,
                "members": [_outcomeJSON(o) for o in outcomes],
            }
        )
        return EXIT_OK
    out.line(encoded)
    out.note(
        f"every member now encrypts with {keyring.fingerprint(new)}; keep the key"
        " above for --gossip-key or the keyring file, or restarted nodes will"
        " not be able to talk to the others"
    )
    if old is None:
        out.note(
            "the old key is still installed: remove it with"
            " 'disperse keys remove OLDKEY' (or pass --old-key next time)"
        )
    return EXIT_OK


def _outcomeJSON(outcome: keyring.Outcome) -> dict[str, Any]:
    if outcome.error is not None:
        return {"member": outcome.member, "error": outcome.error}
    return {"member": outcome.member, **(outcome.keyring or {})}


def _outcomeRow(outcome: keyring.Outcome) -> list[object]:
    if outcome.error is not None:
        return [outcome.member, "error", outcome.error]
    found = outcome.keyring or {}
    if not found.get("encryption"):
        return [outcome.member, "-", "gossip not encrypted"]
    return [outcome.member, found.get("primary"), ", ".join(found.get("keys", []))]


# Bulk work


def cmdLoad(context: Context) -> int:
    args, out = context.args, context.output
    try:
        defaultTtl = parseTtl(args.ttl) if args.ttl else None
    except ValueError as e:
        raise UsageError(f"--ttl: {e}") from None
    fmt = args.format or ("csv" if args.file.lower().endswith(".csv") else "jsonl")
    if args.file == "-":
        stream, total = sys.stdin.buffer, None
    else:
        try:
            stream = open(args.file, "rb")  # noqa: SIM115 closed below
            total = os.fstat(stream.fileno()).st_size
        except OSError as e:
            raise UsageError(f"{e.strerror}: {args.file}") from None
    reader = EntryReader(stream, fmt, defaultTtl)
    progress = Progress(out.stderr)

    def advanced(report: LoadReport) -> None:
        progress.show(
            reader.position,
            total,
            f"{report.loaded:,} loaded, {report.failed:,} failed,"
            f" {len(report.bad):,} malformed",
        )

    try:
        report = load(
            reader,
            context.client,
            concurrency=args.concurrency,
            consistency=args.consistency,
            onProgress=advanced,
        )
    finally:
        progress.clear()
        if stream is not sys.stdin.buffer:
            stream.close()
    if out.asJSON:
        out.json(report.asJSON())
    else:
        rate = report.loaded / report.seconds if report.seconds else 0.0
        out.line(
            f"loaded {report.loaded:,} keys in {duration(report.seconds)}"
            f" ({rate:,.0f}/s); {report.failed:,} failed,"
            f" {len(report.bad):,} malformed lines"
        )
        for status, count in sorted(report.failures.items()):
            out.line(f"  HTTP {status}: {count:,} ({report.messages.get(status)})")
        for bad in report.bad[:10]:
            out.note(f"line {bad.line}: {bad.reason}")
        if len(report.bad) > 10:
            out.note(f"... and {len(report.bad) - 10} more malformed lines")
    if report.aborted is not None:
        if not out.asJSON:
            out.note(f"stopped: {report.aborted}")
        return EXIT_CONNECT
    if report.failed:
        return EXIT_SERVER
    return EXIT_USAGE if report.bad else EXIT_OK


def cmdBench(context: Context) -> int:
    args, out = context.args, context.output
    try:
        seconds = parseTtl(args.duration) or 0.0
        ttl = parseTtl(args.ttl) if args.ttl else None
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not 0 <= args.reads <= 1:
        raise UsageError("--reads is a fraction between 0 and 1")
    plan = benchmark.BenchPlan(
        requests=args.requests,
        seconds=seconds,
        concurrency=args.concurrency,
        readFraction=args.reads,
        keys=args.keys,
        valueSize=args.value_size,
        prefix=args.prefix,
        ttlSeconds=ttl,
        consistency=args.consistency,
        seed=args.seed,
    )
    progress = Progress(out.stderr)

    def advanced(done: int, elapsed: float, errors: int) -> None:
        rate = done / elapsed if elapsed else 0.0
        # Whichever bound comes first ends the run: the bar follows it.
        share = max(done / plan.requests, elapsed / plan.seconds if plan.seconds else 0)
        progress.show(
            share,
            1.0,
            f"{done:,}/{plan.requests:,} requests, {rate:,.0f}/s,"
            f" {errors:,} errors, {elapsed:.1f}/{plan.seconds:.0f} s",
        )

    try:
        result = benchmark.run(plan, context.client, onProgress=advanced)
    finally:
        progress.clear()
    if result.aborted is not None:
        raise CannotConnect(result.aborted)
    summary = result.asJSON()
    if out.asJSON:
        out.json(summary)
    else:
        _printBench(out, summary)
    return EXIT_SERVER if summary["errors"] else EXIT_OK


def _printBench(out: Output, summary: dict[str, Any]) -> None:
    out.line(
        f"{summary['requests']:,} requests in {summary['seconds']:.1f} s"
        f" over {summary['concurrency']} connections"
    )
    out.line()
    rows = [
        [
            name,
            figures["requests"],
            figures["errors"],
            round(figures["throughput"]),
            duration(figures["p50"]),
            duration(figures["p90"]),
            duration(figures["p99"]),
            duration(figures["max"]),
        ]
        for name, figures in summary["operations"].items()
        if figures["requests"] or name == "all"
    ]
    out.line(
        table(
            ["OPERATION", "REQUESTS", "ERRORS", "REQ/S", "P50", "P90", "P99", "MAX"],
            rows,
        )
    )
    reads = summary["hits"] + summary["misses"]
    if reads:
        out.line()
        out.line(
            f"gets: {summary['hits']:,} hits, {summary['misses']:,} misses"
            f" ({100 * summary['hits'] / reads:.1f}% hits)"
        )
    errors: dict[str, int] = summary["errors"]
    if errors:
        out.line()
        byCount = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
        out.line(table(["STATUS", "ERRORS"], byCount))


# Arguments


def cmdVerify(context: Context) -> int:
    """
    Check a stopped node's data directory, changing nothing.
    """
    out = context.output
    try:
        result = verify(context.args.data_dir)
    except DataDirError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"{context.args.data_dir}: {e.strerror or e}") from None
    if out.asJSON:
        out.json({**asdict(result), "damaged": result.damaged})
    else:
        out.line(f"data directory {result.path} of node {result.node}")
        rows: list[list[object]] = [
            [
                check.path,
                check.kind,
                size(check.bytes),
                f"{check.entries:,}",
                "; ".join(check.problems) or "; ".join(["ok", *check.notes]),
            ]
            for check in result.files
        ]
        out.line(table(["file", "kind", "size", "entries", "state"], rows))
        if result.quarantined:
            out.line(
                f"quarantined at start-up ({len(result.quarantined)} files):"
                f" {', '.join(result.quarantined)}"
            )
        out.line("damaged" if result.damaged else "no damage found")
    return EXIT_DAMAGED if result.damaged else EXIT_OK


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value

    return parse


def _node(text: str) -> str:
    try:
        return normaliseNode(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the command: the copy
    # on each command parser leaves the value alone unless given there.
    common = _Parser(add_help=False)
    common.add_argument(
        "--node",
        type=_node,
        default=argparse.SUPPRESS,
        help=f"the node to talk to (env DISPERSE_NODE; default {DEFAULT_NODE})",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document (for scripts)",
    )
    common.add_argument(
        "--timeout",
        type=_positive(float),
        default=argparse.SUPPRESS,
        help=f"seconds to wait for a node (default {DEFAULT_TIMEOUT:g})",
    )
    level = _Parser(add_help=False)
    level.add_argument(
        "--consistency",
        choices=LEVELS,
        help="replicas that must answer (default: the node's)",
    )

    top = _Parser(
        prog="disperse",
        description="Read, write and administer a Disperse cluster.",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit statuses:\n"
        + "\n".join(f"  {code}  {text}" for code, text in EXIT_STATUSES.items())
        + "\n\nDISPERSE_TOKEN, if set, is sent as a bearer token.",
    )
    top.add_argument("--version", action="version", version=__version__)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, run: Callable[[Context], int], text: str, *extra: Any
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=text, description=text, parents=[common, *extra]
        )
        sub.set_defaults(run=run)
        return sub

    get = command("get", cmdGet, "print the value of a key", level)
    get.add_argument("key")

    put = command("put", cmdPut, "store a value", level)
    put.add_argument("key")
    put.add_argument(
        "value", nargs="?", help="the value as text; '-' or none: standard input"
    )
    put.add_argument("--file", "-f", help="read the value from this file")
    put.add_argument("--ttl", help="time to live: seconds, or 500ms, 30s, 5m, 1h, 1d")
    kind = put.add_mutually_exclusive_group()
    kind.add_argument(
        "--binary",
        action="store_true",
        help="store the value as bytes (an empty value needs it)",
    )
    kind.add_argument(
        "--text",
        action="store_true",
        help="store a file or standard input as text (it must be UTF-8)",
    )

    delete = command("delete", cmdDelete, "delete a key", level)
    delete.add_argument("key")

    command("members", cmdMembers, "list the members and their state")
    command("stats", cmdStats, "show a node's counters")
    partitions = command("partitions", cmdPartitions, "show how partitions are placed")
    partitions.add_argument("--all", action="store_true", help="list every partition")

    keys = command(
        "keys",
        cmdKeys,
        "list or change the gossip keyring of every member;"
        " rotate: new key installed, used, old one removed",
    )
    keys.add_argument(
        "operation",
        nargs="?",
        choices=("list", "rotate", *keyring.OPERATIONS),
        help="default: list",
    )
    keys.add_argument(
        "key", nargs="?", help="base64 key for install, use, remove ('-': stdin)"
    )
    keys.add_argument(
        "--old-key",
        help="rotate: the key to remove at the end (env DISPERSE_GOSSIP_KEY)",
    )
    keys.add_argument(
        "--this-node",
        action="store_true",
        help="change only the --node, not every member",
    )

    loader = command(
        "load",
        cmdLoad,
        'import keys from JSON lines ({"key", "value" or "value_base64",'
        ' "ttl"}) or CSV (key,value[,ttl])',
        level,
    )
    loader.add_argument("file", help="the file; '-' for standard input")
    loader.add_argument(
        "--format", choices=FORMATS, help="default: csv for *.csv, else jsonl"
    )
    loader.add_argument("--ttl", help="time to live of entries that give none")
    loader.add_argument(
        "--concurrency", type=_positive(int), default=4, help="parallel writes"
    )

    bench = command(
        "bench",
        cmdBench,
        "load-test the cluster: a mix of gets and puts, until --requests are"
        " sent or --duration has passed",
        level,
    )
    bench.add_argument("--requests", type=_positive(int), default=10_000)
    bench.add_argument("--duration", default="30s", help="at most this long")
    bench.add_argument("--concurrency", type=_positive(int), default=8)
    bench.add_argument(
        "--reads", type=float, default=0.8, help="fraction of gets (0..1)"
    )
    bench.add_argument(
        "--keys", type=_positive(int), default=1000, help="distinct keys used"
    )
    bench.add_argument(
        "--value-size", type=_positive(int), default=128, help="bytes per value"
    )
    bench.add_argument(
        "--prefix", default="bench:", help="prefix of the keys bench writes"
    )
    bench.add_argument("--ttl", default="5m", help="time to live of the values written")
    bench.add_argument("--seed", type=int, help="for a repeatable sequence")

    checker = command(
        "verify",
        cmdVerify,
        "check a stopped node's data directory (--data-dir) for damage, changing"
        " nothing; exit status 6 when damage is found",
    )
    checker.add_argument("--data-dir", required=True, help="the node's data directory")
    return top


def main(
    argv: Sequence[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """
    Run the command line; the exit status.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    env = os.environ if environ is None else environ
    words = sys.argv[1:] if argv is None else list(argv)
    asJSON = _wantsJSON(words)
    arguments = parser()
    try:
        args = arguments.parse_args(words)
    except _BadArguments as e:
        if asJSON:
            Output(True, stdout, stderr).json({"error": e.message, "status": None})
        else:
            e.parser.print_usage(stderr)
            stderr.write(f"{e.parser.prog}: error: {e.message}\n")
        return EXIT_USAGE
    except SystemExit as e:
        # --help and --version.
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    if not hasattr(args, "node"):
        try:
            args.node = normaliseNode(env.get("DISPERSE_NODE") or DEFAULT_NODE)
        except ValueError as e:
            message = f"DISPERSE_NODE: {e}"
            if asJSON:
                Output(True, stdout, stderr).json({"error": message, "status": None})
            else:
                stderr.write(f"disperse: {message}\n")
            return EXIT_USAGE
    args.json = getattr(args, "json", False)
    args.timeout = getattr(args, "timeout", DEFAULT_TIMEOUT)
    output = Output(args.json, stdout, stderr)
    context = Context(args, output, env)
    run: Callable[[Context], int] = args.run
    try:
        return run(context)
    except ClientError as e:
        if output.asJSON:
            output.json({"error": e.message, "status": e.status})
        else:
            output.note(e.message)
        return e.exitStatus
    except KeyboardInterrupt:
        output.note("interrupted")
        return 130


def run() -> None:
    """
    The console script: exit with what L{main} returns.
    """
    sys.exit(main())
