"""
How every C{bench/<name>} script starts: under the project's virtualenv
(this module imports nothing outside the standard library, so that it runs
under any python3 first), then the script's C{main}.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent


def reexec_in_venv(script: str) -> None:
    """
    Make C{./bench/http} work from any shell: when the interpreter running
    the script is not one with Twisted and C{twistd} installed beside it
    (say C{/usr/bin/python3}) but the project's C{.venv} exists, replace
    this process with the same script under the venv's python.
    """
    here = Path(sys.executable).parent
    if (here / "twistd").exists() and importlib.util.find_spec("klein") is not None:
        return
    venv_python = REPO_DIR / ".venv" / "bin" / "python"
    if os.environ.get("DISPERSE_BENCH_REEXEC") or not venv_python.exists():
        return
    os.environ["DISPERSE_BENCH_REEXEC"] = "1"
    os.execv(str(venv_python), [str(venv_python), script, *sys.argv[1:]])


def launch(script: str, module: str) -> None:
    """
    What every C{bench/<name>} script does: rerun itself under the venv if
    need be, then exit with the status of C{module}'s C{main}.
    """
    reexec_in_venv(script)
    sys.exit(importlib.import_module(module).main(sys.argv[1:]))
