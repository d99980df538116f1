"""Knowledge store benchmark: ingest rate and query latency on a temporary embedded collection.

    python bench/knowledge.py [--docs 10000] [--queries 200] [--batch 256] [--json]

Synthetic but varied worker results go through the real `ChromaKnowledgeStore.record()` (redaction,
writer thread, offline model); ingest time runs until `flush()` returns. Always embedded Chroma:
CHROMA_HOST is ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestration.config import KnowledgeConfig
from orchestration.embedding import Embedder
from orchestration.knowledge import ChromaKnowledgeStore
from orchestration.records import KnowledgeRecord

AREAS = (
    "configuration loader", "redis lease", "html report", "sql migration", "image resizer", "rate limiter",
    "email notifier", "command line parser", "json schema validator", "retry policy", "metrics exporter",
    "log rotation", "csv importer", "cache layer", "oauth login", "websocket relay", "pdf renderer",
    "task scheduler", "search index", "file watcher", "dependency graph", "diff viewer", "audit trail",
)
ACTIONS = (
    "parse", "validate", "render", "migrate", "retry", "stream", "compress", "encrypt", "paginate",
    "deduplicate", "normalise", "schedule", "aggregate", "serialise", "benchmark", "lint", "sandbox",
)
DETAILS = (
    "with unit tests", "behind a feature flag", "for large inputs", "with structured logging",
    "without blocking the event loop", "using a thread pool", "with typed errors", "under 50 ms",
    "with property-based tests", "for unicode input", "with a dry-run mode", "with idempotent writes",
)
STATUSES = ("passed", "passed", "passed", "failed", "escalated")


def synthetic_record(rng: random.Random, n: int) -> KnowledgeRecord:
    """One plausible finished worker: task, summary and a short module."""
    area, action, detail = rng.choice(AREAS), rng.choice(ACTIONS), rng.choice(DETAILS)
    name = f"{action}_{area.split()[0]}_{n}"
    steps = ", ".join(rng.sample(ACTIONS, 3))
    code = (
        f"def {name}(items: list[str]) -> list[str]:\n"
        f'    """{action.title()} the {area} entries {detail}."""\n'
        f"    result = [item.strip() for item in items if item]\n"
        f"    return sorted(set(result))[: {rng.randint(5, 500)}]\n"
    )
    return KnowledgeRecord(
        run_id="bench", worker_id=f"WORKER_{n:05d}", title=f"{action.title()} the {area}",
        status=rng.choice(STATUSES),
        task=f"{action.title()} the {area} {detail}; steps: {steps}.",
        summary=f"Implemented {name} for the {area}; {rng.randint(1, 40)} tests cover {detail}.",
        files={f"{area.split()[0]}/{name}.py": code},
    )


def ingest(store: ChromaKnowledgeStore, docs: int, rng: random.Random) -> float:
    """Record `docs` results and wait until stored; returns seconds taken."""
    records = [synthetic_record(rng, n) for n in range(docs)]
    start = time.perf_counter()
    for record in records:
        store.record(record)
    store.flush()
    return time.perf_counter() - start


def latencies(store: ChromaKnowledgeStore, queries: int, rng: random.Random, status: str | None) -> list[float]:
    """Milliseconds per `similar()` call for `queries` random questions."""
    store.similar("warm up", k=5, status=status)
    times = []
    for _ in range(queries):
        text = f"how to {rng.choice(ACTIONS)} a {rng.choice(AREAS)} {rng.choice(DETAILS)}"
        start = time.perf_counter()
        store.similar(text, k=5, status=status)
        times.append((time.perf_counter() - start) * 1000)
    return times


def percentile(values: list[float], pct: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1] if len(values) > 1 else values[0]


def run(docs: int, queries: int, batch: int) -> dict[str, float]:
    rng = random.Random(42)
    embedder = Embedder.shared()
    with tempfile.TemporaryDirectory(prefix="knowledge-bench-") as tmp:
        config = KnowledgeConfig(path=tmp, collection="bench", write_batch=batch)
        with ChromaKnowledgeStore(config, embedder=embedder, environ={}) as store:
            seconds = ingest(store, docs, rng)
            stored = store.count()
            plain = latencies(store, queries, rng, None)
            passed = latencies(store, queries, rng, "passed")
    return {
        "docs": stored, "ingest_s": seconds, "ingest_docs_per_s": stored / seconds, "queries": queries,
        "query_p50_ms": percentile(plain, 50), "query_p95_ms": percentile(plain, 95),
        "filtered_p50_ms": percentile(passed, 50), "filtered_p95_ms": percentile(passed, 95),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000, help="documents to ingest")
    parser.add_argument("--queries", type=int, default=200, help="queries to time")
    parser.add_argument("--batch", type=int, default=256, help="writer batch size (documents)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.docs < 1 or args.queries < 1:
        parser.error("--docs and --queries must be positive")
    result = run(args.docs, args.queries, args.batch)
    if args.json:
        print(json.dumps({k: round(v, 2) for k, v in result.items()}))
        return 0
    docs = int(result["docs"])
    print(f"ingest: {result['ingest_docs_per_s']:.1f} docs/s ({docs} docs in {result['ingest_s']:.1f} s)")
    print(f"query p50: {result['query_p50_ms']:.1f} ms  p95: {result['query_p95_ms']:.1f} ms ({docs} docs)")
    print(f"query status=passed p50: {result['filtered_p50_ms']:.1f} ms  "
          f"p95: {result['filtered_p95_ms']:.1f} ms ({docs} docs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
