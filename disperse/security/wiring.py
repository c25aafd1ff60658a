"""
Building a node's security from its parsed flags: the HTTP limits,
re-reading the token file on SIGHUP, and the start-up warning of a node
open to the network without tokens. Called from L{disperse.tap}. (The
request guard that checks tokens is the web front's:
L{disperse.web.auth.makeGuard}.)
"""

from __future__ import annotations

import signal
from dataclasses import replace
from typing import Any, Protocol

from twisted.application.service import Service

from disperse.logs import logger
from disperse.security.limits import HTTPLimits
from disperse.security.options import SecurityConfig, isLoopbackHost
from disperse.security.tokens import TokenFileError, TokenTable, loadTokens

log = logger()


class TokenHolder(Protocol):
    """
    What holds the tokens in force (the public API's request guard).
    """

    tokens: TokenTable | None


def makeLimits(security: SecurityConfig, maxBodySize: int) -> HTTPLimits:
    return replace(security.limits, maxBodySize=maxBodySize)


def warnIfOpen(security: SecurityConfig, host: str, what: str = "the HTTP API") -> None:
    """
    Say loudly that a node listening beyond loopback lets anyone in.

    @param what: what listens there (the HTTP API, the Redis port).
    """
    if security.tokens is None and not isLoopbackHost(host):
        log.warn(
            "SECURITY WARNING: {what} listens on {host}, beyond loopback,"
            " without --auth-tokens: any client that can reach it may read,"
            " write and delete every key. Give this node a token file.",
            what=what,
            host=host,
        )


class TokenReloader(Service):
    """
    Re-read the token file when the process gets SIGHUP; a file that no
    longer parses is refused and the tokens in force stay.
    """

    def __init__(self, guard: TokenHolder, path: str, reactor: Any) -> None:
        self._guard = guard
        self._path = path
        self._reactor = reactor
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._signalled)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def _signalled(self, signum: int, frame: object) -> None:
        # Signal handlers run between bytecodes; do the work in the reactor.
        self._reactor.callFromThread(self.reload)

    def reload(self) -> None:
        try:
            tokens = loadTokens(self._path)
        except TokenFileError as e:
            log.error(
                "client tokens not reloaded, the previous ones stay: {reason}",
                reason=str(e),
            )
            return
        self._guard.tokens = tokens
        log.info(
            "reloaded {count} client tokens from {path}",
            count=len(tokens),
            path=self._path,
        )
