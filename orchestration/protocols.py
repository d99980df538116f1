"""The launcher's seams, declared once. Each has one real implementation and an in-memory fake.

    ModelClientFactory  agents/model_factory.py      (fake: the `replay` provider)
    StateStore          orchestration/state.py       (Redis; journal when Redis is away)
    KnowledgeStore      orchestration/knowledge.py   (ChromaDB)
    RetrospectiveStore  orchestration/retrospectives.py (mem0; local log when mem0 is away)
    ResourceGate        orchestration/monitor.py     (psutil ResourceMonitor)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from orchestration.instruction import WorkerInstruction
from orchestration.records import (
    KnowledgeRecord,
    Retrospective,
    RunRecord,
    SimilarHit,
    WorkerState,
)


class StateStore(Protocol):
    def create_run(self, run: RunRecord, worker_ids: Iterable[str]) -> None:
        """Store the run and a `pending` state for every planned worker."""

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def latest_run_id(self) -> str | None: ...

    def update_run(self, run_id: str, **fields: Any) -> None: ...

    def claim(self, run_id: str, worker_id: str, owner: str) -> bool:
        """Atomically: pending (or running with an expired lease) → running, leased to `owner`."""

    def renew(self, run_id: str, worker_id: str, owner: str) -> bool:
        """Extend `owner`'s lease; False if the lease is lost."""

    def update_worker(self, run_id: str, worker_id: str, **fields: Any) -> None:
        """Non-status progress (attempt, provider, tokens, cost…)."""

    def finish(self, run_id: str, worker_id: str, owner: str, status: str, **fields: Any) -> bool:
        """Atomically: running (leased to `owner`) → a final status; releases the lease."""

    def reset_worker(self, run_id: str, worker_id: str) -> None:
        """Back to `pending` (a changed instruction accepted with `--replan`)."""

    def worker(self, run_id: str, worker_id: str) -> WorkerState | None: ...

    def workers(self, run_id: str) -> dict[str, WorkerState]: ...

    def append_event(self, run_id: str, event: dict[str, Any]) -> None: ...

    def events(self, run_id: str, count: int = 100) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class KnowledgeStore(Protocol):
    def index_instructions(self, instructions: Iterable[WorkerInstruction]) -> int:
        """Upsert instructions keyed by content hash; returns how many were new."""

    def record(self, record: KnowledgeRecord) -> None:
        """Index a finished worker's code, test results and failure reasons."""

    def similar(self, text: str, k: int = 5, status: str | None = None) -> list[SimilarHit]: ...

    def prompt_context(
        self, text: str, k: int | None = None, max_chars: int | None = None, exclude_worker: str | None = None
    ) -> str:
        """The most similar passed results (summaries and code) as a bounded prompt block."""

    def flush(self) -> None:
        """Wait until every queued write is stored."""

    def close(self) -> None: ...


class RetrospectiveStore(Protocol):
    def add(self, retrospective: Retrospective) -> None:
        """Store it; if the backend is away, keep it locally to replay later (never lost)."""

    def search(self, text: str, k: int = 5) -> list[dict[str, Any]]: ...

    def lessons_for(self, text: str, k: int | None = None) -> list[str]:
        """Short lessons from the retrospectives nearest to `text`, for a worker's prompt."""

    def replay_pending(self) -> int:
        """Push locally kept retrospectives into the backend; returns how many were stored."""

    def close(self) -> None: ...


class ResourceGate(Protocol):
    @property
    def can_spawn(self) -> bool: ...

    async def wait_until_can_spawn(self) -> None: ...
