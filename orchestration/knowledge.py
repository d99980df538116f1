"""Cross-worker knowledge in ChromaDB: planned instructions, finished results and failure reasons.

    store = ChromaKnowledgeStore(config.knowledge, base_dir, embedding_model=config.embedding_model)
    store.index_instructions(instructions)      # idempotent, keyed by content hash
    store.record(knowledge_record)              # queued; one writer thread stores batches
    store.similar("parse the config file", k=5, status="passed")
    store.prompt_context(task_text, exclude_worker="WORKER_007")
    store.close()                               # flushes the queue first

Embedded Chroma (`PersistentClient` at `config.path`) unless `CHROMA_HOST` is set, then
`HttpClient(CHROMA_HOST, CHROMA_PORT or 8000)`. Every write goes through one writer thread so the
embedded SQLite database is never written from two threads at once; reads run in the caller's
thread. Text is passed through `redaction.redact` before it is stored. Chroma failures surface as
`KnowledgeStoreError` (a `StateError`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings

from orchestration.config import KnowledgeConfig
from orchestration.embedding import Embedder, EmbedderFunction
from orchestration.errors import ConfigError, StateError, WorkforceError
from orchestration.instruction import WorkerInstruction
from orchestration.records import KnowledgeRecord, SimilarHit, TestOutcome
from orchestration.redaction import redact

log = logging.getLogger(__name__)

TRUNCATED = "\n…[truncated]"
_GET_CHUNK = 1000
_LOCK_RETRIES = 3
_KINDS = ("instruction", "result", "failure")


class KnowledgeStoreError(StateError):
    """The knowledge store (ChromaDB) could not be opened, read or written."""


@dataclass(frozen=True, slots=True)
class KnowledgeDoc:
    """One document as stored: id, (redacted) text and flat metadata."""

    id: str
    text: str
    metadata: dict[str, str | int | float | bool] = field(default_factory=dict)


@contextmanager
def chroma_errors(action: str) -> Iterator[None]:
    """Translate anything chromadb raises into a KnowledgeStoreError naming `action`."""
    try:
        yield
    except WorkforceError:
        raise
    except Exception as exc:
        detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise KnowledgeStoreError(f"knowledge store: cannot {action}: {detail}") from exc


# --- documents -------------------------------------------------------------------------------


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked when cut."""
    if len(text) <= limit:
        return text
    if limit <= len(TRUNCATED):
        return text[: max(limit, 0)]
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def clean(text: str, limit: int, environ: Mapping[str, str] | None = None) -> str:
    """Redact first (a cut must never leave half a secret), then clip."""
    return clip(redact(text, environ), limit)


def _bullets(items: Sequence[str]) -> str:
    return "\n".join(f"- {item}" for item in items) or "- (none listed)"


def instruction_document(instruction: WorkerInstruction, environ: Mapping[str, str] | None = None) -> KnowledgeDoc:
    """Title, deliverables and success criteria of a planned worker."""
    text = (
        f"{instruction.title}\nDeliverables:\n{_bullets(instruction.deliverables)}\n"
        f"Success criteria:\n{_bullets(instruction.success_criteria)}"
    )
    metadata: dict[str, str | int | float | bool] = {
        "kind": "instruction",
        "worker_id": instruction.worker_id,
        "title": redact(instruction.title, environ),
        "status": "planned",
        "classification": instruction.task_classification,
        "priority": instruction.priority,
        "content_hash": instruction.content_hash,
    }
    return KnowledgeDoc(f"instruction:{instruction.content_hash}", redact(text, environ), metadata)


def _test_line(test: TestOutcome, environ: Mapping[str, str] | None) -> str:
    verdict = "PASS" if test.passed else ("TIMEOUT" if test.timed_out else "FAIL")
    line = f"{verdict} `{test.command}` (exit {test.exit_code}, {test.duration_s:.1f}s)"
    if not test.passed and test.output_tail.strip():
        line += "\n" + clean(test.output_tail.strip(), 400, environ)
    return line


