"""Review of RetryLayer's options: a flag that is not a bool fails at construction."""

from __future__ import annotations

import pytest

from lamina import ConfigError
from lamina.layers.retry import RetryLayer, StatusRetryPolicy


@pytest.mark.parametrize("value", ["no", "false", 0, 1])
def test_jitter_must_be_a_bool(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        RetryLayer(jitter=value)  # type: ignore[arg-type]
    assert info.value.field == "jitter"
    with pytest.raises(ConfigError) as info:
        StatusRetryPolicy(jitter=value)  # type: ignore[arg-type]
    assert info.value.field == "jitter"


@pytest.mark.parametrize("value", ["no", 0, 1])
def test_idempotency_key_must_be_a_bool(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        RetryLayer(idempotency_key=value)  # type: ignore[arg-type]
    assert info.value.field == "idempotency_key"


def test_bools_are_still_accepted() -> None:
    assert RetryLayer(jitter=False, idempotency_key=True).idempotency_key is True
    assert StatusRetryPolicy(jitter=False).jitter is False


def test_jitter_at_the_cap_stays_within_half_to_all_of_max_delay() -> None:
    import random

    layer = RetryLayer(backoff=1.0, max_delay=3.0, random=random.Random(7))
    policy = layer.policy
    assert isinstance(policy, StatusRetryPolicy)
    bounds = {1: (0.5, 1.0), 2: (1.0, 2.0), 3: (1.5, 3.0), 9: (1.5, 3.0)}
    for attempt, (low, high) in bounds.items():
        waits = [policy.backoff_delay(attempt) for _ in range(500)]
        assert low <= min(waits)
        assert max(waits) <= high
        assert max(waits) - min(waits) > (high - low) / 2  # spread, not a fixed value


@pytest.mark.parametrize("value", [42, "seed", object()])
def test_random_without_uniform_fails_at_construction(value: object) -> None:
    """It failed on the first retry with an AttributeError instead."""
    with pytest.raises(ConfigError) as info:
        RetryLayer(random=value)  # type: ignore[arg-type]
    assert info.value.field == "random"
    with pytest.raises(ConfigError):
        StatusRetryPolicy(random=value)  # type: ignore[arg-type]


def test_a_seeded_random_or_the_module_is_accepted() -> None:
    import random

    assert 0.25 <= RetryLayer(random=random.Random(3)).policy.backoff_delay(1) <= 0.5  # type: ignore[attr-defined]
    assert 0.25 <= StatusRetryPolicy(random=random).backoff_delay(1) <= 0.5  # type: ignore[arg-type]


def test_a_clock_without_now_and_sleep_fails_at_construction() -> None:
    with pytest.raises(ConfigError) as info:
        RetryLayer(clock=5)  # type: ignore[arg-type]
    assert info.value.field == "clock"


def test_a_wall_clock_that_is_not_callable_fails_at_construction() -> None:
    with pytest.raises(ConfigError) as info:
        StatusRetryPolicy(wall_clock=1.7e9)  # type: ignore[arg-type]
    assert info.value.field == "wall_clock"
