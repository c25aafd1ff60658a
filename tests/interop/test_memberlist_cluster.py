"""
Mixed clusters of Disperse nodes and HashiCorp memberlist (Go) nodes.

Real C{twistd disperse} processes (L{disperse.testing.cluster.NodeProcess}) and real
C{build/memberlist-peer} processes (see interop/memberlist-peer, built by
C{make interop}) on 127.0.0.1 with OS-chosen ports join each other, notice
each other's crashes and graceful leaves, with and without encryption.

Disperse nodes are watched through their log (C{member NAME joined|failed|
left}) and their HTTP API (C{/cluster/members}, C{/stats}); Go nodes through
the JSON lines memberlist-peer prints for memberlist's join, update and leave
notifications.  Every wait has a deadline; nothing sleeps for a fixed time.

These tests are marked C{interop} and left out of the default C{pytest} run;
run them with C{make interop}.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from disperse.testing.cluster import NodeProcess, startLoopbackNode

pytestmark = pytest.mark.interop

PEER = Path(
    os.environ.get(
        "MEMBERLIST_PEER",
        Path(__file__).resolve().parents[2] / "build" / "memberlist-peer",
    )
)
# Joining and graceful leaves take well under a second on loopback; failure
# detection takes a probe interval plus a suspicion timeout (3 s to 18 s with
# the local presets on both sides).
DEADLINE = 20.0
FAILURE_DEADLINE = 30.0
# What is read over HTTP (counters, member lists) is read again whenever the
# node logs something, and at least this often: not every counter logs.
RECHECK = 0.05
# News (a member joined) reaches each member through a handful of randomly
# addressed packets: with the local presets' retransmit budget, one member in
# a few clusters of five misses it, and learns it at the next push/pull.  A
# short push/pull interval on every node bounds that wait.
PUSH_PULL_INTERVAL = "2s"
KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(100, 132))).decode()

T = TypeVar("T")


class Watched(Protocol):
    """
    A process whose output says when to look again.
    """

    def mark(self) -> int: ...

    def waitPast(self, mark: int, timeout: float) -> None: ...


def waitUntil(
    check: Callable[[], T | None],
    what: str,
    source: Watched,
    deadline: float = DEADLINE,
) -> T:
    """
    Check C{check} until it returns something other than C{None}, for at
    most C{deadline} seconds: again each time C{source} writes something,
    and at least every L{RECHECK} seconds. C{what} describes the wait should
    it time out.
    """
    end = time.monotonic() + deadline
    while True:
        seen = source.mark()
        result = check()
        if result is not None:
            return result
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"gave up after {deadline} s waiting for {what}")
        source.waitPast(seen, min(RECHECK, remaining))


class GoNode:
    """
    A running memberlist-peer, the events it has printed and its log.
    """

    def __init__(self, name: str, args: list[str], logPath: Path) -> None:
        self.name = name
        self.logPath = logPath
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        command = [str(PEER), "-bind", "127.0.0.1", "-port", "0", "-name", name]
        with logPath.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, "-events", *args],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port: int = self.waitFor(lambda e: e["event"] == "ready")["port"]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def log(self) -> str:
        return self.logPath.read_text(errors="replace")

    def describe(self) -> str:
        with self._changed:
            events = "\n".join(json.dumps(e) for e in self.events)
        return f"{self.name} events:\n{events}\n{self.name} log:\n{self.log()}"

    def mark(self) -> int:
        with self._changed:
            return len(self.events)

    def waitPast(self, mark: int, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(
                lambda: len(self.events) > mark or self.process.poll() is not None,
                timeout,
            )

    def waitFor(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        deadline: float = DEADLINE,
        since: int = 0,
    ) -> dict[str, Any]:
        """
        The first event (from event C{since} on) satisfying C{predicate},
        waiting up to C{deadline} seconds for it.
        """
        end = time.monotonic() + deadline
        seen = since
        with self._changed:
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                remaining = end - time.monotonic()
                if remaining <= 0 or (
                    self.process.poll() is not None and not self._reader.is_alive()
                ):
                    raise AssertionError(
                        f"no such event from {self.name}\n{self.describe()}"
                    )
                self._changed.wait(remaining)

    def waitForMember(
        self, name: str, kind: str, deadline: float = DEADLINE, since: int = 0
    ) -> dict[str, Any]:
        return self.waitFor(
            lambda e: e["event"] == kind and e["name"] == name, deadline, since
        )

    def view(self) -> dict[str, str]:
        """
        Every member this node has reported, and whether it is C{"alive"} or
        C{"gone"}.

        memberlist calls NotifyLeave alike for members that left and members
        found dead; the C{state} field of the events cannot tell them apart
        either, as memberlist 0.2.2 keeps the state in its private
        C{nodeState} and never updates the C{Node.State} it hands out.
        """
        states: dict[str, str] = {}
        with self._changed:
            for event in self.events:
                if event["event"] in ("join", "update"):
                    states[event["name"]] = "alive"
                elif event["event"] == "leave":
                    states[event["name"]] = "gone"
        return states

    def waitForAlive(self, names: set[str], deadline: float = DEADLINE) -> None:
        """
        Wait until exactly C{names} are the members reported alive.
        """

        def check() -> bool | None:
            alive = {n for n, s in self.view().items() if s == "alive"}
            return True if alive == names else None

        try:
            waitUntil(
                check, f"{self.name} to see {sorted(names)} alive", self, deadline
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.describe()}") from None

    def kill(self) -> None:
        """
        Crash: SIGKILL, no goodbye.
        """
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(DEADLINE)
        self._reader.join(DEADLINE)


def memberLine(name: str, change: str) -> re.Pattern[str]:
    return re.compile(rf"member {re.escape(name)} {change} ")


def getJSON(node: NodeProcess, path: str) -> Any:
    with urllib.request.urlopen(f"{node.url}{path}", timeout=10) as response:
        return json.load(response)


def clusterMembers(node: NodeProcess) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in getJSON(node, "/cluster/members")}


def gossipStats(node: NodeProcess) -> dict[str, Any]:
    stats: dict[str, Any] = getJSON(node, "/stats")["gossip"]
    return stats


def waitForStates(
    node: NodeProcess,
    expected: dict[str, str],
    forgettable: frozenset[str] = frozenset(),
    deadline: float = DEADLINE,
) -> dict[str, dict[str, Any]]:
    """
    Wait until C{/cluster/members} shows exactly the C{expected} members in
    the C{expected} states; the members it lists then.

    @param forgettable: members that may be missing: like memberlist, a
        node forgets members dead for longer than it gossips to the dead
        (15 s with the local preset).
    """
    latest: dict[str, dict[str, Any]] = {}

    def check() -> dict[str, dict[str, Any]] | None:
        nonlocal latest
        latest = clusterMembers(node)
        states = {name: m["state"] for name, m in latest.items()}
        wanted = {
            name: state
            for name, state in expected.items()
            if name in states or name not in forgettable
        }
        return latest if states == wanted else None

    try:
        return waitUntil(check, f"states {expected}", node, deadline)
    except AssertionError as e:
        raise AssertionError(
            f"{e}; /cluster/members says {latest}; log:\n" + "\n".join(node.lines)
        ) from None


def waitForSteadyProbes(node: NodeProcess, probes: int) -> dict[str, Any]:
    """
    Wait until C{node} has probed C{probes} more times, and check that all
    along nobody was suspected: the members answer each other's pings, not
    only the join.
    """
    start = gossipStats(node)["probes"]

    def check() -> dict[str, Any] | None:
        stats = gossipStats(node)
        return stats if stats["probes"] >= start + probes else None

    stats = waitUntil(check, f"{probes} probes by {node.command}", node)
    for counter in (
        "probesFailed",
        "suspicions",
        "refutations",
        "badMessages",
        "badPackets",
        "badStreams",
        "decryptFailures",
    ):
        assert stats[counter] == 0, (counter, stats, "\n".join(node.lines))
    return stats


def assertGoNeverSuspected(go: GoNode) -> None:
    """
    Check that C{go} never failed to probe, nor suspected, any member:
    memberlist logs every probe that went unanswered, every suspicion, and
    every member it declares failed.
    """
    log = go.log()
    for sign in ("Failed ping: ", "Suspect ", "Marking "):
        assert sign not in log, f"{go.name} logged {sign!r}:\n{log}"


class Cluster:
    """
    Starts Disperse and Go nodes, and stops every one of them at the end.
    """

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self.disperse: dict[str, NodeProcess] = {}
        self.go: dict[str, GoNode] = {}

    def startDisperse(self, name: str, *args: str) -> NodeProcess:
        node = startLoopbackNode(
            *("--profile", "local", "--node-name", name),
            *("--push-pull-interval", PUSH_PULL_INTERVAL, *args),
        )
        self.disperse[name] = node
        return node

    def startGo(self, name: str, *args: str) -> GoNode:
        args = ("-push-pull-interval", PUSH_PULL_INTERVAL, *args)
        node = GoNode(name, list(args), self._tmp / f"{name}.log")
        self.go[name] = node
        return node

    def names(self) -> set[str]:
        return set(self.disperse) | set(self.go)

    def stop(self) -> None:
        for go in self.go.values():
            go.kill()
        for node in self.disperse.values():
            node.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if not PEER.exists():
        pytest.fail(f"{PEER} is missing; build it with `make interop`")
    started = Cluster(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def disperseAddress(node: NodeProcess) -> str:
    return f"127.0.0.1:{node.gossipPort}"


def formMixedCluster(
    cluster: Cluster, goNames: list[str], key: str | None = None
) -> None:
    """
    Two Disperse nodes, d1 and d2, and Go nodes named C{goNames}, joined
    crosswise: the first Go node through d1, d2 through that Go node, the
    other Go nodes through d2; then wait until every node sees every other
    alive.

    @param key: the base64 gossip key every node is given, if any.
    """
    dKey = ["--gossip-key", key] if key else []
    gKey = ["-key", key] if key else []
    d1 = cluster.startDisperse("d1", *dKey)
    first = cluster.startGo(goNames[0], *gKey, "-join", disperseAddress(d1))
    d2 = cluster.startDisperse("d2", *dKey, "--peer", first.address)
    for name in goNames[1:]:
        cluster.startGo(name, *gKey, "-join", disperseAddress(d2))
    everyone = cluster.names()
    for go in cluster.go.values():
        assert go.waitFor(lambda e: e["event"] == "joined")["count"] == 1
        go.waitForAlive(everyone)
    for node in (d1, d2):
        for name in everyone:
            node.waitFor(memberLine(name, "joined"))
        waitForStates(node, dict.fromkeys(everyone, "alive"))


def test_goJoinsDisperse(cluster: Cluster) -> None:
    """
    A Go node given a Disperse node's gossip address joins it: each sees the
    other alive, with the right address (and Go sees Disperse's metadata),
    and the two keep answering each other's probes.
    """
    d1 = cluster.startDisperse("d1")
    g1 = cluster.startGo("g1", "-join", disperseAddress(d1))

    joined = g1.waitFor(lambda e: e["event"] == "joined")
    assert joined == {"event": "joined", "count": 1, "error": "<nil>"}
    g1.waitForAlive({"d1", "g1"})
    seen = g1.waitForMember("d1", "join")
    assert (seen["addr"], seen["port"]) == ("127.0.0.1", d1.gossipPort)
    meta = json.loads(base64.b64decode(seen["meta"]))
    assert meta["http_addr"] == f"127.0.0.1:{d1.httpPort}"

    d1.waitFor(memberLine("g1", "joined"))
    members = waitForStates(d1, {"d1": "alive", "g1": "alive"})
    assert members["g1"]["gossip_addr"] == g1.address
    assert members["g1"]["http_addr"] is None  # Go's metadata is not ours

    waitForSteadyProbes(d1, 3)
    assertGoNeverSuspected(g1)
    assert g1.view() == {"d1": "alive", "g1": "alive"}


def test_disperseJoinsGo(cluster: Cluster) -> None:
    """
    A Disperse node given a Go node's address as its peer joins it.
    """
    g1 = cluster.startGo("g1")
    d1 = cluster.startDisperse("d1", "--peer", g1.address)

    d1.waitFor(re.compile(r"joined the cluster through 1 of 1 seed addresses"))
    d1.waitFor(memberLine("g1", "joined"))
    members = waitForStates(d1, {"d1": "alive", "g1": "alive"})
    assert members["g1"]["gossip_addr"] == g1.address

    g1.waitForAlive({"d1", "g1"})
    seen = g1.waitForMember("d1", "join")
    assert (seen["addr"], seen["port"]) == ("127.0.0.1", d1.gossipPort)

    waitForSteadyProbes(d1, 3)
    assertGoNeverSuspected(g1)
    assert g1.view() == {"d1": "alive", "g1": "alive"}


def test_mixedCluster(cluster: Cluster) -> None:
    """
    Two Go and two Disperse nodes, joined crosswise, all see all four
    alive, and stay so while they probe each other.
    """
    formMixedCluster(cluster, ["g1", "g2"])
    for node in cluster.disperse.values():
        waitForSteadyProbes(node, 4)
    everyone = dict.fromkeys(cluster.names(), "alive")
    for go in cluster.go.values():
        assertGoNeverSuspected(go)
        assert go.view() == everyone
    for node in cluster.disperse.values():
        assert {n: m["state"] for n, m in clusterMembers(node).items()} == everyone


def checkCrashDetection(cluster: Cluster) -> None:
    """
    In a cluster formed by L{formMixedCluster} with Go nodes g1, g2, g3:
    a Go node killed with SIGKILL is declared failed by both Disperse nodes
    (and dead by the other Go nodes); then a Disperse node killed likewise
    is reported dead by both remaining Go nodes (and failed by the other
    Disperse node).

    Each view is checked as soon as it changes, as members dead for 15 s
    are forgotten.  A member declares a crashed one dead 3 s to 18 s after
    its probes fail (the suspicion timeout shrinks as others confirm the
    suspicion), or as soon as another's verdict reaches it; with the local
    presets' small retransmit budget (each news item goes to two random
    members, dead ones included), that sometimes takes the full 18 s.
    """
    d1, d2 = cluster.disperse["d1"], cluster.disperse["d2"]
    g1, g2, g3 = cluster.go["g1"], cluster.go["g2"], cluster.go["g3"]
    alive = {"d1": "alive", "d2": "alive", "g1": "alive", "g2": "alive"}

    marks = {node: node.mark() for node in (d1, d2)}
    goMarks = {go: go.mark() for go in (g1, g2)}
    g3.kill()
    for node in (d1, d2):
        node.waitFor(memberLine("g3", "failed"), FAILURE_DEADLINE, marks[node])
        # d1 is looked at first, right after it noticed; d2 may have
        # noticed long before.
        forgettable = frozenset({"g3"} if node is d2 else ())
        waitForStates(node, {**alive, "g3": "dead"}, forgettable)
    for go in (g1, g2):
        go.waitForMember("g3", "leave", FAILURE_DEADLINE, goMarks[go])
        go.waitForAlive(set(alive))

    mark = d1.mark()
    goMarks = {go: go.mark() for go in (g1, g2)}
    d2.kill()
    d1.waitFor(memberLine("d2", "failed"), FAILURE_DEADLINE, mark)
    expected = {**alive, "d2": "dead", "g3": "dead"}
    waitForStates(d1, expected, frozenset({"g3"}))
    for go in (g1, g2):
        go.waitForMember("d2", "leave", FAILURE_DEADLINE, goMarks[go])
        go.waitForAlive({"d1", "g1", "g2"})


def test_crashDetection(cluster: Cluster) -> None:
    """
    SIGKILL a Go node: the Disperse nodes declare it failed; SIGKILL a
    Disperse node: the Go nodes report it gone.
    """
    formMixedCluster(cluster, ["g1", "g2", "g3"])
    checkCrashDetection(cluster)


def test_gracefulLeave(cluster: Cluster) -> None:
    """
    A Disperse node stopped with SIGTERM says goodbye: Go reports it left
    (not dead), and so does the other Disperse node.
    """
    d1 = cluster.startDisperse("d1")
    g1 = cluster.startGo("g1", "-join", disperseAddress(d1))
    d2 = cluster.startDisperse("d2", "--peer", g1.address)
    g1.waitForAlive({"d1", "d2", "g1"})
    for node in (d1, d2):
        waitForStates(node, {"d1": "alive", "d2": "alive", "g1": "alive"})

    goMark, mark = g1.mark(), d1.mark()
    assert d2.terminate() == -signal.SIGTERM
    assert any("left the cluster" in line for line in d2.lines), d2.lines
    g1.waitForMember("d2", "leave", since=goMark)
    # memberlist's leave events do not say why (see L{GoNode.view}), but it
    # logs when it declares a member failed itself, and it did not.
    assert "Marking d2 as failed" not in g1.log(), g1.log()
    d1.waitFor(memberLine("d2", "left"), since=mark)
    waitForStates(d1, {"d1": "alive", "d2": "left", "g1": "alive"})
    g1.waitForAlive({"d1", "g1"})


def test_encryptedCrashDetection(cluster: Cluster) -> None:
    """
    With the same key on every node, the mixed cluster forms and detects
    crashes both ways, and every packet and stream decrypts.
    """
    formMixedCluster(cluster, ["g1", "g2", "g3"], KEY)
    for node in cluster.disperse.values():
        stats = waitForSteadyProbes(node, 2)
        assert stats["packetsIn"] > 0
    checkCrashDetection(cluster)
    assert gossipStats(cluster.disperse["d1"])["decryptFailures"] == 0


def startEncryptedPair(cluster: Cluster) -> tuple[NodeProcess, GoNode]:
    """
    A Disperse node and a Go node, both with L{KEY}, joined.
    """
    d1 = cluster.startDisperse("d1", "--gossip-key", KEY)
    g1 = cluster.startGo("g1", "-key", KEY, "-join", disperseAddress(d1))
    g1.waitForAlive({"d1", "g1"})
    waitForStates(d1, {"d1": "alive", "g1": "alive"})
    return d1, g1


def test_wrongKeyDoesNotJoin(cluster: Cluster) -> None:
    """
    Nodes with another key join neither way: a Go node joining the Disperse
    node is refused, and so is a Disperse node joining the Go node.  (Both
    also hold without encryption on the wrong-key side.)
    """
    d1, g1 = startEncryptedPair(cluster)

    wrongGo = cluster.startGo(
        "g-wrong", "-key", OTHER_KEY, "-join", disperseAddress(d1)
    )
    refused = wrongGo.waitFor(lambda e: e["event"] == "joined")
    assert refused["count"] == 0
    assert refused["error"] != "<nil>"
    plainGo = cluster.startGo("g-plain", "-join", disperseAddress(d1))
    assert plainGo.waitFor(lambda e: e["event"] == "joined")["count"] == 0

    wrongDisperse = cluster.startDisperse(
        "d-wrong", "--gossip-key", OTHER_KEY, "--peer", g1.address
    )
    wrongDisperse.waitFor(re.compile(r"no seed answered"))
    plainDisperse = cluster.startDisperse("d-plain", "--peer", g1.address)
    plainDisperse.waitFor(re.compile(r"no seed answered"))

    assert g1.view() == {"d1": "alive", "g1": "alive"}
    assert {n: m["state"] for n, m in clusterMembers(d1).items()} == {
        "d1": "alive",
        "g1": "alive",
    }
    assert set(clusterMembers(wrongDisperse)) == {"d-wrong"}
    assert set(clusterMembers(plainDisperse)) == {"d-plain"}
    # d1 dropped both Go nodes' join streams as bad.
    waitUntil(
        lambda: True if gossipStats(d1)["badStreams"] >= 2 else None,
        "d1 to count the refused streams",
        d1,
    )


def test_wrongKeyCountedAsDecryptFailure(cluster: Cluster) -> None:
    """
    A node with another key trying to join shows up in the Disperse node's
    C{gossip.decryptFailures} counter, so an operator can tell a key
    mismatch from a network problem.  (Joins are push/pull exchanges over
    TCP; a node that never joined sends no UDP packets at all.)
    """
    d1, _ = startEncryptedPair(cluster)
    before = gossipStats(d1)
    wrongGo = cluster.startGo(
        "g-wrong", "-key", OTHER_KEY, "-join", disperseAddress(d1)
    )
    assert wrongGo.waitFor(lambda e: e["event"] == "joined")["count"] == 0

    def refused() -> dict[str, Any] | None:
        stats = gossipStats(d1)
        return stats if stats["badStreams"] > before["badStreams"] else None

    after = waitUntil(refused, "d1 to count the refused stream", d1)
    assert after["decryptFailures"] > before["decryptFailures"], after
