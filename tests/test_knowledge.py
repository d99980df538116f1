"""ChromaKnowledgeStore on a real embedded Chroma in tmp_path with the real offline model."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from orchestration.config import KnowledgeConfig
from orchestration.embedding import Embedder, FairLock, default_model_path
from orchestration.errors import ConfigError, StateError
from orchestration.instruction import WorkerInstruction
from orchestration.knowledge import ChromaKnowledgeStore, KnowledgeStoreError, result_documents
from orchestration.records import KnowledgeRecord
from orchestration.records import TestOutcome as Outcome

TOPICS = {
    "WORKER_001": ("YAML configuration loader", ["config/loader.py"], ["Reads settings from a YAML file"]),
    "WORKER_002": ("Redis lease heartbeat", ["state/lease.py"], ["Renews the Redis key expiry every 10 s"]),
    "WORKER_003": ("HTML report renderer", ["report/html.py"], ["Renders test results as an HTML table"]),
    "WORKER_004": ("SQL schema migration", ["db/migrate.py"], ["Adds a column to the users table"]),
    "WORKER_005": ("Image thumbnail resizer", ["media/thumbs.py"], ["Scales JPEG photos down to 128 px"]),
    "WORKER_006": ("Token bucket rate limiter", ["net/limiter.py"], ["Caps HTTP requests per minute"]),
    "WORKER_007": ("Email notification sender", ["notify/mail.py"], ["Sends an SMTP message on failure"]),
}


def make_instruction(worker_id: str, title: str, deliverables: list[str], criteria: list[str]) -> WorkerInstruction:
    return WorkerInstruction(
        worker_id=worker_id, title=title, source=f"{worker_id}.md", content_hash=f"hash-{worker_id}-{title}",
        priority=1, priority_rule="default", deliverables=deliverables, success_criteria=criteria,
        task_classification="MECHANICAL",
    )


def make_record(worker_id: str, status: str = "passed", **fields: object) -> KnowledgeRecord:
    values: dict[str, object] = {
        "run_id": "run-1", "worker_id": worker_id, "title": f"Task of {worker_id}", "status": status,
        "task": "Write a small module", "summary": "Implemented it.",
    }
    values.update(fields)
    return KnowledgeRecord.model_validate(values)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The packaged model, loaded once for the whole session."""
    return Embedder.shared()


@pytest.fixture
def store(tmp_path: Path, embedder: Embedder):
    with ChromaKnowledgeStore(KnowledgeConfig(), tmp_path, embedder=embedder, environ={}) as opened:
        yield opened


@pytest.fixture
def instructions() -> list[WorkerInstruction]:
    return [make_instruction(wid, *topic) for wid, topic in TOPICS.items()]


def test_model_comes_from_the_package_folder(embedder: Embedder) -> None:
    assert embedder.model_path == default_model_path().resolve()
    assert embedder.dimension == 384
    assert Embedder.shared() is embedder


def test_fair_lock_serves_waiters_in_arrival_order() -> None:
    lock, order = FairLock(), []

    def wait_turn(n: int) -> None:
        with lock:
            order.append(n)

    threads = [threading.Thread(target=wait_turn, args=(n,)) for n in range(4)]
    with lock:
        for thread in threads:
            thread.start()
            time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=5)
    assert order == [0, 1, 2, 3]


def test_store_lives_under_base_dir(store: ChromaKnowledgeStore, tmp_path: Path) -> None:
    assert store.path == tmp_path / ".workforce" / "chroma"
    assert store.path.is_dir()
    assert store.collection.name == "wingman_validation_knowledge"
    assert store.collection.configuration["hnsw"]["space"] == "cosine"


