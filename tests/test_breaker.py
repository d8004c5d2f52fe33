"""The standalone CircuitBreaker and its state machine (lamina.layers.circuit_breaker).

The last section, ``test_purgatory_fact_*``, pins the measured behaviour of
purgatory 3.0.1 that made us write our own state machine instead of using it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import traceback

import pytest

from lamina import CircuitOpenError, ConfigError
from lamina.layers.circuit_breaker import (
    BreakerMachine,
    BreakerRecord,
    CircuitBreaker,
    CircuitState,
    MemoryBreakerStore,
    Outcome,
    StateChange,
)
from lamina.testing import ManualClock


class Boom(Exception):
    pass


async def fail() -> None:
    raise Boom("down")


async def ok(value: str = "ok") -> str:
    return value


async def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.threshold):
        with pytest.raises(Boom):
            await breaker.call(fail)
    assert breaker.state is CircuitState.OPEN


# -- configuration ---------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0, -1, 1.5, True, "3"])
def test_threshold_must_be_int_at_least_one(threshold: object) -> None:
    with pytest.raises(ConfigError) as info:
        CircuitBreaker(threshold=threshold)  # type: ignore[arg-type]
    assert info.value.field == "threshold"


@pytest.mark.parametrize("timeout", [0, -1.0, "30", float("inf"), float("nan")])
def test_timeout_must_be_positive_number(timeout: object) -> None:
    with pytest.raises(ConfigError) as info:
        CircuitBreaker(timeout=timeout)  # type: ignore[arg-type]
    assert info.value.field == "timeout"


def test_none_means_the_default_as_in_the_layer() -> None:
    breaker = CircuitBreaker(threshold=None, timeout=None)
    assert (breaker.threshold, breaker.timeout) == (3, 30.0)


def test_other_fields_are_validated() -> None:
    with pytest.raises(ConfigError) as info:
        CircuitBreaker(exclude=("ValueError",))  # type: ignore[arg-type]
    assert info.value.field == "exclude"
    with pytest.raises(ConfigError) as info:
        CircuitBreaker(name="")
    assert info.value.field == "name"
    with pytest.raises(ConfigError) as info:
        CircuitBreaker().on_state_change("not callable")  # type: ignore[arg-type]
    assert info.value.field == "callback"


def test_defaults_match_the_reference_and_state_is_a_string_enum() -> None:
    breaker = CircuitBreaker()
    assert (breaker.threshold, breaker.timeout) == (3, 30.0)
    assert breaker.state == "closed"
    assert CircuitState.HALF_OPEN == "half_open"
    assert [s.value for s in CircuitState] == ["closed", "open", "half_open"]
    assert breaker.failure_count == 0
    assert breaker.opened_at is None


# -- counting -------------------------------------------------------------------


async def test_opens_after_threshold_consecutive_failures(manual_clock: ManualClock) -> None:
    breaker = CircuitBreaker(threshold=3, timeout=30.0, name="users", clock=manual_clock)
    for expected in (1, 2):
        with pytest.raises(Boom):
            await breaker.call(fail)
        assert breaker.failure_count == expected
        assert breaker.state is CircuitState.CLOSED
    manual_clock.advance(5)
    with pytest.raises(Boom):
        await breaker.call(fail)
    assert breaker.state is CircuitState.OPEN
    assert breaker.opened_at == 5.0
    assert breaker.failure_count == 3


async def test_a_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker(threshold=2)
    with pytest.raises(Boom):
        await breaker.call(fail)
    assert await breaker.call(ok) == "ok"
    assert breaker.failure_count == 0
    with pytest.raises(Boom):
        await breaker.call(fail)
    assert breaker.state is CircuitState.CLOSED


async def test_open_breaker_rejects_without_calling(manual_clock: ManualClock) -> None:
    breaker = CircuitBreaker(threshold=1, timeout=30.0, name="users", clock=manual_clock)
    await trip(breaker)
    calls = 0

    async def counted() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    manual_clock.advance(10)
    with pytest.raises(CircuitOpenError) as info:
        await breaker.call(counted)
    assert calls == 0
    assert info.value.endpoint == "users"
    assert info.value.retry_after == pytest.approx(20.0)
    assert "'users' is open" in str(info.value)


async def test_sync_and_async_callables() -> None:
    breaker = CircuitBreaker(threshold=2)

    def add(a: int, b: int) -> int:
        return a + b

    def sync_fail() -> None:
        raise Boom("sync")

    assert await breaker.call(add, 2, b=3) == 5
    assert await breaker.call(ok, "async") == "async"
    assert await breaker.call(lambda: ok("lambda")) == "lambda"  # returns an awaitable
    with pytest.raises(Boom):
        await breaker.call(sync_fail)
    with pytest.raises(Boom):
        await breaker.call(fail)
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        await breaker.call(add, 1, 1)


async def test_excluded_exceptions_are_not_failures() -> None:
    breaker = CircuitBreaker(threshold=2, exclude=(KeyError,))

    def lookup() -> None:
        raise KeyError("missing")

    with pytest.raises(Boom):
        await breaker.call(fail)
    for _ in range(5):
        with pytest.raises(KeyError):
            await breaker.call(lookup)
    assert breaker.failure_count == 0  # the dependency answered: counts as success
    assert breaker.state is CircuitState.CLOSED


# -- virtual time: open -> half-open -> closed / open ----------------------------


async def test_half_open_after_timeout_then_probe_success_closes(
    manual_clock: ManualClock,
) -> None:
    changes: list[StateChange] = []
    breaker = CircuitBreaker(threshold=2, timeout=30.0, name="svc", clock=manual_clock)
    breaker.on_state_change(changes.append)
    for _ in range(2):
        with pytest.raises(Boom):
            await breaker.call(fail)
    manual_clock.advance(29.999)
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as info:
        await breaker.call(ok)
    assert info.value.retry_after == pytest.approx(0.001)
    manual_clock.advance(0.001)
    assert breaker.state is CircuitState.HALF_OPEN  # visible once the timeout passed
    assert await breaker.call(ok) == "ok"
    assert breaker.state is CircuitState.CLOSED
    assert breaker.failure_count == 0
    assert breaker.opened_at is None
    assert [(c.old, c.new, c.at) for c in changes] == [
        ("closed", "open", 0.0),
        ("open", "half_open", 30.0),
        ("half_open", "closed", 30.0),
    ]
    assert all(c.name == "svc" for c in changes)


async def test_probe_failure_reopens_for_another_timeout(manual_clock: ManualClock) -> None:
    breaker = CircuitBreaker(threshold=1, timeout=10.0, clock=manual_clock)
    await trip(breaker)
    manual_clock.advance(10)
    with pytest.raises(Boom):
        await breaker.call(fail)  # the probe
    assert breaker.state is CircuitState.OPEN
    assert breaker.opened_at == 10.0
    manual_clock.advance(9)
    with pytest.raises(CircuitOpenError) as info:
        await breaker.call(ok)
    assert info.value.retry_after == pytest.approx(1.0)
    manual_clock.advance(1)
    assert await breaker.call(ok) == "ok"
    assert breaker.state is CircuitState.CLOSED


async def test_exactly_one_probe_among_100_concurrent_callers(manual_clock: ManualClock) -> None:
    breaker = CircuitBreaker(threshold=1, timeout=5.0, clock=manual_clock)
    await trip(breaker)
    manual_clock.advance(5)
    gate = asyncio.Event()
    entered = 0

    async def slow() -> str:
        nonlocal entered
        entered += 1
        await gate.wait()
        return "probe"

    tasks = [asyncio.create_task(breaker.call(slow)) for _ in range(100)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert entered == 1
    rejected = [t for t in tasks if t.done()]
    assert len(rejected) == 99  # rejected at once, not queued behind the probe
    for task in rejected:
        assert isinstance(task.exception(), CircuitOpenError)
        assert task.exception().retry_after == 5.0  # type: ignore[union-attr]
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count("probe") == 1
    assert breaker.state is CircuitState.CLOSED


# -- cancellation is neutral ----------------------------------------------------------


async def test_cancelled_call_is_neutral_while_closed() -> None:
    breaker = CircuitBreaker(threshold=3)
    for _ in range(2):
        with pytest.raises(Boom):
            await breaker.call(fail)
    for _ in range(5):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await breaker.call(asyncio.sleep, 10)
    task = asyncio.create_task(breaker.call(asyncio.sleep, 10))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.failure_count == 2  # not failures, and not successes either
    assert breaker.state is CircuitState.CLOSED
    with pytest.raises(Boom):
        await breaker.call(fail)
    assert breaker.state is CircuitState.OPEN


async def test_cancelled_probe_frees_the_slot(manual_clock: ManualClock) -> None:
    breaker = CircuitBreaker(threshold=1, timeout=5.0, clock=manual_clock)
    await trip(breaker)
    manual_clock.advance(5)
    probe = asyncio.create_task(breaker.call(asyncio.sleep, 10))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpenError):
        await breaker.call(ok)  # the slot is taken
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is CircuitState.HALF_OPEN  # neither closed nor re-opened
    assert await breaker.call(ok, "next probe") == "next probe"
    assert breaker.state is CircuitState.CLOSED


# -- rejections and hooks ----------------------------------------------------------------


async def test_every_rejection_is_a_fresh_error_with_a_short_traceback() -> None:
    breaker = CircuitBreaker(threshold=1, name="orders")
    await trip(breaker)
    errors: list[CircuitOpenError] = []
    for _ in range(20):
        try:
            await breaker.call(ok)
        except CircuitOpenError as exc:
            errors.append(exc)
    assert len({id(e) for e in errors}) == 20
    depths = {len(traceback.extract_tb(e.__traceback__)) for e in errors}
    assert len(depths) == 1
    assert depths.pop() <= 3
    assert all(e.__cause__ is None and e.__context__ is None for e in errors)
    assert all(e.endpoint == "orders" for e in errors)


async def test_raising_hook_never_changes_the_outcome(caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker(threshold=1, timeout=1.0, name="x", clock=ManualClock())
    seen: list[StateChange] = []

    @breaker.on_state_change
    def broken(change: StateChange) -> None:
        raise RuntimeError("hook bug")

    breaker.on_state_change(seen.append)  # later hooks still run
    with caplog.at_level(logging.ERROR, logger="lamina.breaker"), pytest.raises(Boom):
        await breaker.call(fail)
    assert breaker.state is CircuitState.OPEN
    assert [(c.old, c.new) for c in seen] == [("closed", "open")]
    assert "state-change hook failed" in caplog.text
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen[0].new = CircuitState.CLOSED  # type: ignore[misc]


async def test_hook_raising_on_probe_success_still_returns_value() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(threshold=1, timeout=1.0, clock=clock)
    await trip(breaker)
    breaker.on_state_change(lambda change: 1 / 0)
    clock.advance(1)
    assert await breaker.call(ok, "value") == "value"
    assert breaker.state is CircuitState.CLOSED


async def test_reset_and_repr(manual_clock: ManualClock) -> None:
    breaker = CircuitBreaker(threshold=2, name="billing", clock=manual_clock)
    with pytest.raises(Boom):
        await breaker.call(fail)
    assert repr(breaker) == "<CircuitBreaker name='billing' state=closed failures=1>"
    with pytest.raises(Boom):
        await breaker.call(fail)
    assert repr(breaker) == "<CircuitBreaker name='billing' state=open failures=2>"
    changes: list[StateChange] = []
    breaker.on_state_change(changes.append)
    await breaker.reset()
    assert repr(breaker) == "<CircuitBreaker name='billing' state=closed failures=0>"
    assert [(c.old, c.new) for c in changes] == [("open", "closed")]


async def test_breakers_sharing_a_backend_are_separate_by_name() -> None:
    backend = MemoryBreakerStore()
    a = CircuitBreaker(threshold=1, name="a", backend=backend)
    b = CircuitBreaker(threshold=1, name="b", backend=backend)
    a_again = CircuitBreaker(threshold=1, name="a", backend=backend)
    await trip(a)
    assert b.state is CircuitState.CLOSED
    assert a_again.state is CircuitState.OPEN  # same name, same stored record


# -- the machine on its own ---------------------------------------------------------------


def test_late_results_of_calls_admitted_while_closed_do_not_move_an_open_breaker() -> None:
    machine = BreakerMachine(threshold=2, timeout=10.0)
    rec = BreakerRecord()
    permits = [machine.acquire(rec, 0.0)[0] for _ in range(4)]  # four calls in flight
    assert machine.release(rec, permits[0], Outcome.FAILURE, 1.0) is None
    assert machine.release(rec, permits[1], Outcome.FAILURE, 2.0) == ("closed", "open")
    assert machine.release(rec, permits[2], Outcome.FAILURE, 3.0) is None
    assert machine.release(rec, permits[3], Outcome.SUCCESS, 4.0) is None
    assert (rec.state, rec.opened_at, rec.failure_count) == ("open", 2.0, 2)


# -- purgatory 3.0.1: the measured facts behind writing our own machine ----------------------
# Each test pins a behaviour of purgatory that lamina's breaker must not have. If one of
# them starts failing, purgatory changed: revisit the decision in docs/layers/circuit-breaker.md.

purgatory = pytest.importorskip("purgatory")


async def _purgatory_trip(factory: object, name: str, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            async with await factory.get_breaker(name):  # type: ignore[attr-defined]
                raise Boom


async def test_purgatory_fact_half_open_admits_every_concurrent_caller() -> None:
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=30)
    await _purgatory_trip(factory, "a", 1)
    (await factory.get_breaker("a")).context._state.opened_at -= 31  # ttl elapsed
    gate, entered = asyncio.Event(), 0

    async def caller() -> None:
        nonlocal entered
        async with await factory.get_breaker("a"):
            entered += 1
            await gate.wait()

    tasks = [asyncio.create_task(caller()) for _ in range(100)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert entered == 100
    gate.set()
    await asyncio.gather(*tasks)


async def test_purgatory_fact_cancellation_is_a_failure_or_a_success() -> None:
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)

    async def hang(f: object, name: str) -> None:
        async with await f.get_breaker(name):  # type: ignore[attr-defined]
            await asyncio.sleep(10)

    task = asyncio.create_task(hang(factory, "b"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await factory.get_breaker("b")).context.failure_count == 1  # counted as failure

    excluding = purgatory.AsyncCircuitBreakerFactory(
        default_threshold=1, default_ttl=30, exclude=[asyncio.CancelledError]
    )
    await _purgatory_trip(excluding, "c", 1)
    (await excluding.get_breaker("c")).context._state.opened_at -= 31
    task = asyncio.create_task(hang(excluding, "c"))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # a cancelled half-open probe closed the breaker: counted as a success
    assert (await excluding.get_breaker("c")).context.state == "closed"


async def test_purgatory_fact_same_rejection_instance_with_growing_traceback() -> None:
    from purgatory.domain.model import OpenedState

    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=30)
    await _purgatory_trip(factory, "d", 1)
    seen: list[tuple[BaseException, int]] = []
    for _ in range(3):
        try:
            async with await factory.get_breaker("d"):
                pass
        except OpenedState as exc:
            seen.append((exc, len(traceback.extract_tb(exc.__traceback__))))
    assert seen[0][0] is seen[1][0] is seen[2][0]
    assert seen[0][1] < seen[1][1] < seen[2][1]


async def test_purgatory_fact_wall_clock_only_and_hooks_propagate() -> None:
    import inspect
    import time

    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=30)
    assert "clock" not in inspect.signature(purgatory.AsyncCircuitBreakerFactory).parameters
    await _purgatory_trip(factory, "e", 1)
    opened_at = (await factory.get_breaker("e")).context.opened_at
    assert abs(opened_at - time.time()) < 60  # epoch seconds, not the loop's monotonic clock

    def hook(name: str, kind: str, event: object) -> None:
        raise RuntimeError("hook bug")

    factory.add_listener(hook)
    with pytest.raises(RuntimeError, match="hook bug"):
        async with await factory.get_breaker("f"):
            pass
