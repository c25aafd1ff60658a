"""
The codec and tables of L{disperse.resp} are a pure core: they import no
reactor, no Twisted and no part of the node, so the adapter can be replaced
and the core fuzzed alone. The handlers and the server around them are not
listed here: they work on the node.
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import disperse.resp

# The one other part of Disperse it reads: the names of the token scopes.
ALLOWED = {"disperse.resp", "disperse.security.tokens"}
PURE = (
    "__init__.py",
    "wire.py",
    "commands.py",
    "arguments.py",
    "replies.py",
    "stats.py",
    "docs.py",
    "match.py",
)


def importsOf(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


class PurityTests(SynchronousTestCase):
    def test_imports(self) -> None:
        package = Path(disperse.resp.__file__).parent
        for path in (package / name for name in PURE):
            for name in importsOf(path):
                self.assertFalse(name.startswith((".", "twisted")), (path, name))
                if name.startswith("disperse"):
                    self.assertTrue(
                        any(name.startswith(allowed) for allowed in ALLOWED),
                        (path, name),
                    )