def test_reindexing_is_idempotent(store: ChromaKnowledgeStore, instructions: list[WorkerInstruction]) -> None:
    assert store.index_instructions(instructions) == len(instructions)
    assert store.index_instructions(instructions) == 0
    assert store.count() == len(instructions)
    changed = make_instruction("WORKER_001", "YAML configuration loader v2", ["config/loader.py"], [])
    assert store.index_instructions([*instructions, changed]) == 1
    meta = store.collection.get(ids=["instruction:hash-WORKER_002-Redis lease heartbeat"])["metadatas"][0]
    assert meta["kind"] == "instruction" and meta["status"] == "planned"
    assert meta["classification"] == "MECHANICAL" and meta["priority"] == 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("load application settings from a .yml file", "WORKER_001"),
        ("shrink pictures to small previews", "WORKER_005"),
        ("throttle outgoing API calls", "WORKER_006"),
        ("alter a database table", "WORKER_004"),
    ],
)
def test_similar_ranks_related_instruction_first(
    store: ChromaKnowledgeStore, instructions: list[WorkerInstruction], query: str, expected: str
) -> None:
    store.index_instructions(instructions)
    hits = store.similar(query, k=3)
    assert hits[0].worker_id == expected
    assert hits[0].kind == "instruction"
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_status_filter(store: ChromaKnowledgeStore, instructions: list[WorkerInstruction]) -> None:
    store.index_instructions(instructions)
    store.record(make_record("WORKER_001", "passed"))
    store.record(make_record("WORKER_002", "failed"))
    store.record(make_record("WORKER_003", "escalated"))
    store.flush()
    passed = store.similar("write a small module", k=20, status="passed")
    assert [h.worker_id for h in passed] == ["WORKER_001"]
    assert {h.status for h in store.similar("module", k=20, status="failed")} == {"failed"}
    assert {h.kind for h in store.similar("module", k=20, status="planned")} == {"instruction"}
    assert store.similar("module", k=0) == []


def test_failures_are_indexed_as_kind_failure(store: ChromaKnowledgeStore) -> None:
    reasons = ["pytest: 3 tests failed in test_parser.py", "ruff: unused import", "ruff: unused import"]
    store.record(make_record("WORKER_009", "failed", failure_reasons=reasons))
    store.flush()
    got = store.collection.get(where={"kind": "failure"}, include=["documents", "metadatas"])
    assert len(got["ids"]) == 2
    assert all(m["worker_id"] == "WORKER_009" and m["status"] == "failed" for m in got["metadatas"])
    assert any("3 tests failed" in doc for doc in got["documents"])
    result = store.collection.get(ids=["result:run-1:WORKER_009"])["metadatas"][0]
    assert result["kind"] == "result" and result["failures"] == 3


def test_failures_of_a_passed_worker_never_count_as_passed(store: ChromaKnowledgeStore) -> None:
    store.record(make_record("WORKER_008", "passed", failure_reasons=["first attempt: ImportError"]))
    store.flush()
    failure = store.collection.get(where={"kind": "failure"})["metadatas"][0]
    assert failure["status"] == "failed" and failure["worker_status"] == "passed"
    assert [h.kind for h in store.similar("ImportError", k=5, status="passed")] == ["result"]


