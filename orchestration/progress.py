"""`ProgressView`: done / running / failed with an ETA — a rich live bar on a terminal, plain
lines otherwise (CI logs, pipes)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_FAILED = frozenset({"failed", "escalated"})


class ProgressView:
    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console()
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.total = 0
        self.done = 0
        self.failed = 0
        self.running_now: set[str] = set()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._started = time.monotonic()

    def start(self, total: int, already_done: int = 0) -> None:
        self.total, self.done = total, already_done
        self._started = time.monotonic()
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]workers"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console,
            )
            self._task = self._progress.add_task("run", total=total, completed=already_done, detail="")
            self._progress.start()
        elif self.enabled:
            self._line(f"starting: {total} workers ({already_done} already done)")

    def running(self, worker_id: str) -> None:
        self.running_now.add(worker_id)
        self._refresh()

    def finished(self, worker_id: str, status: str) -> None:
        self.running_now.discard(worker_id)
        self.done += 1
        self.failed += status in _FAILED
        self._refresh()
        if self.enabled and not self.live:
            self._line(f"{worker_id} {status}  [{self.done}/{self.total} done, {len(self.running_now)} running, "
                       f"{self.failed} failed, eta {self.eta()}]")

    def eta(self) -> str:
        elapsed = time.monotonic() - self._started
        if self.done == 0 or self.done >= self.total:
            return "-"
        return f"{elapsed / self.done * (self.total - self.done):.0f}s"

    def _refresh(self) -> None:
        if self._progress is not None and self._task is not None:
            detail = f"{len(self.running_now)} running, {self.failed} failed"
            self._progress.update(self._task, completed=self.done, detail=detail)

    def _line(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
