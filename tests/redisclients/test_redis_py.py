"""
redis-py, unmodified, against a real node: the plain client over RESP2
and RESP3, its parsed replies (INFO, COMMAND, CLIENT INFO), errors that
leave the connection usable, pipelines with and without a transaction,
WATCH refused clearly, and threads sharing a connection pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.redisclients.nodes import RedisNode, emptied, waitUntil

pytestmark = pytest.mark.redisclients

NOT_SUPPORTED = r"(?i)\bwatch\b.*not supported"


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def client(solo: RedisNode, request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    r = solo.client(protocol=request.param, decode_responses=True)
    try:
        yield r
    finally:
        r.close()


def test_strings(client: redis.Redis) -> None:
    r = client
    r.delete("py:a", "py:b", "py:m1", "py:m2", "py:nx")
    assert r.get("py:a") is None
    assert r.set("py:a", "v") is True
    assert r.get("py:a") == "v"
    assert r.set("py:a", "w", nx=True) is None
    assert r.set("py:a", "w", xx=True, get=True) == "v"
    assert r.set("py:b", "x", xx=True) is None
    assert r.set("py:a", "y", ex=100) is True
    assert 99 <= r.ttl("py:a") <= 100
    assert r.set("py:a", "z", keepttl=True) is True
    assert 99 <= r.ttl("py:a") <= 100
    assert r.set("py:a", "z", px=50_000) is True
    assert 49_000 <= r.pttl("py:a") <= 50_000
    at = int(time.time()) + 500
    assert r.set("py:a", "z", exat=at) is True
    assert r.expiretime("py:a") == at
    assert r.set("py:a", "z", pxat=at * 1000 + 7) is True
    assert r.pexpiretime("py:a") == at * 1000 + 7
    assert r.persist("py:a") is True
    assert r.ttl("py:a") == -1
    assert r.setex("py:b", 60, "b") is True
    assert r.psetex("py:b", 60_000, "b") is True
    assert r.setnx("py:nx", "1") is True
    assert r.setnx("py:nx", "2") is False
    assert r.getset("py:nx", "3") == "1"
    assert r.getdel("py:nx") == "3"
    assert r.exists("py:nx") == 0
    assert r.getex("py:a", ex=30) == "z"
    assert 29 <= r.ttl("py:a") <= 30
    assert r.getex("py:a", persist=True) == "z"
    assert r.ttl("py:a") == -1
    assert r.mset({"py:m1": "1", "py:m2": "2"}) is True
    assert r.mget(["py:m1", "py:none", "py:m2"]) == ["1", None, "2"]
    assert r.msetnx({"py:m2": "x", "py:m3": "y"}) is False
    assert r.append("py:m1", "23") == 3
    assert r.strlen("py:m1") == 3
    assert r.type("py:m1") == "string"
    assert r.type("py:none") == "none"
    assert r.touch("py:m1", "py:none") == 1
    assert r.exists("py:m1", "py:m2", "py:none") == 2
    assert r.unlink("py:m1") == 1
    assert r.delete("py:m2", "py:none") == 1


def test_expiry(client: redis.Redis) -> None:
    r = client
    r.set("py:e", "v")
    assert r.expire("py:e", 100, xx=True) is False
    assert r.expire("py:e", 100, nx=True) is True
    assert r.expire("py:e", 50, gt=True) is False
    assert r.expire("py:e", 200, gt=True) is True
    assert r.expire("py:e", 150, lt=True) is True
    assert 149 <= r.ttl("py:e") <= 150
    assert r.pexpire("py:e", 120_000) is True
    at = int(time.time()) + 1000
    assert r.expireat("py:e", at) is True
    assert r.expiretime("py:e") == at
    assert r.pexpireat("py:e", at * 1000 + 1) is True
    assert r.pexpiretime("py:e") == at * 1000 + 1
    assert r.ttl("py:nosuch") == -2
    with pytest.raises(redis.ResponseError, match="not compatible"):
        r.expire("py:e", 10, nx=True, gt=True)
    r.set("py:short", "v", px=1)
    waitUntil(lambda: not r.exists("py:short"), "py:short to expire", 5)
    assert r.get("py:short") is None


def test_counters(client: redis.Redis) -> None:
    r = client
    r.delete("py:c", "py:f")
    assert r.incr("py:c") == 1
    assert r.incrby("py:c", 41) == 42
    assert r.decr("py:c") == 41
    assert r.decrby("py:c", 50) == -9
    assert r.get("py:c") == "-9"
    assert r.incrbyfloat("py:f", 2.5) == 2.5
    assert r.incrbyfloat("py:f", -0.5) == 2.0
    r.set("py:c", "text")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.incr("py:c")
    r.set("py:c", "7")
    assert r.incr("py:c") == 8


def test_keysAndServer(client: redis.Redis) -> None:
    r = client
    assert r.ping() is True
    assert r.echo("hi") == "hi"
    emptied(r)
    assert r.randomkey() is None
    r.mset({f"py:k{i}": str(i) for i in range(40)})
    assert r.dbsize() == 40
    names = {f"py:k{i}" for i in range(40)}
    assert set(r.scan_iter()) == names
    assert set(r.scan_iter(match="py:k1*", count=2)) == {
        n for n in names if n.startswith("py:k1")
    }
    assert set(r.scan_iter(_type="string")) == names
    assert set(r.scan_iter(_type="list")) == set()
    assert set(r.keys("py:k2?")) == {f"py:k{i}" for i in range(20, 30)}
    assert r.randomkey() in names
    seconds, micros = r.time()
    assert abs(seconds - time.time()) < 60
    assert 0 <= micros < 1_000_000
    assert r.flushdb() is True
    assert r.dbsize() == 0


def test_parsedReplies(client: redis.Redis) -> None:
    """
    The replies redis-py parses into structures: INFO, COMMAND, CLIENT
    INFO, CLIENT SETNAME/GETNAME, COMMAND GETKEYS.
    """
    r = client
    r.set("py:info", "v")
    info = r.info()
    assert isinstance(info["redis_version"], str)
    assert info["connected_clients"] >= 1
    assert info["db0"]["keys"] >= 1
    assert set(r.info("keyspace")) == {"db0"}
    assert "cluster_enabled" in r.info("cluster")
    commands = r.command()
    assert commands["get"]["arity"] == 2
    assert commands["set"]["arity"] == -3
    assert commands["mset"]["first_key_pos"] == 1
    assert commands["mset"]["last_key_pos"] == -1
    assert commands["mset"]["step_count"] == 2
    assert "readonly" in commands["get"]["flags"]
    assert r.command_count() == len(commands)
    assert r.command_getkeys("MSET", "a", "1", "b", "2") == ["a", "b"]
    assert r.client_setname("py-client") is True
    assert r.client_getname() == "py-client"
    me = r.client_info()
    assert me["name"] == "py-client"
    assert int(me["id"]) == r.client_id()
    assert r.client_setinfo("LIB-NAME", "py-test") is True


def test_errorsKeepTheConnection(solo: RedisNode) -> None:
    """
    An unknown command, a wrong arity and a bad argument raise
    L{redis.ResponseError} with Redis's text; the same connection goes on.
    """
    r = solo.client(single_connection_client=True, decode_responses=True)
    try:
        me = r.client_id()
        with pytest.raises(redis.ResponseError) as unknown:
            r.execute_command("FROBNICATE", "a")
        assert str(unknown.value) == (
            "unknown command 'FROBNICATE', with args beginning with: 'a' "
        )
        with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
            r.execute_command("GET")
        with pytest.raises(redis.ResponseError, match="syntax error"):
            r.execute_command("SET", "k", "v", "NX", "XX")
        with pytest.raises(redis.ResponseError):
            r.execute_command("SELECT", "2")
        assert r.client_id() == me
    finally:
        r.close()


def test_binaryAndLargeValues(solo: RedisNode) -> None:
    """
    Values are bytes: every byte value survives, a value of a few MiB
    too. One just over C{--max-value-size} (4 MiB by default) is refused
    with an error and the connection goes on; one far over it is refused
    from its length alone, by closing the connection before its bytes
    arrive (Redis's answer to a bulk over its limit).
    """
    r = solo.client(retry=Retry(NoBackoff(), 0), single_connection_client=True)
    try:
        every = bytes(range(256)) * 4
        assert r.set("py:bin", every) is True
        assert r.get("py:bin") == every
        big = b"x" * (3 * 1024 * 1024)
        assert r.set("py:big", big) is True
        assert r.get("py:big") == big
        assert r.strlen("py:big") == len(big)
        me = r.client_id()
        with pytest.raises(redis.ResponseError, match="value is larger than"):
            r.set("py:huge", b"x" * (4 * 1024 * 1024 + 1))
        assert r.client_id() == me
        with pytest.raises(redis.ConnectionError):
            r.set("py:huge", b"x" * (64 * 1024 * 1024))
        assert r.ping() is True
        assert r.client_id() != me
        assert r.exists("py:huge") == 0
    finally:
        r.close()


def test_pipelineWithoutTransaction(client: redis.Redis) -> None:
    """
    A pipeline of 2,000 commands sent at once: every reply in order.
    """
    r = client
    r.delete("py:pc")
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(f"py:p{i}", str(i))
        pipe.incr("py:pc")
    replies = pipe.execute()
    assert replies[0::2] == [True] * 1000
    assert replies[1::2] == list(range(1, 1001))
    pipe = r.pipeline(transaction=False)
    for i in range(0, 1000, 100):
        pipe.get(f"py:p{i}")
    pipe.get("py:pc")
    assert pipe.execute() == [str(i) for i in range(0, 1000, 100)] + ["1000"]


def test_pipelineErrors(client: redis.Redis) -> None:
    """
    In a pipeline without a transaction, a failing command fails alone.
    """
    r = client
    r.set("py:text", "abc")
    pipe = r.pipeline(transaction=False)
    pipe.set("py:pe", "1")
    pipe.incr("py:text")
    pipe.incr("py:pe")
    replies = pipe.execute(raise_on_error=False)
    assert replies[0] is True
    assert isinstance(replies[1], redis.ResponseError)
    assert replies[2] == 2


def test_transaction(client: redis.Redis) -> None:
    """
    C{pipeline()} sends MULTI, the commands and EXEC: the replies come
    back in order; a command failing inside does not undo the others.
    """
    r = client
    r.delete("py:t1", "py:t2")
    pipe = r.pipeline()
    pipe.set("py:t1", "1").incr("py:t1").incrby("py:t2", 5).mget("py:t1", "py:t2")
    assert pipe.execute() == [True, 2, 5, ["2", "5"]]
    r.set("py:text", "abc")
    pipe = r.pipeline()
    pipe.incr("py:t1").incr("py:text").incr("py:t2")
    replies = pipe.execute(raise_on_error=False)
    assert replies[0] == 3
    assert isinstance(replies[1], redis.ResponseError)
    assert replies[2] == 6
    # A command refused while queued discards the whole transaction.
    pipe = r.pipeline()
    pipe.set("py:t1", "100")
    pipe.execute_command("GET")
    with pytest.raises(redis.ResponseError):
        pipe.execute()
    assert r.get("py:t1") == "3"


def test_watchIsRefusedClearly(client: redis.Redis) -> None:
    """
    WATCH (and redis-py's C{transaction()} helper, which needs it) fails
    with an error saying WATCH is not supported; the client goes on.
    """
    r = client
    with pytest.raises(redis.ResponseError, match=NOT_SUPPORTED):
        r.execute_command("WATCH", "py:w")
    pipe = r.pipeline()
    with pytest.raises(redis.ResponseError, match=NOT_SUPPORTED):
        pipe.watch("py:w")
    pipe.reset()

    def increment(p: redis.client.Pipeline) -> None:
        p.multi()
        p.incr("py:w")

    with pytest.raises(redis.ResponseError, match=NOT_SUPPORTED):
        r.transaction(increment, "py:w")
    assert r.ping() is True


def test_threadsShareAPool(solo: RedisNode) -> None:
    """
    Eight threads incrementing one key through one connection pool: the
    node counts every increment once.
    """
    pool = redis.ConnectionPool(
        host="127.0.0.1", port=solo.redisPort, max_connections=8
    )
    r = redis.Redis(connection_pool=pool)
    r.delete("py:threads")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(250):
                r.incr("py:threads")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert r.get("py:threads") == b"2000"
    pool.disconnect()
