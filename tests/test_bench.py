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
