"""
Where Disperse's log events go: through a level filter (info by default,
set with C{--log-level}) to Twisted's global log publisher, and from there
wherever C{twistd} sends logs.

Per-probe and per-packet events are logged at debug level, so a node's log
stays readable unless an operator asks for more.
"""

from __future__ import annotations

import hashlib

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

_levels = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_levels])

LEVELS = ("debug", "info", "warn", "error", "critical")


def logger() -> Logger:
    """
    A L{Logger} for a class attribute (its namespace becomes the class's)
    or a module, filtered by the level set with L{setLevel}.
    """
    return Logger(observer=_observer)


def setLevel(name: str) -> None:
    """
    Log events at level C{name} (one of L{LEVELS}) and above.
    """
    _levels.setLogLevelForNamespace("", LogLevel.levelWithName(name))


def fingerprint(secret: bytes) -> str:
    """
    A short name for C{secret} (a key of the cache or of the keyring) that
    a log line or an answer can carry without revealing it.
    """
    return hashlib.sha256(secret).hexdigest()[:16]
