"""Unit tests of labserver.ratelimit: the token bucket (the caller passes the clock)."""

from __future__ import annotations

import pytest

from labserver.ratelimit import TokenBucket


def drain(bucket: TokenBucket, now: float) -> int:
    n = 0
    while bucket.allow(now):
        n += 1
        assert n < 10_000
    return n


def test_burst_then_refused() -> None:
    bucket = TokenBucket(rate=2, burst=5, now=0.0)
    assert drain(bucket, 0.0) == 5
    assert not bucket.allow(0.0)


def test_refills_at_rate() -> None:
    bucket = TokenBucket(rate=2, burst=5, now=0.0)
    drain(bucket, 0.0)
    assert not bucket.allow(0.25)  # half a token
    assert bucket.allow(0.5)  # one token after 0.5 s at 2/s
    assert not bucket.allow(0.5)
    assert drain(bucket, 2.0) == 3  # 1.5 s more: three tokens


def test_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    drain(bucket, 0.0)
    assert drain(bucket, 1000.0) == 3


def test_average_rate_over_a_long_run() -> None:
    bucket = TokenBucket(rate=20, burst=40, now=0.0)
    allowed = sum(bucket.allow(i * 0.001) for i in range(10_001))  # 1,000 attempts/s for 10 s
    assert allowed == pytest.approx(40 + 20 * 10, abs=2)


def test_clock_going_backwards_does_not_mint_tokens() -> None:
    bucket = TokenBucket(rate=1, burst=2, now=100.0)
    drain(bucket, 100.0)
    assert not bucket.allow(50.0)
    assert not bucket.allow(100.5)
    assert bucket.allow(101.0)


def test_fractional_rate_and_burst() -> None:
    bucket = TokenBucket(rate=0.5, burst=1.5, now=0.0)
    assert bucket.allow(0.0)
    assert not bucket.allow(0.0)  # 0.5 left
    assert bucket.allow(1.0)  # 0.5 + 0.5


@pytest.mark.parametrize(("rate", "burst"), [(0, 5), (-1, 5), (1, 0), (1, 0.5), (1, -3)])
def test_invalid_args(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        TokenBucket(rate, burst, 0.0)


def test_is_slotted() -> None:
    bucket = TokenBucket(1, 1, 0.0)
    with pytest.raises(AttributeError):
        bucket.extra = 1  # type: ignore[attr-defined]
