"""Token-bucket rate limiting (sans-I/O: the caller passes the clock)."""

from __future__ import annotations


class TokenBucket:
    """Allows ``rate`` events per second on average and bursts of up to ``burst``.

    Each event takes one token; tokens refill continuously. Slotted and small,
    because every open socket owns one.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got rate={rate} burst={burst}")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def allow(self, now: float) -> bool:
        """Take a token if one is available at time ``now``."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