def _files_block(files: Mapping[str, str], budget: int, environ: Mapping[str, str] | None) -> str:
    """As many deliverables as fit in `budget` characters, each headed by its path."""
    parts: list[str] = []
    for path, content in files.items():
        header = f"--- {redact(path, environ)} ---\n"
        room = budget - len(header) - 1
        if room < 80:
            break
        piece = header + clean(content, room, environ)
        parts.append(piece)
        budget -= len(piece) + 1
    return "\n".join(parts)


def result_text(record: KnowledgeRecord, max_chars: int, environ: Mapping[str, str] | None = None) -> str:
    """Task, summary, test outcomes, then as much of the code as fits in `max_chars`."""
    tests = "\n".join(_test_line(t, environ) for t in record.tests) or "(no tests run)"
    head = (
        f"{clean(record.title, 300, environ)} [{record.worker_id}] {record.status}\n"
        f"Task:\n{clean(record.task, max_chars // 4, environ)}\n"
        f"Summary:\n{clean(record.summary or '(none)', max_chars // 4, environ)}\n"
        f"Tests:\n{clip(tests, max_chars // 8)}\n"
    )
    files = _files_block(record.files, max_chars - len(head) - len("Files:\n"), environ)
    return clip(head + (f"Files:\n{files}" if files else ""), max_chars)


def _failure_doc(record: KnowledgeRecord, reason: str, environ: Mapping[str, str] | None) -> KnowledgeDoc:
    """One failure reason; its `status` is never "passed" (a worker that passed after a failed
    attempt still failed that attempt), the worker's own status is kept as `worker_status`."""
    key = hashlib.sha256(reason.encode("utf-8", "replace")).hexdigest()[:16]
    text = (
        f"{clean(record.title, 300, environ)} [{record.worker_id}] {record.status}\n"
        f"Failure: {clean(reason, 2000, environ)}\nTask:\n{clean(record.task, 1000, environ)}"
    )
    metadata: dict[str, str | int | float | bool] = {
        "kind": "failure",
        "worker_id": record.worker_id,
        "run_id": record.run_id,
        "title": clean(record.title, 300, environ),
        "status": "failed" if record.status == "passed" else record.status,
        "worker_status": record.status,
    }
    return KnowledgeDoc(f"failure:{record.run_id}:{record.worker_id}:{key}", text, metadata)


def result_documents(
    record: KnowledgeRecord, max_chars: int, environ: Mapping[str, str] | None = None
) -> list[KnowledgeDoc]:
    """The result document plus one document per distinct failure reason."""
    metadata: dict[str, str | int | float | bool] = {
        "kind": "result",
        "worker_id": record.worker_id,
        "run_id": record.run_id,
        "title": clean(record.title, 300, environ),
        "status": record.status,
        "files": clean(", ".join(record.files), 1000, environ),
        "tests_passed": sum(t.passed for t in record.tests),
        "tests_total": len(record.tests),
        "failures": len(record.failure_reasons),
        "recorded_at": time.time(),
    }
    result = KnowledgeDoc(
        f"result:{record.run_id}:{record.worker_id}", result_text(record, max_chars, environ), metadata
    )
    reasons = dict.fromkeys(r.strip() for r in record.failure_reasons if r.strip())
    return [result, *(_failure_doc(record, reason, environ) for reason in reasons)]


def format_context(hits: Sequence[SimilarHit], max_chars: int) -> str:
    """A prompt block of `hits`, never longer than `max_chars` ("" when nothing fits)."""
    header = "Similar work that passed earlier (most similar first):\n"
    parts, used = [header], len(header)
    for hit in hits:
        room = max_chars - used
        if room < 200:
            break
        title = hit.metadata.get("title", "")
        block = clip(f"\n### {hit.worker_id}: {title} (distance {hit.distance:.2f})\n{hit.text}\n", room)
        parts.append(block)
        used += len(block)
    return "".join(parts) if len(parts) > 1 else ""


# --- the single writer -----------------------------------------------------------------------

_STOP = object()


