"""
C{python -m disperse.cli}: the same as the C{disperse} command.
"""

from disperse.cli.main import run

run()
