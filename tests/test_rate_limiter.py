"""RateLimiter: per-minute request and token budgets, on an injected clock (no real waiting)."""

from __future__ import annotations

import asyncio
import types

import pytest

from agents import rate_limiter
from agents.rate_limiter import RateLimiter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> list[float]:
    """asyncio.sleep inside the limiter advances the fake clock instead of waiting."""
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    monkeypatch.setattr(rate_limiter, "asyncio", types.SimpleNamespace(sleep=fake_sleep, Lock=asyncio.Lock))
    return slept


def test_no_delay_under_budget(clock: FakeClock) -> None:
    limiter = RateLimiter(60, 10_000, clock=clock)

    assert limiter.delay_for(0) == 0
    assert limiter.delay_for(10_000) == 0


async def test_requests_within_the_rpm_budget_do_not_wait(clock: FakeClock, sleeps: list[float]) -> None:
    limiter = RateLimiter(5, 10_000, clock=clock)

    waited = [await limiter.acquire(10) for _ in range(5)]

    assert waited == [0.0] * 5
    assert sleeps == []


async def test_over_the_rpm_budget_the_delay_is_the_refill_time(clock: FakeClock, sleeps: list[float]) -> None:
    limiter = RateLimiter(60, 1_000_000, clock=clock)  # one request per second
    for _ in range(60):
        await limiter.acquire()

    assert limiter.delay_for(0) == pytest.approx(1.0)
    clock.advance(0.25)
    assert limiter.delay_for(0) == pytest.approx(0.75)
    clock.advance(0.75)
    assert limiter.delay_for(0) == 0


async def test_over_the_tpm_budget_the_delay_is_the_token_refill_time(clock: FakeClock, sleeps: list[float]) -> None:
    limiter = RateLimiter(1000, 600, clock=clock)  # ten tokens per second
    await limiter.acquire(500)

    assert limiter.delay_for(100) == 0
    assert limiter.delay_for(400) == pytest.approx(30.0)  # 300 missing tokens at 10/s
    clock.advance(10)
    assert limiter.delay_for(400) == pytest.approx(20.0)


def test_a_request_larger_than_the_budget_is_capped_to_it(clock: FakeClock) -> None:
    limiter = RateLimiter(60, 600, clock=clock)

    assert limiter.delay_for(5000) == 0


def test_the_delay_is_the_larger_of_the_two_budgets(clock: FakeClock) -> None:
    limiter = RateLimiter(60, 600, clock=clock)
    limiter._requests, limiter._tokens = 0.0, 0.0

    assert limiter.delay_for(300) == pytest.approx(30.0)  # tokens: 30 s; requests: 1 s
    assert limiter.delay_for(1) == pytest.approx(1.0)  # requests: 1 s; tokens: 0.1 s


def test_buckets_refill_only_up_to_the_budget(clock: FakeClock) -> None:
    limiter = RateLimiter(60, 600, clock=clock)
    clock.advance(3600)

    limiter.delay_for(0)

    assert limiter._requests == 60
    assert limiter._tokens == 600


async def test_acquire_sleeps_until_the_request_fits_and_reports_the_wait(
    clock: FakeClock, sleeps: list[float]
) -> None:
    limiter = RateLimiter(2, 1_000_000, clock=clock)  # one request per 30 s

    assert await limiter.acquire() == 0
    assert await limiter.acquire() == 0
    waited = await limiter.acquire()

    assert waited == pytest.approx(30.0)
    assert sum(sleeps) == pytest.approx(30.0)
    assert clock.now == pytest.approx(1030.0)


async def test_record_charges_tokens_learned_after_the_reply(clock: FakeClock, sleeps: list[float]) -> None:
    limiter = RateLimiter(1000, 600, clock=clock)
    await limiter.acquire(100)
    assert limiter.delay_for(500) == 0

    limiter.record(300)

    assert limiter.delay_for(500) == pytest.approx(30.0)  # 200 left, 300 missing at 10/s


def test_budgets_below_one_are_treated_as_one(clock: FakeClock) -> None:
    limiter = RateLimiter(0, 0, clock=clock)

    assert (limiter.rpm, limiter.tpm) == (1, 1)
    assert limiter.delay_for(0) == 0
