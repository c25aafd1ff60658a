"""
The public HTTP API of one node: the site's root (L{_Front}), which matches
each request once against the route table (L{disperse.web.routes}) and
serves C{/cache/<key>} itself, and a Klein app bound to a L{Node} for the
other routes.

It keeps the original project's contract (routes, status codes and bodies
that the seed's curl commands and scripts rely on) and extends it without
breaking it: numeric and absent durations, binary values, HEAD, health and
statistics, and JSON errors that say what was wrong.

Handlers only translate: request in, a call on the node, response out.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from disperse.cluster.coordinator import Consistency, ReadOutcome, WriteOutcome
from disperse.cluster.view import NoMajority
from disperse.gossip.service import KeyringError
from disperse.logs import logger
from disperse.node import Loading, Node, NotJoined
from disperse.persist.log import DiskUnavailable
from disperse.persist.snapshot import SnapshotResult
from disperse.store import Record, ValueTooLarge, renderedValue
from disperse.units import parseDuration
from disperse.web.auth import RequestGuard, isLoopbackClient
from disperse.web.dashboard import Dashboard, NoStatsClient, StatsClient
from disperse.web.routes import METRICS, routeOf

T = TypeVar("T")

TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"
OCTETS = b"application/octet-stream"

INT64_MAX = 2**63 - 1
NS_PER_MS = 1_000_000
MS_PER_S = 1000

# How much a JSON PUT body may exceed the largest value: the envelope and
# the escaping of the value itself.
JSON_BODY_SLACK = 64 * 1024

_INT64_TEXT = re.compile(r"^[+-]?\d+$")


class BadRequest(Exception):
    """
    The request cannot be served as sent; the message says why.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _durationToTtlMs(duration: object) -> int:
    """
    Turn the seed's C{duration} (nanoseconds, as a decimal string or, as an
    extension, a JSON number) into a time to live in whole milliseconds,
    rounded up so that nothing expires before it was asked to. Absent, empty
    and zero mean no expiry.
    """
    if duration is None or duration == "":
        return 0
    if isinstance(duration, bool):
        raise BadRequest(400, "duration must be an integer number of nanoseconds")
    if isinstance(duration, str):
        if not _INT64_TEXT.match(duration):
            raise BadRequest(400, "duration must be an integer number of nanoseconds")
        nanoseconds = int(duration)
    elif isinstance(duration, int):
        nanoseconds = duration
    elif isinstance(duration, float) and duration.is_integer():
        nanoseconds = int(duration)
    else:
        raise BadRequest(400, "duration must be an integer number of nanoseconds")
    if nanoseconds < 0:
        raise BadRequest(400, "duration must not be negative")
    if nanoseconds > INT64_MAX:
        raise BadRequest(400, "duration is out of range (at most 2^63-1 ns)")
    return -(-nanoseconds // NS_PER_MS)


def _ttlTextToMs(text: str) -> int:
    """
    Parse the C{ttl} query parameter or C{X-TTL} header of a binary PUT:
    seconds, or a number with a unit (C{500ms}, C{30s}, C{5m}, C{1h}).
    """
    try:
        seconds = parseDuration(text)
    except ValueError as e:
        raise BadRequest(400, str(e)) from None
    if not math.isfinite(seconds) or seconds * MS_PER_S > INT64_MAX:
        raise BadRequest(400, "ttl is out of range")
    return math.ceil(seconds * MS_PER_S)


class _Front(Resource):
    """
    The root of the site. Each request is matched once against the route
    table (L{disperse.web.routes}). C{/cache/<key>} is the hot path of a
    cache, so it is served straight from here; every other route goes
    through the Klein app, whose routing and response handling cost about
    as much again as serving a key.
    """

    isLeaf = True

    def __init__(
        self,
        api: CacheAPI,
        routes: IResource,
        metrics: IResource | None = None,
        guard: RequestGuard | None = None,
    ) -> None:
        super().__init__()
        self._api = api
        self._routes = routes
        self._metrics = metrics
        self._guard = guard

    def render(self, request: Request) -> bytes | int:
        path = request.postpath or []
        route = routeOf(request.method, path)
        # Kept on the request for the metrics, which count it when answered.
        request.route = route  # type: ignore[attr-defined]
        if self._guard is not None:
            refused = self._guard.admit(request, path, route)
            if refused is not None:
                return refused
        if route.key:
            self._api.cacheRequests += 1
            return self._api.serveKey(request, path[1:])
        if route is METRICS and self._metrics is not None:
            metricsBody: bytes = self._metrics.render(request)
            return metricsBody
        body: bytes = self._routes.render(request)
        return body


class CacheAPI:
    """
    The HTTP front end of one node.
    """

    app = Klein()
    log = logger()

    def __init__(
        self,
        node: Node,
        peerStats: StatsClient | None = None,
        metrics: IResource | None = None,
        guard: RequestGuard | None = None,
    ) -> None:
        """
        @param peerStats: how the dashboard reads other members' C{/stats}.
        @param metrics: the Prometheus page, served at C{/metrics}.
        @param guard: authentication and rate limits, if any.
        """
        self._node = node
        self._metrics = metrics
        self._guard = guard
        # Requests on /cache/<key>, for the request rate the dashboard shows.
        self.cacheRequests = 0
        self._dashboard = Dashboard(
            node, peerStats or NoStatsClient(), self.statsDocument, node.clock
        )
        config = node.config
        self._maxKeySize = config.maxKeySize
        self._maxValueSize = config.maxValueSize
        self._maxBodySize = config.maxValueSize + JSON_BODY_SLACK

    def resource(self) -> IResource:
        return _Front(self, self.app.resource(), self._metrics, self._guard)

    # Errors, in one place

    @app.handle_errors(BadRequest)
    def _badRequest(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, BadRequest)
        return self._error(request, error.code, error.message)

    @app.handle_errors(NotFound)
    def _notFound(self, request: IRequest, failure: Failure) -> bytes:
        return self._error(request, 404, "no such route")

    @app.handle_errors(MethodNotAllowed)
    def _notAllowed(self, request: IRequest, failure: Failure) -> bytes:
        return self._error(request, 405, "method not allowed on this route")

    @app.handle_errors(Exception)
    def _internalError(self, request: IRequest, failure: Failure) -> bytes:
        self.log.failure(
            "internal error serving {method} {path}",
            failure,
            method=request.method,
            path=request.path,
        )
        return self._error(request, 500, "internal error")

    @staticmethod
    def _error(request: IRequest, code: int, message: str) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", JSON)
        return json.dumps({"error": message}).encode("utf-8")

    @staticmethod
    def _json(request: IRequest, body: Any) -> bytes:
        request.setHeader(b"content-type", JSON)
        return json.dumps(body).encode("utf-8")

    @staticmethod
    def _text(request: IRequest, code: int, body: bytes) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", TEXT)
        return body

    # Routes

    @app.route("/cache/members", methods=["GET", "HEAD"])
    def members(self, request: IRequest) -> bytes:
        return self._json(
            request, [member.asSeedJSON() for member in self._node.members()]
        )

    def serveKey(self, request: IRequest, segments: list[bytes]) -> bytes | int:
        """
        Serve C{/cache/<key>} for every method, the errors of the cache
        routes included. C{segments} is the path after C{/cache}, already
        percent-decoded (so C{a%2Fb} and C{a/b} name the same key).
        """
        try:
            return self._serveKey(request, segments)
        except BadRequest as e:
            return self._error(request, e.code, e.message)
        except NotJoined:
            request.setHeader(b"retry-after", b"1")
            return self._error(
                request,
                503,
                "this node has not joined its cluster yet, so it cannot tell"
                " which members hold the key; retry, or ask another node",
            )
        except Loading:
            request.setHeader(b"retry-after", b"1")
            return self._error(
                request,
                503,
                "this node is loading its data directory and holds the key"
                " alone; retry in a moment",
            )
        except DiskUnavailable as e:
            return self._error(
                request,
                507,
                f"{e}: this node refuses writes until its disk works again"
                " (reads go on); write through another node meanwhile",
            )
        except NoMajority as e:
            request.setHeader(b"retry-after", b"1")
            return self._error(
                request,
                503,
                f"this node reaches only {e.reachable} of the {e.known} members"
                " it knows of, so it may be cut off from the rest of the"
                " cluster; quorum and all need it to reach a majority. Retry,"
                " ask another node, or use consistency=one",
            )
        except Exception:
            body: bytes = self._internalError(request, Failure())
            return body

    def _serveKey(self, request: IRequest, segments: list[bytes]) -> bytes | int:
        raw = b"/".join(segments)
        if len(raw) > self._maxKeySize:
            raise BadRequest(414, f"key is longer than {self._maxKeySize} bytes")
        try:
            key = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(400, "key is not valid UTF-8") from None
        method = request.method
        local = request.getHeader(b"x-is-sync") == b"true"
        if local:
            self._requireLocal(request)
        if method in (b"GET", b"HEAD"):
            if local:
                return self._renderRecord(request, self._node.getLocal(key))
            return self._later(
                request, self._node.get(key, self._level(request)), self._renderRead
            )
        if method == b"PUT":
            value, ttlMs, binary = self._parsePut(request)
            try:
                if local:
                    self._node.putLocal(key, value, ttlMs, binary)
                    return self._text(request, 200, b"OK")
                written = self._node.put(
                    key, value, ttlMs, binary, self._level(request)
                )
            except ValueTooLarge:
                raise BadRequest(
                    413, "value does not fit in this node's memory budget"
                ) from None
            return self._later(request, written, self._renderWrite)
        if method == b"DELETE":
            if local:
                self._node.deleteLocal(key)
                return self._text(request, 200, b"OK")
            return self._later(
                request, self._node.delete(key, self._level(request)), self._renderWrite
            )
        return self._text(request, 405, b"Method not allowed")

    @staticmethod
    def _level(request: IRequest) -> Consistency | None:
        """
        The consistency level asked for, by the C{X-Consistency} header or
        the C{consistency} query parameter; C{None} for the node's default.
        """
        text = request.getHeader(b"x-consistency")
        if text is None:
            values = (request.args or {}).get(b"consistency")
            text = values[0] if values else None
        if text is None:
            return None
        try:
            return Consistency(text.decode("ascii", "replace").lower())
        except ValueError:
            raise BadRequest(400, "consistency must be one, quorum or all") from None

    def _later(
        self,
        request: IRequest,
        result: T | Deferred[T],
        render: Callable[[IRequest, T], bytes],
    ) -> bytes | int:
        """
        Render C{result} now, or when it arrives (then answer
        C{NOT_DONE_YET}).
        """
        if not isinstance(result, Deferred):
            return render(request, result)

        def arrived(outcome: T) -> None:
            try:
                body = render(request, outcome)
            except Exception:
                body = self._internalError(request, Failure())
            self._finishLater(request, body)

        def failed(failure: Failure) -> None:
            self._finishLater(request, self._internalError(request, failure))

        result.addCallbacks(arrived, failed)
        return NOT_DONE_YET

    @staticmethod
    def _finishLater(request: IRequest, body: bytes) -> None:
        if getattr(request, "_disconnected", False) or getattr(
            request, "finished", False
        ):
            return
        if request.method != b"HEAD":
            request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
        elif not request.responseHeaders.hasHeader(b"content-length"):
            # A HEAD's length is the GET's, set by the renderer; an answer
            # without one (an error) has the length of what it would say.
            request.setHeader(b"content-length", b"%d" % len(body))
        request.finish()

    def _renderRead(self, request: IRequest, outcome: ReadOutcome) -> bytes:
        request.setHeader(b"x-disperse-replicas", b"%d" % outcome.replicas)
        request.setHeader(b"x-disperse-answered", b"%d" % outcome.answered)
        if not outcome.ok:
            request.setResponseCode(503)
            request.setHeader(b"content-type", JSON)
            return json.dumps(
                {
                    "error": f"only {outcome.answered} of {outcome.replicas} replicas"
                    f" answered; {outcome.required} required",
                    "answered": outcome.answered,
                    "required": outcome.required,
                    "replicas": outcome.replicas,
                }
            ).encode("utf-8")
        return self._renderRecord(request, outcome.value)

    def _renderRecord(self, request: IRequest, record: Record | None) -> bytes:
        if record is None:
            return self._text(request, 404, b"Not Found")
        request.setHeader(b"content-type", OCTETS if record.binary else TEXT)
        # A counter reads as the number it counts, as over RESP.
        value = renderedValue(record)
        if request.method == b"HEAD":
            request.setHeader(b"content-length", b"%d" % len(value))
            return b""
        return value

    def _renderWrite(self, request: IRequest, outcome: WriteOutcome) -> bytes:
        request.setHeader(b"x-disperse-replicas", b"%d" % outcome.replicas)
        request.setHeader(b"x-disperse-acks", b"%d" % outcome.acks)
        if outcome.ok:
            return self._text(request, 200, b"OK")
        # Not a plain failure: the replicas that took the write keep it, and
        # the others get it through hinted handoff.
        request.setResponseCode(503)
        request.setHeader(b"content-type", JSON)
        return json.dumps(
            {
                "error": f"the write reached {outcome.acks} of {outcome.replicas}"
                f" replicas; {outcome.required} required. Replicas that missed it"
                " will receive it when they are back",
                "acks": outcome.acks,
                "required": outcome.required,
                "replicas": outcome.replicas,
            }
        ).encode("utf-8")

    def _parsePut(self, request: IRequest) -> tuple[bytes, int, bool]:
        body = self._readBody(request)
        contentType = (request.getHeader(b"content-type") or b"").lower()
        if contentType.startswith(b"application/json"):
            (value, ttlMs), binary = self._parseJSON(body), False
        elif contentType.startswith(OCTETS):
            value, ttlMs, binary = body, self._binaryTtl(request), True
        else:
            raise BadRequest(400, "Content-Type must be application/json")
        if len(value) > self._maxValueSize:
            raise BadRequest(413, f"value is larger than {self._maxValueSize} bytes")
        return value, ttlMs, binary

    def _readBody(self, request: IRequest) -> bytes:
        content = request.content
        if content is None:
            return b""
        content.seek(0, 2)
        size = content.tell()
        if size > self._maxBodySize:
            raise BadRequest(413, f"body is larger than {self._maxBodySize} bytes")
        content.seek(0)
        body: bytes = content.read()
        return body

    @staticmethod
    def _jsonObject(body: bytes) -> dict[str, Any]:
        try:
            document = json.loads(body)
        except ValueError:
            raise BadRequest(400, "Invalid JSON format") from None
        if not isinstance(document, dict):
            raise BadRequest(400, "Invalid JSON format")
        return document

    def _parseJSON(self, body: bytes) -> tuple[bytes, int]:
        document = self._jsonObject(body)
        value = document.get("value")
        if value is None or value == "":
            raise BadRequest(400, "Missing required fields")
        if not isinstance(value, str):
            raise BadRequest(
                400,
                "value must be a string (send other data as application/octet-stream)",
            )
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(400, "value is not valid Unicode") from None
        return encoded, _durationToTtlMs(document.get("duration"))

    def _binaryTtl(self, request: IRequest) -> int:
        """
        The time to live of a binary PUT: the C{X-TTL} header or the C{ttl}
        query parameter (seconds or a number with a unit), or the C{duration}
        query parameter (nanoseconds, as in JSON bodies).
        """
        args = request.args or {}
        header = request.getHeader(b"x-ttl")
        if header is not None:
            return _ttlTextToMs(header.decode("ascii", "replace"))
        if b"ttl" in args:
            return _ttlTextToMs(args[b"ttl"][0].decode("ascii", "replace"))
        if b"duration" in args:
            return _durationToTtlMs(args[b"duration"][0].decode("ascii", "replace"))
        return 0

    @app.route("/cluster/members", methods=["GET", "HEAD"])
    def clusterMembers(self, request: IRequest) -> bytes:
        return self._json(request, self._node.clusterMembers())

    @app.route("/cluster/partitions", methods=["GET", "HEAD"])
    def partitions(self, request: IRequest) -> bytes:
        return self._json(request, self._node.partitions())

    @app.route("/cluster/keys", methods=["GET", "HEAD"])
    def gossipKeys(self, request: IRequest) -> bytes:
        self._requireLocal(request)
        return self._json(request, self._node.gossipKeys())

    @app.route("/cluster/keys/<operation>", methods=["POST"])
    def changeGossipKeys(self, request: IRequest, operation: str) -> bytes:
        """
        Rotate gossip keys on this node: C{install} a new key everywhere,
        then C{use} it everywhere, then C{remove} the old one.
        """
        self._requireLocal(request)
        if operation not in ("install", "use", "remove"):
            raise BadRequest(404, "operation must be install, use or remove")
        document = self._jsonObject(self._readBody(request))
        text = document.get("key")
        if not isinstance(text, str):
            raise BadRequest(400, 'body must be {"key": "<base64 key>"}')
        try:
            key = base64.b64decode(text, validate=True)
        except ValueError:
            raise BadRequest(400, "key is not base64") from None
        if len(key) not in (16, 24, 32):
            raise BadRequest(400, "key must be 16, 24 or 32 bytes")
        try:
            self._node.changeGossipKeys(operation, key)
        except KeyringError as e:
            raise BadRequest(409, str(e)) from None
        return self._json(request, self._node.gossipKeys())

    def _requireLocal(self, request: IRequest) -> None:
        # Administration (keyrings, X-Is-Sync): with client tokens the guard
        # has checked for the admin scope; without, it is only for whoever
        # can reach the node from its own host.
        if self._guard is not None and self._guard.authenticating:
            return
        if not isLoopbackClient(request):
            raise BadRequest(
                403,
                "administration (keyrings, X-Is-Sync) is only allowed from"
                " loopback without client tokens",
            )

    @app.route("/persistence/snapshot", methods=["POST"])
    def snapshot(self, request: IRequest) -> bytes | Deferred[bytes]:
        """
        Take a snapshot of this node's store now, answering once it is on
        disk: what it holds and what it cost.
        """
        self._requireLocal(request)
        persistence = self._node.persistence
        if persistence is None:
            raise BadRequest(409, "this node has no data directory (--data-dir)")
        try:
            taken = persistence.snapshot()
        except DiskUnavailable as e:
            raise BadRequest(507, str(e)) from None

        def render(result: SnapshotResult) -> bytes:
            return self._json(request, asdict(result))

        def failed(failure: Failure) -> bytes:
            return self._error(request, 507, f"the snapshot failed: {failure.value}")

        return taken.addCallbacks(render, failed)

    @app.route("/health", methods=["GET", "HEAD"])
    def health(self, request: IRequest) -> bytes:
        document: dict[str, Any] = {
            "status": "ok",
            "node": self._node.config.nodeName,
        }
        persistence = self._node.persistence
        if persistence is not None:
            if persistence.loading:
                document["loading"] = True
            if not persistence.writable:
                # Still answering 200: the node is alive and serves reads;
                # a probe that wants writes reads the status.
                document["status"] = "degraded"
                document["reason"] = str(persistence.journal.failed)
        return self._json(request, document)

    @app.route("/stats", methods=["GET", "HEAD"])
    def stats(self, request: IRequest) -> bytes:
        return self._json(request, self.statsDocument())

    def statsDocument(self) -> dict[str, Any]:
        return {**self._node.stats(), "cacheRequests": self.cacheRequests}

    # The dashboard (disperse.web.dashboard)

    @app.route("/", methods=["GET", "HEAD"])
    @app.route("/ui", methods=["GET", "HEAD"])
    @app.route("/ui/", methods=["GET", "HEAD"])
    def dashboardPage(self, request: IRequest) -> bytes:
        return self._dashboard.renderPage(request)

    @app.route("/ui/<asset>", methods=["GET", "HEAD"])
    def dashboardAsset(self, request: IRequest, asset: str) -> bytes:
        return self._dashboard.renderAsset(request, asset)

    @app.route("/cluster/overview", methods=["GET", "HEAD"])
    async def overview(self, request: IRequest) -> bytes:
        known = (request.args or {}).get(b"table")
        table = known[0].decode("ascii", "replace") if known else None
        return self._json(
            request,
            await self._dashboard.overview(table, request.getHeader(b"authorization")),
        )

    @app.route("/cluster/events", methods=["GET", "HEAD"])
    def membershipEvents(self, request: IRequest) -> bytes:
        values = (request.args or {}).get(b"since", [b"0"])
        if not values[0].isdigit():
            raise BadRequest(400, "since must be a non-negative integer")
        return self._json(request, self._dashboard.events(int(values[0])))