def test_secrets_are_never_stored(store: ChromaKnowledgeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-" + "Q7x9Lm2Pz4" * 5
    plain = "hunter2-plain-password-value"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("DB_PASSWORD", plain)
    padding = "x" * (store.config.max_doc_chars - 3000)
    record = make_record(
        "WORKER_010", "failed", title=f"uses {plain}", summary=f"used key {secret}",
        files={"app.py": f"KEY = '{secret}'\n", "big.py": padding + secret * 40},
        tests=[Outcome(command="pytest", passed=False, exit_code=1, output_tail=f"auth {secret} rejected")],
        failure_reasons=[f"401 for {secret} / {plain}"],
    )
    store.record(record)
    store.flush()
    got = store.collection.get(include=["documents", "metadatas"])
    stored = " ".join(got["documents"]) + " ".join(str(m) for m in got["metadatas"])
    assert len(got["ids"]) == 2
    assert "***" in stored
    for leaked in (secret, secret[:20], plain):
        assert leaked not in stored


def test_result_document_is_bounded() -> None:
    record = make_record("WORKER_011", files={f"f{i}.py": "print('x')\n" * 2000 for i in range(5)})
    doc = result_documents(record, 3000, environ={})[0]
    assert len(doc.text) <= 3000
    assert "--- f0.py ---" in doc.text and "Summary:\nImplemented it." in doc.text


def test_truncation_never_leaves_part_of_a_secret() -> None:
    plain = "hunter2-plain-password-value"
    for offset in range(len(plain)):
        record = make_record("WORKER_012", files={"big.py": "x" * (2500 + offset) + plain * 50})
        doc = result_documents(record, 3000, environ={"DB_PASSWORD": plain})[0]
        assert "hunter" not in doc.text


def test_concurrent_records_are_all_stored(store: ChromaKnowledgeStore) -> None:
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for i in range(25):
                store.record(make_record(f"W{thread}_{i}", summary=f"thread {thread} item {i}"))
                if i % 10 == 0:
                    store.similar(f"thread {thread}", k=2)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.flush()
    assert errors == []
    assert store.count() == 200
    assert len(store.collection.get(where={"kind": "result"}, include=[])["ids"]) == 200


def test_prompt_context_is_bounded_and_passed_only(store: ChromaKnowledgeStore) -> None:
    code = "def parse_config(path):\n    return yaml.safe_load(open(path))\n" * 30
    for n in range(4):
        store.record(make_record(f"OK_{n}", "passed", task="YAML config parser", files={"cfg.py": code}))
    store.record(make_record("BAD_1", "failed", task="YAML config parser", summary="FAILED-MARKER"))
    store.record(make_record("ESC_1", "escalated", task="YAML config parser", summary="ESCALATED-MARKER"))
    store.flush()
    block = store.prompt_context("parse a yaml config", k=5, max_chars=1500, exclude_worker="OK_0")
    assert 0 < len(block) <= 1500
    assert "OK_" in block and "parse_config" in block
    assert "MARKER" not in block and "BAD_1" not in block and "OK_0" not in block
    full = store.prompt_context("parse a yaml config", k=5, max_chars=100_000)
    assert full.count("### OK_") == 4
    assert store.prompt_context("parse a yaml config", max_chars=50) == ""


def test_reopened_store_sees_the_data(tmp_path: Path, embedder: Embedder) -> None:
    config = KnowledgeConfig(path=str(tmp_path / "db"), collection="reopen_test")
    with ChromaKnowledgeStore(config, embedder=embedder, environ={}) as first:
        first.record(make_record("WORKER_020", task="Compile protobuf schemas"))
    with ChromaKnowledgeStore(config, embedder=embedder, environ={}) as second:
        assert second.count() == 1
        assert second.similar("protocol buffers", k=1)[0].id == "result:run-1:WORKER_020"


def test_write_failure_surfaces_at_flush(store: ChromaKnowledgeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_: object) -> None:
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(store.collection, "upsert", broken)
    store.record(make_record("WORKER_030"))
    with pytest.raises(KnowledgeStoreError, match="cannot store 1 documents: disk I/O error"):
        store.flush()
    store.flush()  # the error is reported once


def test_errors_are_translated(tmp_path: Path, embedder: Embedder) -> None:
    with pytest.raises(StateError, match="cannot connect to the Chroma server"):
        ChromaKnowledgeStore(KnowledgeConfig(), tmp_path, embedder=embedder,
                             environ={"CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": "1"})
    with pytest.raises(ConfigError, match="CHROMA_PORT"):
        ChromaKnowledgeStore(KnowledgeConfig(), tmp_path, embedder=embedder, environ={"CHROMA_HOST": "h",
                                                                                     "CHROMA_PORT": "x"})
    store = ChromaKnowledgeStore(KnowledgeConfig(), tmp_path, embedder=embedder, environ={})
    store.close()
    store.close()
    with pytest.raises(KnowledgeStoreError, match="closed"):
        store.record(make_record("WORKER_040"))
