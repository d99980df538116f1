"""RedisStateStore on the machine's Redis: layout, atomic transitions, leases, events, errors."""

from __future__ import annotations

import inspect
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from orchestration.errors import StateError
from orchestration.journal import ResilientStateStore
from orchestration.protocols import StateStore
from orchestration.records import RunRecord, WorkerState
from orchestration.redis_server import make_client
from orchestration.state import RedisStateStore, StateUnavailable, merge_allowed

WORKERS = ["WORKER_001", "WORKER_002", "WORKER_003", "WORKER_004"]


def make_run(run_id: str = "run-1", created_at: float | None = None) -> RunRecord:
    return RunRecord(
        run_id=run_id, created_at=created_at or time.time(), target="/tmp/target", workers_dir="ai-workers/workers",
        priority=None, waves=[{"priority": 2, "lanes": [["WORKER_001", "WORKER_002"], ["WORKER_003"]]}],
        fingerprint={"WORKER_001": "abc"}, plan_digest="d1",
    )


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = make_client(redis_url)
    try:
        connection.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"no Redis at {redis_url}: {exc}")
    yield connection
    connection.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex}"
    yield name
    doomed = list(client.scan_iter(match=f"{name}:*", count=1000))
    if doomed:
        client.delete(*doomed)


def new_store(redis_url: str, prefix: str, lease_s: float = 5.0) -> RedisStateStore:
    return RedisStateStore(make_client(redis_url), key_prefix=prefix, lease_s=lease_s)


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[RedisStateStore]:
    created = new_store(redis_url, prefix)
    yield created
    created.close()


@pytest.fixture
def run(store: RedisStateStore) -> RunRecord:
    record = make_run()
    store.create_run(record, WORKERS)
    return record


# --------------------------------------------------------------------------- runs


def test_create_run_stores_the_run_and_pending_workers(store: RedisStateStore, client: redis.Redis,
                                                      prefix: str, run: RunRecord) -> None:
    loaded = store.get_run(run.run_id)
    assert loaded is not None
    assert loaded.model_dump(exclude={"updated_at"}) == run.model_dump(exclude={"updated_at"})
    states = store.workers(run.run_id)
    assert list(states) == WORKERS
    assert {s.status for s in states.values()} == {"pending"}
    assert states["WORKER_001"].wave == 2 and states["WORKER_004"].wave == 0
    assert client.zscore(f"{prefix}:executions", run.run_id) == pytest.approx(run.created_at)
    assert client.hget(f"{prefix}:execution:{run.run_id}", "waves").startswith("[")
    assert client.hget(f"{prefix}:execution:{run.run_id}", "priority") == "null"
    assert client.smembers(f"{prefix}:execution:{run.run_id}:status:pending") == set(WORKERS)
    assert store.counts(run.run_id) == {"pending": 4, "running": 0, "passed": 0, "failed": 0,
                                         "escalated": 0, "skipped": 0}


def test_create_run_refuses_an_existing_run(store: RedisStateStore, run: RunRecord) -> None:
    with pytest.raises(StateError, match="already exists"):
        store.create_run(run, WORKERS)


def test_latest_run_id_is_the_highest_created_at(store: RedisStateStore) -> None:
    assert store.latest_run_id() is None
    store.create_run(make_run("run-b", created_at=2000.0), ["W1"])
    store.create_run(make_run("run-a", created_at=3000.0), ["W1"])
    store.create_run(make_run("run-c", created_at=1000.0), ["W1"])
    assert store.latest_run_id() == "run-a"
    assert store.run_ids() == ["run-a", "run-b", "run-c"]


def test_update_run_validates_and_stores(store: RedisStateStore, run: RunRecord) -> None:
    store.update_run(run.run_id, status="stopped", reason="interrupted", priority=3)
    loaded = store.get_run(run.run_id)
    assert loaded is not None and (loaded.status, loaded.reason, loaded.priority) == ("stopped", "interrupted", 3)
    with pytest.raises(StateError, match="status"):
        store.update_run(run.run_id, status="exploded")
    with pytest.raises(StateError, match="cannot be set"):
        store.update_run(run.run_id, created_at=1.0)
    with pytest.raises(StateError, match="no such run"):
        store.update_run("missing-run", reason="x")
    assert store.get_run("missing-run") is None


# --------------------------------------------------------------------------- transitions


