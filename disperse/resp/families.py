"""
The command families the dispatcher serves: importing each module
registers its handlers in L{disperse.resp.context.HANDLERS}.
"""

from __future__ import annotations

from disperse.resp import (
    admin,  # noqa: F401
    connection,  # noqa: F401
    counters,  # noqa: F401
    expiry,  # noqa: F401
    keyspace,  # noqa: F401
    strings,  # noqa: F401
    topology,  # noqa: F401
)
