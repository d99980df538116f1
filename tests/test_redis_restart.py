"""Redis going away under a running launcher (subprocess, demo workforce, replay provider).

* restart: the test's own AOF redis-server (unix socket) is SIGKILLed mid-run and started again
  on the same data dir and socket within a second; the launcher rides it out in degraded mode,
  re-syncs, and the run ends with all 15 passed and the state in Redis complete.
* degraded: the test's own redis-server (TCP) is stopped mid-run and kept down; the launcher
  finishes every worker from its journal, warning once on stderr; `--resume` with Redis still
  gone works from the journal and runs nothing again; once Redis is back,
  `launch_workforce.py status RUN_ID --json` re-syncs it and shows 15 passed.

Events are at-least-once across an outage (the one in flight when Redis dropped may be stored
twice), so the event counts here are of distinct events (each carries the `ts` it was stamped with).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_resume import (  # noqa: F401 - harness is a fixture
    REDIS_SERVER,
    TOTAL_MODEL_CALLS,
    WORKERS,
    Harness,
    assert_all_passed_once,
    assert_results_complete,
    assert_target_tests_pass,
    describe,
    journal_events,
    launcher_env,
    processes_under,
    resume_args,
    run_args,
    statuses,
    wait_for,
)

DEGRADED_WARNING = "continuing in degraded mode"
ATTEMPTS = 17
"""Every worker once, plus the failing first attempts of WORKER_007 (tests) and WORKER_008 (a guide)."""


def journal_entries(journal: Path) -> list[dict[str, Any]]:
    with open(journal, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def kinds(found: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(e.get("event")) for e in found)


def assert_complete_history(found: list[dict[str, Any]]) -> None:
    """The distinct events of a demo run that no launcher crash interrupted: every model call,
    every attempt, one finish per worker."""
    counted = kinds(found)
    assert counted["model_call"] == TOTAL_MODEL_CALLS
    assert counted["attempt"] == ATTEMPTS
    assert counted["worker_finished"] == 15
    outcomes = Counter((e["worker_id"], e["outcome"]) for e in found if e.get("event") == "attempt")
    assert outcomes[("WORKER_007", "tests_failed")] == 1 and outcomes[("WORKER_008", "guide_detected")] == 1
    assert {w for w, outcome in outcomes if outcome == "passed"} == set(WORKERS)


@pytest.mark.slow
def test_redis_restart_mid_run_loses_nothing(harness: Harness) -> None:
    harness.workspace()
    server = harness.own_redis("redis-sock", unix=True)
    run_id = "redis-restart"
    process = harness.start(run_args(run_id), launcher_env(server.url), "run")
    client = server.client()
    wait_for("WORKER_003 running", lambda: statuses(client, run_id)["WORKER_003"] == "running", process)
    client.close()

    server.kill()
    down = time.monotonic()
    time.sleep(0.3)
    server.start()
    assert time.monotonic() - down < 3.0, "redis-server took too long to come back for this test to mean much"
    assert process.poll() is None, "the launcher had already finished: Redis was not restarted mid-run"

    finished = harness.finish("run")
    assert finished.returncode == 0, finished.tail()
    assert not [describe(p) for p in processes_under(harness.ws)]

    # The outage was seen (a `degraded` marker) and closed (a `resynced` marker for that writer).
    entries = journal_entries(harness.journal)
    degraded = [e for e in entries if e["op"] == "degraded"]
    assert len(degraded) == 1
    writer = degraded[0]["writer"]
    assert [e for e in entries if e["op"] == "resynced" and e["for_writer"] == writer and e["seq"] > degraded[0]["seq"]]
    assert finished.stderr.count(DEGRADED_WARNING) == 1

    client = server.client()
    found = assert_all_passed_once(client, run_id, dedupe=True)
    state = {w: client.hgetall(f"workforce:execution:{run_id}:worker:{w}") for w in WORKERS}
    client.close()
    assert_complete_history(found)
    assert all(json.loads(s["files"]) for s in state.values())
    assert all(s["owner"] and float(s["finished_at"]) > 0 for s in state.values())
    # Redis holds everything the journal recorded for this run (nothing lost while it was away).
    journalled = [e for e in journal_events(harness.journal) if e.get("event") in ("integrated", "attempt")]
    assert {json.dumps(e, sort_keys=True) for e in journalled} <= {json.dumps(e, sort_keys=True) for e in found}
    assert_results_complete(harness.ws, run_id)
    assert_target_tests_pass(harness.target)


@pytest.mark.slow
def test_degraded_run_finishes_from_the_journal_and_resyncs(harness: Harness) -> None:
    harness.workspace()
    server = harness.own_redis("redis-tcp")
    run_id = "redis-away"
    env = launcher_env(server.url)
    process = harness.start(run_args(run_id), env, "run")
    client = server.client()
    wait_for("WORKER_003 running", lambda: statuses(client, run_id)["WORKER_003"] == "running", process)
    passed_in_redis = {w for w, s in statuses(client, run_id).items() if s == "passed"}
    client.close()
    server.stop()
    assert process.poll() is None

    # 1. The launcher carries on from its journal, warning once.
    finished = harness.finish("run")
    assert finished.returncode == 0, finished.tail()
    assert finished.stderr.count(DEGRADED_WARNING) == 1, finished.stderr[-3000:]
    assert_results_complete(harness.ws, run_id)
    assert_target_tests_pass(harness.target)
    history = journal_events(harness.journal)
    assert_complete_history(history)
    assert Counter(e["worker_id"] for e in history if e.get("event") == "integrated") == Counter(WORKERS)

    # 2. --resume with Redis still gone: from the journal alone, nothing runs again.
    results = harness.ws / "ai-workers" / "results" / "workers"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in results.glob("*.json")}
    resumed = harness.run(resume_args(run_id), env, "resume")
    assert resumed.returncode == 0, resumed.tail()
    assert resumed.stderr.count(DEGRADED_WARNING) == 1, resumed.stderr[-3000:]
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in results.glob("*.json")} == before
    new = journal_events(harness.journal)[len(history):]
    assert new, "the resume recorded nothing in the journal"
    assert not {"model_call", "attempt", "integrated", "rolled_forward", "worker_finished"} & set(kinds(new))
    summary = json.loads((results.parent / "execution_summary.json").read_text(encoding="utf-8"))
    assert summary["passed"] == summary["total"] == 15

    # 3. Redis is back: the next command re-syncs it from the journal.
    server.start()
    client = server.client()
    assert {w for w, s in statuses(client, run_id).items() if s == "passed"} >= passed_in_redis
    assert statuses(client, run_id) != dict.fromkeys(WORKERS, "passed"), "Redis saw the whole run anyway"
    client.close()
    status = harness.run(["status", run_id, "--json"], env, "status")
    assert status.returncode == 0, status.tail()
    assert DEGRADED_WARNING not in status.stderr
    report = json.loads(status.stdout)
    assert (report["run_id"], report["status"], report["running"], report["failures"]) == (run_id, "finished", [], [])
    assert [(w["priority"], w["total"], w.get("passed")) for w in report["waves"]] == [(1, 5, 5), (2, 6, 6), (3, 4, 4)]

    client = server.client()
    found = assert_all_passed_once(client, run_id, dedupe=True)
    client.close()
    assert_complete_history(found)
    assert not [describe(p) for p in processes_under(harness.ws)]
