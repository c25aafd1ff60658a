"""
Write the small seed corpora of the fuzzers: a few valid inputs of each
kind, so that mutation starts from the formats rather than from nothing.
Run by C{fuzz/run.py} before fuzzing; the output is not kept in git.
"""

from __future__ import annotations

import sys
from pathlib import Path

from disperse.cluster.peer import messages
from disperse.gossip import wire
from disperse.gossip.crypto import Keyring
from disperse.gossip.messages import (
    Ack,
    Alive,
    NodeState,
    Ping,
    PushNodeState,
    PushPull,
)
from disperse.persist import format
from disperse.store import Record
from disperse.testing.site import ADMIN, READER, WRITER


def _resp(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(
        b"$%d\r\n%s\r\n" % (len(word), word) for word in words
    )


_KEYRING = Keyring(bytes(range(16)))
_NONCE = bytes(12)


def gossipPackets() -> list[bytes]:
    ping = wire.encodeMessage(Ping(seqNo=7, node="alpha"))
    alive = wire.encodeMessage(
        Alive(incarnation=3, node="beta", addr=bytes((127, 0, 0, 1)), port=7946)
    )
    compound = wire.encodeCompound([ping, alive])
    return [
        b"\x00" + wire.encodePacket(ping),
        b"\x00" + wire.encodePacket(compound, crc=True),
        b"\x00" + wire.encodePacket(compound, compress=True),
        b"\x01" + wire.encodePacket(alive, label="fuzz"),
        b"\x02" + wire.encodePacket(ping, keyring=_KEYRING, nonce=_NONCE),
    ]


def gossipStreams() -> list[bytes]:
    state = PushNodeState(
        name="alpha",
        addr=bytes((127, 0, 0, 1)),
        port=7946,
        meta=b'{"http_port":8000}',
        incarnation=1,
        state=NodeState.alive,
    )
    pushPull = PushPull(join=True, nodes=(state,), userState=b"")
    return [
        b"\x00" + wire.encodeStream(pushPull),
        b"\x38" + wire.encodeStream(pushPull, compress=True),
        b"\x01" + wire.encodeStream(Ping(seqNo=1, node="beta"), label="fuzz"),
        b"\x02" + wire.encodeStream(Ack(seqNo=1), keyring=_KEYRING, nonce=_NONCE),
    ]


def peerMessages() -> list[bytes]:
    record = Record(b"value", 0, 1, 2).encode()
    kinds = messages.KINDS
    return [
        bytes((kinds.index("apply"),))
        + messages.ApplyRequest((("key", record),)).encode(),
        bytes((kinds.index("fetch"),)) + messages.FetchRequest(("a", "b")).encode(),
        bytes((kinds.index("fetch") | 0x80,))
        + messages.FetchResponse((record, None)).encode(),
        bytes((kinds.index("roots"),)) + messages.RootsRequest((1, 2)).encode(),
        bytes((kinds.index("counts"),)) + messages.CountsRequest((1, 2)).encode(),
        bytes((kinds.index("counts") | 0x80,))
        + messages.CountsResponse((0, None, 7)).encode(),
    ]


def httpRequests() -> list[bytes]:
    put = b'{"value": "test", "duration": "9000000000000"}'
    # The first byte of each input is the size of the reads (0: all at once).
    requests = [
        b"GET /cache/John10 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /cache/users/1 HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n"
        % READER.encode(),
        b"PUT /cache/users/2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
        b"\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
        % (WRITER.encode(), len(put), put),
        b"PUT /cache/users/bin?ttl=10s HTTP/1.1\r\n"
        b"Content-Type: application/octet-stream"
        b"\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer %s\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n" % WRITER.encode(),
        b"DELETE /cache/k HTTP/1.1\r\nX-Is-Sync: true\r\n"
        b"Authorization: Bearer %s\r\n\r\n" % ADMIN.encode(),
        b"GET /cluster/members HTTP/1.1\r\n\r\nGET /stats HTTP/1.1\r\n\r\n",
        b"POST /internal/v1/apply HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /cluster/keys/install HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
    ]
    return [bytes((index * 7 % 64,)) + r for index, r in enumerate(requests)]


def peerHTTPRequests() -> list[bytes]:
    fetch = messages.FetchRequest(("a", "b")).encode()
    # The first byte of each input is the size of the reads (0: all at once).
    requests = [
        b"POST /internal/v1/fetch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"X-Disperse-Signature: v1 t=1 n=00 s=00\r\n\r\n%s" % (len(fetch), fetch),
        b"POST /internal/v1/apply?repair=1 HTTP/1.1\r\nContent-Length: 3\r\n"
        b"Connection: close\r\n\r\nabc",
        b"POST /internal/v1/roots HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
        b"POST /internal/v1/range HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
        b"POST /internal/v1/digest HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /internal/v1/fetch HTTP/1.1\r\n\r\n",
    ]
    return [bytes((index * 5 % 64,)) + r for index, r in enumerate(requests)]


def respRequests() -> list[bytes]:
    # The first byte: the size of the reads, and (top bit) small limits.
    streams = [
        _resp(b"SET", b"k", b"v") + _resp(b"GET", b"k"),
        b"PING\r\nSET k \"a\\x41\\n\" 'it\\'s'\r\n",
        b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\n" + b"x" * 100 + b"\r\n",
        b"*2\r\n:1\r\n$1\r\nx\r\n",
    ]
    return [
        bytes((index * 9 % 64 | (index % 2) << 7,)) + s
        for index, s in enumerate(streams)
    ]


def respCommands() -> list[bytes]:
    # The first byte: the size of the reads, and (top bit) no tokens.
    auth = _resp(b"AUTH", ADMIN.encode())
    streams = [
        auth + _resp(b"SET", b"k", b"v", b"EX", b"10") + _resp(b"GET", b"k"),
        _resp(b"HELLO", b"3") + _resp(b"COMMAND", b"INFO", b"get", b"mset"),
        _resp(b"COMMAND", b"DOCS", b"set")
        + _resp(b"COMMAND", b"GETKEYS", b"mset", b"a", b"1"),
        _resp(b"INFO", b"all") + _resp(b"TIME") + _resp(b"COMMAND", b"LIST"),
        _resp(b"MULTI") + _resp(b"INCR", b"n") + _resp(b"EXEC"),
        _resp(b"CLUSTER", b"SLOTS") + _resp(b"CLIENT", b"SETNAME", b"x"),
        b"MSET a 1 b 2\r\nMGET a b c\r\nEXPIRE a 5 NX\r\nTTL a\r\nSCAN 0 COUNT 5\r\n",
        b"GET /cache/k HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    return [
        bytes((index * 7 % 64 | (index % 2) << 7,)) + s
        for index, s in enumerate(streams)
    ]


def persistFrames() -> list[bytes]:
    # The first byte: the size of the chunks loading reads.
    value = Record(b"value", 0, 5, 1).encode()
    expiring = Record(b"x", 1_800_000_000_000, 6, 1).encode()
    tombstone = Record(b"", 1_800_000_000_000, 7, 1, tombstone=True).encode()
    frames = [
        format.entryFrame(3, b"key", value),
        format.entryFrame(1023, "ключ".encode(), expiring),
        format.entryFrame(0, b"gone", tombstone),
        format.dropFrame(3),
        format.entriesFrame(5, [("a", value), ("b", expiring)]),
        format.endFrame(99, 2, 1),
        format.sealFrame(),
    ]
    streams = [
        b"".join(frames),
        format.fileHeader(format.LOG_MAGIC, 1, format.FRESH) + frames[0],
        frames[0] + frames[1][:-3],
    ]
    return [bytes((index * 5 % 64,)) + s for index, s in enumerate(streams)]


CORPORA = {
    "gossip_packet": gossipPackets,
    "gossip_stream": gossipStreams,
    "peer_protocol": peerMessages,
    "http_request": httpRequests,
    "peer_http": peerHTTPRequests,
    "resp_request": respRequests,
    "resp_server": respCommands,
    "persist_log": persistFrames,
}


def main(root: Path) -> None:
    for name, make in CORPORA.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index, data in enumerate(make()):
            (folder / f"seed-{index}").write_bytes(data)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
