"""`MemoryStateStore`: the in-process StateStore, with the same transition rules as Redis.

Used by tests and benchmarks that exercise the launcher without persistence.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from orchestration.records import FINAL_STATUSES, RunRecord, WorkerState


class MemoryStateStore:
    def __init__(self, lease_s: float = 30.0) -> None:
        self.lease_s = lease_s
        self._runs: dict[str, RunRecord] = {}
        self._workers: dict[str, dict[str, WorkerState]] = {}
        self._leases: dict[tuple[str, str], tuple[str, float]] = {}
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def create_run(self, run: RunRecord, worker_ids: Iterable[str]) -> None:
        with self._lock:
            self._runs[run.run_id] = run
            self._workers[run.run_id] = {w: WorkerState(worker_id=w) for w in worker_ids}
            self._events[run.run_id] = []

    def get_run(self, run_id: str) -> RunRecord | None:
        return self._runs.get(run_id)

    def latest_run_id(self) -> str | None:
        return max(self._runs.values(), key=lambda r: r.created_at).run_id if self._runs else None

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self._lock:
            self._runs[run_id] = self._runs[run_id].model_copy(update={**fields, "updated_at": time.time()})

    def _lease_live(self, run_id: str, worker_id: str) -> tuple[str, float] | None:
        lease = self._leases.get((run_id, worker_id))
        return lease if lease and lease[1] > time.monotonic() else None

    def claim(self, run_id: str, worker_id: str, owner: str) -> bool:
        with self._lock:
            state = self._workers[run_id].setdefault(worker_id, WorkerState(worker_id=worker_id))
            if state.status in FINAL_STATUSES:
                return False
            if state.status == "running" and self._lease_live(run_id, worker_id):
                return False
            state.status, state.owner, state.started_at = "running", owner, time.time()
            self._leases[(run_id, worker_id)] = (owner, time.monotonic() + self.lease_s)
            return True

    def renew(self, run_id: str, worker_id: str, owner: str) -> bool:
        with self._lock:
            lease = self._lease_live(run_id, worker_id)
            if lease is None or lease[0] != owner:
                return False
            self._leases[(run_id, worker_id)] = (owner, time.monotonic() + self.lease_s)
            return True

    def update_worker(self, run_id: str, worker_id: str, **fields: Any) -> None:
        with self._lock:
            state = self._workers[run_id][worker_id]
            self._workers[run_id][worker_id] = state.model_copy(update={**fields, "updated_at": time.time()})

    def finish(self, run_id: str, worker_id: str, owner: str, status: str, **fields: Any) -> bool:
        with self._lock:
            state = self._workers[run_id][worker_id]
            if state.status != "running" or state.owner != owner:
                return False
            self._workers[run_id][worker_id] = state.model_copy(
                update={**fields, "status": status, "updated_at": time.time()}
            )
            self._leases.pop((run_id, worker_id), None)
            return True

    def reset_worker(self, run_id: str, worker_id: str) -> None:
        with self._lock:
            self._workers[run_id][worker_id] = WorkerState(worker_id=worker_id)
            self._leases.pop((run_id, worker_id), None)

    def worker(self, run_id: str, worker_id: str) -> WorkerState | None:
        return self._workers.get(run_id, {}).get(worker_id)

    def workers(self, run_id: str) -> dict[str, WorkerState]:
        return dict(self._workers.get(run_id, {}))

    def append_event(self, run_id: str, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.setdefault(run_id, []).append({**event, "ts": time.time()})

    def events(self, run_id: str, count: int = 100) -> list[dict[str, Any]]:
        return list(self._events.get(run_id, []))[-count:]

    def close(self) -> None:
        return None
