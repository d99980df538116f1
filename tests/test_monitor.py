"""`ResourceMonitor`: the spawn gate with hysteresis, its CSV log, its thread."""

from __future__ import annotations

import asyncio
import csv
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from orchestration.config import MonitorConfig
from orchestration.monitor import Reading, ResourceMonitor, psutil_sampler

LIMITS = MonitorConfig(interval_s=0.01, cpu_percent=80, memory_percent=85, disk_percent=90, hysteresis_percent=5)


def sequence(readings: Iterable[Reading]) -> Callable[[], Reading]:
    items = iter(list(readings))
    return lambda: next(items)


def gate_after_each(readings: list[Reading], config: MonitorConfig = LIMITS) -> list[bool]:
    monitor = ResourceMonitor(config, sequence(readings))
    return [monitor.sample_once() is not None and monitor.can_spawn for _ in readings]


def test_low_readings_allow_spawning() -> None:
    assert gate_after_each([Reading(10, 20, 30), Reading(79.9, 84.9, 89.9)]) == [True, True]


@pytest.mark.parametrize(
    "reading",
    [Reading(80, 0, 0), Reading(0, 85, 0), Reading(0, 0, 90), Reading(99, 99, 99)],
    ids=["cpu", "memory", "disk", "all"],
)
def test_each_limit_blocks(reading: Reading) -> None:
    assert gate_after_each([Reading(0, 0, 0), reading]) == [True, False]


def test_stays_blocked_until_every_reading_is_below_limit_minus_hysteresis() -> None:
    readings = [
        Reading(85, 50, 50),    # cpu over → blocked
        Reading(79, 50, 50),    # below the limit but within the hysteresis band → still blocked
        Reading(76, 50, 50),    # still within the band → still blocked
        Reading(74, 82, 50),    # cpu clear, memory within its band (85 - 5 = 80) → still blocked
        Reading(74, 79, 86),    # disk within its band (90 - 5 = 85) → still blocked
        Reading(74, 79, 84),    # every reading clear → resumed
        Reading(79, 84, 89),    # not blocked: near, not at, the limits → stays open
        Reading(80, 0, 0),      # at the limit → blocked again
    ]
    assert gate_after_each(readings) == [False, False, False, False, False, True, True, False]


def test_latest_reading_is_kept() -> None:
    monitor = ResourceMonitor(LIMITS, sequence([Reading(1, 2, 3)]))
    assert monitor.latest is None
    monitor.sample_once()
    assert monitor.latest == Reading(1, 2, 3)


def test_resources_log_is_csv_with_a_header(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "resources.log"
    readings = [Reading(10, 20, 30), Reading(95, 20, 30), Reading(10, 20, 30)]
    monitor = ResourceMonitor(LIMITS, sequence(readings), log_path=log)
    for _ in readings:
        monitor.sample_once()
    rows = list(csv.reader(log.read_text().splitlines()))
    assert rows[0] == ["timestamp", "cpu_percent", "memory_percent", "disk_percent", "can_spawn"]
    assert [row[1:] for row in rows[1:]] == [
        ["10", "20", "30", "1"], ["95", "20", "30", "0"], ["10", "20", "30", "1"],
    ]
    assert all(float(row[0]) > 0 for row in rows[1:])
    # a second monitor appends to the same log without a second header
    again = ResourceMonitor(LIMITS, sequence([Reading(1, 1, 1)]), log_path=log)
    again.sample_once()
    rows = list(csv.reader(log.read_text().splitlines()))
    assert len(rows) == 5 and rows[0][0] == "timestamp" and rows[4][1:] == ["1", "1", "1", "1"]


def test_thread_samples_and_stops_promptly(tmp_path: Path) -> None:
    sampled = threading.Event()
    count = 0

    def sampler() -> Reading:
        nonlocal count
        count += 1
        if count >= 3:
            sampled.set()
        return Reading(1, 1, 1)

    monitor = ResourceMonitor(MonitorConfig(interval_s=0.01), sampler, log_path=tmp_path / "resources.log")
    assert monitor.daemon
    monitor.start()
    assert sampled.wait(5), "the thread did not sample repeatedly"
    monitor.stop(timeout_s=5)
    assert not monitor.is_alive()
    stopped_at = count
    time.sleep(0.05)
    assert count == stopped_at, "sampled after stop()"


def test_stop_interrupts_a_long_interval() -> None:
    first = threading.Event()

    def sampler() -> Reading:
        first.set()
        return Reading(1, 1, 1)

    monitor = ResourceMonitor(MonitorConfig(interval_s=3600), sampler)
    monitor.start()
    assert first.wait(5)
    monitor.stop(timeout_s=5)
    assert not monitor.is_alive()


def test_a_failing_sample_does_not_kill_the_thread() -> None:
    calls = 0
    healthy = threading.Event()

    def sampler() -> Reading:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk went away")
        healthy.set()
        return Reading(1, 1, 1)

    monitor = ResourceMonitor(MonitorConfig(interval_s=0.01), sampler)
    monitor.start()
    try:
        assert healthy.wait(5)
        assert monitor.is_alive()
    finally:
        monitor.stop()


async def test_wait_until_can_spawn_returns_immediately_when_open() -> None:
    monitor = ResourceMonitor(LIMITS, sequence([Reading(1, 1, 1)]))
    monitor.sample_once()
    await asyncio.wait_for(monitor.wait_until_can_spawn(poll_s=10), timeout=1)


async def test_wait_until_can_spawn_returns_once_the_gate_opens() -> None:
    monitor = ResourceMonitor(LIMITS, sequence([Reading(99, 1, 1), Reading(1, 1, 1)]))
    monitor.sample_once()
    assert not monitor.can_spawn
    waiter = asyncio.create_task(monitor.wait_until_can_spawn(poll_s=0.01))
    await asyncio.sleep(0.1)
    assert not waiter.done(), "returned while spawning was blocked"
    opener = threading.Thread(target=monitor.sample_once)
    opener.start()
    opener.join()
    assert monitor.can_spawn
    await asyncio.wait_for(waiter, timeout=5)


def test_psutil_sampler_reads_the_machine(tmp_path: Path) -> None:
    reading = psutil_sampler(tmp_path)()
    for value in (reading.cpu_percent, reading.memory_percent, reading.disk_percent):
        assert 0.0 <= value <= 100.0