class BatchWriter:
    """One thread that stores queued documents in batches of up to `batch_size` or `wait_s`."""

    def __init__(
        self, write: Callable[[list[KnowledgeDoc]], None], batch_size: int = 64, wait_s: float = 0.05
    ) -> None:
        self._write = write
        self._batch_size = batch_size
        self._wait_s = wait_s
        self._queue: queue.Queue[Any] = queue.Queue()
        self._errors: list[str] = []
        self._errors_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="knowledge-writer", daemon=True)
        self._thread.start()

    def put(self, docs: Iterable[KnowledgeDoc]) -> None:
        for doc in docs:
            self._queue.put(doc)

    def flush(self) -> None:
        """Block until everything queued so far is stored; raise what failed meanwhile."""
        self._queue.join()
        with self._errors_lock:
            errors, self._errors = self._errors, []
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise KnowledgeStoreError(f"{errors[0]}{more}")

    def close(self) -> None:
        """Flush, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self.flush()

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._collect()
            if batch:
                self._store(batch)
            for _ in range(len(batch) + stop):
                self._queue.task_done()

    def _collect(self) -> tuple[list[KnowledgeDoc], bool]:
        """The next batch: block for one document, then take more until full or `wait_s` passed."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch, deadline = [first], time.monotonic() + self._wait_s
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _store(self, batch: list[KnowledgeDoc]) -> None:
        unique = list({doc.id: doc for doc in batch}.values())
        try:
            self._write(unique)
        except Exception as exc:
            message = str(exc) if isinstance(exc, WorkforceError) else redact(f"{type(exc).__name__}: {exc}")
            log.warning("knowledge store: %d documents not stored: %s", len(unique), message)
            with self._errors_lock:
                self._errors.append(message)


# --- the store -------------------------------------------------------------------------------


def _where(**conditions: Any) -> dict[str, Any] | None:
    clauses = [{key: value} for key, value in conditions.items() if value is not None]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _flat(metadata: Mapping[str, Any] | None) -> dict[str, str | int | float | bool]:
    return {k: v for k, v in (metadata or {}).items() if isinstance(v, str | int | float | bool)}


def make_client(path: Path, environ: Mapping[str, str]) -> ClientAPI:
    """`HttpClient` when CHROMA_HOST is set, else an embedded `PersistentClient` at `path`."""
    settings = Settings(anonymized_telemetry=False)
    host = environ.get("CHROMA_HOST")
    if host:
        port = environ.get("CHROMA_PORT") or "8000"
        if not port.isdigit():
            raise ConfigError(f"CHROMA_PORT must be a port number, not {port!r}")
        with chroma_errors(f"connect to the Chroma server at {host}:{port}"):
            return chromadb.HttpClient(host=host, port=int(port), settings=settings)
    with chroma_errors(f"open the Chroma database at {path}"):
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=settings)


