"""
Django's own Redis cache backend (C{django.core.cache.backends.redis.
RedisCache}, which drives redis-py) pointed at a real node, configured in
this process without a project: every operation of the cache API, and
timeouts of C{None} (for ever), 0 (expired at once) and a positive number
of seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from tests.redisclients.nodes import RedisNode, emptied, waitUntil

pytestmark = pytest.mark.redisclients


@pytest.fixture(scope="module")
def cache(solo: RedisNode) -> Iterator[Any]:
    if not settings.configured:
        settings.configure(
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": f"redis://127.0.0.1:{solo.redisPort}",
                    "TIMEOUT": 300,
                }
            }
        )
    from django.core.cache import caches

    backend = caches["default"]
    assert backend.__class__.__name__ == "RedisCache"
    yield backend
    backend.close()


def test_setGetDelete(cache: Any) -> None:
    cache.set("a", "text")
    assert cache.get("a") == "text"
    # Pickled objects, and integers kept as integers (for incr).
    value = {"list": [1, 2.5, None], "bytes": b"\x00\xff", "nested": {"t": (1, 2)}}
    cache.set("b", value)
    assert cache.get("b") == value
    cache.set("n", 42)
    assert cache.get("n") == 42
    assert cache.get("missing") is None
    assert cache.get("missing", "default") == "default"
    assert cache.has_key("a") is True
    assert cache.has_key("missing") is False
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    assert cache.get("a") is None
    assert "b" in cache


def test_add(cache: Any) -> None:
    cache.delete("add")
    assert cache.add("add", "first") is True
    assert cache.add("add", "second") is False
    assert cache.get("add") == "first"
    # add with timeout 0 stores nothing, but says whether it could have.
    cache.delete("add0")
    assert cache.add("add0", "x", timeout=0) is True
    assert cache.get("add0") is None


def test_manyKeys(cache: Any) -> None:
    data: dict[str, object] = {f"m{i}": i * 10 for i in range(20)}
    data["text"] = "words"
    assert cache.set_many(data) == []
    assert cache.get_many([*data, "absent"]) == data
    cache.delete_many(["m0", "m1", "absent"])
    assert cache.get_many(["m0", "m1", "m2"]) == {"m2": 20}
    # set_many with a timeout: MSET then EXPIRE of each key, in a
    # transaction.
    cache.set_many({"t1": 1, "t2": 2}, timeout=100)
    ttl = cache._cache.get_client().ttl(cache.make_key("t1"))
    assert 99 <= ttl <= 100


def test_incrDecr(cache: Any) -> None:
    cache.set("count", 10)
    assert cache.incr("count") == 11
    assert cache.incr("count", 5) == 16
    assert cache.decr("count") == 15
    assert cache.decr("count", 20) == -5
    assert cache.get("count") == -5
    cache.delete("absent")
    with pytest.raises(ValueError):
        cache.incr("absent")


def test_timeouts(cache: Any) -> None:
    """
    C{None} keeps a key for ever, 0 expires it at once (Django deletes
    it, or sets it and expires it in set_many), a positive timeout sets
    the expiry, C{touch} changes or removes it.
    """
    client = cache._cache.get_client()
    cache.set("forever", "v", timeout=None)
    assert client.ttl(cache.make_key("forever")) == -1
    cache.set("now", "v")
    cache.set("now", "v", timeout=0)
    assert cache.get("now") is None
    cache.set_many({"now1": 1, "now2": 2}, timeout=0)
    assert cache.get_many(["now1", "now2"]) == {}
    cache.set("default", "v")
    assert 299 <= client.ttl(cache.make_key("default")) <= 300
    cache.set("soon", "v", timeout=1)
    assert cache.get("soon") == "v"
    assert cache.touch("soon", 100) is True
    assert 99 <= client.ttl(cache.make_key("soon")) <= 100
    assert cache.touch("soon", None) is True
    assert client.ttl(cache.make_key("soon")) == -1
    assert cache.touch("absent", 10) is False
    cache.set("brief", "v", timeout=1)
    waitUntil(lambda: cache.get("brief") is None, "the key to expire", 5)
    assert cache.has_key("brief") is False
    assert cache.touch("soon", 0) is True
    assert cache.get("soon") is None


def test_versionsAndPrefix(cache: Any) -> None:
    cache.set("v", "one", version=1)
    cache.set("v", "two", version=2)
    assert cache.get("v", version=1) == "one"
    assert cache.get("v", version=2) == "two"
    assert cache.incr_version("v", version=2) == 3
    assert cache.get("v", version=3) == "two"
    assert cache.get("v", version=2) is None


def test_clear(cache: Any) -> None:
    emptied(cache._cache.get_client())
    cache.set_many({"c1": 1, "c2": 2})
    assert cache.clear() is True
    assert cache.get_many(["c1", "c2"]) == {}
    assert cache._cache.get_client().dbsize() == 0
