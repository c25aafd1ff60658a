"""
Command handlers called in memory, without the server: a L{Context} over a
node built for tests, and L{runCommand} to resolve a command line as the
dispatcher does and call its handler. And L{RespClient}, a bare client of
a real node's Redis port.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hiredis
from twisted.internet.defer import Deferred

from disperse.node import Node
from disperse.resp import families  # noqa: F401  (registers every handler)
from disperse.resp.commands import resolveCommand
from disperse.resp.context import HANDLERS, Context, Session
from disperse.resp.replies import Reply
from disperse.security.tokens import TokenTable


@dataclass(eq=False)
class FakeServer:
    """
    A L{disperse.resp.context.ServerState} of fixed values, whose sessions
    are those the test adds.
    """

    startedMs: int = 0
    port: int | None = 6380
    open: list[Session] = field(default_factory=list)
    tokens: TokenTable | None = None
    stats: dict[str, tuple[int, float, int]] = field(default_factory=dict)

    def sessions(self) -> Iterable[Session]:
        return list(self.open)

    def commandStats(self) -> dict[str, tuple[int, float, int]]:
        return dict(self.stats)


def handlerContext(node: Node, session: Session | None = None) -> Context:
    """
    A context for calling handlers on C{node}, with a new session (client
    1) unless one is given.
    """
    server = FakeServer()
    if session is None:
        session = Session(clientId=1, address="127.0.0.1:50000")
    server.open.append(session)
    return Context(node=node, session=session, server=server)


def runCommand(context: Context, *line: bytes) -> Reply | Deferred[Reply]:
    """
    Resolve C{line} (name first) as the dispatcher does, arity included,
    and call its handler: the reply, or a L{Deferred} of it.

    @raise disperse.resp.commands.CommandError: for an unknown command or a
        wrong arity, or as the handler raises it.
    @raise KeyError: for a command in the table without a handler yet.
    """
    arguments = list(line)
    command = resolveCommand(arguments)
    return HANDLERS[command.name](context, arguments)


def encodeCommand(*words: bytes) -> bytes:
    """
    A command as a client sends it: a multibulk of bulk strings.
    """
    return b"*%d\r\n" % len(words) + b"".join(
        b"$%d\r\n%s\r\n" % (len(word), word) for word in words
    )


class RespClient:
    """
    A blocking client of a real node's Redis port, for process tests that
    must not depend on a Redis client library: commands go out as
    multibulks (or raw bytes), replies are read with C{hiredis} (errors as
    L{hiredis.ReplyError} values, simple strings as bytes).
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ):
        """
        @param tls: speak TLS with this context (the node's C{--redis-port}
            is an C{ssl:} endpoint).
        """
        connection = socket.create_connection((host, port), timeout)
        if tls is not None:
            connection = tls.wrap_socket(connection, server_hostname=host)
        self.socket = connection
        self._reader = hiredis.Reader()

    def __enter__(self) -> RespClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, *commands: Sequence[bytes]) -> None:
        """
        Send C{commands} in one write, without reading their replies.
        """
        self.sendRaw(b"".join(encodeCommand(*words) for words in commands))

    def sendRaw(self, data: bytes) -> None:
        self.socket.sendall(data)

    def read(self) -> Any:
        """
        The next reply.

        @raise ConnectionError: if the node closed the connection first.
        """
        while True:
            reply = self._reader.gets()
            if reply is not False:
                return reply
            data = self.socket.recv(256 * 1024)
            if not data:
                raise ConnectionError("the node closed the connection")
            self._reader.feed(data)

    def call(self, *words: bytes) -> Any:
        """
        Send one command and read its reply.
        """
        self.send(words)
        return self.read()

    def close(self) -> None:
        self.socket.close()