def test_claim_then_finish(store: RedisStateStore, client: redis.Redis, prefix: str, run: RunRecord) -> None:
    base = f"{prefix}:execution:{run.run_id}"
    assert store.claim(run.run_id, "WORKER_001", "launcher-a")
    state = store.worker(run.run_id, "WORKER_001")
    assert state is not None and (state.status, state.owner, state.attempt) == ("running", "launcher-a", 0)
    assert client.get(f"{base}:lease:WORKER_001") == "launcher-a"
    assert 0 < client.pttl(f"{base}:lease:WORKER_001") <= 5000
    assert store.counts(run.run_id)["running"] == 1

    store.update_worker(run.run_id, "WORKER_001", attempt=1, provider="openai", tokens=120, cost_usd=0.01)
    assert store.finish(run.run_id, "WORKER_001", "launcher-a", "passed", files=["pkg/a.py"], tokens=150)
    state = store.worker(run.run_id, "WORKER_001")
    assert state is not None
    assert (state.status, state.attempt, state.tokens, state.files) == ("passed", 1, 150, ["pkg/a.py"])
    assert state.finished_at >= state.started_at > 0
    assert client.exists(f"{base}:lease:WORKER_001") == 0
    assert client.smembers(f"{base}:status:passed") == {"WORKER_001"}
    assert "WORKER_001" not in client.smembers(f"{base}:status:running")
    assert not store.claim(run.run_id, "WORKER_001", "launcher-b")
    assert not store.finish(run.run_id, "WORKER_001", "launcher-a", "failed")


def test_two_launchers_claim_the_same_worker_one_wins(redis_url: str, prefix: str, run: RunRecord) -> None:
    first, second = new_store(redis_url, prefix), new_store(redis_url, prefix)
    try:
        outcomes = [first.claim(run.run_id, "WORKER_002", "a"), second.claim(run.run_id, "WORKER_002", "b")]
        assert outcomes == [True, False]
        assert not second.finish(run.run_id, "WORKER_002", "b", "passed")
        assert not second.renew(run.run_id, "WORKER_002", "b")
        assert first.renew(run.run_id, "WORKER_002", "a")
        assert first.finish(run.run_id, "WORKER_002", "a", "failed", error="tests failed")
        state = second.worker(run.run_id, "WORKER_002")
        assert state is not None and (state.status, state.owner, state.error) == ("failed", "a", "tests failed")
    finally:
        first.close()
        second.close()


