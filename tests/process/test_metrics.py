"""
C{/metrics} of a real node, scraped over HTTP.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from disperse.testing.cluster import runningNode
from tests.test_metrics import parse, value


@pytest.mark.integration
def test_scrapeRealNode() -> None:
    """
    C{/metrics} of a real node, fetched over HTTP, parses with
    C{prometheus_client}'s parser and counts what was asked of it.
    """
    with runningNode("--node-name", "scraped") as node:
        for request in _requests(node.url):
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
        with urllib.request.urlopen(f"{node.url}/metrics", timeout=10) as answer:
            assert answer.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
            families, samples = parse(answer.read().decode("utf-8"))
    assert families["disperse_http_request_duration_seconds"] == "histogram"
    assert (
        value(
            samples,
            "disperse_http_requests_total",
            route="/cache/{key}",
            method="PUT",
            status="200",
        )
        == 1
    )
    assert value(samples, "disperse_store_hits_total") == 1
    assert value(samples, "disperse_members", state="alive") == 1
    assert families["disperse_peer_calls"] == "counter"
    assert value(
        samples, "disperse_node_info", node="scraped", zone="", version="0.1.0"
    )


def _requests(url: str) -> Iterator[urllib.request.Request]:
    yield urllib.request.Request(
        f"{url}/cache/k",
        data=b'{"value": "v"}',
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    yield urllib.request.Request(f"{url}/cache/k")
