"""
Interoperability of L{disperse.gossip.wire} with HashiCorp memberlist (Go).

Each test starts C{build/memberlist-peer} (see interop/memberlist-peer, built
by C{make interop}) on 127.0.0.1 with an OS-chosen port and talks to it over
plain sockets.  These tests are marked C{interop} and left out of the default
C{pytest} run; run them with C{make interop}.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from disperse.gossip import wire
from disperse.gossip.messages import (
    Ack,
    MessageType,
    NodeState,
    PacketMessage,
    Ping,
    PushNodeState,
    PushPull,
    UserMessage,
)
from disperse.gossip.wire import Keyring

pytestmark = pytest.mark.interop

PEER = Path(
    os.environ.get(
        "MEMBERLIST_PEER",
        Path(__file__).resolve().parents[2] / "build" / "memberlist-peer",
    )
)
LOOPBACK = bytes((127, 0, 0, 1))
TIMEOUT = 10.0
KEY = bytes(range(32))
# Protocol 2 as current, understanding up to 5, like memberlist's defaults.
VSN = (1, 5, 2, 0, 0, 0)


@dataclass
class GoPeer:
    """
    A running memberlist-peer process and what it has printed.
    """

    process: subprocess.Popen[bytes]
    name: str
    port: int
    events: queue.Queue[dict[str, Any]]

    def waitFor(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            try:
                event = self.events.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError("the Go peer did not report the event") from None
            if predicate(event):
                return event


def _readEvents(stream: Any, events: queue.Queue[dict[str, Any]]) -> None:
    for line in stream:
        events.put(json.loads(line))


@pytest.fixture
def startPeer(tmp_path: Path) -> Iterator[Callable[..., GoPeer]]:
    if not PEER.exists():
        pytest.fail(f"{PEER} is missing; build it with `make interop`")
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[BinaryIO] = []

    def start(*args: str, name: str = "go-peer") -> GoPeer:
        # Go's logs stay in the test's tmp_path, for post-mortems.
        log = (tmp_path / f"{name}-{len(processes)}.log").open("wb")
        logs.append(log)
        command = [str(PEER), "-bind", "127.0.0.1", "-port", "0", "-name", name]
        command += ["-events", "-meta", "role=go", "-user-state", "go-state"]
        process = subprocess.Popen(
            [*command, *args], stdout=subprocess.PIPE, stderr=log
        )
        processes.append(process)
        events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(
            target=_readEvents, args=(process.stdout, events), daemon=True
        ).start()
        peer = GoPeer(process, name, 0, events)
        ready = peer.waitFor(lambda e: e["event"] == "ready")
        peer.port = ready["port"]
        return peer

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()
    for log in logs:
        log.close()


def _udpSocket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    return sock


def _receiveMessages(
    sock: socket.socket, wanted: Callable[[PacketMessage], bool], **options: Any
) -> tuple[PacketMessage, bytes]:
    """
    Read packets until one holds a wanted message; return it and the raw
    packet.
    """
    while True:
        raw = sock.recv(65536)
        for message in wire.decodePacket(raw, **options).messages:
            if wanted(message):
                return message, raw


def _exchangeStream(
    port: int, outgoing: bytes, decoder: wire.StreamDecoder
) -> tuple[wire.StreamMessage, bytes]:
    """
    Write C{outgoing} on a new TCP connection and decode the peer's reply.
    """
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        conn.sendall(outgoing)
        while not decoder.complete:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
            decoder.feed(chunk)
    return decoder.endOfStream(), bytes(received)


def _ourState(name: str, port: int) -> PushNodeState:
    return PushNodeState(
        name=name,
        addr=LOOPBACK,
        port=port,
        meta=b"role=python",
        incarnation=1,
        state=NodeState.alive,
        vsn=VSN,
    )


def _nonce(counter: list[int]) -> bytes:
    counter[0] += 1
    return counter[0].to_bytes(12, "big")


def _checkGoState(reply: wire.StreamMessage, peer: GoPeer) -> PushNodeState:
    assert isinstance(reply, PushPull)
    assert reply.userState == b"go-state"
    byName = {state.name: state for state in reply.nodes}
    go = byName[peer.name]
    assert go.state == NodeState.alive
    assert go.port == peer.port
    # memberlist sends IPv4 addresses as 4 bytes, but 16 would be valid too.
    assert go.addr in (LOOPBACK, bytes(10) + b"\xff\xff" + LOOPBACK)
    assert go.meta == b"role=go"
    assert go.vsn == VSN
    assert go.incarnation >= 1
    return go


def test_pingAck(startPeer: Callable[..., GoPeer]) -> None:
    """
    A ping we encode gets an ack with the same sequence number.
    """
    peer = startPeer()
    with _udpSocket() as sock:
        ping = Ping(seqNo=4242, node=peer.name)
        sock.sendto(
            wire.encodePacket(wire.encodeMessage(ping)), ("127.0.0.1", peer.port)
        )
        ack, _ = _receiveMessages(sock, lambda m: isinstance(m, Ack))
    assert ack == Ack(seqNo=4242)


def test_pingWithSourceAddress(startPeer: Callable[..., GoPeer]) -> None:
    """
    The optional source fields are honoured: the ack goes where they say.
    """
    peer = startPeer()
    with _udpSocket() as sender, _udpSocket() as replyTo:
        ping = Ping(
            seqNo=77,
            node=peer.name,
            sourceAddr=LOOPBACK,
            sourcePort=replyTo.getsockname()[1],
            sourceNode="py-node",
        )
        sender.sendto(wire.encodeMessage(ping), ("127.0.0.1", peer.port))
        ack, _ = _receiveMessages(replyTo, lambda m: isinstance(m, Ack))
    assert ack == Ack(seqNo=77)


def test_compressedPacket(startPeer: Callable[..., GoPeer]) -> None:
    """
    Go decompresses our LZW and decodes a compound inside it.
    """
    peer = startPeer()
    with _udpSocket() as sock:
        pings = [Ping(seqNo=n, node=peer.name) for n in (1, 2, 3)]
        compound = wire.encodeCompound([wire.encodeMessage(p) for p in pings])
        sock.sendto(wire.compressMessage(compound), ("127.0.0.1", peer.port))
        seen: set[int] = set()
        while len(seen) < 3:
            ack, _ = _receiveMessages(sock, lambda m: isinstance(m, Ack))
            assert isinstance(ack, Ack)
            seen.add(ack.seqNo)
    assert seen == {1, 2, 3}


def test_userMessage(startPeer: Callable[..., GoPeer]) -> None:
    peer = startPeer()
    with _udpSocket() as sock:
        message = wire.encodeMessage(UserMessage(b"hello go"))
        sock.sendto(message, ("127.0.0.1", peer.port))
    event = peer.waitFor(lambda e: e["event"] == "user")
    assert base64.b64decode(event["payload"]) == b"hello go"


def test_pushPull(startPeer: Callable[..., GoPeer]) -> None:
    """
    We join the Go node by push/pull: we decode its (LZW-compressed) state,
    and it accepts ours, reporting our node and user state.
    """
    peer = startPeer()
    with _udpSocket() as sock:
        ourPort = sock.getsockname()[1]
        ours = PushPull(
            join=True, nodes=(_ourState("py-node", ourPort),), userState=b"py-state"
        )
        reply, raw = _exchangeStream(
            peer.port, wire.encodeStream(ours), wire.StreamDecoder()
        )
    # memberlist compresses streams by default: this decoded Go's LZW.
    assert raw[0] == MessageType.compress
    _checkGoState(reply, peer)
    joined = peer.waitFor(lambda e: e["event"] == "join" and e["name"] == "py-node")
    assert joined["port"] == ourPort
    assert base64.b64decode(joined["meta"]) == b"role=python"
    assert joined["vsn"] == list(VSN)
    state = peer.waitFor(lambda e: e["event"] == "remote-state")
    assert base64.b64decode(state["userState"]) == b"py-state"
    assert state["join"] is True


def test_pushPullUncompressed(startPeer: Callable[..., GoPeer]) -> None:
    peer = startPeer("-compress=false")
    ours = PushPull(join=False, nodes=(_ourState("py-node", 1),))
    reply, raw = _exchangeStream(
        peer.port, wire.encodeStream(ours, compress=True), wire.StreamDecoder()
    )
    assert raw[0] == MessageType.pushPull
    _checkGoState(reply, peer)


def test_goJoinsUs(startPeer: Callable[..., GoPeer]) -> None:
    """
    The Go node initiates a join against us: we decode its push/pull and
    answer; it counts one node joined.
    """
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(TIMEOUT)
        ourPort = server.getsockname()[1]
        peer = startPeer("-join", f"127.0.0.1:{ourPort}")
        conn, _ = server.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            decoder = wire.StreamDecoder()
            while not decoder.complete:
                chunk = conn.recv(65536)
                assert chunk, "the Go node closed before sending its state"
                decoder.feed(chunk)
            theirs = decoder.endOfStream()
            assert isinstance(theirs, PushPull)
            assert theirs.join
            _checkGoState(theirs, peer)
            reply = PushPull(join=True, nodes=(_ourState("py-node", ourPort),))
            conn.sendall(wire.encodeStream(reply, compress=True))
    joined = peer.waitFor(lambda e: e["event"] == "joined")
    assert joined == {"event": "joined", "count": 1, "error": "<nil>"}


def test_streamPing(startPeer: Callable[..., GoPeer]) -> None:
    peer = startPeer()
    reply, _ = _exchangeStream(
        peer.port,
        wire.encodeStream(Ping(seqNo=99, node=peer.name)),
        wire.StreamDecoder(),
    )
    assert reply == Ack(seqNo=99)


def test_crcFromGo(startPeer: Callable[..., GoPeer]) -> None:
    """
    memberlist adds a CRC header for peers understanding protocol 5 that it
    can find by address; we decode it.  (It looks nodes up by the bare IP,
    hence our node's name.)
    """
    peer = startPeer()
    with _udpSocket() as sock:
        ourPort = sock.getsockname()[1]
        join = PushPull(join=True, nodes=(_ourState("127.0.0.1", ourPort),))
        _exchangeStream(peer.port, wire.encodeStream(join), wire.StreamDecoder())
        peer.waitFor(lambda e: e["event"] == "join")
        ping = wire.encodeMessage(Ping(seqNo=5, node=peer.name))
        sock.sendto(wire.encodePacket(ping, crc=True), ("127.0.0.1", peer.port))
        _, raw = _receiveMessages(sock, lambda m: m == Ack(seqNo=5))
    assert raw[0] == MessageType.hasCrc


def test_encrypted(startPeer: Callable[..., GoPeer]) -> None:
    """
    With a shared key: encrypted ping/ack and push/pull both ways.
    """
    peer = startPeer("-key", base64.b64encode(KEY).decode())
    keyring = Keyring(KEY)
    nonces = [0]
    with _udpSocket() as sock:
        ping = wire.encodeMessage(Ping(seqNo=31337, node=peer.name))
        packet = wire.encodePacket(ping, keyring=keyring, nonce=_nonce(nonces))
        sock.sendto(packet, ("127.0.0.1", peer.port))
        ack, raw = _receiveMessages(sock, lambda m: isinstance(m, Ack), keyring=keyring)
        assert ack == Ack(seqNo=31337)
        assert raw[0] == 1  # encryption version 1 at protocol version 2

        ourPort = sock.getsockname()[1]
        ours = PushPull(
            join=True, nodes=(_ourState("py-node", ourPort),), userState=b"secret"
        )
        stream = wire.encodeStream(
            ours, keyring=keyring, nonce=_nonce(nonces), compress=True
        )
        reply, rawReply = _exchangeStream(
            peer.port, stream, wire.StreamDecoder(keyring=keyring)
        )
    assert rawReply[0] == MessageType.encrypt
    _checkGoState(reply, peer)
    state = peer.waitFor(lambda e: e["event"] == "remote-state")
    assert base64.b64decode(state["userState"]) == b"secret"


def test_encryptedKeyRotation(startPeer: Callable[..., GoPeer]) -> None:
    """
    Our keyring's secondary key decrypts what Go encrypts with its key.
    """
    peer = startPeer("-key", base64.b64encode(KEY).decode())
    ourKeyring = Keyring(bytes(16), [KEY])
    with _udpSocket() as sock:
        ping = wire.encodeMessage(Ping(seqNo=8, node=peer.name))
        # Go only knows KEY, so we must send with it.
        packet = wire.encodePacket(ping, keyring=Keyring(KEY), nonce=bytes(12))
        sock.sendto(packet, ("127.0.0.1", peer.port))
        ack, _ = _receiveMessages(
            sock, lambda m: isinstance(m, Ack), keyring=ourKeyring
        )
    assert ack == Ack(seqNo=8)


def test_label(startPeer: Callable[..., GoPeer]) -> None:
    """
    Labelled packets and streams.  Debian's memberlist 0.2.2 predates labels,
    so memberlist-peer adds and checks the header in its transport, as later
    memberlist versions do.
    """
    peer = startPeer("-label", "disperse-test")
    with _udpSocket() as sock:
        ping = wire.encodeMessage(Ping(seqNo=12, node=peer.name))
        sock.sendto(
            wire.encodePacket(ping, label="disperse-test"), ("127.0.0.1", peer.port)
        )
        ack, raw = _receiveMessages(
            sock, lambda m: isinstance(m, Ack), label="disperse-test"
        )
        assert ack == Ack(seqNo=12)
        assert raw.startswith(b"\xf4\x0ddisperse-test")

        ours = PushPull(join=True, nodes=(_ourState("py-node", 1),))
        # The answer on a stream we open carries no label header.
        decoder = wire.StreamDecoder(label="disperse-test", labelHeader=False)
        reply, rawReply = _exchangeStream(
            peer.port, wire.encodeStream(ours, label="disperse-test"), decoder
        )
    assert rawReply[0] == MessageType.compress
    _checkGoState(reply, peer)
