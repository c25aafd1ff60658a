"""
Run the coverage-guided fuzzers one after another, each for a fixed time,
and report executions, coverage and crashes of each.

    python fuzz/run.py [--seconds 600] [--jobs N] [name ...]

Corpora grow under C{build/fuzz/corpus/<name>} (kept between runs, seeded
from C{fuzz/seeds.py}); crashing inputs are written to
C{build/fuzz/crashes/}. The summary goes to stdout and to
C{build/fuzz/summary.json}. Exits 1 if any fuzzer found a crash.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent / "build" / "fuzz"
FUZZERS = (
    "gossip_packet",
    "gossip_stream",
    "peer_protocol",
    "http_request",
    "peer_http",
    "resp_request",
    "resp_server",
    "persist_log",
)

_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.MULTILINE)
_COVERAGE = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)", re.MULTILINE)


def runOne(name: str, seconds: int) -> dict[str, object]:
    corpus = BUILD / "corpus" / name
    crashes = BUILD / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    command = [
        "nice",
        "-n",
        "15",
        sys.executable,
        str(HERE / f"{name}.py"),
        f"-max_total_time={seconds}",
        "-print_final_stats=1",
        "-max_len=4096",
        "-timeout=10",
        "-rss_limit_mb=1024",
        f"-artifact_prefix={crashes}/{name}-",
        str(corpus),
        str(BUILD / "seeds" / name),
    ]
    log = BUILD / f"{name}.log"
    with log.open("w") as out:
        status = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    stats = {key: int(value) for key, value in _STAT.findall(text)}
    coverage = _COVERAGE.findall(text)
    lastEdges, lastFeatures = (coverage[-1][1], coverage[-1][2]) if coverage else (0, 0)
    return {
        "fuzzer": name,
        "seconds": seconds,
        "executions": stats.get("number_of_executed_units", 0),
        "coverage_edges": int(lastEdges),
        "features": int(lastFeatures),
        "corpus_files": sum(1 for _ in corpus.iterdir()),
        "crashed": status != 0,
        "log": str(log),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("names", nargs="*", default=list(FUZZERS))
    args = parser.parse_args()
    subprocess.check_call(
        [sys.executable, str(HERE / "seeds.py"), str(BUILD / "seeds")]
    )
    results = []
    for name in args.names:
        result = runOne(name, args.seconds)
        print(json.dumps(result), flush=True)
        results.append(result)
    (BUILD / "summary.json").write_text(json.dumps(results, indent=2))
    return 1 if any(r["crashed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