def test_ten_threads_race_for_each_worker(redis_url: str, prefix: str, run: RunRecord) -> None:
    stores = [new_store(redis_url, prefix) for _ in range(10)]
    winners: dict[str, list[str]] = {w: [] for w in WORKERS}
    lock = threading.Lock()

    def race(index: int, worker_id: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        if stores[index].claim(run.run_id, worker_id, f"owner-{index}"):
            with lock:
                winners[worker_id].append(f"owner-{index}")

    try:
        for worker_id in WORKERS:
            barrier = threading.Barrier(10)
            threads = [threading.Thread(target=race, args=(i, worker_id, barrier)) for i in range(10)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert all(len(found) == 1 for found in winners.values()), winners
        states = stores[0].workers(run.run_id)
        assert all(states[w].owner == winners[w][0] for w in WORKERS)
        assert stores[0].counts(run.run_id)["running"] == len(WORKERS)
    finally:
        for item in stores:
            item.close()


def test_an_expired_lease_lets_another_owner_claim(redis_url: str, prefix: str) -> None:
    store = new_store(redis_url, prefix, lease_s=0.2)
    try:
        store.create_run(make_run(), WORKERS)
        assert store.claim("run-1", "WORKER_001", "a")
        assert store.expired_running("run-1") == []
        assert not store.claim("run-1", "WORKER_001", "b")
        time.sleep(0.3)
        assert store.expired_running("run-1") == ["WORKER_001"]
        assert store.summary("run-1").expired == ["WORKER_001"]
        assert store.claim("run-1", "WORKER_001", "b")
        assert store.expired_running("run-1") == []
        assert not store.finish("run-1", "WORKER_001", "a", "passed")
        assert not store.renew("run-1", "WORKER_001", "a")
        assert store.finish("run-1", "WORKER_001", "b", "passed")
    finally:
        store.close()


def test_owner_may_finish_or_renew_after_its_lease_lapsed_if_nobody_took_it(redis_url: str, prefix: str) -> None:
    store = new_store(redis_url, prefix, lease_s=0.2)
    try:
        store.create_run(make_run(), WORKERS)
        assert store.claim("run-1", "WORKER_001", "a") and store.claim("run-1", "WORKER_002", "a")
        time.sleep(0.3)
        assert store.finish("run-1", "WORKER_001", "a", "escalated")
        assert store.renew("run-1", "WORKER_002", "a")
        assert store.expired_running("run-1") == []
        assert not store.claim("run-1", "WORKER_002", "b")
    finally:
        store.close()


def test_finish_by_a_non_owner_fails(store: RedisStateStore, run: RunRecord) -> None:
    assert not store.finish(run.run_id, "WORKER_001", "a", "passed")  # still pending
    assert store.claim(run.run_id, "WORKER_001", "a")
    assert not store.finish(run.run_id, "WORKER_001", "intruder", "passed")
    state = store.worker(run.run_id, "WORKER_001")
    assert state is not None and state.status == "running"
    with pytest.raises(StateError, match="not a final status"):
        store.finish(run.run_id, "WORKER_001", "a", "running")


def test_skipped(store: RedisStateStore, run: RunRecord) -> None:
    assert store.skip(run.run_id, "WORKER_001", error="dependency WORKER_000 did not pass")
    assert store.claim(run.run_id, "WORKER_002", "a")
    assert not store.skip(run.run_id, "WORKER_002")  # leased
    assert store.finish(run.run_id, "WORKER_002", "a", "skipped", error="dependency failed")
    assert not store.claim(run.run_id, "WORKER_001", "a")
    counts = store.counts(run.run_id)
    assert counts["skipped"] == 2 and counts["pending"] == 2
    state = store.worker(run.run_id, "WORKER_001")
    assert state is not None and state.error == "dependency WORKER_000 did not pass"


def test_reset_worker_and_workers_added_by_replan(store: RedisStateStore, client: redis.Redis,
                                                  prefix: str, run: RunRecord) -> None:
    assert store.claim(run.run_id, "WORKER_001", "a")
    store.update_worker(run.run_id, "WORKER_001", attempt=2, tokens=10)
    assert store.finish(run.run_id, "WORKER_001", "a", "passed", files=["x.py"])
    store.reset_worker(run.run_id, "WORKER_001")
    state = store.worker(run.run_id, "WORKER_001")
    assert state is not None
    assert (state.status, state.owner, state.files, state.attempt, state.tokens) == ("pending", "", [], 2, 10)
    assert store.claim(run.run_id, "WORKER_001", "b")
    store.reset_worker(run.run_id, "WORKER_001")
    assert client.exists(f"{prefix}:execution:{run.run_id}:lease:WORKER_001") == 0

    store.reset_worker(run.run_id, "WORKER_009")  # added to the plan
    assert store.counts(run.run_id)["pending"] == 5
    assert "WORKER_009" in store.workers(run.run_id)
    with pytest.raises(StateError, match="no such run"):
        store.reset_worker("no-run", "WORKER_001")


def test_unknown_workers_and_bad_fields_are_state_errors(store: RedisStateStore, run: RunRecord) -> None:
    with pytest.raises(StateError, match="no such worker"):
        store.claim(run.run_id, "WORKER_404", "a")
    with pytest.raises(StateError, match="no such worker"):
        store.update_worker(run.run_id, "WORKER_404", tokens=1)
    with pytest.raises(StateError, match="cannot be set"):
        store.update_worker(run.run_id, "WORKER_001", status="passed")
    with pytest.raises(StateError, match="unknown"):
        store.update_worker(run.run_id, "WORKER_001", colour="blue")
    with pytest.raises(StateError, match="tokens"):
        store.update_worker(run.run_id, "WORKER_001", tokens="many")
    with pytest.raises(StateError, match="invalid worker id"):
        store.claim(run.run_id, "WORKER:1", "a")
    assert store.worker(run.run_id, "WORKER_404") is None


def test_secrets_are_masked_before_they_are_stored(store: RedisStateStore, run: RunRecord) -> None:
    key = "sk-" + "A1b2C3d4" * 4
    assert store.claim(run.run_id, "WORKER_001", "a")
    assert store.finish(run.run_id, "WORKER_001", "a", "failed", error=f"401 for key {key}")
    store.append_event(run.run_id, {"event": "model_call", "detail": {"auth": f"Bearer {key}"}})
    state = store.worker(run.run_id, "WORKER_001")
    assert state is not None and key not in state.error and "***" in state.error
    assert key not in str(store.events(run.run_id))


# --------------------------------------------------------------------------- events, counts


def test_events_stream(store: RedisStateStore, client: redis.Redis, prefix: str, run: RunRecord) -> None:
    for number in range(5):
        store.append_event(run.run_id, {"event": "worker_finished", "n": number, "files": ["a.py"]})
    latest = store.events(run.run_id, count=3)
    assert [e["n"] for e in latest] == [2, 3, 4]
    assert latest[0]["files"] == ["a.py"] and latest[0]["ts"] > 0
    raw = client.xrange(f"{prefix}:execution:{run.run_id}:events", count=1)[0][1]
    assert raw["n"] == "0" and raw["event"] == '"worker_finished"'
    with pytest.raises(StateError, match="JSON"):
        store.append_event(run.run_id, {"bad": object()})


def test_events_stream_is_capped(redis_url: str, prefix: str, client: redis.Redis) -> None:
    store = RedisStateStore(make_client(redis_url), key_prefix=prefix, events_maxlen=50)
    try:
        store.create_run(make_run(), ["W1"])
        for number in range(600):
            store.append_event("run-1", {"n": number})
        assert client.xlen(f"{prefix}:execution:run-1:events") < 300
        assert store.events("run-1", count=1)[0]["n"] == 599
    finally:
        store.close()


def test_counts_and_summary(store: RedisStateStore, run: RunRecord) -> None:
    assert store.claim(run.run_id, "WORKER_001", "a")
    store.update_worker(run.run_id, "WORKER_001", tokens=100, cost_usd=0.25)
    assert store.finish(run.run_id, "WORKER_001", "a", "passed")
    assert store.claim(run.run_id, "WORKER_002", "b")
    store.update_worker(run.run_id, "WORKER_002", tokens=50, cost_usd=0.5)
    assert store.skip(run.run_id, "WORKER_003")
    counts = store.counts(run.run_id)
    assert counts == {"pending": 1, "running": 1, "passed": 1, "failed": 0, "escalated": 0, "skipped": 1}
    summary = store.summary(run.run_id)
    assert (summary.total, summary.finished, summary.tokens, summary.cost_usd) == (4, 2, 150, 0.75)
    assert summary.counts == counts and summary.running == {"WORKER_002": "b"} and summary.expired == []
    assert summary.as_dict()["run"]["run_id"] == run.run_id
    with pytest.raises(StateError, match="no such run"):
        store.summary("nope")


# --------------------------------------------------------------------------- bad data, errors


def test_bad_worker_hash_is_a_state_error_naming_the_key(store: RedisStateStore, client: redis.Redis,
                                                         prefix: str, run: RunRecord) -> None:
    key = f"{prefix}:execution:{run.run_id}:worker:WORKER_001"
    client.hset(key, "attempt", "three")
    with pytest.raises(StateError, match=key):
        store.worker(run.run_id, "WORKER_001")
    with pytest.raises(StateError, match=key):
        store.workers(run.run_id)
    client.hset(key, mapping={"attempt": "3", "files": "not json ["})
    with pytest.raises(StateError, match=f"{key}.*files"):
        store.worker(run.run_id, "WORKER_001")
    client.hset(key, mapping={"files": "[]", "type": "workforce.run"})
    with pytest.raises(StateError, match=key):
        store.worker(run.run_id, "WORKER_001")
    client.hset(key, mapping={"type": "workforce.worker", "version": "2"})
    with pytest.raises(StateError, match=f"{key}.*newer"):
        store.worker(run.run_id, "WORKER_001")


def test_bad_run_hash_is_a_state_error_naming_the_key(store: RedisStateStore, client: redis.Redis, prefix: str) -> None:
    key = f"{prefix}:execution:run-x"
    client.hset(key, mapping={"run_id": "run-x", "created_at": "1.0"})
    with pytest.raises(StateError, match=f"{key}.*type/version"):
        store.get_run("run-x")
    client.hset(key, mapping={"type": "workforce.run", "version": "1", "target": "t", "workers_dir": "w",
                              "status": "exploded"})
    with pytest.raises(StateError, match=f"{key}.*status"):
        store.get_run("run-x")
    client.delete(key)
    client.set(key, "a string, not a hash")
    with pytest.raises(StateError, match="WRONGTYPE") as caught:
        store.get_run("run-x")
    assert not isinstance(caught.value, StateUnavailable)
    assert isinstance(caught.value.__cause__, redis.ResponseError)


def test_a_missing_worker_hash_listed_in_a_status_set(store: RedisStateStore, client: redis.Redis,
                                                      prefix: str, run: RunRecord) -> None:
    client.delete(f"{prefix}:execution:{run.run_id}:worker:WORKER_003")
    with pytest.raises(StateError, match="WORKER_003"):
        store.workers(run.run_id)


def test_an_unreachable_redis_raises_state_unavailable(tmp_path) -> None:
    store = RedisStateStore(make_client(f"unix://{tmp_path}/nothing.sock"), key_prefix="x")
    with pytest.raises(StateUnavailable) as caught:
        store.get_run("run-1")
    assert isinstance(caught.value, StateError)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    with pytest.raises(StateUnavailable):
        store.claim("run-1", "W1", "a")


def test_a_client_without_decode_responses_is_refused(redis_url: str) -> None:
    with pytest.raises(StateError, match="decode_responses"):
        RedisStateStore(redis.Redis.from_url(redis_url))


# --------------------------------------------------------------------------- replay merges


def test_merge_worker_never_regresses_a_final_status(store: RedisStateStore, run: RunRecord) -> None:
    assert store.claim(run.run_id, "WORKER_001", "a")
    assert store.finish(run.run_id, "WORKER_001", "a", "passed", tokens=9)
    stale = WorkerState(worker_id="WORKER_001", status="running", owner="b")
    assert not store.merge_worker(run.run_id, stale)
    assert not store.merge_worker(run.run_id, stale.model_copy(update={"status": "failed"}))
    state = store.worker(run.run_id, "WORKER_001")
    assert state is not None and (state.status, state.tokens) == ("passed", 9)
    assert store.merge_worker(run.run_id, WorkerState(worker_id="WORKER_001"), reset=True)
    assert store.counts(run.run_id)["pending"] == 4

    assert store.skip(run.run_id, "WORKER_002")
    assert not store.merge_worker(run.run_id, WorkerState(worker_id="WORKER_002", status="running", owner="b"))
    assert store.merge_worker(run.run_id, WorkerState(worker_id="WORKER_002", status="failed", owner="b"))


def test_merge_worker_respects_a_live_lease_and_takes_a_lease_for_its_owner(store: RedisStateStore,
                                                                            run: RunRecord) -> None:
    assert store.claim(run.run_id, "WORKER_001", "other")
    assert not store.merge_worker(run.run_id, WorkerState(worker_id="WORKER_001", status="running", owner="me"))
    assert store.merge_worker(run.run_id, WorkerState(worker_id="WORKER_002", status="running", owner="me"))
    assert not store.claim(run.run_id, "WORKER_002", "other")
    assert store.renew(run.run_id, "WORKER_002", "me")


def test_merge_run_and_merge_event_are_idempotent(store: RedisStateStore, run: RunRecord) -> None:
    assert store.merge_run(run, [*WORKERS, "WORKER_005"]) == 1
    assert store.merge_run(run, [*WORKERS, "WORKER_005"]) == 0
    assert store.merge_event(run.run_id, {"event": "x"}, "writer:1")
    assert not store.merge_event(run.run_id, {"event": "x"}, "writer:1")
    assert len(store.events(run.run_id)) == 1
    assert store.counts(run.run_id)["pending"] == 5


def test_merge_allowed_rules() -> None:
    assert merge_allowed(None, "running")
    assert merge_allowed("pending", "running") and merge_allowed("running", "failed")
    assert not merge_allowed("failed", "running") and not merge_allowed("skipped", "pending")
    assert not merge_allowed("passed", "failed") and merge_allowed("failed", "passed")
    assert merge_allowed("passed", "pending", reset=True)


def test_delete_run(store: RedisStateStore, client: redis.Redis, prefix: str, run: RunRecord) -> None:
    store.append_event(run.run_id, {"event": "x"})
    assert store.claim(run.run_id, "WORKER_001", "a")
    assert store.delete_run(run.run_id) > 0
    assert store.get_run(run.run_id) is None and store.latest_run_id() is None
    assert list(client.scan_iter(match=f"{prefix}:*")) == []


@pytest.mark.parametrize("implementation", [RedisStateStore, ResilientStateStore])
def test_implementations_keep_the_protocol_signatures(implementation: type) -> None:
    for name, member in inspect.getmembers(StateStore, inspect.isfunction):
        if name.startswith("_"):
            continue
        expected = inspect.signature(member)
        actual = inspect.signature(getattr(implementation, name))
        assert list(actual.parameters) == list(expected.parameters), name
        assert str(actual) == str(expected), name
