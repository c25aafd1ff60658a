"""
C{python -m disperse.testbed}: run the fault suite, one scenario file, or
faults given as arguments, on namespaces of this machine (as root), and
print the report. C{cleanup} removes what a killed run left behind.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from twisted.logger import globalLogBeginner, textFileLogObserver

from disperse.testbed.disks import unmountUnder
from disperse.testbed.faults import iptablesProblem
from disperse.testbed.hosts import (
    HostError,
    cleanLeftovers,
    exclusive,
    namespaceProblem,
)
from disperse.testbed.report import suiteText
from disperse.testbed.runner import runSuite
from disperse.testbed.scenario import (
    Scenario,
    ScenarioError,
    lastFaultEnd,
    loadScenario,
    parseFaultArgument,
    suite,
)


def _terminated(signum: int, frame: FrameType | None) -> None:
    # Unwinds through every finally: the hosts are torn down as on Ctrl-C.
    raise SystemExit(128 + signum)


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def tearDownOnSignals() -> None:
    """
    Make SIGTERM and SIGINT unwind the run, so that the hosts go away.
    SIGINT too: a shell running us in the background has it ignored.
    """
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, _interrupted)


def _scenarios(args: argparse.Namespace) -> list[Scenario]:
    if args.command == "suite":
        chosen = suite()
        if args.only:
            chosen = [s for s in chosen if s.name in args.only]
            unknown = set(args.only) - {s.name for s in chosen}
            if unknown:
                raise ScenarioError(f"no scenario named {', '.join(sorted(unknown))}")
        return chosen
    if args.scenario:
        return [loadScenario(Path(args.scenario).read_text(encoding="utf-8"))]
    faults = tuple(parseFaultArgument(f, args.nodes) for f in args.fault)
    scenario = Scenario(
        name="adhoc",
        description="faults from the command line",
        nodes=args.nodes,
        duration=args.duration,
        faults=faults,
    )
    if lastFaultEnd(scenario) > args.duration:
        raise ScenarioError("faults run past --duration")
    return [scenario]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m disperse.testbed")
    parser.add_argument(
        "--out", default="build/testbed", help="directory for logs and the report"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="log the bed's steps")
    commands = parser.add_subparsers(dest="command", required=True)
    suiteCommand = commands.add_parser("suite", help="the built-in scenarios")
    suiteCommand.add_argument("--only", action="append", help="scenario name")
    runCommand = commands.add_parser("run", help="one scenario")
    runCommand.add_argument("scenario", nargs="?", help="a scenario JSON file")
    runCommand.add_argument(
        "--fault",
        action="append",
        default=[],
        help="kind,key=value,...: e.g. kill,node=n1,at=10,for=15",
    )
    runCommand.add_argument("--nodes", type=int, default=4)
    runCommand.add_argument("--duration", type=float, default=40.0)
    commands.add_parser("cleanup", help="remove leftovers of a killed run")
    commands.add_parser("list", help="the built-in scenarios")
    args = parser.parse_args(argv)

    if args.command == "list":
        for scenario in suite():
            print(
                f"{scenario.name:16} {scenario.duration:4.0f}s  {scenario.description}"
            )
        return 0
    if args.verbose:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    problem = namespaceProblem() or iptablesProblem()
    if problem is not None:
        print(suiteText([], 0.0, skipped=problem))
        return 0
    try:
        return _run(args, parser)
    except HostError as e:
        print(f"fault bed: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "cleanup":
        with exclusive():
            removed = cleanLeftovers() + unmountUnder(Path(args.out))
            print("removed:", " ".join(removed) or "nothing")
        return 0
    try:
        scenarios = _scenarios(args)
    except (ScenarioError, OSError) as e:
        parser.error(str(e))
    tearDownOnSignals()
    try:
        result = runSuite(scenarios, Path(args.out), args.seed)
    except KeyboardInterrupt:
        print("interrupted: the hosts are torn down", file=sys.stderr)
        return 130
    print(result.text)
    print(f"(report, histories, logs and timelines in {args.out})")
    return 0 if all(v.passed for v in result.verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
