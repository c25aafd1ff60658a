"""
The node: the one core object every front end talks to.

A L{Node} owns the store, membership and replication (the member
directory, the cluster view, the replica, the coordinator, anti-entropy),
all built and handed to it by L{disperse.tap}, and exposes the operations
the front ends translate requests into. Front ends never reach into each
other or into the store directly.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Protocol, Self

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime

from disperse.cluster.antientropy import AntiEntropy
from disperse.cluster.clients import RepairClient
from disperse.cluster.coordinator import (
    ELSEWHERE,
    Consistency,
    Coordinator,
    Elsewhere,
    ReadOutcome,
    WriteOutcome,
)
from disperse.cluster.handoff import HandoffResult, handOff, handoffPlan
from disperse.cluster.hints import HintStore
from disperse.cluster.increments import IncrementOutcome, Increments
from disperse.cluster.keyspace import FlushOutcome, Keyspace, KeyWalk
from disperse.cluster.members import MemberChange, MemberDirectory
from disperse.cluster.peer.client import PeerCallCounters
from disperse.cluster.placement import PartitionTable
from disperse.cluster.replica import Replica
from disperse.cluster.serial import KeySerializer
from disperse.cluster.view import ClusterView
from disperse.config import NodeConfig, nodeIdFor
from disperse.gossip.events import MembershipEvents
from disperse.gossip.messages import NodeState
from disperse.gossip.service import KeyringError, Membership
from disperse.gossip.swim import Member
from disperse.logs import fingerprint, logger
from disperse.persist.service import Persistence
from disperse.store import Record, Store, ValueTooLarge
from disperse.store.scrubber import Scrubber
from disperse.store.sweeper import ExpirySweeper

# Hints a coordinator keeps for replicas that missed writes: an eighth of
# the store's budget, and never less than this.
HINTS_MIN_BYTES = 1024 * 1024


@dataclass(frozen=True)
class MemberInfo:
    """
    What the seed's C{GET /cache/members} lists for one member.
    """

    name: str
    addr: str
    port: int
    httpPort: int

    def asSeedJSON(self) -> dict[str, Any]:
        return {
            "addr": f"{self.addr}:{self.port}",
            "http_port": self.httpPort,
            "name": self.name,
            "port": self.port,
        }


class FrontEndStats(Protocol):
    """
    The counters of a front end other than HTTP, as the node's C{/stats}
    shows them (L{disperse.resp.stats.RespStats} is the Redis one; the node
    cannot import it, since the front ends import the node).
    """

    def summary(self) -> dict[str, Any]:
        """
        The counters as a JSON object.
        """


class NotJoined(Exception):
    """
    This node has not joined its cluster yet, so it does not know which
    members hold a key: it cannot coordinate a request.
    """


class Loading(Exception):
    """
    This node is loading its data directory and holds every replica of the
    key itself (it is alone): nothing can answer the read until it ends.
    """


class Node(MultiService):
    """
    One Disperse node.

    @ivar httpPort: the TCP port the HTTP API listens on, once it does.
    @ivar memberEvents: membership changes seen so far, by kind (joined,
        updated, left, failed).
    """

    log = logger()

    @classmethod
    def build(
        cls,
        config: NodeConfig,
        clock: IReactorTime,
        *,
        peers: RepairClient,
        directory: MemberDirectory,
        membership: Membership | None = None,
    ) -> Self:
        """
        A node named by C{config} with its parts wired to each other: its
        store, the cluster view over C{directory}, the replica, the
        coordinator and anti-entropy, which reach other members through
        C{peers}. C{membership} is as for L{__init__}.
        """
        store = Store(clock, nodeIdFor(config.nodeName), maxBytes=config.maxMemory)
        view = ClusterView(
            nodeName=config.nodeName,
            clock=clock,
            source=directory,
            replicas=config.replicas,
            forgetDeparted=config.forgetDeparted,
        )
        replica = Replica(store=store, clock=clock)
        coordinator = Coordinator(
            view=view,
            replica=replica,
            clock=clock,
            peers=peers,
            timeout=config.replicaTimeout,
            readRetryAfter=config.readRetryAfter,
            hints=HintStore(max(config.maxMemory // 8, HINTS_MIN_BYTES)),
        )
        antiEntropy = AntiEntropy(
            view=view,
            replica=replica,
            peers=peers,
            clock=clock,
            random=random.Random(),
            interval=config.antiEntropyInterval,
        )
        keyspace = Keyspace(
            view=view,
            replica=replica,
            coordinator=coordinator,
            peers=peers,
            random=random.Random(),
        )
        return cls(
            config,
            clock,
            store=store,
            directory=directory,
            view=view,
            replica=replica,
            coordinator=coordinator,
            antiEntropy=antiEntropy,
            keyspace=keyspace,
            membership=membership,
        )

    def __init__(
        self,
        config: NodeConfig,
        clock: IReactorTime,
        *,
        store: Store,
        directory: MemberDirectory,
        view: ClusterView,
        replica: Replica,
        coordinator: Coordinator,
        antiEntropy: AntiEntropy,
        keyspace: Keyspace,
        membership: Membership | None = None,
    ) -> None:
        """
        @param membership: this node's gossip membership, whose listener is
            C{directory}; the caller makes it a child service, after the
            services whose ports it gossips. Without one, the node is a
            cluster of one.
        """
        super().__init__()
        self.config = config
        self.clock = clock
        self.nodeId = nodeIdFor(config.nodeName)
        self.store = store
        self.httpPort: int | None = None
        # The Redis protocol port, once bound (--redis-port), and what its
        # server counts: None while that front end is off.
        self.redisPort: int | None = None
        self.respStats: FrontEndStats | None = None
        # Read-modify-write operations (conditional sets, expiry changes,
        # increments), one at a time per key on this node.
        self.serial = KeySerializer()
        self.increments = Increments(
            coordinator=coordinator,
            store=store,
            serial=self.serial,
            random=random.Random(),
        )
        self.directory = directory
        self.membership = membership
        # Whether this node coordinates requests: not while it has seeds to
        # join and has not, since its partition table (of itself alone)
        # would acknowledge writes that no real replica holds.
        self.ready = membership is None or membership.joined
        self.events = MembershipEvents()
        self.memberEvents: Counter[str] = Counter()
        self.view = view
        self.replica = replica
        self.coordinator = coordinator
        self.antiEntropy = antiEntropy
        self.keyspace = keyspace
        self.readConsistency = Consistency(config.readConsistency)
        self.writeConsistency = Consistency(config.writeConsistency)
        self._sweeper = ExpirySweeper(self.store, clock)
        # The data directory, when the node has one (--data-dir), and
        # whether co-owners were compared with once it had loaded.
        self.persistence: Persistence | None = None
        self._comparedAfterLoad = False
        self.scrubber = Scrubber(self.store, clock, config.scrubRate)
        view.addTableListener(self._tableChanged)
        directory.watch(self)

    # Service lifecycle

    def persist(self, persistence: Persistence) -> None:
        """
        Keep this node's store in a data directory: loaded back at start
        (the replica serves no reads until that ends), every change logged.
        Called before any other child service is added, so that the log is
        open before the ports are.
        """
        self.persistence = persistence
        self.replica.beginLoading()
        self.replica.whenSynced = persistence.whenSynced
        self.replica.waitsForSync = persistence.fsync == "always"
        self.replica.checkWritable = persistence.checkWritable
        persistence.setServiceParent(self)

    @property
    def loading(self) -> bool:
        """
        Whether this node's data directory is still being loaded.
        """
        return self.persistence is not None and self.persistence.loading

    def startService(self) -> None:
        super().startService()
        self._sweeper.start()
        self.scrubber.start()
        self.coordinator.start()
        if self.persistence is None:
            self.antiEntropy.start()
        else:
            self.persistence.loaded.addBoth(self._loaded)
        self.log.info(
            "node {name} started (max memory {maxMemory} bytes, max value size"
            " {maxValueSize} bytes)",
            name=self.config.nodeName,
            maxMemory=self.config.maxMemory,
            maxValueSize=self.config.maxValueSize,
        )

    def _loaded(self, result: object) -> None:
        # Anti-entropy waits for the end: comparing trees of a store half
        # loaded would only fetch what the disk is about to give back.
        self.replica.endLoading()
        report = self.persistence.report if self.persistence is not None else None
        if report is not None:
            # Entries read back that failed their content hash, not loaded.
            self.store.integrity.disk += report.corrupt
        if self.running:
            self.antiEntropy.start()
            self._compareAfterLoad()

    def _compareAfterLoad(self) -> None:
        """
        Once the data directory is loaded and the node has joined, compare
        with the co-owners at once rather than at the next periodic round:
        what they received while this node was down is all that differs.
        """
        if self._comparedAfterLoad or not self.ready or self.loading:
            return
        if self.persistence is None or not self.running:
            return
        if len(self.view.table.members) < 2:
            # No co-owner known yet: the table will change when one is.
            return
        self._comparedAfterLoad = True
        self.clock.callLater(0, self.antiEntropy.runRound)

    def stopService(self) -> Any:
        # Requests keep being served, and gossip keeps this node a member,
        # while its partitions are handed off; then it leaves.
        def stopRest(_: object) -> Any:
            self._sweeper.stop()
            self.scrubber.stop()
            self.view.stop()
            self.antiEntropy.stop()
            self.coordinator.stop()
            # Requests still draining may need peers: close connections
            # to them last.
            stopped: Deferred[object] = maybeDeferred(MultiService.stopService, self)
            return stopped.addBoth(self._closePeers)

        return self.handOff().addBoth(stopRest)

    def _closePeers(self, result: object) -> object:
        close = getattr(self.coordinator.peers, "close", None)
        if close is not None:
            close()
        return result

    def handOff(self) -> Deferred[HandoffResult]:
        """
        Push the partitions this node holds to the members that will hold
        them once it has left, within the configured time.
        """
        if self.config.handoffTimeout <= 0 or self.membership is None:
            return succeed(HandoffResult())
        plan = handoffPlan(self.view.table, self.config.nodeName, self.config.replicas)
        return handOff(
            store=self.store,
            peers=self.coordinator.peers,
            plan=plan,
            clock=self.clock,
            timeout=self.config.handoffTimeout,
        )

    # Membership

    def clusterJoined(self) -> None:
        """
        Membership joined the cluster (or found it is the first member):
        start coordinating (the view placed partitions already).
        """
        self._becomeReady()

    def _tableChanged(self, old: PartitionTable, new: PartitionTable) -> None:
        if len(new.members) > 1:
            # Others found this node even if its own seeds did not answer.
            self._becomeReady()

    def _becomeReady(self) -> None:
        if not self.ready:
            self.ready = True
            self.log.info(
                "coordinating requests with {count} members holding data",
                count=len(self.view.table.members),
            )
        self._compareAfterLoad()

    def memberChanged(self, change: MemberChange, member: Member) -> None:
        self.events.record(
            self.clock.seconds(),
            member.name,
            change,
            NodeState(member.state).name,
            member.incarnation,
        )
        self.memberEvents[change] += 1
        self.log.info(
            "member {member} {change} ({host}:{port}, incarnation {incarnation})",
            member=member.name,
            change=change,
            host=member.host,
            port=member.port,
            incarnation=member.incarnation,
        )

    # Operations for the front ends

    def get(
        self, key: str, level: Consistency | None = None
    ) -> ReadOutcome | Deferred[ReadOutcome]:
        """
        Read C{key} from its replicas at C{level} (the node's default read
        consistency if not given).

        @raise NotJoined: before this node joined its cluster.
        @raise NoMajority: at quorum or all, when this node reaches no
            majority of the cluster.
        @raise Loading: while this node, alone, loads its data directory.
        """
        if not self.ready:
            raise NotJoined()
        if self.loading and len(self.view.table.members) < 2:
            raise Loading()
        outcome = self.coordinator.read(key, level or self.readConsistency)
        if isinstance(outcome, Deferred):
            return outcome.addCallback(self._countRead)
        # _countRead inlined for the read answered at once.
        self.store.countLookup(outcome.value is not None)
        return outcome

    def _countRead(self, outcome: ReadOutcome) -> ReadOutcome:
        self.store.countLookup(outcome.value is not None)
        return outcome

    def put(
        self,
        key: str,
        value: bytes,
        ttlMs: int = 0,
        binary: bool = False,
        level: Consistency | None = None,
    ) -> WriteOutcome | Deferred[WriteOutcome]:
        """
        Write C{value} to the replicas of C{key}.

        @raise ValueTooLarge: if the entry cannot fit this node's budget.
        @raise NotJoined: before this node joined its cluster.
        @raise disperse.persist.log.DiskUnavailable: while this node cannot
            write to its data directory (as every write does).
        """
        if not self.ready:
            raise NotJoined()
        if self.persistence is not None:
            self.persistence.checkWritable()
        if not self.store.fits(key, value):
            raise ValueTooLarge(key)
        record = self.store.newRecord(value, ttlMs, binary)
        return self.coordinator.write(key, record, level or self.writeConsistency)

    def putUntil(
        self,
        key: str,
        value: bytes,
        expiresAtMs: int,
        binary: bool = False,
        level: Consistency | None = None,
    ) -> WriteOutcome | Deferred[WriteOutcome]:
        """
        Write C{value} to the replicas of C{key}, expiring at C{expiresAtMs}
        (ms since the epoch on this node's clock; 0 for never): for clients
        that name the time, or keep a value's expiry while they rewrite it.
        A time already past deletes the key (a tombstone, as L{delete}
        writes) rather than storing a value that lapses at once.

        @raise ValueTooLarge: if the entry cannot fit this node's budget.
        @raise NotJoined: before this node joined its cluster.
        """
        if not self.ready:
            raise NotJoined()
        if self.persistence is not None:
            self.persistence.checkWritable()
        if expiresAtMs and expiresAtMs <= self.store.nowMs():
            return self.delete(key, level)
        if not self.store.fits(key, value):
            raise ValueTooLarge(key)
        record = self.store.newRecord(value, binary=binary, expiresAtMs=expiresAtMs)
        return self.coordinator.write(key, record, level or self.writeConsistency)

    def delete(
        self, key: str, level: Consistency | None = None
    ) -> WriteOutcome | Deferred[WriteOutcome]:
        if not self.ready:
            raise NotJoined()
        if self.persistence is not None:
            self.persistence.checkWritable()
        record = self.store.newRecord(b"", tombstone=True)
        return self.coordinator.write(key, record, level or self.writeConsistency)

    def restamp(
        self,
        key: str,
        current: Record,
        expiresAtMs: int,
        level: Consistency | None = None,
    ) -> WriteOutcome | Deferred[WriteOutcome]:
        """
        Write a new version of C{current}, the live record of C{key} just
        read, with the same value and the expiry C{expiresAtMs} (ms since
        the epoch on this node's clock, 0 for never): what C{EXPIRE},
        C{PERSIST} and C{GETEX} write. A counter stays a counter with the
        same state, so that increments made meanwhile on other copies still
        merge with it (rewriting its number as a plain value would reset
        it). A time already past deletes the key.

        @raise NotJoined: before this node joined its cluster.
        """
        if not self.ready:
            raise NotJoined()
        if self.persistence is not None:
            self.persistence.checkWritable()
        if expiresAtMs and expiresAtMs <= self.store.nowMs():
            return self.delete(key, level)
        record = current._replace(
            expiresAtMs=expiresAtMs,
            timestamp=self.store.hlc.now(),
            nodeId=self.store.nodeId,
            tombstone=False,
        )
        return self.coordinator.write(key, record, level or self.writeConsistency)

    def increment(
        self,
        key: str,
        delta: int | float | Decimal,
        level: Consistency | None = None,
    ) -> Deferred[IncrementOutcome]:
        """
        Add C{delta} to the convergent counter C{key}, reading and writing at
        C{level} (the node's default write consistency if not given): an
        C{int} step as C{INCRBY} adds it, a C{float} or L{Decimal} one as
        C{INCRBYFLOAT} does (a float by its shortest text: C{0.1} adds
        exactly a tenth). See L{disperse.cluster.increments}.

        @return: fires with the outcome, or fails with
            L{disperse.store.counter.CounterError} when the key's value
            cannot take the step (nothing is written), L{NoMajority} or
            L{ValueTooLarge}.
        @raise NotJoined: before this node joined its cluster.
        """
        if not self.ready:
            raise NotJoined()
        if self.persistence is not None:
            self.persistence.checkWritable()
        if isinstance(delta, float):
            delta = Decimal(repr(delta))
        return self.increments.increment(key, delta, level or self.writeConsistency)

    # The whole keyspace

    def scanKeys(
        self,
        partition: int,
        leaf: int,
        count: int,
        level: Consistency | None = None,
        maxSteps: int | None = None,
        maxRemote: int | None = None,
    ) -> Deferred[KeyWalk]:
        """
        The live keys of the cluster from leaf C{leaf} of C{partition} on,
        until about C{count} were found (all of them for L{WHOLE}), or
        C{maxSteps} partitions were listed or other members asked
        C{maxRemote} times; read from as many owners of each partition as
        C{level} (the read consistency if not given) needs, this node's
        replica first (see L{Keyspace.walk}).

        @raise NotJoined: before this node joined its cluster.
        @raise NoMajority: at quorum or all, when this node reaches no
            majority of the cluster.
        @raise ShortRead: (in the L{Deferred}) when a partition had fewer
            owners answering than the level needs.
        """
        if not self.ready:
            raise NotJoined()
        level = level or self.readConsistency
        if level is not Consistency.one:
            self.view.checkMajority()
        return Deferred.fromCoroutine(
            self.keyspace.walk(partition, leaf, count, level, maxSteps, maxRemote)
        )

    def randomKey(
        self,
        level: Consistency | None = None,
        accept: Callable[[str], bool] | None = None,
    ) -> Deferred[str | None]:
        """
        A key picked at random among those C{accept} takes, preferably from
        this node's partitions, or L{None} when there is none (see
        L{Keyspace.randomKey}).

        @raise NotJoined: before this node joined its cluster.
        """
        if not self.ready:
            raise NotJoined()
        return Deferred.fromCoroutine(
            self.keyspace.randomKey(level or self.readConsistency, accept)
        )

    def keyCount(self) -> Deferred[int]:
        """
        The keys of the whole cluster, each partition counted on one of its
        owners: this node's replica for those it holds, one call to each
        other member for the rest (see L{Keyspace.keyCount}). On a node
        alone, at once.

        @raise NotJoined: before this node joined its cluster.
        @raise ShortCount: (in the L{Deferred}) when no owner of some
            partition answered.
        """
        if not self.ready:
            raise NotJoined()
        return Deferred.fromCoroutine(self.keyspace.keyCount())

    def flush(self, level: Consistency | None = None) -> Deferred[FlushOutcome]:
        """
        Delete every key of the cluster: a tombstone, newer than every
        record read, for each live key of each partition, written to its
        owners at C{level} (the write consistency if not given).

        @raise NotJoined: before this node joined its cluster.
        @raise NoMajority: at quorum or all, when this node reaches no
            majority of the cluster.
        """
        if not self.ready:
            raise NotJoined()
        if self.persistence is not None:
            self.persistence.checkWritable()
        return Deferred.fromCoroutine(
            self.keyspace.flush(level or self.writeConsistency)
        )

    # Requests this node's replica alone answers at once: for a front end
    # that serves a batch of them in one pass (a pipeline of the Redis
    # port), without an outcome or a Deferred each. Each answers Elsewhere
    # when it would not be answered that way, having done nothing: the
    # caller then goes through get or putUntil (which raise what they
    # raise).

    def readHere(self, key: str, level: Consistency) -> Record | Elsewhere | None:
        """
        The live value of C{key}, what L{get} at C{level} would read (and
        count as a hit or a miss), when this node's replica alone answers
        it; else L{ELSEWHERE}.
        """
        if not self.ready or self.loading:
            return ELSEWHERE
        record = self.coordinator.readHere(key, level)
        if record is None or record is ELSEWHERE:
            if record is None:
                self.store.misses += 1
            return record
        if record.tombstone:
            self.store.misses += 1
            return None
        self.store.hits += 1
        return record

    def readAllHere(
        self, keys: list[str], level: Consistency
    ) -> list[Record | None] | Elsewhere:
        """
        L{readHere} of each of C{keys}, when this node's replica alone
        answers every one of them; else L{ELSEWHERE}, none read.
        """
        if not self.ready or self.loading:
            return ELSEWHERE
        records = self.coordinator.readAllHere(keys, level)
        if records is ELSEWHERE:
            return records
        store = self.store
        values: list[Record | None] = []
        for record in records:
            if record is None or record.tombstone:
                store.misses += 1
                values.append(None)
            else:
                store.hits += 1
                values.append(record)
        return values

    def writeHere(
        self,
        key: str,
        value: bytes,
        expiresAtMs: int,
        binary: bool,
        level: Consistency,
    ) -> bool:
        """
        Write C{value} under C{key} as L{putUntil} would at C{level}
        (acknowledged by this node's replica, which is the only one) when
        it can do so at once, and whether it did: nothing is written
        before this node joined, while its disk fails, for an expiry
        already past or an entry larger than the store, or when other
        replicas hold the key.
        """
        if not self.ready:
            return False
        persistence = self.persistence
        if persistence is not None and not persistence.writable:
            return False
        store = self.store
        if expiresAtMs and expiresAtMs <= store.nowMs():
            return False
        if not store.fits(key, value):
            return False
        return self.coordinator.writeHere(key, value, expiresAtMs, binary, level)

    # This node's store alone: the original's X-Is-Sync

    def getLocal(self, key: str) -> Record | None:
        return self.store.get(key)

    def putLocal(
        self, key: str, value: bytes, ttlMs: int = 0, binary: bool = False
    ) -> Record:
        return self.store.put(key, value, ttlMs, binary)

    def deleteLocal(self, key: str) -> bool:
        return self.store.delete(key)

    def members(self) -> list[MemberInfo]:
        """
        The members this node believes alive or suspect, itself included.
        """
        # Before it starts, membership knows of nobody, not even this node.
        if self.membership is None or not self.membership.members():
            return [
                MemberInfo(
                    name=self.config.nodeName,
                    addr=self.config.advertiseAddress,
                    port=self.config.gossipPort,
                    httpPort=self.httpPort or 0,
                )
            ]
        return [
            MemberInfo(
                name=member.name,
                addr=member.host,
                port=member.port,
                httpPort=self.directory.meta(member.name).httpPort,
            )
            for member in self.membership.liveMembers()
        ]

    def gossipKeys(self) -> dict[str, Any]:
        """
        Fingerprints (never the keys) of the gossip keyring, primary first.
        """
        keyring = self.membership.settings.keyring if self.membership else None
        if keyring is None:
            return {"encryption": False, "keys": []}
        return {
            "encryption": True,
            "primary": fingerprint(keyring.primaryKey),
            "keys": [fingerprint(key) for key in keyring.keys],
        }

    def changeGossipKeys(self, operation: str, key: bytes) -> None:
        """
        Install, use (make primary) or remove a gossip key on this node.

        @raise KeyringError: if the step cannot be done.
        """
        if self.membership is None:
            raise KeyringError("this node has no gossip membership")
        change = {
            "install": self.membership.installKey,
            "use": self.membership.useKey,
            "remove": self.membership.removeKey,
        }[operation]
        change(key)

    def partitions(self) -> dict[str, Any]:
        """
        The partition table as this node sees it: owners, this node's
        entries and Merkle root per partition.
        """
        return {
            "node": self.config.nodeName,
            "table": self.view.table.digest(),
            "partitions": self.antiEntropy.partitionInfo(),
        }

    def clusterMembers(self) -> list[dict[str, Any]]:
        """
        Every member this node knows of, in any state, with what an operator
        needs to find it.
        """
        if self.membership is None:
            return []
        described = []
        for member in self.membership.members():
            meta = self.directory.meta(member.name)
            described.append(
                {
                    "name": member.name,
                    "gossip_addr": f"{member.host}:{member.port}",
                    "http_addr": meta.httpAddress,
                    "http_scheme": meta.httpScheme if meta.httpAddress else None,
                    "peer_addr": meta.peerAddress,
                    "state": NodeState(member.state).name,
                    "incarnation": member.incarnation,
                    "zone": meta.zone,
                    "last_change": member.stateChange,
                }
            )
        return described

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "node": self.config.nodeName,
            **asdict(self.store.stats()),
        }
        membership = self.membership
        if membership is not None:
            states: dict[str, int] = {state.name: 0 for state in NodeState}
            for member in membership.members():
                states[NodeState(member.state).name] += 1
            gossip: dict[str, Any] = {"members": states, **asdict(membership.counters)}
            gossip.update(asdict(membership.swim.counters))
            gossip["healthScore"] = membership.swim.healthScore
            stats["gossip"] = gossip
        hints = self.coordinator.hints
        stats["replication"] = {
            **asdict(self.coordinator.counters),
            **asdict(self.replica.counters),
            "hintsQueued": hints.counters.queued,
            "hintsDelivered": hints.counters.delivered,
            "hintsDropped": hints.counters.dropped,
            "hintsPending": sum(hints.pending(m) for m in hints.members()),
            "members": len(self.view.table.members),
            "knownMembers": self.view.knownMembers(),
            **{
                f"peer{name.capitalize()}": value
                for name, value in asdict(
                    getattr(self.coordinator.peers, "counters", PeerCallCounters())
                ).items()
            },
            "table": self.view.table.digest(),
        }
        stats["antiEntropy"] = self.antiEntropy.stats()
        stats["integrity"] = {
            "scrubRate": self.scrubber.rate,
            **asdict(self.store.integrity),
        }
        if self.respStats is not None:
            stats["redis"] = self.respStats.summary()
        if self.persistence is not None:
            stats["persistence"] = self.persistence.stats()
        return stats
