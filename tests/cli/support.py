"""
Running the C{disperse} command line in-process, as the tests of it do.
"""

from __future__ import annotations

import io
import json
from typing import Any

from disperse.cli.main import main


class Run:
    """
    One run of the command line: exit status, standard output and error.
    """

    def __init__(self, status: int, stdout: bytes, stderr: str) -> None:
        self.status = status
        self.stdout = stdout
        self.stderr = stderr

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli(node: str | None, *argv: str, **environ: str) -> Run:
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    err = io.StringIO()
    env = dict(environ)
    if node is not None:
        env["DISPERSE_NODE"] = node
    status = main(list(argv), stdout=out, stderr=err, environ=env)
    out.flush()
    raw = out.buffer
    assert isinstance(raw, io.BytesIO)
    return Run(status, raw.getvalue(), err.getvalue())
