"""
Prometheus metrics of one node.

The core already counts what happens in plain integers (the store's
statistics, gossip traffic, the SWIM state machine, replication, hints,
anti-entropy). L{NodeCollector} reads them when Prometheus scrapes, so
exporting them costs nothing on the paths that count. L{RequestStats} does
the one thing the core does not: it tallies HTTP requests and their
latency, cheaply enough for the C{/cache/<key>} path. L{RespCollector}
reads what the Redis front end counts (L{disperse.resp.stats.RespStats}),
when the node serves it.

Every node has its own L{CollectorRegistry} (see L{nodeRegistry}), never
the process-wide one, so that several nodes in one process (tests, the
simulation) keep their metrics apart.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from disperse import __version__
from disperse.cluster.peer.client import PeerCallCounters
from disperse.gossip.messages import NodeState
from disperse.node import Node
from disperse.resp.stats import RespStats

# Upper bounds of the request latency histogram, in seconds. A cache hit
# answers in well under a millisecond; a quorum read or write waits for the
# network; 1 s is the default replica timeout, and beyond 5 s something is
# wrong whatever the exact figure.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

# The status label of a request whose client went away before the answer.
DISCONNECTED = "disconnected"


@dataclass(slots=True)
class _Series:
    """
    Requests of one route, method and status: how many fell in each
    latency bucket (the last one is beyond every bound) and their sum.
    """

    buckets: list[int]
    seconds: float = 0.0


def _histogram(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    # Prometheus buckets are cumulative, the last one +Inf.
    labels = [*(floatToGoString(b) for b in bounds), "+Inf"]
    cumulative = 0
    buckets = []
    for label, n in zip(labels, counts, strict=True):
        cumulative += n
        buckets.append((label, float(cumulative)))
    return buckets


class RequestStats(Collector):
    """
    HTTP requests by route, method and status, with their latency.

    Requests are served on the reactor thread alone, so plain integers do:
    L{record} is a dictionary lookup, a bisection and two additions. With
    the timing around it that is 1.5 to 3 microseconds a request on a busy
    two-core machine, about half what a locked C{prometheus_client}
    counter and histogram cost.

    @ivar inFlight: read when scraping: requests being served now.
    """

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.inFlight: Callable[[], int] = lambda: 0
        self._series: dict[tuple[str, bytes, int | str], _Series] = {}

    def record(
        self, route: str, method: bytes, status: int | str, seconds: float
    ) -> None:
        """
        Count one request to C{route} answered with C{status} after
        C{seconds}.
        """
        key = (route, method, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series([0] * (len(self.bounds) + 1))
        series.buckets[bisect_left(self.bounds, seconds)] += 1
        series.seconds += seconds

    def count(self, route: str, method: bytes, status: int | str) -> int:
        """
        How many requests to C{route} were answered with C{status}.
        """
        series = self._series.get((route, method, status))
        return sum(series.buckets) if series is not None else 0

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "disperse_http_requests_total",
            "HTTP requests answered, by route, method and status.",
            labels=["route", "method", "status"],
        )
        # Latency by route and method: the status would multiply the series
        # by the bucket count for little insight, and the counter has it.
        merged: dict[tuple[str, str], _Series] = {}
        for (route, rawMethod, status), series in sorted(
            self._series.items(), key=lambda item: str(item[0])
        ):
            method = rawMethod.decode("ascii", "replace")
            requests.add_metric([route, method, str(status)], sum(series.buckets))
            total = merged.setdefault(
                (route, method), _Series([0] * len(series.buckets))
            )
            for i, n in enumerate(series.buckets):
                total.buckets[i] += n
            total.seconds += series.seconds
        latency = HistogramMetricFamily(
            "disperse_http_request_duration_seconds",
            "Time from a whole request received to its answer sent, by route"
            " and method.",
            labels=["route", "method"],
        )
        for (route, method), series in merged.items():
            latency.add_metric(
                [route, method], _histogram(self.bounds, series.buckets), series.seconds
            )
        return [
            requests,
            latency,
            GaugeMetricFamily(
                "disperse_http_requests_in_flight",
                "HTTP requests being served now.",
                value=self.inFlight(),
            ),
        ]


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class NodeCollector(Collector):
    """
    Everything a node counts already, read at scrape time.

    @ivar rateLimited: how many requests the rate limiter has refused so
        far; a node without one refuses none.
    @ivar peerServed: how many node-to-node calls this node answered, and
        how many of them it refused (unsigned, replayed, malformed).
    """

    def __init__(self, node: Node, rateLimited: Callable[[], int] | None = None):
        self._node = node
        self.rateLimited: Callable[[], int] = rateLimited or (lambda: 0)
        self.peerServed: Callable[[], tuple[int, int]] = lambda: (0, 0)

    def collect(self) -> Iterator[Metric]:
        node = self._node
        info = GaugeMetricFamily(
            "disperse_node_info",
            "This node: its name, zone and version (always 1).",
            labels=["node", "zone", "version"],
        )
        info.add_metric([node.config.nodeName, node.config.zone, __version__], 1)
        yield info
        yield from self._store()
        yield from self._gossip()
        yield from self._replication()
        yield from self._antiEntropy()
        yield from self._integrity()
        yield _counter(
            "disperse_rate_limited_total",
            "Requests refused by the rate limiter.",
            self.rateLimited(),
        )
        served, refused = self.peerServed()
        yield _counter(
            "disperse_peer_calls_served_total",
            "Node-to-node calls answered here, on the node-to-node port.",
            served,
        )
        yield _counter(
            "disperse_peer_calls_refused_total",
            "Node-to-node calls refused here: unsigned, badly signed, replayed"
            " or malformed.",
            refused,
        )

    def _store(self) -> Iterator[Metric]:
        stats = self._node.store.stats()
        yield _gauge("disperse_store_keys", "Live keys held here.", stats.keys)
        yield _gauge(
            "disperse_store_tombstones",
            "Deletes remembered here (for an hour).",
            stats.tombstones,
        )
        yield _gauge(
            "disperse_store_bytes",
            "Bytes the store accounts for: keys, values and per-entry overhead.",
            stats.bytes,
        )
        if stats.maxBytes is not None:
            yield _gauge(
                "disperse_store_max_bytes",
                "The store's byte budget (--max-memory).",
                stats.maxBytes,
            )
        for name, documentation, value in (
            ("hits", "Reads that found a value.", stats.hits),
            ("misses", "Reads that found nothing.", stats.misses),
            ("sets", "Values written here.", stats.sets),
            ("deletes", "Deletes applied here.", stats.deletes),
            ("evictions", "Keys evicted to stay within budget.", stats.evictions),
            ("expirations", "Keys dropped on expiry.", stats.expirations),
        ):
            yield _counter(f"disperse_store_{name}_total", documentation, value)

    def _gossip(self) -> Iterator[Metric]:
        node = self._node
        members = GaugeMetricFamily(
            "disperse_members",
            "Members this node knows of, by state.",
            labels=["state"],
        )
        states = dict.fromkeys(NodeState, 0)
        membership = node.membership
        for member in membership.members() if membership is not None else []:
            states[NodeState(member.state)] += 1
        for state, count in states.items():
            members.add_metric([state.name], count)
        yield members

        events = CounterMetricFamily(
            "disperse_member_events_total",
            "Membership changes seen: joined, updated, left, failed (dead).",
            labels=["event"],
        )
        for event in ("joined", "updated", "left", "failed"):
            events.add_metric([event], node.memberEvents[event])
        yield events

        if membership is None:
            return
        traffic = membership.counters
        packets = CounterMetricFamily(
            "disperse_gossip_packets_total",
            "Gossip datagrams, by direction.",
            labels=["direction"],
        )
        packets.add_metric(["in"], traffic.packetsIn)
        packets.add_metric(["out"], traffic.packetsOut)
        yield packets
        size = CounterMetricFamily(
            "disperse_gossip_bytes_total",
            "Gossip datagram bytes, by direction.",
            labels=["direction"],
        )
        size.add_metric(["in"], traffic.bytesIn)
        size.add_metric(["out"], traffic.bytesOut)
        yield size
        streams = CounterMetricFamily(
            "disperse_gossip_streams_total",
            "Gossip stream (TCP) connections, by direction.",
            labels=["direction"],
        )
        streams.add_metric(["in"], traffic.streamsIn)
        streams.add_metric(["out"], traffic.streamsOut)
        yield streams
        for name, documentation, value in (
            ("bad_packets", "Datagrams dropped as malformed.", traffic.badPackets),
            (
                "decrypt_failures",
                "Datagrams and streams that no installed key decrypts.",
                traffic.decryptFailures,
            ),
            ("bad_streams", "Streams dropped as malformed.", traffic.badStreams),
            (
                "stream_timeouts",
                "Streams closed for taking too long.",
                traffic.streamTimeouts,
            ),
        ):
            yield _counter(f"disperse_gossip_{name}_total", documentation, value)

        keyring = membership.settings.keyring
        yield _gauge(
            "disperse_gossip_keys",
            "Gossip keys installed (0: gossip is not encrypted).",
            len(keyring.keys) if keyring is not None else 0,
        )
        swim = membership.swim
        counters = swim.counters
        for name, documentation, value in (
            ("probes", "Failure-detection probes started.", counters.probes),
            (
                "probe_failures",
                "Probes that got no ack, direct or indirect.",
                counters.probesFailed,
            ),
            (
                "indirect_probes",
                "Probes asked of other members.",
                counters.indirectPings,
            ),
            ("stream_probes", "Probes retried over TCP.", counters.streamPings),
            ("suspicions", "Members this node suspected.", counters.suspicions),
            (
                "refutations",
                "Times this node refuted a suspicion of itself.",
                counters.refutations,
            ),
            ("push_pulls", "Full state exchanges.", counters.pushPulls),
            ("bad_messages", "Messages dropped as invalid.", counters.badMessages),
        ):
            yield _counter(f"disperse_gossip_{name}_total", documentation, value)
        yield _gauge(
            "disperse_gossip_health_score",
            "Lifeguard's awareness score: 0 is healthy, higher means this node"
            " is missing acks and slows its own failure detection.",
            swim.healthScore,
        )

    def _replication(self) -> Iterator[Metric]:
        node = self._node
        coordinator, view = node.coordinator, node.view
        counters = coordinator.counters
        operations = CounterMetricFamily(
            "disperse_replication_operations_total",
            "Reads and writes this node coordinated.",
            labels=["operation"],
        )
        operations.add_metric(["read"], counters.reads)
        operations.add_metric(["write"], counters.writes)
        yield operations
        under = CounterMetricFamily(
            "disperse_replication_under_replicated_total",
            "Coordinated reads and writes that did not reach their consistency"
            " level (answered 503).",
            labels=["operation"],
        )
        under.add_metric(["read"], counters.readsUnderReplicated)
        under.add_metric(["write"], counters.writesUnderReplicated)
        yield under
        for name, documentation, value in (
            (
                "acks",
                "Write acknowledgements received from other replicas.",
                counters.acks,
            ),
            (
                "read_repairs",
                "Replicas found behind by a read and repaired.",
                counters.readRepairs,
            ),
            (
                "read_retries",
                "Reads that asked one more replica because one had not"
                " answered within --read-retry-after.",
                counters.readRetries,
            ),
            (
                "read_retries_skipped",
                "Reads that would have asked one more replica but for the"
                " retry budget (a tenth of the reads, after a burst of a hundred):"
                " every replica was slow.",
                counters.readRetriesSkipped,
            ),
            (
                "applied",
                "Records applied here for other coordinators.",
                node.replica.counters.applied,
            ),
            (
                "remote_failures",
                "Calls to other replicas that failed or timed out.",
                counters.remoteFailures,
            ),
            (
                "no_majority",
                "Quorum and all requests refused because this node reached no"
                " majority of the members it knows of.",
                counters.noMajority,
            ),
        ):
            yield _counter(f"disperse_replication_{name}_total", documentation, value)
        yield _gauge(
            "disperse_replication_members",
            "Members holding data in this node's partition table.",
            len(view.table.members),
        )
        yield _gauge(
            "disperse_replication_known_members",
            "Members of the table plus those that vanished without leaving:"
            " the cluster size quorums are judged against.",
            view.knownMembers(),
        )
        yield _gauge(
            "disperse_replication_partitions_catching_up",
            "Partitions newly held here and not read from here until they"
            " caught up with their previous replicas.",
            len(node.replica.heldPartitions()),
        )

        peerCalls = getattr(coordinator.peers, "counters", None)
        if isinstance(peerCalls, PeerCallCounters):
            for name, documentation, value in (
                ("calls", "Requests sent to other nodes.", peerCalls.calls),
                (
                    "call_items",
                    "Records or keys those requests carried (items per call:"
                    " how well batching works).",
                    peerCalls.items,
                ),
                (
                    "call_failures",
                    "Requests to other nodes that failed.",
                    peerCalls.failures,
                ),
            ):
                yield _counter(f"disperse_peer_{name}_total", documentation, value)

        hints = coordinator.hints
        for name, documentation, value in (
            (
                "queued",
                "Writes queued for replicas that missed them.",
                hints.counters.queued,
            ),
            ("delivered", "Queued writes delivered.", hints.counters.delivered),
            (
                "dropped",
                "Queued writes given up (queue full, member gone).",
                hints.counters.dropped,
            ),
        ):
            yield _counter(f"disperse_hints_{name}_total", documentation, value)
        yield _gauge(
            "disperse_hints_pending",
            "Writes waiting for replicas that missed them.",
            sum(hints.pending(member) for member in hints.members()),
        )
        yield _gauge(
            "disperse_hints_bytes",
            "Bytes the hint queue accounts for.",
            hints.bytes,
        )

    def _antiEntropy(self) -> Iterator[Metric]:
        antiEntropy = self._node.antiEntropy
        counters = antiEntropy.counters
        for name, documentation, value in (
            ("rounds", "Periodic anti-entropy rounds started.", counters.rounds),
            (
                "rounds_overrun",
                "Rounds skipped because the previous one was still running.",
                counters.roundsOverrun,
            ),
            (
                "roots_compared",
                "Partition Merkle roots compared with a co-owner.",
                counters.rootsCompared,
            ),
            (
                "exchanges",
                "Partition exchanges run to the end.",
                counters.compared,
            ),
            (
                "differing",
                "Exchanges whose partitions differed.",
                counters.differing,
            ),
            (
                "catch_ups",
                "Exchanges queued because the partition table changed.",
                counters.catchUps,
            ),
            ("failures", "Exchanges that failed.", counters.failures),
            (
                "partitions_released",
                "Partitions no longer owned here, pushed to their owners and dropped.",
                counters.partitionsReleased,
            ),
            (
                "keys_released",
                "Entries dropped with the partitions released.",
                counters.keysReleased,
            ),
            (
                "partitions_kept",
                "Partitions no longer owned here that their owners did not take"
                " in time, kept.",
                counters.partitionsKept,
            ),
            (
                "releases_deferred",
                "Releases put off to the next round because the partition"
                " changed while its owners were compared with it.",
                counters.releasesDeferred,
            ),
        ):
            yield _counter(f"disperse_antientropy_{name}_total", documentation, value)
        repairs = CounterMetricFamily(
            "disperse_antientropy_repairs_total",
            "Records repaired by anti-entropy: pulled here, or pushed to a peer.",
            labels=["direction"],
        )
        repairs.add_metric(["pulled"], counters.keysPulled)
        repairs.add_metric(["pushed"], counters.keysPushed)
        yield repairs
        stats = antiEntropy.stats()
        yield _gauge(
            "disperse_antientropy_in_flight",
            "Partition exchanges running now.",
            stats["inFlight"],
        )
        yield _gauge(
            "disperse_antientropy_queued",
            "Partition exchanges waiting to run.",
            stats["queued"],
        )

    def _integrity(self) -> Iterator[Metric]:
        counters = self._node.store.integrity
        failures = CounterMetricFamily(
            "disperse_integrity_failures_total",
            "Records found damaged (their value does not match their content"
            " hash) and discarded, by where: in a copy from another node, by the"
            " scrub of this node's memory, read back from this node's disk.",
            labels=["source"],
        )
        for source, count in counters.failures().items():
            failures.add_metric([source], count)
        yield failures
        for name, documentation, value in (
            (
                "scrubbed",
                "Stored entries the scrub checked against their content hashes.",
                counters.scrubbed,
            ),
            (
                "scrub_passes",
                "Passes of the scrub over the whole store.",
                counters.scrubPasses,
            ),
            (
                "replaced",
                "Damaged entries here that an intact copy from a repair replaced.",
                counters.replaced,
            ),
            (
                "leaves_resummed",
                "Merkle leaves here found not to sum their entries, summed again.",
                counters.leavesResummed,
            ),
        ):
            yield _counter(f"disperse_integrity_{name}_total", documentation, value)


class RespCollector(Collector):
    """
    The Redis front end's connections and commands, read at scrape time
    from C{node.respStats}; nothing while the node does not serve it.
    """

    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        stats = self._node.respStats
        if not isinstance(stats, RespStats):
            return
        commands = CounterMetricFamily(
            "disperse_redis_commands_total",
            "Redis commands run, by command (a subcommand as container|sub)"
            " and status: ok, or error for those answered with an error.",
            labels=["command", "status"],
        )
        latency = HistogramMetricFamily(
            "disperse_redis_command_duration_seconds",
            "Time from a Redis command's start to its reply, by command.",
            labels=["command"],
        )
        for name, series in sorted(stats.commands.items()):
            commands.add_metric([name, "ok"], series.calls - series.failed)
            commands.add_metric([name, "error"], series.failed)
            latency.add_metric(
                [name], _histogram(stats.bounds, series.buckets), series.seconds
            )
        yield commands
        yield latency
        yield _gauge(
            "disperse_redis_connections",
            "Redis connections open now.",
            stats.connections,
        )
        for name, documentation, count in (
            (
                "connections_accepted",
                "Redis connections accepted.",
                stats.accepted,
            ),
            (
                "connections_rejected",
                "Redis connections refused at the per-client connection limit.",
                stats.rejected,
            ),
            (
                "protocol_errors",
                "Redis connections closed after a malformed request.",
                stats.protocolErrors,
            ),
            (
                "idle_closed",
                "Redis connections closed for being idle (--redis-idle-timeout).",
                stats.idleClosed,
            ),
            (
                "rate_limited",
                "Redis commands refused by a rate limit.",
                stats.rateLimited,
            ),
        ):
            yield _counter(f"disperse_redis_{name}_total", documentation, count)


class NodeMetrics:
    """
    The metrics of one node: a registry of its own, the node's counters,
    the HTTP requests its site serves and its Redis front end's commands.

    @ivar collector: the node's counters; set its C{rateLimited} to feed
        C{disperse_rate_limited_total}.
    @ivar requests: where the site records HTTP requests.
    """

    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = NodeCollector(node)
        self.requests = RequestStats()
        self.registry.register(self.collector)
        self.registry.register(self.requests)
        self.registry.register(RespCollector(node))
        self.registry.register(PersistenceCollector(node))


class PersistenceCollector(Collector):
    """
    The data directory's log, snapshots and loading, read at scrape time;
    nothing while the node keeps no data directory.
    """

    def __init__(self, node: Node) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        persistence = self._node.persistence
        if persistence is None:
            return
        log = persistence.journal
        logBytes, snapshotBytes = persistence.dataDir.diskBytes()
        yield _gauge("disperse_log_bytes", "Bytes of log segments on disk.", logBytes)
        yield _gauge(
            "disperse_snapshot_bytes", "Bytes of snapshots on disk.", snapshotBytes
        )
        for name, documentation, value in (
            ("records", "Records appended to the log.", log.counters.records),
            ("syncs", "Syncs (fsync) of the log completed.", log.counters.syncs),
            (
                "lost_records",
                "Records not written because the disk had failed (the snapshot"
                " taken once it works again covers them).",
                log.counters.lost,
            ),
            (
                "failures",
                "Writes or syncs of the log that failed.",
                log.counters.failures,
            ),
        ):
            yield _counter(f"disperse_log_{name}_total", documentation, value)
        sync = HistogramMetricFamily(
            "disperse_log_sync_duration_seconds",
            "How long each sync of the log took (off the reactor thread).",
        )
        latency = persistence.syncLatency
        sync.add_metric(
            [], _histogram(latency.bounds, latency.buckets), latency.seconds
        )
        yield sync
        yield _gauge(
            "disperse_disk_writable",
            "1 while the data directory takes writes, 0 while writes are refused.",
            int(persistence.writable),
        )
        yield _gauge(
            "disperse_loading",
            "1 while the data directory is being loaded at start.",
            int(persistence.loading),
        )
        report = persistence.report
        if report is not None:
            yield _gauge(
                "disperse_load_seconds",
                "How long loading the data directory took at start.",
                report.seconds,
            )
            yield _gauge(
                "disperse_load_records",
                "Records read from the data directory at start.",
                report.records,
            )
        integrity = persistence.diskFailures
        yield _counter(
            "disperse_disk_damage_total",
            "Damaged records found on disk: frames cut short or failing their"
            " checksum (with what follows them), and entries failing their"
            " content hash.",
            integrity,
        )
        last = persistence.lastSnapshot
        if last is not None:
            yield _gauge(
                "disperse_snapshot_age_seconds",
                "Time since the last snapshot started.",
                self._node.clock.seconds() - last.startedAt,
            )
            yield _gauge(
                "disperse_snapshot_duration_seconds",
                "How long the last snapshot took.",
                last.seconds,
            )
            yield _gauge(
                "disperse_snapshot_longest_slice_seconds",
                "The longest reactor turn the last snapshot took.",
                last.longestSlice,
            )
