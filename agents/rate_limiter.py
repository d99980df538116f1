"""A per-provider rate limiter: requests per minute and tokens per minute (token buckets)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class RateLimiter:
    """Waits until a request (and its expected tokens) fits both per-minute budgets."""

    def __init__(
        self, requests_per_minute: int, tokens_per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rpm = max(1, requests_per_minute)
        self.tpm = max(1, tokens_per_minute)
        self._clock = clock
        self._requests = float(self.rpm)
        self._tokens = float(self.tpm)
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed, self._stamp = now - self._stamp, now
        self._requests = min(self.rpm, self._requests + elapsed * self.rpm / 60)
        self._tokens = min(self.tpm, self._tokens + elapsed * self.tpm / 60)

    def delay_for(self, tokens: int) -> float:
        """Seconds until one request of `tokens` tokens fits (0 if it fits now)."""
        self._refill()
        tokens = min(tokens, self.tpm)
        need_requests = max(0.0, 1 - self._requests) * 60 / self.rpm
        need_tokens = max(0.0, tokens - self._tokens) * 60 / self.tpm
        return max(need_requests, need_tokens)

    async def acquire(self, tokens: int = 0) -> float:
        """Take one request and `tokens` tokens, sleeping as needed; returns the time waited."""
        waited = 0.0
        async with self._lock:
            while (delay := self.delay_for(tokens)) > 0:
                await asyncio.sleep(delay)
                waited += delay
            self._requests -= 1
            self._tokens -= min(tokens, self.tpm)
        return waited

    def record(self, extra_tokens: int) -> None:
        """Charge tokens learned only after the reply (completion tokens)."""
        self._refill()
        self._tokens -= extra_tokens
