"""Result files: atomic JSON writes, the per-worker round trip, stale results removed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.records import TestOutcome as Outcome
from orchestration.results import AttemptResult, ResultsWriter, WorkerResult, write_json_atomic


def test_write_json_atomic_writes_and_replaces_without_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "out.json"
    write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    inode = path.stat().st_ino
    write_json_atomic(path, {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert path.stat().st_ino != inode  # renamed over, not rewritten in place
    assert path.read_text().endswith("\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


def test_write_json_atomic_keeps_the_old_file_when_serialising_fails(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def sample_result() -> WorkerResult:
    return WorkerResult(
        worker_id="WORKER_004", title="Slugify", run_id="run-1", wave=2, status="passed",
        attempts=[
            AttemptResult(number=1, provider="ollama", model="m", outcome="tests_failed", tokens=100,
                          cost_usd=0.25, error="These test commands failed:\n$ x",
                          tests=[Outcome(command="x", passed=False, exit_code=1, output_tail="FAIL: x")]),
            AttemptResult(number=2, provider="ollama", model="m", outcome="passed", tokens=50, cost_usd=0.5,
                          summary="SUMMARY: done",
                          tests=[Outcome(command="x", passed=True, exit_code=0, output_tail="PASS: x")]),
        ],
        deliverables_created=["textkit/slug.py"], ignored_files=["scratch.py"], duration_s=1.5,
        timestamp="2026-01-01T00:00:00+00:00",
    )


def test_results_writer_round_trip(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path / "results")
    result = sample_result()
    writer.write_worker(result)
    path = tmp_path / "results" / "workers" / "WORKER_004.json"
    assert writer.worker_path("WORKER_004") == path
    data = json.loads(path.read_text())
    assert data["cost_usd"] == 0.75 and data["tokens"] == 150
    assert data["status"] == "passed" and data["attempts"][0]["tests"][0]["output_tail"] == "FAIL: x"
    again = writer.read_worker("WORKER_004")
    assert again == result
    assert again is not None and again.cost_usd == 0.75 and again.tokens == 150


def test_read_worker_of_an_unknown_worker(tmp_path: Path) -> None:
    assert ResultsWriter(tmp_path).read_worker("WORKER_999") is None


def test_clear_worker_removes_a_stale_result(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path / "results")
    writer.write_worker(sample_result())
    other = sample_result().model_copy(update={"worker_id": "WORKER_005"})
    writer.write_worker(other)
    writer.clear_worker("WORKER_004")
    assert writer.read_worker("WORKER_004") is None
    assert not writer.worker_path("WORKER_004").exists()
    assert writer.read_worker("WORKER_005") is not None
    writer.clear_worker("WORKER_004")  # nothing left to clear: no error


def test_write_summary(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path / "results")
    writer.write_summary({"run_id": "r", "passed": 3})
    assert json.loads((tmp_path / "results" / "execution_summary.json").read_text()) == {"run_id": "r", "passed": 3}
