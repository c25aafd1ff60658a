"""
The security package sits below the web front: the front reads its
tokens, limits and options, and nothing in it reads the front.
"""

from __future__ import annotations

import ast
from pathlib import Path

import disperse.security


def test_securityImportsNothingOfTheWebFront() -> None:
    package = Path(disperse.security.__file__).parent
    found = []
    for source in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            found += [
                (source.name, name)
                for name in names
                if name == "disperse.web" or name.startswith("disperse.web.")
            ]
    assert found == []
