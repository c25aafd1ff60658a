"""
A small synchronous HTTP client for one node's API.

The command line is a client: it sends a request and waits for the
answer, so the standard library's C{http.client} is all it needs, and it
starts without importing Twisted. One L{Client} keeps one connection open
(keep-alive); threads that send in parallel each use their own.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

DEFAULT_NODE = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 10.0
# A host name or an IP address (IPv6 without its brackets).
_HOST = re.compile(r"[A-Za-z0-9.:_-]+")

# Exit statuses of the command line, one per kind of outcome a script may
# want to tell apart.
EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_SERVER = 3
EXIT_CONNECT = 4
EXIT_DENIED = 5


class ClientError(Exception):
    """
    A request that did not succeed; C{exitStatus} says how the command
    line ends because of it.
    """

    exitStatus = EXIT_SERVER

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class NotFound(ClientError):
    exitStatus = EXIT_NOT_FOUND


class Rejected(ClientError):
    """
    The node refused the request as sent (400, 405, 413, 414, ...).
    """

    exitStatus = EXIT_USAGE


class Denied(ClientError):
    """
    The node wants (other) credentials: 401 or 403.
    """

    exitStatus = EXIT_DENIED


class CannotConnect(ClientError):
    exitStatus = EXIT_CONNECT


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)

    def errorMessage(self) -> str:
        """
        What the node said was wrong: its JSON C{error}, or its text.
        """
        try:
            document = self.json()
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            return str(document["error"])
        return self.body.decode("utf-8", "replace").strip() or f"HTTP {self.status}"


def check(response: Response, what: str) -> Response:
    """
    C{response} if it is a success, else the L{ClientError} it means.
    """
    status = response.status
    if 200 <= status < 300:
        return response
    message = f"{what}: {response.errorMessage()} (HTTP {status})"
    if status == 404:
        raise NotFound(message, status)
    if status in (401, 403):
        raise Denied(message, status)
    if 400 <= status < 500:
        raise Rejected(message, status)
    raise ClientError(message, status)


def normaliseNode(text: str) -> str:
    """
    A node's base URL from C{--node}: a URL, or C{host:port}.
    """
    text = text.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    parsed = urllib.parse.urlsplit(text)
    try:
        parsed.port  # noqa: B018 (raises for a port that is not a number)
    except ValueError:
        parsed = parsed._replace(netloc="")
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or not _HOST.fullmatch(parsed.hostname)
    ):
        raise ValueError(f"{text!r} is not a node address such as {DEFAULT_NODE}")
    return text


def keyPath(key: str) -> str:
    """
    The path of C{key}; every reserved character is escaped, so keys with
    C{/}, C{?} or C{%} reach the node unchanged.
    """
    return "/cache/" + urllib.parse.quote(key, safe="")


class Client:
    """
    Requests to one node over one kept-alive connection.
    """

    def __init__(
        self,
        node: str = DEFAULT_NODE,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.node = normaliseNode(node)
        parsed = urllib.parse.urlsplit(self.node)
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or (443 if self._https else 80)
        self._prefix = parsed.path
        self._token = token
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            kind = (
                http.client.HTTPSConnection
                if self._https
                else http.client.HTTPConnection
            )
            self._connection = kind(self._host, self._port, timeout=self._timeout)
        return self._connection

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """
        Send one request and read the whole answer.

        @raise CannotConnect: if the node cannot be reached or stops
            answering.
        """
        sent = dict(headers or {})
        if self._token:
            sent["Authorization"] = f"Bearer {self._token}"
        # A kept-alive connection the node has closed since is only found
        # out when used: one more attempt on a fresh connection.
        for attempt in (1, 2):
            connection = self._connect()
            try:
                connection.request(method, self._prefix + path, body, sent)
                answer = connection.getresponse()
                data = answer.read()
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
            ) as e:
                self.close()
                if attempt == 2:
                    raise CannotConnect(f"{self.node}: {e}") from None
                continue
            except (OSError, http.client.HTTPException) as e:
                self.close()
                reason = "timed out" if isinstance(e, socket.timeout) else str(e)
                raise CannotConnect(f"cannot reach {self.node}: {reason}") from None
            if answer.will_close:
                self.close()
            return Response(
                answer.status,
                {name.lower(): value for name, value in answer.getheaders()},
                data,
            )
        raise AssertionError("unreachable")

    def getJSON(self, path: str, what: str) -> Any:
        return check(self.request("GET", path), what).json()

    def postJSON(self, path: str, document: Any, what: str) -> Any:
        body = json.dumps(document).encode("utf-8")
        response = self.request(
            "POST", path, body, {"Content-Type": "application/json"}
        )
        return check(response, what).json()

    # The cache

    def get(self, key: str, consistency: str | None = None) -> Response:
        return self.request("GET", keyPath(key), headers=_level(consistency))

    def put(
        self,
        key: str,
        value: bytes,
        ttlSeconds: float | None = None,
        binary: bool = True,
        consistency: str | None = None,
    ) -> Response:
        """
        Store C{value}: as bytes, or (C{binary=False}) as UTF-8 text in the
        seed's JSON form, which reads back as C{text/plain}.
        """
        headers = _level(consistency)
        if binary:
            headers["Content-Type"] = "application/octet-stream"
            if ttlSeconds:
                headers["X-TTL"] = f"{_ceilMs(ttlSeconds)}ms"
            return self.request("PUT", keyPath(key), value, headers)
        headers["Content-Type"] = "application/json"
        document: dict[str, Any] = {"value": value.decode("utf-8")}
        if ttlSeconds:
            document["duration"] = str(_ceilMs(ttlSeconds) * 1_000_000)
        body = json.dumps(document).encode("utf-8")
        return self.request("PUT", keyPath(key), body, headers)

    def delete(self, key: str, consistency: str | None = None) -> Response:
        return self.request("DELETE", keyPath(key), headers=_level(consistency))


def _level(consistency: str | None) -> dict[str, str]:
    return {"X-Consistency": consistency} if consistency else {}


def _ceilMs(seconds: float) -> int:
    return max(1, -int(-seconds * 1000 // 1))
