"""Records that cross component boundaries: persisted run and worker state, knowledge and
retrospective entries. Persisted models carry `type` and `version`; loading validates them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

WorkerStatus = Literal["pending", "running", "passed", "failed", "escalated", "skipped"]
FINAL_STATUSES: frozenset[str] = frozenset({"passed", "failed", "escalated", "skipped"})
RunStatus = Literal["running", "stopped", "aborted", "finished"]


class RunRecord(BaseModel):
    """One execution (`execution:{run_id}`): what was planned and where it writes."""

    type: Literal["workforce.run"] = "workforce.run"
    version: int = 1
    run_id: str
    created_at: float
    updated_at: float = 0.0
    status: RunStatus = "running"
    target: str
    workers_dir: str
    priority: int | None = None
    """None: every wave (`--all`)."""
    provider: str = ""
    """`--provider` override of the run ("" for none), used again on `--resume`."""
    waves: list[dict] = Field(default_factory=list)
    """`[{"priority": 1, "lanes": [["WORKER_001", …], …]}, …]`"""
    fingerprint: dict[str, str] = Field(default_factory=dict)
    """Worker id → instruction content hash at planning time."""
    plan_digest: str = ""
    reason: str = ""
    """Why the run stopped or aborted."""


class WorkerState(BaseModel):
    """One worker's progress within a run (`execution:{run_id}:worker:{WORKER_ID}`)."""

    type: Literal["workforce.worker"] = "workforce.worker"
    version: int = 1
    worker_id: str
    status: WorkerStatus = "pending"
    attempt: int = 0
    """Attempts started so far (model attempts, across retries and resumes)."""
    provider: str = ""
    model: str = ""
    tokens: int = 0
    cost_usd: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    updated_at: float = 0.0
    owner: str = ""
    """Launcher that holds (or last held) the lease."""
    error: str = ""
    files: list[str] = Field(default_factory=list)
    """Files integrated into the target."""
    wave: int = 0
    integration: dict[str, str] = Field(default_factory=dict)
    """Path → sha256 of files being merged: set before the merge, so a crash mid-merge can be
    rolled forward on resume instead of running the worker (and its model calls) again."""
    pending_result: str = ""
    """The passed worker's result JSON, written to its result file when rolled forward."""


class TestOutcome(BaseModel):
    command: str
    passed: bool
    exit_code: int | None = None
    output_tail: str = ""
    duration_s: float = 0.0
    timed_out: bool = False


class KnowledgeRecord(BaseModel):
    """What a finished worker leaves for later workers to find."""

    run_id: str
    worker_id: str
    title: str
    status: str
    task: str
    """The instruction's deliverables and success criteria, as prose."""
    summary: str = ""
    """The worker's own closing summary."""
    files: dict[str, str] = Field(default_factory=dict)
    """Path → content of the deliverables it wrote."""
    tests: list[TestOutcome] = Field(default_factory=list)
    failure_reasons: list[str] = Field(default_factory=list)


class SimilarHit(BaseModel):
    id: str
    worker_id: str
    kind: Literal["instruction", "result", "failure"]
    status: str
    distance: float
    text: str
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)


class Retrospective(BaseModel):
    """After every worker: what happened and what was learned (stored in mem0)."""

    type: Literal["workforce.retrospective"] = "workforce.retrospective"
    version: int = 1
    run_id: str
    worker_id: str
    name: str
    status: str
    provider: str
    duration_s: float
    tests_passed: int
    tests_total: int
    files: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    instruction_retrospective: str = ""
    """The instruction's own RETROSPECTIVE section."""
    lessons: list[str] = Field(default_factory=list)
    timestamp: float = 0.0

    def as_text(self) -> str:
        """The memory text mem0 stores and searches."""
        lessons = "; ".join(self.lessons) or "none recorded"
        errors = "; ".join(self.errors) or "none"
        return (
            f"Retrospective {self.worker_id} ({self.name}) run {self.run_id}: {self.status} via "
            f"{self.provider} in {self.duration_s:.1f}s, tests {self.tests_passed}/{self.tests_total}, "
            f"files {', '.join(self.files) or 'none'}. Errors: {errors}. Lessons: {lessons}."
        )
