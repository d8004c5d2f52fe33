"""Shared state across real OS processes (see conftest.Workers), against a real Redis.

These are real-time by nature: the Redis limiter and breaker run on the Redis
server's clock, so virtual time cannot reach them.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import pytest

import redis
from lamina.testing import LocalServer, RecordedRequest
from lamina.testing.server import Reply

from .conftest import Workers


def command(redis_url: str, prefix: str, stack: dict[str, Any], url: str, **extra: Any) -> dict:
    return {"redis": redis_url, "prefix": prefix, "stack": stack, "url": url, **extra}


@pytest.mark.slow
@pytest.mark.timeout(40, func_only=True)
def test_four_processes_share_one_rate_limit(
    workers: Workers, redis_url: str, prefix: str, lamina_server: LocalServer
) -> None:
    rate, burst, seconds = 20, 5, 4.0  # 4 s: 20.00-20.09/s measured (5 s: 20.00-20.01)
    stack = {"rate": {"rate": rate, "period": 1.0, "burst": burst, "name": "shared-api"}}
    url = lamina_server.url_for("/json")
    # warm up each process's HTTP connection (not counted: other path, no limiter)
    workers.run([0, 1, 2, 3], command(redis_url, prefix, {}, lamina_server.url_for("/echo")))
    start = time.time() + 1.0
    cmd = command(redis_url, prefix, stack, url, at=start, until=start + seconds, tasks=2)
    replies = workers.run([0, 1, 2, 3], cmd)

    arrivals = sorted(lamina_server.arrivals("/json"))
    assert sum(r["count"] for r in replies) == len(arrivals)
    assert all(r["count"] > 0 for r in replies)  # every process got its share
    span = arrivals[-1] - arrivals[0]
    combined = (len(arrivals) - burst) / span  # the burst goes at once, the rest is paced
    assert abs(combined - rate) <= 0.05 * rate, f"{combined:.2f}/s for a limit of {rate}/s"
    busiest = max(
        sum(1 for t in arrivals[i:] if t < first + 1.0) for i, first in enumerate(arrivals)
    )
    assert busiest <= rate + burst, f"{busiest} calls in one second"
    assert span >= 0.8 * seconds  # the run lasted about as long as asked (loose: shared machines)


@pytest.mark.timeout(30, func_only=True)
def test_ten_processes_failing_at_once_open_at_exactly_threshold(
    workers: Workers,
    redis_url: str,
    prefix: str,
    sync_redis: redis.Redis,
    lamina_server: LocalServer,
) -> None:
    stack = {"breaker": {"threshold": 5, "timeout": 30.0, "name": "payments"}}
    url = lamina_server.url_for("/status/503?ms=200")
    cmd = command(redis_url, prefix, stack, url, at=time.time() + 1.0)
    replies = workers.run(list(range(10)), cmd)

    outcomes = [r["results"][0] for r in replies]
    record = sync_redis.hgetall(f"{prefix}:v1:breaker:{{payments}}")
    assert record[b"state"] == b"open"
    assert record[b"failures"] == b"5"  # purgatory's store left 10 here, and closed
    # every call that reached the upstream was admitted while closed; none after the trip
    assert lamina_server.hits("/status/503") == outcomes.count("ok:503:0")
    assert lamina_server.hits("/status/503") >= 5
    assert sync_redis.pttl(f"{prefix}:v1:breaker:{{payments}}") > 0


# func_only (every test here): the 10 workers start once per session, not on its clock
@pytest.mark.timeout(30, func_only=True)
def test_breaker_opened_in_one_process_rejects_in_others_then_one_probe(
    workers: Workers,
    redis_url: str,
    prefix: str,
    sync_redis: redis.Redis,
    lamina_server: LocalServer,
) -> None:
    # A long timeout: the breaker cannot half-open while the others are asked (with 1 s it
    # did, on a loaded machine); the test then moves the open period into the past.
    timeout = 30.0
    stack = {"breaker": {"threshold": 3, "timeout": timeout, "name": "search"}}
    key = f"{prefix}:v1:breaker:{{search}}"
    fail = lamina_server.url_for("/status/500")
    # process A: three failures open the breaker
    (a,) = workers.run([0], command(redis_url, prefix, stack, fail, n=3))
    assert a["results"] == ["ok:500:0"] * 3
    assert sync_redis.hget(key, "state") == b"open"

    # processes B..: rejected without touching the upstream
    probe_path = "/multiprocess-held-probe"
    held = lamina_server.url_for(probe_path)
    others = workers.run([1, 2, 3, 4], command(redis_url, prefix, stack, held, n=2))
    assert all(r["results"] == ["CircuitOpenError"] * 2 for r in others)
    assert lamina_server.hits(probe_path) == 0

    # the timeout passes (on the Redis server's clock, which the breaker uses)
    seconds, micros = sync_redis.time()
    sync_redis.hset(key, "opened", str(seconds * 1_000_000 + micros - int(timeout * 1e6) - 1))

    # 5 processes x 2 calls at the same instant -> exactly one probe. The upstream holds
    # the probe until the other processes have answered, so every other call is made
    # while it is in flight, however late a loaded machine runs a process.
    release = threading.Event()

    def hold(req: RecordedRequest) -> Reply:
        release.wait(20)
        return 200, {"probe": True}, {}

    lamina_server.route(probe_path, hold)
    team = [workers.all[i] for i in range(5)]
    cmd = command(redis_url, prefix, stack, held, n=2, at=time.time() + 0.3)
    for worker in team:
        worker.send(cmd)
    with ThreadPoolExecutor(len(team)) as pool:
        pending = [pool.submit(worker.receive) for worker in team]
        try:
            for answered, _ in enumerate(as_completed(pending, timeout=20), 1):
                if answered == len(team) - 1:  # all but the probe's process
                    break
        except TimeoutError:
            pass  # fewer answered (a second probe held too): the counts below fail
        finally:
            release.set()
        replies = [future.result(timeout=20) for future in pending]
    results = [x for r in replies for x in r["results"]]
    assert results.count("ok:200:0") == 1
    assert results.count("CircuitOpenError") == 9
    assert lamina_server.hits(probe_path) == 1
    assert sync_redis.hget(key, "state") == b"closed"

    # closed again everywhere
    (again,) = workers.run([5], command(redis_url, prefix, stack, held, n=2))
    assert again["results"] == ["ok:200:0"] * 2


@pytest.mark.timeout(30, func_only=True)
def test_cache_entry_from_one_process_is_a_hit_in_another_and_invalidation_is_shared(
    workers: Workers,
    redis_url: str,
    prefix: str,
    sync_redis: redis.Redis,
    lamina_server: LocalServer,
) -> None:
    stack = {"cache": {"ttl": 60}}
    url = lamina_server.url_for("/json?item=7")

    def fetch(i: int, **extra: Any) -> str:
        (reply,) = workers.run(
            [i], command(redis_url, prefix, stack, url, endpoint="items", **extra)
        )
        result: str = reply["results"][0]
        return result

    assert fetch(0) == "ok:200:0"
    assert fetch(1) == "ok:200:1"  # served from Redis in another process
    assert fetch(2) == "ok:200:1"
    assert lamina_server.hits("/json") == 1
    keys = [k for k in sync_redis.scan_iter(match=f"{prefix}:v1:cache:*")]
    assert len(keys) == 1
    assert keys[0].startswith(f"{prefix}:v1:cache:{{items}}:".encode())

    # process 3 invalidates the endpoint; processes 0 and 1 now miss, then share again
    assert fetch(3, invalidate="items") == "ok:200:0"
    assert fetch(0) == "ok:200:1"
    assert lamina_server.hits("/json") == 2
