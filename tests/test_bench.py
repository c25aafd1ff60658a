"""
The benchmark scripts' command lines: every script's C{--help} prints its
options and exits 0 (argparse formats help text with C{%}, so a stray percent
sign in an option's help breaks it).
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Callable, Sequence
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

MODULES = (
    "bench._bench_cluster_http",
    "bench._bench_cluster_repair",
    "bench._bench_durability",
    "bench._bench_gossip_cluster",
    "bench._bench_http",
    "bench._bench_memory",
    "bench._bench_resp",
    "bench._resp_load",
    "bench._resp_ping",
    "bench._resp_profile",
)


class HelpTests(SynchronousTestCase):
    def test_everyScriptPrintsItsHelp(self) -> None:
        for name in MODULES:
            parse: Callable[[Sequence[str]], Any] = importlib.import_module(
                name
            ).parse_args
            out = io.StringIO()
            with contextlib.redirect_stdout(out), self.assertRaises(SystemExit) as e:
                parse(["--help"])
            self.assertEqual(e.exception.code, 0, name)
            self.assertIn("--", out.getvalue(), name)


class PairedRatioTests(SynchronousTestCase):
    """
    bench/cluster-http judges its req/s goals on each repetition's cluster
    run beside its own single-node run.
    """

    def test_eachRepetitionPaired(self) -> None:
        from bench._bench_cluster_http import evaluate_goals, paired_ratios
        from bench._bench_common import Run

        def run(server: str, workload: str, rep: int, rps: float) -> Run:
            return Run(server, workload, rep, rps, 1.0, 2.0, 100, 0, {})

        # The machine slows down after the first repetition: the cluster's
        # median comes from a slow one, the single node's from a fast one.
        runs = [
            run("single", "get-hit", 1, 5000.0),
            run("cluster", "get-hit", 1, 3800.0),
            run("cluster", "get-hit", 2, 2400.0),
            run("single", "get-hit", 2, 4000.0),
            run("single", "get-hit", 3, 4800.0),
            run("cluster", "get-hit", 3, 2200.0),
            run("single", "put", 1, 4000.0),
        ]
        pairs = paired_ratios(runs)
        self.assertEqual(pairs, {"get-hit": [0.76, 0.6, 2200.0 / 4800.0]})
        medians = {
            "get-hit": {
                "single": {"requests_per_sec": 4800.0, "p99_ms": 10.0},
                "cluster": {"requests_per_sec": 2400.0, "p99_ms": 30.0},
            }
        }
        [unpaired] = [
            g
            for g in evaluate_goals(medians)
            if g.name.startswith("cluster GET hit (quorum) req/s")
        ]
        self.assertEqual((unpaired.measured, unpaired.ok), ("0.50x", True))
        [paired] = [
            g
            for g in evaluate_goals(medians, pairs=pairs)
            if g.name.startswith("cluster GET hit (quorum) req/s")
        ]
        self.assertEqual((paired.measured, paired.ok), ("0.60x", True))


class RespBenchTests(SynchronousTestCase):
    """
    bench/resp reads redis-benchmark's CSV, routes its open-loop load by
    Redis Cluster slot, and pairs each repetition's runs for its ratios.
    """

    def test_csvRow(self) -> None:
        from bench._bench_resp import parse_csv

        output = (
            '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",'
            '"p95_latency_ms","p99_latency_ms","max_latency_ms"\n'
            '"SET","42680.32","1.108","0.248","1.095","1.767","2.847","6.799"\n'
            '"GET","46040.52","1.042","0.272","1.031","1.527","2.023","5.823"\n'
        )
        self.assertEqual(parse_csv(output, "get"), (46040.52, 1.031, 2.023))
        self.assertEqual(parse_csv(output, "set"), (42680.32, 1.095, 2.847))

    def test_keySlot(self) -> None:
        from bench._resp_load import crc16, keySlot

        # The check value of CRC16/XMODEM, and Redis Cluster's hash tags.
        self.assertEqual(crc16(b"123456789"), 0x31C3)
        self.assertEqual(keySlot(b"123456789"), 0x31C3 % 16384)
        self.assertEqual(keySlot(b"{user1000}.following"), keySlot(b"user1000"))
        # An empty tag: the whole key is hashed.
        self.assertEqual(keySlot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384)
        self.assertEqual(keySlot(b"foo{{bar}}zap"), keySlot(b"{bar"))

    def test_weightedPercentiles(self) -> None:
        from bench._resp_load import weightedPercentiles

        samples = [(3.0, 1), (1.0, 98), (2.0, 1)]
        self.assertEqual(
            weightedPercentiles(samples, (50.0, 99.0, 100.0)), [1.0, 2.0, 3.0]
        )
        self.assertEqual(weightedPercentiles([], (50.0,)), [0.0])

    def test_pairedGoals(self) -> None:
        from bench._bench_resp import HttpRun, Run, evaluate

        def run(server: str, pipeline: int, test: str, rep: int, rps: float) -> Run:
            return Run(
                server, pipeline, test, rep, rps, 1.0, 2.0, 1000, 1.0, 99.0, 10.0, 50.0
            )

        runs = [
            run("disperse", 1, "get", 1, 35000.0),
            run("twisted-resp", 1, "get", 1, 46000.0),
            run("disperse", 1, "get", 2, 20000.0),
            run("twisted-resp", 1, "get", 2, 25000.0),
            run("disperse", 16, "set", 1, 100000.0),
            run("cluster", 16, "set", 1, 30000.0),
        ]
        http = [
            HttpRun(1, 10000.0, 1.0, 2.0, 1000, 0, 100.0),
            HttpRun(2, 8000.0, 1.0, 2.0, 1000, 0, 100.0),
        ]
        goals, rows = evaluate(runs, http)
        byName = {g.name: g for g in goals}
        p1 = byName["-P 1 GET vs bare Twisted RESP"]
        # The median of 35/46 and 20/25.
        self.assertEqual(p1.measured, "0.78x")
        self.assertTrue(p1.ok)
        cluster = byName["cluster -P 16 SET vs single node"]
        self.assertEqual((cluster.measured, cluster.ok), ("0.30x", False))
        overHttp = byName["RESP GET -P 1 vs the node's HTTP GET"]
        self.assertEqual((overHttp.measured, overHttp.ok), ("3.00x", True))
        # By CPU per request: 10 us for every RESP run, 100 for HTTP.
        [row] = [r for r in rows if r[0].endswith("÷ its HTTP GET")]
        self.assertEqual(row[2], "10.00 (10.00 10.00)")

    def test_referenceProtocol(self) -> None:
        from twisted.internet.testing import StringTransport

        from bench._refs.resp_ref import makeProtocol
        from bench._resp_load import encode

        protocol = makeProtocol({})
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            encode(b"SET", b"k", b"v")
            + encode(b"GET", b"k")
            + encode(b"GET", b"nothing")
            + encode(b"PING")
        )
        # One write for the batch.
        self.assertEqual(transport.value(), b"+OK\r\n$1\r\nv\r\n$-1\r\n+PONG\r\n")

    def test_profileRuns(self) -> None:
        """
        bench/resp-profile drives a node's real Redis port in process.
        """
        from bench._resp_profile import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main(["--commands", "64", "--keyspace", "16", "--tests", "get"])
        self.assertEqual(status, 0)
        self.assertIn("GET  -P 16", out.getvalue())


class DurabilityTests(SynchronousTestCase):
    """
    bench/durability subtracts each server's empty start from its restarts,
    compares the node's load time with Redis's, and reads stalls off the
    pinger's samples.
    """

    def test_values(self) -> None:
        from bench._bench_durability import VALUE_BYTES, key_name, live_bytes, value_of

        self.assertEqual(len(value_of(7)), VALUE_BYTES)
        self.assertNotEqual(value_of(7), value_of(7, generation=1))
        self.assertNotEqual(value_of(7), value_of(8))
        self.assertEqual(live_bytes(3), 3 * (len(key_name(0)) + VALUE_BYTES))

    def test_restartGoals(self) -> None:
        from bench._bench_durability import (
            Restart,
            Served,
            net_restarts,
            restart_goals,
        )

        def restart(
            system: str, how: str, keys: int, rep: int, seconds: float | None
        ) -> Restart:
            served = Served(seconds, 0.1, 0.1, keys if seconds else 0)
            rate = 500_000.0 if how == "kill" else None
            return Restart(system, how, keys, rep, served, replay_per_s=rate)

        restarts = [
            restart("disperse", "empty", 0, 1, 1.0),
            restart("disperse", "clean", 1000, 1, 1.5),
            restart("disperse", "kill", 1000, 1, 1.9),
            restart("redis", "empty-rdb", 0, 1, 0.01),
            restart("redis", "rdb", 1000, 1, 0.21),
            restart("redis", "empty-aof", 0, 1, 0.02),
            restart("redis", "aof", 1000, 1, 0.32),
            restart("disperse", "empty", 0, 2, 1.2),
            restart("disperse", "empty", 0, 3, 0.8),
            # A restart that never served every key.
            restart("disperse", "clean", 1000, 2, None),
        ]
        nets = net_restarts(restarts)
        # Less the median of the empty starts (0.8, 1.0, 1.2).
        self.assertAlmostEqual(nets[("disperse", "clean", 1000)][0], 0.5)
        self.assertAlmostEqual(nets[("redis", "rdb", 1000)][0], 0.2)
        goals = {g.name: g for g in restart_goals(restarts)[0]}
        rdb = goals["load time, 1,000 keys, clean stop, vs Redis RDB"]
        self.assertEqual((rdb.measured, rdb.ok), ("2.50x", True))
        aof = goals["load time, 1,000 keys, kill -9, vs Redis AOF"]
        self.assertEqual((aof.measured, aof.ok), ("3.00x", True))
        kill = goals["load time, 1,000 keys, kill -9, vs Redis RDB"]
        self.assertEqual((kill.measured, kill.ok), ("4.50x", False))
        # The second clean restart never served every key.
        failed = goals["1,000 keys after clean stop: all served"]
        self.assertEqual((failed.measured, failed.ok), ("1 of 2", False))
        replay = goals["replay rate after kill -9, 1,000 keys (/stats)"]
        self.assertTrue(replay.ok)

    def test_pingWindows(self) -> None:
        from bench._bench_durability import in_window

        samples = [[float(i), 0.001] for i in range(100)]
        samples[50][1] = 0.040
        during = in_window(samples, 45.0, 60.0)
        self.assertEqual(during.count, 16)
        self.assertEqual(during.max_ms, 40.0)
        self.assertEqual(during.p50_ms, 1.0)
        self.assertEqual(in_window(samples, 0.0, 40.0).max_ms, 1.0)

    def test_nodeFigures(self) -> None:
        from bench._bench_durability import node_longest_ms, replay_rate

        self.assertEqual(node_longest_ms({"longestSliceMs": 4.5}), 4.5)
        self.assertEqual(node_longest_ms({"seconds": 2, "longestSlice": 0.003}), 3.0)
        self.assertIsNone(node_longest_ms({"seconds": 2}))
        load = {"records": 800, "seconds": 2.0, "recordsPerSecond": 400.0}
        self.assertEqual(replay_rate({"loading": False, "load": load}), 400.0)
        load = {"records": 800, "seconds": 2.0}
        self.assertEqual(replay_rate({"load": load}), 400.0)
        self.assertIsNone(replay_rate({"loading": True, "load": None}))
