"""
Replies as values: what a command handler returns, before it is encoded.

A handler answers with plain Python data and never sees the protocol
version; L{encodeReply} writes the value into a connection's
L{ReplyEncoder} as RESP2 or RESP3 asks:

    bytes          bulk string
    None           null (RESP2's null bulk string)
    int            integer
    bool           boolean (RESP2: integer 1 or 0)
    float          double (RESP2: bulk string)
    Simple         simple string (C{+OK})
    ErrorReply     error; its text starts with the code (C{ERR}, C{WRONGTYPE})
    Verbatim       text for a person (RESP2: bulk string)
    list, tuple    array of replies
    dict           map (RESP2: flat array of key, value, ...)
    frozenset      set (RESP2: array)
    SetReply       set whose elements keep their order (C{COMMAND}'s flags)
    NULL_ARRAY     RESP2's null array (C{EXEC} after an abort)
    str            bulk string of its UTF-8 bytes

Handlers that fail raise L{disperse.resp.commands.CommandError} or
L{disperse.resp.arguments.ArgumentError} rather than return an
L{ErrorReply}; an L{ErrorReply} is for errors that are elements of a
larger reply (C{EXEC}'s results).
"""

from __future__ import annotations

from typing import Final, TypeAlias

from disperse.resp.wire import ReplyEncoder


class Simple(str):
    """
    A simple string reply, such as C{OK} or C{PONG}.
    """

    __slots__ = ()


class ErrorReply(str):
    """
    An error reply inside a larger reply; the text starts with its code.
    """

    __slots__ = ()


class Verbatim(bytes):
    """
    Text meant for a person (C{INFO}, C{CLUSTER NODES}).
    """

    __slots__ = ()


class SetReply(tuple["Reply", ...]):
    """
    A set reply written in the order given: Redis writes the flags and
    categories of C{COMMAND} in a fixed order, and a C{frozenset}'s order
    changes with every process's string hashing.
    """

    __slots__ = ()


class _NullArray:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY: Final = _NullArray()
OK: Final = Simple("OK")
QUEUED: Final = Simple("QUEUED")
PONG: Final = Simple("PONG")

Reply: TypeAlias = (
    bytes
    | str
    | int
    | float
    | _NullArray
    | list["Reply"]
    | tuple["Reply", ...]
    | dict["Reply", "Reply"]
    | frozenset["Reply"]
    | None
)


def encodeReply(encoder: ReplyEncoder, reply: Reply) -> None:
    """
    Append C{reply} to C{encoder}, in the encoder's protocol.
    """
    # Most replies are bulk strings, integers and OK: test those first.
    kind = type(reply)
    if kind is bytes:
        encoder.bulk(reply)  # type: ignore[arg-type]
    elif reply is None:
        encoder.null()
    elif kind is Simple:
        encoder.simple(reply)  # type: ignore[arg-type]
    elif kind is int:
        encoder.integer(reply)  # type: ignore[arg-type]
    elif kind is bool:
        encoder.boolean(reply)  # type: ignore[arg-type]
    elif kind is ErrorReply:
        encoder.error(reply)  # type: ignore[arg-type]
    elif isinstance(reply, list | tuple):
        if kind is SetReply:
            encoder.setHeader(len(reply))
        else:
            encoder.arrayHeader(len(reply))
        for element in reply:
            encodeReply(encoder, element)
    elif isinstance(reply, dict):
        encoder.mapHeader(len(reply))
        for key, value in reply.items():
            encodeReply(encoder, key)
            encodeReply(encoder, value)
    elif isinstance(reply, frozenset):
        encoder.setHeader(len(reply))
        for element in reply:
            encodeReply(encoder, element)
    elif isinstance(reply, float):
        encoder.double(reply)
    elif isinstance(reply, Verbatim):
        encoder.verbatim(bytes(reply))
    elif isinstance(reply, str):
        encoder.bulk(reply.encode("utf-8"))
    elif reply is NULL_ARRAY:
        encoder.nullArray()
    else:
        raise TypeError(f"not a reply: {reply!r}")
