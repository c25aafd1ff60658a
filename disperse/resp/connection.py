"""
The connection commands: C{PING}, C{ECHO}, C{HELLO}, C{AUTH}, C{CLIENT},
C{SELECT}, C{QUIT}, C{RESET}, C{READONLY}/C{READWRITE}, and Disperse's own
C{DISPERSE CONSISTENCY}.

A password is one of the node's client tokens (C{--auth-tokens}), for the
user C{default}, the only one there is; the token's scopes and key prefix
then apply to the connection, as they do to an HTTP request bearing it.
"""

from __future__ import annotations

from typing import Final

from disperse.cluster.coordinator import Consistency
from disperse.resp.arguments import integerArgument
from disperse.resp.commands import CommandError
from disperse.resp.context import Context, Session, handles
from disperse.resp.docs import REDIS_VERSION
from disperse.resp.replies import OK, PONG, Reply, Simple, Verbatim
from disperse.resp.wire import parseInteger

# Only one user exists, as on a Redis with just a password.
DEFAULT_USER: Final = b"default"

WRONGPASS: Final = "WRONGPASS invalid username-password pair or user is disabled."
AUTH_UNCONFIGURED: Final = (
    "ERR AUTH <password> called without any password configured for the"
    " default user. Are you sure your configuration is correct?"
)
HELLO_NOAUTH: Final = (
    "NOAUTH HELLO must be called with the client already authenticated,"
    " otherwise the HELLO <proto> AUTH <user> <pass> option can be used to"
    " authenticate the client and select the RESP protocol version at the"
    " same time"
)
_BAD_NAME: Final = (
    "ERR Client names cannot contain spaces, newlines or special characters."
)
_LEVELS: Final = ("one", "quorum", "all")


@handles("ping")
def ping(ctx: Context, args: list[bytes]) -> Reply:
    if len(args) > 2:
        raise CommandError("ERR wrong number of arguments for 'ping' command")
    return PONG if len(args) == 1 else args[1]


@handles("echo")
def echo(ctx: Context, args: list[bytes]) -> Reply:
    return args[1]


def _authenticate(ctx: Context, username: bytes, password: bytes) -> None:
    """
    Authenticate the connection as C{username} with C{password}, a token.

    @raise CommandError: C{WRONGPASS} for another user or an unknown token;
        the connection keeps whatever it had before, as in Redis.
    """
    if username != DEFAULT_USER:
        raise CommandError(WRONGPASS)
    session = ctx.session
    tokens = ctx.server.tokens
    if tokens is None:
        # Like Redis's default user without a password: any password will do.
        session.authenticated = True
        return
    grant = tokens.lookup(password)
    if grant is None:
        raise CommandError(WRONGPASS)
    session.grant = grant
    session.authenticated = True


@handles("auth")
def auth(ctx: Context, args: list[bytes]) -> Reply:
    if len(args) > 3:
        raise CommandError("ERR syntax error")
    if len(args) == 2:
        if ctx.server.tokens is None:
            raise CommandError(AUTH_UNCONFIGURED)
        _authenticate(ctx, DEFAULT_USER, args[1])
    else:
        _authenticate(ctx, args[1], args[2])
    return OK


def _validName(name: bytes) -> bool:
    # Printable ASCII without spaces, so that CLIENT INFO splits on spaces.
    return all(0x21 <= byte <= 0x7E for byte in name)


@handles("hello")
def hello(ctx: Context, args: list[bytes]) -> Reply:
    session = ctx.session
    protocol = 0
    index = 1
    if len(args) >= 2:
        version = parseInteger(args[1])
        if version is None:
            raise CommandError("ERR Protocol version is not an integer or out of range")
        if version not in (2, 3):
            raise CommandError("NOPROTO unsupported protocol version")
        protocol = version
        index = 2
    credentials: tuple[bytes, bytes] | None = None
    name: bytes | None = None
    while index < len(args):
        option = args[index].lower()
        remaining = len(args) - 1 - index
        if option == b"auth" and remaining >= 2:
            credentials = (args[index + 1], args[index + 2])
            index += 3
        elif option == b"setname" and remaining >= 1:
            name = args[index + 1]
            if not _validName(name):
                raise CommandError(_BAD_NAME)
            index += 2
        else:
            shown = args[index].decode("utf-8", "replace")
            raise CommandError(f"ERR Syntax error in HELLO option '{shown}'")
    if credentials is not None:
        _authenticate(ctx, *credentials)
    if not session.authenticated:
        raise CommandError(HELLO_NOAUTH)
    if name is not None:
        session.name = name
    if protocol:
        session.protocol = protocol
    return {
        "server": "redis",
        "version": REDIS_VERSION,
        "proto": session.protocol,
        "id": session.clientId,
        # Cluster clients are told where each slot lives (CLUSTER SLOTS).
        "mode": "cluster",
        "role": "master",
        "modules": [],
    }


