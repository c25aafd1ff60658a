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
    "bench._bench_gossip_cluster",
    "bench._bench_http",
    "bench._bench_memory",
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
