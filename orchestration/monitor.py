"""`ResourceMonitor`: a daemon thread sampling CPU, memory and disk; gates worker spawning.

Spawning stops when any reading reaches its limit and resumes only once every reading is
`hysteresis_percent` below its limit, so a machine near a limit does not flap. Readings are
appended to a CSV `resources.log`. Tests inject a sampler instead of loading the machine.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from orchestration.config import MonitorConfig

log = logging.getLogger("workforce.resources")


@dataclass(frozen=True)
class Reading:
    cpu_percent: float
    memory_percent: float
    disk_percent: float


def psutil_sampler(disk_path: Path) -> Callable[[], Reading]:
    """Real readings: CPU since the last call, virtual memory, disk of `disk_path`'s filesystem."""
    psutil.cpu_percent(interval=None)

    def sample() -> Reading:
        return Reading(
            cpu_percent=psutil.cpu_percent(interval=None),
            memory_percent=psutil.virtual_memory().percent,
            disk_percent=psutil.disk_usage(str(disk_path)).percent,
        )

    return sample


class ResourceMonitor(threading.Thread):
    """Samples every `interval_s`; `can_spawn` says whether a new worker may start now."""

    def __init__(
        self,
        config: MonitorConfig,
        sampler: Callable[[], Reading],
        log_path: Path | None = None,
    ) -> None:
        super().__init__(name="ResourceMonitor", daemon=True)
        self.config = config
        self.sampler = sampler
        self.log_path = log_path
        self.latest: Reading | None = None
        self._blocked = False
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    @property
    def can_spawn(self) -> bool:
        with self._lock:
            return not self._blocked

    def sample_once(self) -> Reading:
        """Take one reading, update the gate and the log; the thread calls this every interval."""
        reading = self.sampler()
        with self._lock:
            was_blocked = self._blocked
            self._blocked = self._over(reading, margin=0.0) if not was_blocked else self._over(
                reading, margin=self.config.hysteresis_percent
            )
            self.latest = reading
        if self._blocked != was_blocked:
            log.warning("spawning %s: %s", "paused" if self._blocked else "resumed", reading)
        self._append(reading)
        return reading

    def _over(self, reading: Reading, margin: float) -> bool:
        """True if any reading is within `margin` of (or above) its limit."""
        c = self.config
        return (
            reading.cpu_percent >= c.cpu_percent - margin
            or reading.memory_percent >= c.memory_percent - margin
            or reading.disk_percent >= c.disk_percent - margin
        )

    def _append(self, reading: Reading) -> None:
        if self.log_path is None:
            return
        new = not self.log_path.exists()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["timestamp", "cpu_percent", "memory_percent", "disk_percent", "can_spawn"])
            writer.writerow([
                f"{time.time():.3f}", reading.cpu_percent, reading.memory_percent, reading.disk_percent,
                int(not self._blocked),
            ])

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.sample_once()
            except (OSError, psutil.Error) as exc:
                log.warning("resource sample failed: %s", exc)
            self._stop_event.wait(self.config.interval_s)

    async def wait_until_can_spawn(self, poll_s: float = 0.2) -> None:
        """Return once spawning is allowed (immediately if it is)."""
        while not self.can_spawn and not self._stop_event.is_set():  # noqa: ASYNC110 - set by a thread
            await asyncio.sleep(poll_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout_s)