def clientInfoLine(session: Session, nowMs: int) -> str:
    """
    One connection as C{CLIENT INFO} and C{CLIENT LIST} describe it, in
    Redis's format (fields separated by spaces, C{name=value}), without
    the final newline. Memory and buffer fields Disperse does not track
    are 0.
    """
    flags = ""
    if session.queued is not None:
        flags += "x"
    if session.readonly:
        flags += "r"
    lastMs = session.lastCommandMs or session.createdMs
    multi = -1 if session.queued is None else len(session.queued)
    fields = (
        ("id", str(session.clientId)),
        ("addr", session.address),
        ("laddr", session.localAddress),
        ("fd", str(session.fd)),
        ("name", session.name.decode("ascii", "replace")),
        ("age", str(max(0, nowMs - session.createdMs) // 1000)),
        ("idle", str(max(0, nowMs - lastMs) // 1000)),
        ("flags", flags or "N"),
        ("db", "0"),
        ("sub", "0"),
        ("psub", "0"),
        ("ssub", "0"),
        ("multi", str(multi)),
        ("watch", "0"),
        ("qbuf", "0"),
        ("qbuf-free", "0"),
        ("argv-mem", "0"),
        ("multi-mem", "0"),
        ("rbs", "0"),
        ("rbp", "0"),
        ("obl", "0"),
        ("oll", "0"),
        ("omem", "0"),
        ("tot-mem", "0"),
        ("events", "r"),
        ("cmd", session.lastCommand),
        ("user", "default"),
        ("redir", "-1"),
        ("resp", str(session.protocol)),
        ("lib-name", session.libName.decode("ascii", "replace")),
        ("lib-ver", session.libVersion.decode("ascii", "replace")),
    )
    return " ".join(f"{key}={value}" for key, value in fields)


@handles("client|setname")
def clientSetname(ctx: Context, args: list[bytes]) -> Reply:
    if not _validName(args[2]):
        raise CommandError(_BAD_NAME)
    ctx.session.name = args[2]
    return OK


@handles("client|getname")
def clientGetname(ctx: Context, args: list[bytes]) -> Reply:
    return ctx.session.name or None


@handles("client|id")
def clientId(ctx: Context, args: list[bytes]) -> Reply:
    return ctx.session.clientId


@handles("client|setinfo")
def clientSetinfo(ctx: Context, args: list[bytes]) -> Reply:
    attribute = args[2]
    shown = attribute.decode("utf-8", "replace")
    which = attribute.lower()
    if which not in (b"lib-name", b"lib-ver"):
        raise CommandError(f"ERR Unrecognized option '{shown}'")
    if not _validName(args[3]):
        raise CommandError(
            f"ERR {shown} cannot contain spaces, newlines or special characters."
        )
    if which == b"lib-name":
        ctx.session.libName = args[3]
    else:
        ctx.session.libVersion = args[3]
    return OK


@handles("client|info")
def clientInfo(ctx: Context, args: list[bytes]) -> Reply:
    line = clientInfoLine(ctx.session, ctx.nowMs()) + "\n"
    return Verbatim(line.encode("utf-8"))


@handles("select")
def select(ctx: Context, args: list[bytes]) -> Reply:
    if integerArgument(args[1]) != 0:
        # One keyspace per cluster, shared with the HTTP API.
        raise CommandError("ERR DB index is out of range")
    return OK


@handles("quit")
def quit(ctx: Context, args: list[bytes]) -> Reply:
    ctx.session.closing = True
    return OK


@handles("reset")
def reset(ctx: Context, args: list[bytes]) -> Reply:
    session = ctx.session
    session.queued = None
    session.queueFailed = False
    session.name = b""
    session.protocol = 2
    session.level = None
    session.readonly = False
    if ctx.server.tokens is not None:
        session.authenticated = False
        session.grant = None
    return Simple("RESET")


@handles("readonly")
def readonly(ctx: Context, args: list[bytes]) -> Reply:
    # Any node serves any key, replicas included: the flag is only kept
    # for CLIENT INFO.
    ctx.session.readonly = True
    return OK


@handles("readwrite")
def readwrite(ctx: Context, args: list[bytes]) -> Reply:
    ctx.session.readonly = False
    return OK


@handles("disperse|consistency")
def consistency(ctx: Context, args: list[bytes]) -> Reply:
    """
    C{DISPERSE CONSISTENCY one|quorum|all|default}: the level of this
    connection's reads and writes; C{default} goes back to the node's
    (C{--read-consistency}, C{--write-consistency}).
    """
    level = args[2].decode("utf-8", "replace").lower()
    if level == "default":
        ctx.session.level = None
        return OK
    if level not in _LEVELS:
        raise CommandError(
            "ERR consistency level must be one, quorum, all or default"
            f" (not '{args[2].decode('utf-8', 'replace')}')"
        )
    ctx.session.level = Consistency(level)
    return OK
