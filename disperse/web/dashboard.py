"""
The live cluster dashboard: its static page (one HTML, one script, one
style sheet, shipped as package data and held in memory) and the JSON it
polls, C{/cluster/overview}: the members as this node sees them, each
one's counters fetched from its own C{/stats}, a summary of placement and
the recent membership events, in one document.

The page is served by whichever node the browser asks; that node fans out
to the others with a short timeout, so one slow or dead member costs the
page a blank row, never a stalled refresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest

from disperse.gossip.messages import NodeState
from disperse.logs import logger
from disperse.node import Node
from disperse.store.integrity import SOURCES
from disperse.store.partition import PARTITION_COUNT

# The page polls once a second; an answer from a member later than this is
# worth less than a refresh on time.
STATS_TIMEOUT = 0.75
# Several open dashboards (or a quick reload) share one fan-out this recent.
OVERVIEW_MAX_AGE = 0.5
# How many recent membership events the overview carries; /cluster/events
# has all that the node keeps.
OVERVIEW_EVENTS = 25
# A member's /stats larger than this is not one of ours.
MAX_STATS_BYTES = 256 * 1024

# The counters of a member the page shows; the rest of /stats stays there.
STATS_FIELDS = (
    "keys",
    "bytes",
    "maxBytes",
    "hits",
    "misses",
    "sets",
    "deletes",
    "evictions",
    "cacheRequests",
)
# From the "redis" section of /stats, present on members that serve the
# Redis protocol (--redis-port): its connections and commands, shown next to
# the HTTP figures under these names.
REDIS_FIELDS = {"connections": "redisConnections", "commands": "redisCommands"}
# From the "integrity" section: the damaged records a member found, all
# sources together, shown as "integrityFailures".

# From the "persistence" section, on members with a data directory: whether
# it takes writes and is loading (1 or 0), its bytes on disk, the age of its
# last snapshot in seconds, how long that took and how long loading took at
# start, in milliseconds.


_CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}
# The page needs nothing but its own origin; saying so keeps injected markup
# (a member name, say) from loading or running anything.
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; "
    b"connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
    b"form-action 'none'; frame-ancestors 'none'"
)
PAGE = "index.html"


def _shownStats(answer: dict[str, Any]) -> dict[str, int]:
    """
    The counters of a member's C{/stats} that the page shows; those that
    are missing or not integers (another version's) are left out.
    """
    shown = {
        field: answer[field]
        for field in STATS_FIELDS
        if isinstance(answer.get(field), int)
    }
    redis = answer.get("redis")
    if isinstance(redis, dict):
        for field, name in REDIS_FIELDS.items():
            if isinstance(redis.get(field), int):
                shown[name] = redis[field]
    integrity = answer.get("integrity")
    if isinstance(integrity, dict):
        found = [integrity.get(source) for source in SOURCES]
        if all(isinstance(count, int) for count in found):
            shown["integrityFailures"] = sum(found)
    persistence = answer.get("persistence")
    if isinstance(persistence, dict):
        shown.update(_diskFigures(persistence))
    return shown


def _diskFigures(persistence: dict[str, Any]) -> dict[str, int]:
    writable = persistence.get("writable")
    loading = persistence.get("loading")
    sizes = [persistence.get("logBytes"), persistence.get("snapshotBytes")]
    if not (
        isinstance(writable, bool)
        and isinstance(loading, bool)
        and all(isinstance(size, int) for size in sizes)
    ):
        return {}
    figures = {
        "diskWritable": int(writable),
        "diskLoading": int(loading),
        "diskBytes": sum(size for size in sizes if isinstance(size, int)),
    }
    last = persistence.get("lastSnapshot")
    if isinstance(last, dict):
        if isinstance(last.get("age"), int | float):
            figures["snapshotAge"] = int(last["age"])
        if isinstance(last.get("seconds"), int | float):
            figures["snapshotMs"] = int(last["seconds"] * 1000)
    load = persistence.get("load")
    if isinstance(load, dict) and isinstance(load.get("seconds"), int | float):
        figures["loadMs"] = int(load["seconds"] * 1000)
    return figures


class StatsClient(Protocol):
    """
    How the dashboard reads another member's counters.
    """

    def stats(
        self,
        httpAddress: str,
        authorization: bytes | None = None,
        scheme: str = "http",
    ) -> Deferred[dict[str, Any]]:
        """
        The JSON object that C{GET /stats} answers at C{httpAddress}
        (host:port); fails if it does not answer in time or with anything
        but a JSON object.

        @param authorization: the C{Authorization} header to send: the
            dashboard's own caller's, so members that take tokens answer
            whoever may read this node's overview.
        @param scheme: C{https} for a member whose API is served over TLS.
        """


class NoStatsClient:
    """
    A dashboard that cannot reach other members (in tests of other routes).
    """

    def stats(
        self,
        httpAddress: str,
        authorization: bytes | None = None,
        scheme: str = "http",
    ) -> Deferred[dict[str, Any]]:
        d: Deferred[dict[str, Any]] = Deferred()
        d.errback(ConnectionError(httpAddress))
        return d


class _QuietClientFactory(_HTTP11ClientFactory):
    # A connection a second to every member would otherwise log two lines
    # each.
    noisy = False


class HTTPStatsClient:
    """
    C{GET /stats} over persistent connections, with a deadline.
    """

    def __init__(self, reactor: Any, timeout: float = STATS_TIMEOUT) -> None:
        self._reactor = reactor
        self._timeout = timeout
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool._factory = _QuietClientFactory
        pool.retryAutomatically = False
        self._pool = pool
        self._http = HTTPClient(Agent(reactor, pool=pool, connectTimeout=timeout))

    def close(self) -> Deferred[None]:
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed

    def stats(
        self,
        httpAddress: str,
        authorization: bytes | None = None,
        scheme: str = "http",
    ) -> Deferred[dict[str, Any]]:
        d: Deferred[dict[str, Any]] = Deferred.fromCoroutine(
            self._stats(f"{scheme}://{httpAddress}", authorization)
        )
        d.addTimeout(self._timeout, self._reactor)
        return d

    async def _stats(self, baseURL: str, authorization: bytes | None) -> dict[str, Any]:
        headers = (
            Headers({b"authorization": [authorization]}) if authorization else None
        )
        # Over https, the member's certificate is checked against the
        # system's trust store and its advertised address, as a browser
        # would check it.
        response = await self._http.get(f"{baseURL}/stats", headers=headers)
        body: bytes = await response.content()
        if response.code != 200:
            raise ValueError(f"/stats answered {response.code}")
        if len(body) > MAX_STATS_BYTES:
            raise ValueError("/stats answered too much")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("/stats answered something other than an object")
        return document


@dataclass(frozen=True)
class Asset:
    """
    One static file of the page, as served.
    """

    body: bytes
    contentType: bytes
    etag: bytes


def loadAssets() -> dict[str, Asset]:
    """
    The page's files from the package, read once: they are a few kilobytes
    and change only with the installed version.
    """
    assets = {}
    for entry in resources.files("disperse.web").joinpath("ui").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        contentType = _CONTENT_TYPES.get(suffix)
        if contentType is None or not entry.is_file():
            continue
        body = entry.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:16]
        assets[entry.name] = Asset(body, contentType, b'"%s"' % digest.encode())
    return assets


def _versioned(page: Asset, assets: dict[str, Asset]) -> Asset:
    """
    The page with each asset it links carrying its ETag as a query, so the
    browser may keep assets for long yet fetch new ones after an upgrade.
    """
    body = page.body
    for name, asset in assets.items():
        if name != PAGE:
            version = asset.etag.strip(b'"')
            body = body.replace(
                b'"/ui/%s"' % name.encode(), b'"/ui/%s?v=%s"' % (name.encode(), version)
            )
    digest = hashlib.sha256(body).hexdigest()[:16]
    return Asset(body, page.contentType, b'"%s"' % digest.encode())


class Dashboard:
    """
    Everything behind the dashboard routes of one node.
    """

    log = logger()

    def __init__(
        self,
        node: Node,
        peerStats: StatsClient,
        localStats: Callable[[], dict[str, Any]],
        clock: IReactorTime,
        assets: dict[str, Asset] | None = None,
    ) -> None:
        """
        @param localStats: this node's C{/stats} document, read without a
            request to itself.
        """
        self._node = node
        self._peerStats = peerStats
        self._localStats = localStats
        self._clock = clock
        loaded = loadAssets() if assets is None else assets
        self._assets = dict(loaded)
        if PAGE in loaded:
            self._assets[PAGE] = _versioned(loaded[PAGE], loaded)
        self._last: tuple[float, dict[str, Any]] | None = None
        self._waiting: list[Deferred[dict[str, Any]]] | None = None

    # Static files

    def renderPage(self, request: IRequest) -> bytes:
        # The page itself is revalidated every time, so an upgraded node
        # serves its new page at once; the ETag makes that a 304.
        return self._renderAsset(request, PAGE, b"no-cache")

    def renderAsset(self, request: IRequest, name: str) -> bytes:
        if name == PAGE:
            return self.renderPage(request)
        return self._renderAsset(request, name, b"public, max-age=86400")

    def _renderAsset(self, request: IRequest, name: str, cache: bytes) -> bytes:
        asset = self._assets.get(name)
        request.setHeader(b"x-content-type-options", b"nosniff")
        if asset is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"application/json")
            return b'{"error": "no such file"}'
        request.setHeader(b"cache-control", cache)
        request.setHeader(b"etag", asset.etag)
        request.setHeader(b"content-type", asset.contentType)
        if name == PAGE:
            request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
            request.setHeader(b"referrer-policy", b"no-referrer")
        if request.getHeader(b"if-none-match") == asset.etag:
            request.setResponseCode(304)
            return b""
        return asset.body

    # Cluster state

    def events(self, since: int = 0) -> dict[str, Any]:
        """
        The membership events this node keeps with an id above C{since}.
        """
        events = self._node.events
        return {
            "node": self._node.config.nodeName,
            "last": events.lastId,
            "events": [event.asJSON() for event in events.since(since)],
        }

    def overview(
        self, knownTable: str | None = None, authorization: bytes | None = None
    ) -> Deferred[dict[str, Any]]:
        """
        The whole picture the page shows. Partition owners are left out when
        the caller already has table C{knownTable}: they change only with
        membership, and are the bulk of the document.

        @param authorization: the caller's C{Authorization} header, passed
            on to the other members' C{/stats}.
        """
        d = self._fresh(authorization)
        return d.addCallback(self._trimmed, knownTable)

    @staticmethod
    def _trimmed(document: dict[str, Any], knownTable: str | None) -> dict[str, Any]:
        partitions = document["partitions"]
        if knownTable is None or knownTable != partitions["table"]:
            return document
        return {
            **document,
            "partitions": {k: v for k, v in partitions.items() if k != "owners"},
        }

    def _fresh(self, authorization: bytes | None) -> Deferred[dict[str, Any]]:
        now = self._clock.seconds()
        if self._last is not None and now - self._last[0] < OVERVIEW_MAX_AGE:
            return succeed(self._last[1])
        waiter: Deferred[dict[str, Any]] = Deferred()
        if self._waiting is not None:
            self._waiting.append(waiter)
            return waiter
        self._waiting = [waiter]
        Deferred.fromCoroutine(self._gather(authorization)).addCallbacks(
            self._gathered, self._failed
        )
        return waiter

    def _gathered(self, document: dict[str, Any]) -> None:
        self._last = (self._clock.seconds(), document)
        waiting, self._waiting = self._waiting or [], None
        for waiter in waiting:
            waiter.callback(document)

    def _failed(self, failure: Failure) -> None:
        waiting, self._waiting = self._waiting or [], None
        for waiter in waiting:
            waiter.errback(failure)

    async def _gather(self, authorization: bytes | None) -> dict[str, Any]:
        node = self._node
        me = node.config.nodeName
        members = node.clusterMembers() or [
            {
                "name": me,
                "gossip_addr": f"{node.config.advertiseAddress}:"
                f"{node.config.gossipPort}",
                "http_addr": None,
                "state": NodeState.alive.name,
                "incarnation": 0,
                "zone": node.config.zone,
                "last_change": None,
            }
        ]
        asked: list[tuple[dict[str, Any], Deferred[dict[str, Any] | None]]] = []
        for member in members:
            member["stats"] = None
            address = member.get("http_addr")
            if member["name"] == me:
                asked.append((member, succeed(self._localStats())))
            elif address and member["state"] in ("alive", "suspect"):
                pending = self._peerStats.stats(
                    address, authorization, member.get("http_scheme") or "http"
                )
                asked.append((member, pending.addErrback(self._noAnswer, member)))
        answers = await gatherResults([d for _, d in asked])
        for (member, _), answer in zip(asked, answers, strict=True):
            if answer is None:
                member["error"] = "no answer to /stats"
            else:
                member["stats"] = _shownStats(answer)
        members.sort(key=lambda m: str(m["name"]))
        return {
            "node": me,
            "time": self._clock.seconds(),
            "members": members,
            "partitions": self._partitions(),
            "events": [
                event.asJSON() for event in node.events.since()[-OVERVIEW_EVENTS:]
            ],
        }

    def _noAnswer(self, failure: Failure, member: dict[str, Any]) -> None:
        # Routine while a member is dying and not yet declared dead, so not
        # worth a line a second at info level.
        self.log.debug(
            "member {member} did not answer /stats: {reason}",
            member=member["name"],
            reason=failure.getErrorMessage(),
        )

    def _partitions(self) -> dict[str, Any]:
        table = self._node.view.table
        owners = [list(table.owners(p)) for p in range(PARTITION_COUNT)]
        perMember: dict[str, dict[str, int]] = {
            member.name: {"primary": 0, "replicas": 0} for member in table.members
        }
        for owning in owners:
            for rank, name in enumerate(owning):
                counts = perMember.setdefault(name, {"primary": 0, "replicas": 0})
                counts["replicas"] += 1
                if rank == 0:
                    counts["primary"] += 1
        return {
            "count": PARTITION_COUNT,
            "replicas": table.replicas,
            "table": table.digest(),
            "members": perMember,
            "owners": owners,
        }
