"""
Reference server: a bare Twisted RESP server, the ceiling of the node's
Redis front end on this stack. C{hiredis.Reader} parses what arrives; C{GET}
and C{SET} read and write a dict; every reply to what one C{dataReceived}
brought goes out in one write. Nothing else: no limits, no expiry, no
per-command accounting, no Deferreds, so that C{bench/resp} measures what
the node adds on top of Twisted and hiredis. C{PING} answers C{PONG} and
C{CONFIG} an empty array (redis-benchmark asks for C{save} and
C{appendonly} at start-up); any other command gets an error.

Run as C{python -m bench._refs.resp_ref --port N} from the repository root.
"""

from __future__ import annotations

import sys

import hiredis
from twisted.internet.protocol import Protocol

from bench._refs._ref_common import install_reactor, listen

NULL = b"$-1\r\n"
OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
EMPTY_ARRAY = b"*0\r\n"


def makeProtocol(data: dict[bytes, bytes]) -> Protocol:
    """
    One connection, on C{data}.
    """
    return RESP(data)


class RESP(Protocol):
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def connectionMade(self) -> None:
        self.reader = hiredis.Reader()
        assert self.transport is not None
        self.write = self.transport.write

    def dataReceived(self, chunk: bytes) -> None:
        reader = self.reader
        data = self.data
        reader.feed(chunk)
        replies: list[bytes] = []
        add = replies.append
        try:
            command = reader.gets()
            while command is not False:
                name = command[0].upper()
                if name == b"GET" and len(command) == 2:
                    value = data.get(command[1])
                    if value is None:
                        add(NULL)
                    else:
                        add(b"$%d\r\n%b\r\n" % (len(value), value))
                elif name == b"SET" and len(command) >= 3:
                    data[command[1]] = command[2]
                    add(OK)
                elif name == b"PING":
                    add(PONG)
                elif name == b"CONFIG":
                    add(EMPTY_ARRAY)
                else:
                    add(b"-ERR unknown command\r\n")
                command = reader.gets()
        except hiredis.ProtocolError:
            replies.append(b"-ERR Protocol error\r\n")
            self.write(b"".join(replies))
            assert self.transport is not None
            self.transport.loseConnection()
            return
        if replies:
            self.write(b"".join(replies))


def main() -> None:
    install_reactor()
    from twisted.internet.interfaces import IAddress
    from twisted.internet.protocol import Factory

    data: dict[bytes, bytes] = {}

    class RESPFactory(Factory):
        noisy = False

        def buildProtocol(self, addr: IAddress | None) -> Protocol:
            return makeProtocol(data)

    listen("resp reference", RESPFactory(), sys.argv[1:])


if __name__ == "__main__":
    main()
