import bisect
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina import ConfigError
from lamina.layers.rate_limit.bucket import EPSILON, Bucket


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": -1}, "rate"),
        ({"rate": True}, "rate"),
        ({"rate": math.inf}, "rate"),
        ({"rate": "10"}, "rate"),
        ({"rate": 1, "period": 0}, "period"),
        ({"rate": 1, "period": math.nan}, "period"),
        ({"rate": 1, "burst": 0}, "burst"),
        ({"rate": 1, "burst": 1.5}, "burst"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Bucket(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_defaults() -> None:
    assert (Bucket(10).burst, Bucket(10).window) == (10, 10)
    assert (Bucket(0.5).burst, Bucket(0.5).window) == (1, 1)
    assert (Bucket(2.5).burst, Bucket(2.5).window) == (2, 3)
    assert Bucket(10, 60, burst=5).window == 10
    assert Bucket(10, 1, burst=20).window == 20


def drive(bucket: Bucket, times: list[float], weight: int = 1) -> list[float]:
    """Admit ``weight`` at each wanted time or at the earliest time after it."""
    admitted = []
    now = 0.0
    for want in times:
        now = max(now, want)
        now = bucket.earliest(weight, now)
        assert bucket.fits(weight, now)
        bucket.consume(weight, now)
        admitted.append(now)
    return admitted


def test_reference_example_burst_5_of_10_per_minute() -> None:
    # "rate_limit=10 per minute with burst_limit=5": 5 at once, 10 in any minute.
    got = drive(Bucket(10, 60, burst=5), [0.0] * 15)
    assert got[:5] == [0.0] * 5
    assert got[5:10] == pytest.approx([6, 12, 18, 24, 30])
    assert got[10:15] == pytest.approx([60] * 5)


def test_default_burst_is_a_strict_window() -> None:
    got = drive(Bucket(10, 1), [0.0] * 30)
    assert got == pytest.approx([0.0] * 10 + [1.0] * 10 + [2.0] * 10)


def test_burst_one_spaces_evenly() -> None:
    got = drive(Bucket(4, 1, burst=1), [0.0] * 5)
    assert got == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


def test_weights_count_as_many_admissions() -> None:
    bucket = Bucket(10, 1, burst=10)
    assert bucket.fits(10, 0.0)
    bucket.consume(7, 0.0)
    assert bucket.available(0.0) == 3
    assert not bucket.fits(4, 0.0)
    assert bucket.earliest(4, 0.0) == pytest.approx(1.0)  # the window, not the bucket, binds


def test_refund_gives_capacity_back() -> None:
    bucket = Bucket(2, 1, burst=2)
    bucket.consume(2, 5.0)
    assert bucket.available(5.0) == 0
    bucket.refund(1, 5.0)
    assert bucket.available(5.0) == 1
    bucket.clear()
    assert bucket.available(5.0) == 2


@settings(max_examples=150, deadline=None)
@given(
    rate=st.integers(1, 30),
    period=st.sampled_from([0.1, 1.0, 0.7, 60.0]),
    burst=st.integers(1, 40),
    gaps=st.lists(st.floats(0, 2), min_size=1, max_size=150),
    weights=st.lists(st.integers(1, 40), min_size=150, max_size=150),
)
def test_window_and_instant_bounds_hold_for_any_arrivals(
    rate: int, period: float, burst: int, gaps: list[float], weights: list[int]
) -> None:
    bucket = Bucket(rate, period, burst=burst)
    now, stamps = 0.0, []
    for gap, weight in zip(gaps, weights, strict=False):
        weight = min(weight, burst)
        now = bucket.earliest(weight, now + gap * period)
        bucket.consume(weight, now)
        stamps += [now] * weight
    for i, start in enumerate(stamps):
        # any window of one period holds at most `window` (up to the timer tolerance)
        assert bisect.bisect_left(stamps, start + period - 2 * EPSILON) - i <= bucket.window
        # at one instant, at most `burst`
        assert bisect.bisect_right(stamps, start) - bisect.bisect_left(stamps, start) <= burst
    # never faster than the rate in the long run: burst + rate * elapsed / period
    assert len(stamps) <= burst + rate * (stamps[-1] - stamps[0]) / period + 1e-6
