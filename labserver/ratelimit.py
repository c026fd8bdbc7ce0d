"""Token-bucket rate limiting, and back-off after failures (sans-I/O: the caller passes the clock)."""

from __future__ import annotations

import math


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

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until a token is available (0 if one is)."""
        tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate


class Backoff:
    """Failures per key (a username, an IP): the first ``free`` cost nothing, each one after
    that shuts the key out for twice as long as the last (``base`` seconds first, at most
    ``cap``). A success clears the key. At most ``max_keys`` are remembered (the oldest go):
    a flood of made-up names cannot grow the memory."""

    __slots__ = ("free", "base", "cap", "max_keys", "_failures", "_until")

    def __init__(self, free: int, base: float = 1.0, cap: float = 60.0, max_keys: int = 10_000) -> None:
        self.free, self.base, self.cap, self.max_keys = free, base, cap, max_keys
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}

    def wait(self, key: str, now: float) -> float:
        """Seconds ``key`` must still wait before its next attempt (0: go ahead)."""
        return max(0.0, self._until.get(key, 0.0) - now)

    def failed(self, key: str, now: float) -> None:
        count = self._failures.pop(key, 0) + 1
        self._failures[key] = count  # re-inserted: the dict's order is the age of the last failure
        if count > self.free:
            self._until[key] = now + min(self.cap, self.base * 2 ** (count - self.free - 1))
        while len(self._failures) > self.max_keys:
            oldest = next(iter(self._failures))
            del self._failures[oldest]
            self._until.pop(oldest, None)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
        self._until.pop(key, None)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` header value: whole seconds, rounded up, at least 1 (RFC 9110 section 10.2.3)."""
    return str(max(1, math.ceil(seconds)))
