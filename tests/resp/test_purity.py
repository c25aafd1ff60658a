"""
L{disperse.resp} is a pure core: it imports no reactor, no Twisted and no
part of the node, so the adapter can be replaced and the core fuzzed alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import disperse.resp

# The one other part of Disperse it reads: the names of the token scopes.
ALLOWED = {"disperse.resp", "disperse.security.tokens"}


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
        for path in Path(disperse.resp.__file__).parent.glob("*.py"):
            for name in importsOf(path):
                self.assertFalse(name.startswith((".", "twisted")), (path, name))
                if name.startswith("disperse"):
                    self.assertTrue(
                        any(name.startswith(allowed) for allowed in ALLOWED),
                        (path, name),
                    )
