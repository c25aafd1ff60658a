"""
Sizes, durations, ports and addresses as people write them in flags,
environment variables and requests: C{256MB}, C{30s}, C{host:port}. Pure,
and below every other module of the node, so that any of them may parse.
"""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Zµ]*)\s*$")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "": 1.0,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}

MAX_PORT = 65535


def parseSize(text: str) -> int:
    """
    Parse a byte size: a bare number of bytes, or a number with a unit:
    C{KB}, C{MB}, C{GB}, C{TB} (powers of 1000), C{KiB}, C{MiB}, C{GiB},
    C{TiB} and the shorthands C{K}, C{M}, C{G} (powers of 1024). Units are
    case-insensitive.

    @raise ValueError: with a message fit for a user.
    """
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(
            f"{text!r} is not a size; use bytes or a unit such as 64MB, 1GiB, 512K"
        )
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parseDuration(text: str) -> float:
    """
    Parse a duration in seconds: a bare number of seconds, or a number with
    one of the units C{ns}, C{us}, C{ms}, C{s}, C{m}, C{h}, C{d}.

    @raise ValueError: with a message fit for a user.
    """
    match = _DURATION.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _DURATION_UNITS:
        raise ValueError(
            f"{text!r} is not a duration; use seconds or a unit such as"
            " 500ms, 30s, 5m, 1h"
        )
    return float(match.group(1)) * _DURATION_UNITS[unit]


def parsePort(text: str) -> int:
    """
    Parse a port number, 0 meaning "let the operating system choose".
    """
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a port number") from None
    if not 0 <= port <= MAX_PORT:
        raise ValueError(f"port {port} is out of range 0-{MAX_PORT}")
    return port


def parseHostPort(text: str, defaultPort: int) -> tuple[str, int]:
    """
    Parse C{host}, C{host:port}, C{[v6]} or C{[v6]:port}.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not host:port")
        port = parsePort(rest[1:]) if rest else defaultPort
    elif text.count(":") == 1:
        host, portText = text.split(":")
        port = parsePort(portText)
    elif ":" in text:
        # A bare IPv6 address without brackets has no port.
        host, port = text, defaultPort
    else:
        host, port = text, defaultPort
    if not host:
        raise ValueError(f"{text!r} has no host")
    return host, port
