"""Retrospective store: real mem0 (embedded Chroma, the packaged offline model), a loopback REST
server, and the local log that keeps every retrospective while the backend is away."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestration.config import RetrospectiveConfig
from orchestration.errors import ConfigError
from orchestration.records import Retrospective
from orchestration.retrospectives import (
    LOG_NAME,
    EmbeddedMem0Backend,
    InMemoryBackend,
    Mem0Retrospectives,
    RestMem0Backend,
    build_memory,
    model_folder,
    open_retrospective_store,
)

SECRET = "hunter2-very-secret-value"


def retro(worker: str, *, run: str = "run-1", status: str = "passed", errors: list[str] | None = None,
          lessons: list[str] | None = None, name: str = "task", **fields: Any) -> Retrospective:
    return Retrospective(run_id=run, worker_id=worker, name=name, status=status, provider="openai",
                         duration_s=12.5, tests_passed=3, tests_total=4, files=["pkg/mod.py"],
                         errors=errors or [], lessons=lessons or [], timestamp=1.0, **fields)


INTERPRETER = retro("WORKER_001", name="Content quality tests", status="failed",
                    errors=["ModuleNotFoundError: no module named yaml"],
                    lessons=["run TEST_PROCESS with the venv's python, not the system python3"])
DOCS = retro("WORKER_002", name="Write the user guide", lessons=["markdown headings need a blank line after them"])
TIMEOUT = retro("WORKER_003", name="Fetch remote schema", status="escalated",
                errors=["httpx.ConnectTimeout after 30 s"], lessons=["mock the network in unit tests"])


def log_lines(logs_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (logs_dir / LOG_NAME).read_text().splitlines()]


# ── embedded mem0, built once per module (it loads the model) ───────────────────────────────


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real mem0.Memory in a temp dir; records name lookups and non-unix connects while it is built and used."""
    path = tmp_path_factory.mktemp("mem0")
    connects: list[Any] = []
    original_connect, original_lookup = socket.socket.connect, socket.getaddrinfo

    def recording_connect(self: socket.socket, address: Any) -> Any:
        if self.family != socket.AF_UNIX:
            connects.append(address)
        return original_connect(self, address)

    def recording_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        connects.append(host)
        return original_lookup(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", recording_connect)
        patch.setattr(socket, "getaddrinfo", recording_lookup)
        patch.setenv("MEM0_DIR", str(path))  # what build_memory would set; restored after the build
        memory = build_memory(path, model_dir=model_folder(), collection="test_retrospectives")
        backend = EmbeddedMem0Backend.wrap(memory)
        backend.add("warm-up memory", "warm-up", {"retrospective_id": "warm"})
        backend.search("warm-up", "warm-up", 1)
    yield {"memory": memory, "path": path, "connects": connects}
    memory.close()


@pytest.fixture
def make_store(embedded: dict[str, Any], tmp_path: Path) -> Callable[..., Mem0Retrospectives]:
    def make(user_id: str, environ: dict[str, str] | None = None, logs: str = "logs") -> Mem0Retrospectives:
        backend = EmbeddedMem0Backend.wrap(embedded["memory"])
        return Mem0Retrospectives(backend, tmp_path / logs, user_id=user_id, environ=environ or {})
    return make


def count_in_mem0(embedded: dict[str, Any], user_id: str) -> int:
    return len(embedded["memory"].get_all(filters={"user_id": user_id}, top_k=1000)["results"])


def test_embedded_mem0_is_offline_and_keeps_its_files_in_its_dir(embedded: dict[str, Any]) -> None:
    assert embedded["connects"] == []
    assert (embedded["path"] / "history.db").is_file()
    assert (embedded["path"] / "chroma").is_dir()


def test_add_then_search_finds_the_retrospective_by_meaning(make_store: Callable[..., Mem0Retrospectives],
                                                             tmp_path: Path) -> None:
    store = make_store("meaning")
    for item in (INTERPRETER, DOCS, TIMEOUT):
        store.add(item)

    hits = store.search("tests were run by the wrong Python interpreter", k=3)

    assert hits[0]["metadata"]["worker_id"] == "WORKER_001"
    assert hits[0]["source"] == "mem0" and hits[0]["score"] > hits[-1]["score"]
    assert hits[0]["memory"] == INTERPRETER.as_text()
    assert hits[0]["metadata"]["retrospective_id"].startswith("run-1:WORKER_001:")
    assert [line["stored"] for line in log_lines(tmp_path / "logs")] == [True, True, True]
    assert store.lessons_for("python interpreter for the test command", k=1) == [
        "WORKER_001 (failed): run TEST_PROCESS with the venv's python, not the system python3"
    ]


def test_user_id_namespaces_are_separate(make_store: Callable[..., Mem0Retrospectives]) -> None:
    alpha, beta = make_store("alpha", logs="a"), make_store("beta", logs="b")
    alpha.add(INTERPRETER)
    beta.add(DOCS)

    assert [h["metadata"]["worker_id"] for h in beta.search("python interpreter", k=5)] == ["WORKER_002"]
    assert [h["metadata"]["worker_id"] for h in alpha.search("user guide", k=5)] == ["WORKER_001"]


def test_switched_off_adds_go_to_the_log_and_replay_stores_each_once(
    make_store: Callable[..., Mem0Retrospectives], embedded: dict[str, Any], tmp_path: Path
) -> None:
    store = make_store("offline")
    store.online = False
    for item in (INTERPRETER, DOCS, TIMEOUT):
        store.add(item)

    assert [line["stored"] for line in log_lines(tmp_path / "logs")] == [False, False, False]
    assert log_lines(tmp_path / "logs")[0]["errors"] == INTERPRETER.errors
    assert count_in_mem0(embedded, "offline") == 0
    offline_hits = store.search("remote schema timeout", k=1)
    assert offline_hits[0]["source"] == "log" and offline_hits[0]["metadata"]["worker_id"] == "WORKER_003"

    store.online = True
    assert store.replay_pending() == 3

    assert [line["stored"] for line in log_lines(tmp_path / "logs")] == [True, True, True]
    found = {h["metadata"]["worker_id"] for h in store.search("worker retrospective", k=10)}
    assert found == {"WORKER_001", "WORKER_002", "WORKER_003"}
    assert store.search("network connect timeout", k=1)[0]["metadata"]["worker_id"] == "WORKER_003"
    assert store.replay_pending() == 0
    assert count_in_mem0(embedded, "offline") == 3


def test_replay_after_a_crash_between_storing_and_marking_stores_nothing_twice(
    make_store: Callable[..., Mem0Retrospectives], embedded: dict[str, Any], tmp_path: Path
) -> None:
    store = make_store("crash-after-store")
    store.add(INTERPRETER)
    log = tmp_path / "logs" / LOG_NAME
    log.write_text(log.read_text().replace('"stored": true', '"stored": false'))  # the mark never happened

    assert store.replay_pending() == 0
    assert [line["stored"] for line in log_lines(tmp_path / "logs")] == [True]
    assert count_in_mem0(embedded, "crash-after-store") == 1


class DyingBackend(EmbeddedMem0Backend):
    """The process is killed while the backend call is in progress."""

    def add(self, text: str, user_id: str, metadata: dict[str, Any]) -> None:
        raise KeyboardInterrupt


def test_a_crash_during_the_backend_call_is_replayed_by_the_next_launcher(
    make_store: Callable[..., Mem0Retrospectives], embedded: dict[str, Any], tmp_path: Path
) -> None:
    dying = Mem0Retrospectives(DyingBackend.wrap(embedded["memory"]), tmp_path / "logs", user_id="crash-mid-add")
    with pytest.raises(KeyboardInterrupt):
        dying.add(TIMEOUT)
    assert not (tmp_path / "logs" / LOG_NAME).exists()

    store = make_store("crash-mid-add")
    assert store.replay_pending() == 1
    assert [(line["worker_id"], line["stored"]) for line in log_lines(tmp_path / "logs")] == [("WORKER_003", True)]
    assert store.search("remote schema", k=1)[0]["metadata"]["worker_id"] == "WORKER_003"
    assert store.replay_pending() == 0


def test_a_secret_never_reaches_mem0_or_the_log(
    make_store: Callable[..., Mem0Retrospectives], embedded: dict[str, Any], tmp_path: Path
) -> None:
    store = make_store("secrets", environ={"OPENAI_API_KEY": SECRET})
    leaky = retro("WORKER_009", name="zanzibar deploy", status="failed",
                  errors=[f"401 for key {SECRET}", "token sk-abcdefghijklmnopqrstuvwx rejected"],
                  lessons=[f"never echo {SECRET}"], instruction_retrospective=f"uses {SECRET}")
    store.add(leaky)
    store.online = False
    store.add(leaky.model_copy(update={"worker_id": "WORKER_010"}))
    store.online = True
    assert store.replay_pending() == 1

    on_disk = b"".join(p.read_bytes() for root in (embedded["path"], tmp_path)
                       for p in root.rglob("*") if p.is_file())
    assert b"zanzibar" in on_disk  # the scan does see what was stored
    assert SECRET.encode() not in on_disk and b"sk-abcdefghijklmnop" not in on_disk
    hit = store.search("zanzibar deploy", k=1)[0]
    assert "***" in hit["memory"] and SECRET not in json.dumps(hit)


def test_concurrent_adds_from_many_tasks_are_all_stored(
    make_store: Callable[..., Mem0Retrospectives], embedded: dict[str, Any], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = make_store("concurrent")

    async def add_all() -> None:
        await asyncio.gather(*(asyncio.to_thread(store.add, retro(f"WORKER_{i:03d}")) for i in range(24)))

    with caplog.at_level(logging.WARNING, logger="orchestration.retrospectives"):
        asyncio.run(add_all())

    assert caplog.records == []
    lines = log_lines(tmp_path / "logs")
    assert len(lines) == 24 and all(line["stored"] for line in lines)
    assert count_in_mem0(embedded, "concurrent") == 24
    assert not any((tmp_path / "logs" / "retrospectives.inflight").iterdir())


# ── the REST backend against a loopback server ──────────────────────────────────────────────


class Mem0Server:
    """A loopback stand-in for the mem0 REST server that records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.status = 200
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.command, self.path, body))
                reply = {"results": [{"id": "m1", "memory": "remembered", "score": 0.9,
                                      "metadata": {"worker_id": "WORKER_001", "status": "failed",
                                                   "lessons": "pin the interpreter"}}]}
                data = json.dumps(reply if server.status == 200 else {"detail": "boom"}).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mem0_server() -> Iterator[Mem0Server]:
    server = Mem0Server()
    yield server
    server.stop()


def test_rest_backend_sends_the_seeds_requests(mem0_server: Mem0Server, tmp_path: Path) -> None:
    environ = {"MEM0_API_URL": mem0_server.url + "/"}
    store = open_retrospective_store(RetrospectiveConfig(), tmp_path, tmp_path / "logs", environ)
    assert isinstance(store.backend, RestMem0Backend)

    store.add(INTERPRETER)
    hits = store.search("python interpreter", k=2)
    store.close()

    (add_method, add_path, add_body), (search_method, search_path, search_body) = mem0_server.requests
    assert (add_method, add_path, search_method, search_path) == ("POST", "/memories", "POST", "/search")
    assert add_body["messages"] == [{"role": "user", "content": INTERPRETER.as_text()}]
    assert add_body["user_id"] == "wingman" and set(add_body) == {"messages", "user_id", "metadata"}
    assert add_body["metadata"]["retrospective_id"] == log_lines(tmp_path / "logs")[0]["retrospective_id"]
    assert add_body["metadata"]["lessons"] == INTERPRETER.lessons[0]
    assert search_body == {"query": "python interpreter", "user_id": "wingman"}
    assert hits == [{"id": "m1", "memory": "remembered", "score": 0.9, "source": "mem0",
                     "metadata": {"worker_id": "WORKER_001", "status": "failed", "lessons": "pin the interpreter"}}]
    assert log_lines(tmp_path / "logs")[0]["stored"] is True


def test_rest_500_falls_back_to_the_log_and_replays_later(
    mem0_server: Mem0Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Mem0Retrospectives(RestMem0Backend(mem0_server.url, timeout_s=5), tmp_path / "logs")
    mem0_server.status = 500
    with caplog.at_level(logging.WARNING, logger="orchestration.retrospectives"):
        store.add(INTERPRETER)
        store.add(DOCS)  # within the retry pause: not even tried

    assert len(mem0_server.requests) == 1
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1
    assert [line["stored"] for line in log_lines(tmp_path / "logs")] == [False, False]
    assert store.search("user guide markdown", k=1)[0]["source"] == "log"

    mem0_server.status = 200
    assert store.replay_pending() == 2
    assert [path for _, path, _ in mem0_server.requests] == ["/memories"] * 3
    assert [line["stored"] for line in log_lines(tmp_path / "logs")] == [True, True]
    assert store.replay_pending() == 0


# ── the factory and the fake ────────────────────────────────────────────────────────────────


def test_backend_off_keeps_a_local_log_only(tmp_path: Path) -> None:
    store = open_retrospective_store(RetrospectiveConfig(backend="off"), tmp_path, tmp_path / "logs", {})
    store.add(TIMEOUT)

    assert store.backend is None and store.replay_pending() == 0
    assert log_lines(tmp_path / "logs")[0]["stored"] is False
    assert store.lessons_for("remote schema fetch") == ["WORKER_003 (escalated): mock the network in unit tests"]


def test_embedded_is_built_lazily_under_the_base_dir(tmp_path: Path) -> None:
    store = open_retrospective_store(RetrospectiveConfig(), tmp_path, tmp_path / "logs", {})
    assert isinstance(store.backend, EmbeddedMem0Backend) and not (tmp_path / ".workforce").exists()


def test_rest_backend_without_a_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MEM0_API_URL"):
        open_retrospective_store(RetrospectiveConfig(backend="rest"), tmp_path, tmp_path / "logs", {})


def test_in_memory_fake_behaves_like_a_backend(tmp_path: Path) -> None:
    fake = InMemoryBackend()
    store = Mem0Retrospectives(fake, tmp_path / "logs", retry_after_s=0)
    fake.available = False
    store.add(DOCS)
    fake.available = True

    assert store.replay_pending() == 1 and len(fake.memories) == 1
    assert store.search("user guide", k=3)[0]["metadata"]["worker_id"] == "WORKER_002"
