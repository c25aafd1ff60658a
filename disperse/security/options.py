"""
The security flags of C{twistd disperse}: client tokens, rate limits,
connection and request limits, and node-to-node TLS. Kept apart from
L{disperse.tap} so that the wiring there stays a few lines.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.python import usage

from disperse.security.limits import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_IN_FLIGHT_BYTES,
    HTTPLimits,
)
from disperse.security.tokens import TokenFileError, TokenTable, loadTokens
from disperse.units import parseDuration, parsePort, parseSize

N = TypeVar("N", int, float)

SECURITY_OPTIONS: list[list[Any]] = [
    [
        "auth-tokens",
        None,
        None,
        "File of client bearer tokens, '<token> <scopes> [<key-prefix>]' a "
        "line; re-read on SIGHUP (env DISPERSE_AUTH_TOKENS). Without it, "
        "any client may do anything.",
    ],
    [
        "rate-limit",
        None,
        "0",
        "Requests a second each client (token, or address) may make, with "
        "bursts of twice that; 0 turns it off.",
    ],
    [
        "global-rate-limit",
        None,
        "0",
        "Requests a second this node serves to all clients together, with "
        "bursts of twice that; 0 turns it off.",
    ],
    [
        "max-header-size",
        None,
        str(DEFAULT_MAX_HEADER_SIZE),
        "Largest request line and headers together; beyond: 431.",
    ],
    [
        "header-timeout",
        None,
        f"{DEFAULT_HEADER_TIMEOUT:g}s",
        "Time a client has to send a request's headers, from its first byte.",
    ],
    [
        "body-timeout",
        None,
        f"{DEFAULT_BODY_TIMEOUT:g}s",
        "Time a client has to send a request's body, after its headers.",
    ],
    [
        "idle-timeout",
        None,
        f"{DEFAULT_IDLE_TIMEOUT:g}s",
        "A connection with no traffic for this long is closed.",
    ],
    [
        "max-connections-per-client",
        None,
        str(DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
        "Open connections one address may hold.",
    ],
    [
        "max-in-flight",
        None,
        str(DEFAULT_MAX_IN_FLIGHT),
        "Client requests served at once; beyond: 503.",
    ],
    [
        "max-in-flight-bytes",
        None,
        f"{DEFAULT_MAX_IN_FLIGHT_BYTES // (1024 * 1024)}MiB",
        "Request bodies held by requests in flight, together; beyond: 503.",
    ],
    [
        "cluster-ca",
        None,
        None,
        "PEM certificate of the cluster CA: node-to-node calls then go over "
        "mutual TLS on --peer-port, and only nodes with a certificate it "
        "signed take part.",
    ],
    [
        "node-cert",
        None,
        None,
        "PEM certificate of this node, signed by the cluster CA (may hold the "
        "key too).",
    ],
    ["node-key", None, None, "PEM private key of --node-cert."],
    [
        "peer-port",
        None,
        None,
        "Port of the node-to-node API, over TLS with --cluster-ca (default 0: "
        "the OS picks; gossiped to the other nodes).",
    ],
]


@dataclass(frozen=True)
class SecurityConfig:
    """
    The parsed security flags.
    """

    tokensPath: str | None = None
    tokens: TokenTable | None = None
    rateLimit: float = 0.0
    globalRateLimit: float = 0.0
    # The HTTP limits the flags set (the body limit follows
    # --max-value-size, see disperse.security.wiring.makeLimits).
    limits: HTTPLimits = field(default_factory=HTTPLimits)
    clusterCA: str | None = None
    nodeCert: str | None = None
    nodeKey: str | None = None
    peerPort: int = 0


def _number(options: Mapping[str, Any], flag: str, minimum: float) -> float:
    try:
        value = float(options[flag])
    except ValueError:
        raise usage.UsageError(f"--{flag}: {options[flag]!r} is not a number") from None
    if not value >= minimum:
        raise usage.UsageError(f"--{flag} must be at least {minimum:g}")
    return value


def _positive(options: Mapping[str, Any], flag: str, parse: Callable[[str], N]) -> N:
    """
    The value of C{flag} as C{parse} reads it (a duration, a size), which
    must be above zero.
    """
    try:
        value = parse(options[flag])
    except ValueError as e:
        raise usage.UsageError(f"--{flag}: {e}") from None
    if value <= 0:
        raise usage.UsageError(f"--{flag} must be positive")
    return value


def parseSecurity(
    options: Mapping[str, Any], environ: Mapping[str, str]
) -> SecurityConfig:
    """
    Check and convert the security flags of parsed C{options}.

    @raise usage.UsageError: for any bad value.
    """
    path = options["auth-tokens"] or environ.get("DISPERSE_AUTH_TOKENS") or None
    tokens = None
    if path:
        try:
            tokens = loadTokens(path)
        except TokenFileError as e:
            raise usage.UsageError(f"--auth-tokens: {e}") from None
    tls = [options[f] for f in ("cluster-ca", "node-cert")]
    if any(tls) and not all(tls):
        raise usage.UsageError("--cluster-ca and --node-cert go together")
    try:
        peerPort = parsePort(options["peer-port"] or "0")
    except ValueError as e:
        raise usage.UsageError(f"--peer-port: {e}") from None
    return SecurityConfig(
        tokensPath=path,
        tokens=tokens,
        rateLimit=_number(options, "rate-limit", 0),
        globalRateLimit=_number(options, "global-rate-limit", 0),
        limits=HTTPLimits(
            maxHeaderSize=_positive(options, "max-header-size", parseSize),
            headerTimeout=_positive(options, "header-timeout", parseDuration),
            bodyTimeout=_positive(options, "body-timeout", parseDuration),
            idleTimeout=_positive(options, "idle-timeout", parseDuration),
            maxConnectionsPerClient=int(
                _number(options, "max-connections-per-client", 1)
            ),
            maxInFlight=int(_number(options, "max-in-flight", 1)),
            maxInFlightBytes=_positive(options, "max-in-flight-bytes", parseSize),
        ),
        clusterCA=options["cluster-ca"],
        nodeCert=options["node-cert"],
        nodeKey=options["node-key"],
        peerPort=peerPort,
    )


def isLoopbackHost(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
