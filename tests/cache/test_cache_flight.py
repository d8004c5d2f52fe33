"""SingleFlight: one execution per key; errors shared; a cancelled leader hands over."""

from __future__ import annotations

import asyncio
import threading

import pytest

from lamina.layers.cache.flight import SingleFlight

pytestmark = pytest.mark.timeout(10)


async def test_concurrent_callers_share_one_execution() -> None:
    flight: SingleFlight[dict[str, int]] = SingleFlight()
    gate = asyncio.Event()
    calls = 0

    async def fn() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return {"n": calls}

    tasks = [asyncio.create_task(flight.do("k", fn)) for _ in range(100)]
    await asyncio.sleep(0)
    assert flight.in_flight() == 1
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert [shared for _, shared in results].count(False) == 1
    assert all(value == {"n": 1} for value, _ in results)
    assert flight.in_flight() == 0


async def test_different_keys_run_separately() -> None:
    flight: SingleFlight[str] = SingleFlight()

    async def fn(key: str) -> str:
        await asyncio.sleep(0)
        return key

    results = await asyncio.gather(*(flight.do(k, lambda k=k: fn(k)) for k in "abc"))
    assert results == [("a", False), ("b", False), ("c", False)]


async def test_followers_get_the_leaders_error_without_calling_again() -> None:
    flight: SingleFlight[int] = SingleFlight()
    gate = asyncio.Event()
    calls = 0

    async def fn() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise ValueError("upstream down")

    tasks = [asyncio.create_task(flight.do("k", fn)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, ValueError) for r in results)
    assert flight.in_flight() == 0


async def test_cancelled_leader_hands_over_to_one_follower() -> None:
    flight: SingleFlight[str] = SingleFlight()
    started: list[str] = []
    gate = asyncio.Event()

    def make(name: str):  # type: ignore[no-untyped-def]
        async def fn() -> str:
            started.append(name)
            await gate.wait()
            return f"from {name}"

        return fn

    leader = asyncio.create_task(flight.do("k", make("leader")))
    await asyncio.sleep(0)
    followers = [asyncio.create_task(flight.do("k", make(f"f{i}"))) for i in range(5)]
    await asyncio.sleep(0)
    leader.cancel()
    for _ in range(20):  # let every follower wake and settle
        await asyncio.sleep(0)
    assert started == ["leader", "f0"]  # exactly one follower took over
    gate.set()
    results = await asyncio.gather(*followers)
    assert leader.cancelled()
    assert [value for value, _ in results] == ["from f0"] * 5
    assert [shared for _, shared in results] == [False, True, True, True, True]
    assert flight.in_flight() == 0


async def test_cancelled_follower_leaves_the_others_alone() -> None:
    flight: SingleFlight[int] = SingleFlight()
    gate = asyncio.Event()

    async def fn() -> int:
        await gate.wait()
        return 7

    leader = asyncio.create_task(flight.do("k", fn))
    quitter = asyncio.create_task(flight.do("k", fn))
    stayer = asyncio.create_task(flight.do("k", fn))
    await asyncio.sleep(0)
    quitter.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await leader == (7, False)
    assert await stayer == (7, True)
    assert quitter.cancelled()


def test_flights_are_per_event_loop() -> None:
    """Two loops (threads) calling the same key at once each lead their own call."""
    flight: SingleFlight[str] = SingleFlight()
    barrier = threading.Barrier(2, timeout=5)  # breaks unless both loops run fn
    results: list[tuple[str, bool]] = []

    async def fn() -> str:
        await asyncio.to_thread(barrier.wait)
        return threading.current_thread().name

    def run() -> None:
        results.append(asyncio.run(flight.do("k", fn)))

    threads = [threading.Thread(target=run, name=f"loop{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [("loop0", False), ("loop1", False)]
    assert repr(flight) == "SingleFlight()"  # no running loop here
