"""
The suite's report: one text summary, one JSON document, and a PNG
timeline per scenario (faults, throughput, errors, declared deaths). The
text and the per-second series are pure; the plot needs matplotlib, and is
skipped with a note when it is not installed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from disperse.testbed.verdict import Verdict
from disperse.testing.history import Operation, operations


def perSecond(ops: Sequence[Operation], duration: float) -> dict[str, list[int]]:
    """
    Completions per second of the run: C{ok} by operation kind, and
    C{fail} and C{timeout} (a timeout counted at its invoke, since it has
    no completion).
    """
    seconds = max(1, math.ceil(duration))
    series: dict[str, list[int]] = {
        name: [0] * seconds for name in ("read", "write", "delete", "fail", "timeout")
    }
    for op in ops:
        name: str
        if op.outcome == "ok":
            name, at = op.op, op.completed
        elif op.outcome == "fail":
            name, at = "fail", op.completed
        else:
            name, at = "timeout", op.invoked
        index = int(at)
        if 0 <= index < seconds:
            series[name][index] += 1
    return series


def suiteText(
    verdicts: Sequence[Verdict], wallTime: float, skipped: str | None = None
) -> str:
    lines = ["Disperse fault bed report", "=" * 25]
    if skipped is not None:
        lines.append(f"SKIPPED: {skipped}")
        lines.append("No scenario ran; nothing was checked.")
        return "\n".join(lines)
    for verdict in verdicts:
        lines.append(verdict.toText())
    passed = sum(v.passed for v in verdicts)
    totals: dict[str, int] = {}
    for verdict in verdicts:
        for name, n in verdict.counts().items():
            totals[name] = totals.get(name, 0) + n
    lines.append("")
    lines.append(
        f"{passed} of {len(verdicts)} scenarios passed in {wallTime:.0f}s; "
        + ", ".join(f"{name} {n}" for name, n in totals.items())
    )
    return "\n".join(lines)


def suiteJSON(verdicts: Sequence[Verdict], wallTime: float) -> dict[str, Any]:
    return {
        "wallTime": wallTime,
        "passed": all(v.passed for v in verdicts),
        "scenarios": [v.toDict() for v in verdicts],
    }


def writeReport(directory: Path, verdicts: Sequence[Verdict], wallTime: float) -> str:
    """
    Write report.txt and report.json into C{directory}; the text.
    """
    text = suiteText(verdicts, wallTime)
    (directory / "report.txt").write_text(text + "\n", encoding="utf-8")
    (directory / "report.json").write_text(
        json.dumps(suiteJSON(verdicts, wallTime), indent=1) + "\n", encoding="utf-8"
    )
    return text


def plotTimeline(path: Path, verdict: Verdict, events: Sequence[Any]) -> str | None:
    """
    Draw the timeline of one run into C{path}; why not, if it cannot.
    """
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[testbed]')"
    ops = operations(events)
    duration = verdict.durations.get("workload", 0.0) + verdict.durations.get(
        "settle", 0.0
    )
    duration = max(duration, max((o.invoked for o in ops), default=0.0) + 1)
    series = perSecond(ops, duration)
    figure, (faultAxis, okAxis, errorAxis) = plt.subplots(
        3, 1, sharex=True, figsize=(10, 6), height_ratios=(1, 2, 1.2)
    )
    names = sorted({n for w in verdict.windows for n in w.nodes})
    colours = {
        "kill": "tab:red",
        "restart": "tab:orange",
        "pause": "tab:purple",
        "partition": "tab:blue",
        "one-way": "tab:cyan",
        "loss": "tab:gray",
        "latency": "tab:olive",
        "power-loss": "darkred",
        "disk-full": "tab:brown",
    }
    for window in verdict.windows:
        rows = sorted(window.nodes) or [-1]
        for row in rows:
            width = max(window.end - window.start, 0.3)
            faultAxis.broken_barh(
                [(window.start, width)],
                (row - 0.4, 0.8),
                color=colours.get(window.kind, "black"),
            )
    for death in verdict.deaths:
        faultAxis.plot(
            death.time,
            int(death.subject.lstrip("n")),
            marker="x",
            color="black" if death not in verdict.falseDeaths else "red",
        )
    faultAxis.set_yticks([-1, *names], ["all", *(f"n{n}" for n in names)])
    faultAxis.set_ylabel("faults")
    x = list(range(len(series["read"])))
    for name in ("read", "write", "delete"):
        okAxis.plot(x, series[name], label=f"{name} ok")
    okAxis.set_ylabel("ops/s")
    okAxis.legend(loc="upper right", fontsize="small")
    errorAxis.plot(x, series["fail"], label="fail", color="tab:red")
    errorAxis.plot(x, series["timeout"], label="timeout", color="tab:orange")
    failing = verdict.failing()
    for violation in failing:
        errorAxis.axvline(violation.read.invoked, color="black", linewidth=0.6)
    if failing:
        errorAxis.plot([], [], color="black", linewidth=0.6, label="violation")
    errorAxis.set_ylabel("errors/s")
    errorAxis.set_xlabel("seconds since the workload started")
    errorAxis.legend(loc="upper right", fontsize="small")
    figure.suptitle(f"{verdict.scenario}: {'PASS' if verdict.passed else 'FAIL'}")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return None
