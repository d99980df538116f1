"""Result files: `ai-workers/results/workers/<WORKER_ID>.json` per worker and
`ai-workers/results/execution_summary.json` per run, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from orchestration.records import TestOutcome

Outcome = Literal["passed", "tests_failed", "guide_detected", "timeout", "provider_error"]


class AttemptResult(BaseModel):
    number: int
    provider: str
    model: str
    outcome: Outcome
    tests: list[TestOutcome] = Field(default_factory=list)
    tokens: int = 0
    cost_usd: float = 0.0
    duration_s: float = 0.0
    error: str = ""
    summary: str = ""


class WorkerResult(BaseModel):
    worker_id: str
    title: str = ""
    run_id: str
    wave: int
    status: Literal["passed", "failed", "escalated", "skipped"]
    attempts: list[AttemptResult] = Field(default_factory=list)
    deliverables_created: list[str] = Field(default_factory=list)
    ignored_files: list[str] = Field(default_factory=list)
    reason: str = ""
    duration_s: float = 0.0
    timestamp: str = ""

    @property
    def cost_usd(self) -> float:
        return sum(a.cost_usd for a in self.attempts)

    @property
    def tokens(self) -> int:
        return sum(a.tokens for a in self.attempts)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=False)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _run_of(path: Path) -> str | None:
    try:
        run_id = json.loads(path.read_text(encoding="utf-8")).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
    return run_id if isinstance(run_id, str) and run_id and "/" not in run_id and ".." not in run_id else None


class ResultsWriter:
    """Owns the results folder of one run."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir
        self.workers_dir = results_dir / "workers"

    def start_run(self, run_id: str) -> list[str]:
        """Move results left by other runs to `runs/<their run_id>/`, so a run's folder holds only
        its own results and nothing earlier is lost. Returns the run ids archived."""
        moved: set[str] = set()
        files = [*self.workers_dir.glob("*.json"), self.results_dir / "execution_summary.json"]
        for path in files:
            other = _run_of(path)
            if other is None or other == run_id:
                continue
            folder = self.results_dir / "runs" / other / ("workers" if path.parent == self.workers_dir else "")
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(path, folder / path.name)
            moved.add(other)
        return sorted(moved)

    def worker_path(self, worker_id: str) -> Path:
        return self.workers_dir / f"{worker_id}.json"

    def clear_worker(self, worker_id: str) -> None:
        """Remove an earlier attempt's result before a worker starts again."""
        self.worker_path(worker_id).unlink(missing_ok=True)

    def write_worker(self, result: WorkerResult) -> None:
        data = result.model_dump(mode="json")
        data["cost_usd"] = round(result.cost_usd, 6)
        data["tokens"] = result.tokens
        write_json_atomic(self.worker_path(result.worker_id), data)

    def read_worker(self, worker_id: str) -> WorkerResult | None:
        path = self.worker_path(worker_id)
        if not path.exists():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return WorkerResult.model_validate({k: v for k, v in data.items() if k not in ("cost_usd", "tokens")})

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.results_dir / "execution_summary.json", summary)