class ChromaKnowledgeStore:
    """The `KnowledgeStore` seam on ChromaDB (see the module docstring)."""

    def __init__(
        self,
        config: KnowledgeConfig | None = None,
        base_dir: str | Path = ".",
        *,
        embedding_model: str | None = None,
        embedder: Embedder | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Open (or create) the collection; `embedder` defaults to the shared offline model.

        `environ` is where CHROMA_HOST/CHROMA_PORT are read (default os.environ); redaction always
        uses the live os.environ.
        """
        self.config = config or KnowledgeConfig()
        path = Path(self.config.path).expanduser()
        self.path = path if path.is_absolute() else Path(base_dir) / path
        self.embedder = embedder or Embedder.shared(embedding_model, base_dir)
        self._client = make_client(self.path, os.environ if environ is None else environ)
        with chroma_errors(f"open the collection {self.config.collection!r}"):
            self._collection = self._client.get_or_create_collection(
                self.config.collection,
                embedding_function=EmbedderFunction(self.embedder),  # type: ignore[arg-type]
                configuration={"hnsw": {"space": "cosine"}},
            )
        self._index_lock = threading.Lock()
        self._closed = False
        self._writer = BatchWriter(self._write, self.config.write_batch, self.config.write_wait_ms / 1000)

    @property
    def collection(self) -> Collection:
        return self._collection

    def count(self) -> int:
        with chroma_errors("count documents"):
            return self._collection.count()

    def index_instructions(self, instructions: Iterable[WorkerInstruction]) -> int:
        """Store instructions not yet indexed (by content hash); returns how many were new."""
        self._check_open()
        docs = {doc.id: doc for doc in (instruction_document(i) for i in instructions)}
        with self._index_lock:
            known = self._existing_ids(list(docs))
            new = [doc for doc_id, doc in docs.items() if doc_id not in known]
            self._writer.put(new)
            self._writer.flush()
        return len(new)

    def record(self, record: KnowledgeRecord) -> None:
        """Queue a finished worker's result and failure reasons (stored by the writer thread)."""
        self._check_open()
        self._writer.put(result_documents(record, self.config.max_doc_chars))

    def similar(
        self,
        text: str,
        k: int = 5,
        status: str | None = None,
        *,
        kind: str | None = None,
        exclude_worker: str | None = None,
    ) -> list[SimilarHit]:
        """The `k` nearest documents (cosine distance, nearest first), optionally filtered."""
        self._check_open()
        if k <= 0:
            return []
        exclude = {"$ne": exclude_worker} if exclude_worker else None
        where = _where(kind=kind, status=status, worker_id=exclude)
        vector = self.embedder.encode([text])
        with chroma_errors("search for similar work"):
            found = self._collection.query(
                query_embeddings=vector, n_results=k, where=where,
                include=["documents", "metadatas", "distances"],
            )
        return self._hits(found)

    def prompt_context(
        self, text: str, k: int | None = None, max_chars: int | None = None, exclude_worker: str | None = None
    ) -> str:
        """Most similar passed results (summaries and code) as a prompt block of ≤ `max_chars`."""
        hits = self.similar(
            text, self.config.k if k is None else k, "passed", kind="result", exclude_worker=exclude_worker
        )
        return format_context(hits, self.config.max_chars if max_chars is None else max_chars)

    def flush(self) -> None:
        """Wait until every queued write is stored; raises KnowledgeStoreError if any failed."""
        self._writer.flush()

    def close(self) -> None:
        """Flush, stop the writer thread and release the client (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.close()
        finally:
            closer = getattr(self._client, "close", None)
            if closer is not None:
                with chroma_errors("close the client"):
                    closer()

    def __enter__(self) -> ChromaKnowledgeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise KnowledgeStoreError("knowledge store: already closed")

    def _existing_ids(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        with chroma_errors("look up indexed instructions"):
            for start in range(0, len(ids), _GET_CHUNK):
                found.update(self._collection.get(ids=ids[start : start + _GET_CHUNK], include=[])["ids"])
        return found

    def _write(self, docs: list[KnowledgeDoc]) -> None:
        """Writer thread only: embed and upsert `docs`, retrying briefly if the database is locked."""
        vectors = self.embedder.encode([doc.text for doc in docs])
        for attempt in range(_LOCK_RETRIES + 1):
            try:
                with chroma_errors(f"store {len(docs)} documents"):
                    self._upsert(docs, vectors)
                return
            except KnowledgeStoreError as exc:
                if "locked" not in str(exc) or attempt == _LOCK_RETRIES:
                    raise
                time.sleep(0.1 * 2**attempt)

    def _upsert(self, docs: list[KnowledgeDoc], vectors: Any) -> None:
        step = self._client.get_max_batch_size()
        for start in range(0, len(docs), step):
            part = docs[start : start + step]
            self._collection.upsert(
                ids=[d.id for d in part],
                embeddings=vectors[start : start + step],
                documents=[d.text for d in part],
                metadatas=[d.metadata for d in part],
            )

    @staticmethod
    def _hits(found: Mapping[str, Any]) -> list[SimilarHit]:
        ids = (found.get("ids") or [[]])[0]
        docs = (found.get("documents") or [[]])[0]
        metas = (found.get("metadatas") or [[]])[0]
        dists = (found.get("distances") or [[]])[0]
        hits = []
        for doc_id, doc, meta, dist in zip(ids, docs, metas, dists, strict=False):
            meta = _flat(meta)
            kind = str(meta.get("kind", "result"))
            hits.append(SimilarHit(
                id=doc_id, worker_id=str(meta.get("worker_id", "")),
                kind=kind if kind in _KINDS else "result",  # type: ignore[arg-type]
                status=str(meta.get("status", "")), distance=float(dist), text=doc or "", metadata=meta,
            ))
        return sorted(hits, key=lambda hit: hit.distance)
