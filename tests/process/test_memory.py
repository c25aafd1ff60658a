"""
A node's memory under a hostile mix of requests stays within its store
budget plus a fixed allowance: bodies held by stalled uploads, values
written beyond the budget, reads of them.
"""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

import pytest

from disperse.testing.cluster import runningNode

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _put(port: int, key: str, value: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "PUT",
            f"/cache/{key}",
            body=value,
            headers={"Content-Type": "application/octet-stream"},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_memoryStaysWithinBudgetUnderHostileMix() -> None:
    budget = 8 * MiB
    with runningNode(
        "--node-name",
        "memory",
        "--max-memory",
        str(budget),
        "--max-value-size",
        "1MiB",
        "--max-connections-per-client",
        "1000",
    ) as node:
        port = node.httpPort
        pid = node.pid
        assert _put(port, "warm", b"w" * 1024) == 200
        baseline = _rss(pid)

        # 200 uploads of 1 MiB each stall half-way: 100 MiB sent in all.
        stalled = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(
                b"PUT /cache/stalled HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n" % MiB
            )
            s.sendall(b"s" * (MiB // 2))
            stalled.append(s)
        # Three times the budget in values, then reads of all of them.
        for index in range(24):
            assert _put(port, f"big{index}", bytes([index]) * MiB) == 200
        for index in range(24):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", f"/cache/big{index}")
            connection.getresponse().read()
            connection.close()
        grown = _rss(pid) - baseline
        for s in stalled:
            s.close()
    # The budget, plus room for one request's body in memory at a time,
    # allocator slack and 200 connections' buffers; not the 100 MiB sent.
    assert grown < budget + 40 * MiB, grown / MiB


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_clientsThatDoNotReadHoldOneAnswerEach() -> None:
    """
    Pipelined GETs of a large value from clients that never read: each
    connection holds one answer, not one per request it sent.
    """
    with runningNode("--node-name", "readers", "--max-value-size", "4MiB") as node:
        port = node.httpPort
        assert _put(port, "big", b"b" * (4 * MiB)) == 200
        baseline = _rss(node.pid)
        readers = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            # 150 requests: 600 MiB of answers if all were served.
            s.sendall(b"GET /cache/big HTTP/1.1\r\nHost: x\r\n\r\n" * 150)
            readers.append(s)
        # Another client is served meanwhile, which also means the node has
        # worked through what the readers sent.
        for _ in range(5):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", "/cache/big")
            assert len(connection.getresponse().read()) == 4 * MiB
            connection.close()
        grown = _rss(node.pid) - baseline
        for s in readers:
            s.close()
    assert grown < 4 * 2 * 4 * MiB + 30 * MiB, grown / MiB
