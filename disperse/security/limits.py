"""
The limits of an HTTP port, as configuration: what one connection or
request may cost a node, with safe defaults. The public API's channel
(L{disperse.web.limits}) and the node-to-node server enforce them; the
node's flags (L{disperse.security.options}) set them. The count of open
connections per client is kept here too, for every front end that limits
it (the HTTP API, the Redis port).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_HEADER_SIZE = 16 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 64
DEFAULT_MAX_IN_FLIGHT = 1024
# Request bodies held by requests in flight, together: with the store's
# budget, what bounds a node's memory whatever clients send.
DEFAULT_MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024
# Node-to-node batches, on the node-to-node port: a batch of replica
# writes may be much larger than one client request.
DEFAULT_MAX_PEER_BODY = 64 * 1024 * 1024
# After refusing a body, how long and how much more of it a node reads and
# throws away before closing, so that a client still sending sees the
# answer rather than a reset.
DEFAULT_LINGER_TIMEOUT = 5.0
DEFAULT_LINGER_BYTES = 16 * 1024 * 1024

# Reason phrases of the refusals made by the HTTP ports, by their current names
# (twisted.web.http.RESPONSES has older ones, and no 429 or 431).
REASONS = {
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    # The node-to-node port's answer to records that fail their content
    # hash check.
    422: b"Unprocessable Content",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


@dataclass(frozen=True)
class HTTPLimits:
    """
    The limits of one HTTP site; every field has a safe default.
    """

    maxHeaderSize: int = DEFAULT_MAX_HEADER_SIZE
    maxBodySize: int = 4 * 1024 * 1024 + 64 * 1024
    maxPeerBodySize: int = DEFAULT_MAX_PEER_BODY
    headerTimeout: float = DEFAULT_HEADER_TIMEOUT
    bodyTimeout: float = DEFAULT_BODY_TIMEOUT
    idleTimeout: float = DEFAULT_IDLE_TIMEOUT
    maxConnectionsPerClient: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    maxInFlight: int = DEFAULT_MAX_IN_FLIGHT
    maxInFlightBytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES
    lingerTimeout: float = DEFAULT_LINGER_TIMEOUT
    lingerBytes: int = DEFAULT_LINGER_BYTES


class ConnectionCounter:
    """
    Open connections by client address.
    """

    def __init__(self, maxPerClient: int) -> None:
        self.maxPerClient = maxPerClient
        self._open: dict[str, int] = {}
        self.refused = 0

    def opened(self, host: str) -> bool:
        """
        Count a connection from C{host}; C{False} (and not counted) if that
        client already has as many as it may.
        """
        count = self._open.get(host, 0)
        if count >= self.maxPerClient:
            self.refused += 1
            return False
        self._open[host] = count + 1
        return True

    def closed(self, host: str) -> None:
        count = self._open.get(host, 0) - 1
        if count > 0:
            self._open[host] = count
        else:
            self._open.pop(host, None)

    def count(self, host: str) -> int:
        return self._open.get(host, 0)

    def __len__(self) -> int:
        return sum(self._open.values())
