"""Resume of a synthetic 1,000-worker run with 900 passed: time to the first new model call.

    python bench/resume.py [--workers 1000] [--passed 900] [--concurrency 25] [--json]

The workers are bench/makespan.py's (one tiny module each, validated by its TEST_PROCESS,
answered by the loopback OpenAI-compatible server in its own process). The run is created in a
real Redis (a private redis-server in a temp dir) through the launcher's own code paths:
`Launcher._create_run`, then for each of the first `--passed` workers in plan order (a crashed
run finishes them in that order) claim → update_worker → finish(passed) on RedisStateStore,
its deliverable in the target and its result file written by ResultsWriter. The rest are pending.

    in-process: stores opened (open_stores, as launch_workforce.py does) before the clock starts,
                then `Launcher.run()` with resume=True until the server's first request
    cold:       `python orchestration/launch_workforce.py --resume RUN_ID` from process start
                until the server's first request (imports, config, stores, plan included)

The knowledge store (ChromaDB) is disabled in both, and retrospectives have no backend (the
local log only): this measures the launcher and the state store. Each measurement resumes its
own copy of the run (separate base dirs, same Redis) and runs the remaining workers to the end.
Target: first new model call < 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from makespan import instruction, scripted  # noqa: E402

from agents.loopback_server import LoopbackOpenAIServer, Reply  # noqa: E402
from orchestration.config import ProviderConfig, WorkforceConfig, load_config  # noqa: E402
from orchestration.launcher import Launcher, LaunchOptions, fixed_sampler, owner_id  # noqa: E402
from orchestration.redis_server import PrivateRedis, make_client  # noqa: E402
from orchestration.results import AttemptResult, ResultsWriter, WorkerResult  # noqa: E402
from orchestration.state import RedisStateStore  # noqa: E402
from orchestration.stores import open_stores  # noqa: E402

PROVIDER = "loop"
QUIET_ENV = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
    "MEM0_TELEMETRY": "False", "TOKENIZERS_PARALLELISM": "false",
}


# ── the loopback model server, in its own process ──────────────────────────────────────────────


def serve(latency: float, calls: int, ready: Any, first: Any, stop: Any) -> None:
    """Answer like bench/makespan.py; put the wall-clock time of the first request on `first`."""
    script, lock, seen = scripted(latency, calls), threading.Lock(), []

    def timed(body: dict[str, Any]) -> Reply:
        with lock:
            if not seen:
                seen.append(time.time())
                first.put(seen[0])
        return script(body)

    with LoopbackOpenAIServer(timed) as server:
        ready.put(server.base_url)
        stop.wait()


class ModelServer:
    """One loopback server process per measurement, so 'first request' is this resume's."""

    def __init__(self, latency: float, calls: int) -> None:
        context = multiprocessing.get_context("fork")
        self._ready, self._first, self._stop = context.Queue(), context.Queue(), context.Event()
        self._process = context.Process(target=serve, args=(latency, calls, self._ready, self._first, self._stop),
                                        daemon=True)

    def __enter__(self) -> ModelServer:
        self._process.start()
        self.base_url: str = self._ready.get(timeout=30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._process.join(10)

    def first_request(self, timeout_s: float = 120) -> float:
        return float(self._first.get(timeout=timeout_s))


# ── the synthetic run ─────────────────────────────────────────────────────────────────────────


def write_workers(folder: Path, workers: int) -> None:
    folder.mkdir(parents=True)
    for number in range(1, workers + 1):
        (folder / f"WORKER_{number:04d}_sim.md").write_text(instruction(number), encoding="utf-8")


def bench_config(base_url: str, concurrency: int, workers: int) -> WorkforceConfig:
    config = load_config()
    config.providers[PROVIDER] = ProviderConfig(kind="openai_compatible", model="loop-model", base_url=base_url,
                                                timeout_s=60, max_retries=2, requests_per_minute=100_000)
    config.execution.max_concurrency = concurrency
    config.execution.abort_min_finished = workers + 1
    config.knowledge.enabled = False
    config.retrospectives.enabled = False
    return config


def create_run(base: Path, workers_dir: Path, redis_url: str, run_id: str, passed: int) -> None:
    """The run as a crash would leave it: created by the launcher, the first `passed` workers done."""
    config = bench_config("http://127.0.0.1:9/v1", 1, 0)
    target = base / "target"
    store = RedisStateStore.from_config(make_client(redis_url), config.state)
    try:
        options = LaunchOptions(workers_dir=workers_dir, target=target, provider=PROVIDER, run_id=run_id)
        launcher = Launcher(config, base, options, state=store, sampler=fixed_sampler())
        _, the_plan = launcher._plan(None)
        launcher._create_run(run_id, target.resolve(), the_plan)
        results = ResultsWriter(base / config.results_dir)
        owner = owner_id()
        for wid in the_plan.workers[:passed]:
            number = int(wid.split("_")[1])
            path = f"pkg/w{number:04d}.py"
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            (target / path).write_text(f'"""Module {number}."""\nVALUE = {number}\n', encoding="utf-8")
            assert store.claim(run_id, wid, owner)
            store.update_worker(run_id, wid, attempt=1, provider=PROVIDER, model="loop-model")
            summary = f"SUMMARY: wrote {path}"
            results.write_worker(WorkerResult(
                worker_id=wid, title=the_plan.instructions[wid].title, run_id=run_id, wave=1, status="passed",
                attempts=[AttemptResult(number=1, provider=PROVIDER, model="loop-model", outcome="passed",
                                        summary=summary)],
                deliverables_created=[path], timestamp=datetime.now(UTC).isoformat(),
            ))
            assert store.finish(run_id, wid, owner, "passed", provider=PROVIDER, model="loop-model",
                                files=[path], finished_at=time.time())
            store.append_event(run_id, {"event": "worker_finished", "worker_id": wid, "status": "passed"})
        store.update_run(run_id, status="running")
        counts = store.counts(run_id)
        assert counts["passed"] == passed and counts["pending"] == len(the_plan.workers) - passed, counts
    finally:
        store.close()


# ── the two measurements ──────────────────────────────────────────────────────────────────────


def resume_in_process(base: Path, workers_dir: Path, run_id: str, server: ModelServer, args: argparse.Namespace,
                      redis_url: str) -> dict[str, float]:
    config = bench_config(server.base_url, args.concurrency, args.workers)
    os.environ["REDIS_URL"] = redis_url
    options = LaunchOptions(workers_dir=workers_dir, target=base / "target", provider=PROVIDER, run_id=run_id,
                            resume=True)
    with open_stores(config, base) as stores:
        launcher = Launcher(config, base, options, state=stores.state, knowledge=stores.knowledge,
                            retrospectives=stores.retrospectives, sampler=fixed_sampler())
        launcher.console.quiet = True
        started = time.time()
        summary = asyncio.run(launcher.run())
        finished = time.time()
    if summary["passed"] != args.workers:
        raise SystemExit(f"resume: the in-process resume passed {summary['passed']}/{args.workers}: {summary}")
    return {"first_call_s": server.first_request() - started, "total_s": finished - started}


def resume_cold(base: Path, run_id: str, server: ModelServer, args: argparse.Namespace,
                redis_url: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKFORCE__")}
    env.update(QUIET_ENV)
    env.update({
        "REDIS_URL": redis_url,
        f"WORKFORCE__PROVIDERS__{PROVIDER.upper()}__KIND": "openai_compatible",
        f"WORKFORCE__PROVIDERS__{PROVIDER.upper()}__MODEL": "loop-model",
        f"WORKFORCE__PROVIDERS__{PROVIDER.upper()}__BASE_URL": server.base_url,
        f"WORKFORCE__PROVIDERS__{PROVIDER.upper()}__REQUESTS_PER_MINUTE": "100000",
        f"WORKFORCE__PROVIDERS__{PROVIDER.upper()}__TIMEOUT_S": "60",
        "WORKFORCE__EXECUTION__MAX_CONCURRENCY": str(args.concurrency),
        "WORKFORCE__EXECUTION__ABORT_MIN_FINISHED": str(args.workers + 1),
        "WORKFORCE__KNOWLEDGE__ENABLED": "false",
        "WORKFORCE__RETROSPECTIVES__ENABLED": "false",
        "WORKFORCE__MONITOR__CPU_PERCENT": "1000",
        "WORKFORCE__MONITOR__MEMORY_PERCENT": "1000",
        "WORKFORCE__MONITOR__DISK_PERCENT": "1000",
    })
    command = [sys.executable, str(ROOT / "orchestration" / "launch_workforce.py"), "--resume", run_id,
               "--provider", PROVIDER, "--json"]
    started = time.time()
    done = subprocess.run(command, cwd=base, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=600, check=False)
    finished = time.time()
    if done.returncode != 0:
        raise SystemExit(f"resume: the cold resume exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return {"first_call_s": server.first_request() - started, "total_s": finished - started}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="resume-bench-") as folder:
        root = Path(folder)
        workers_dir = root / "workers"
        write_workers(workers_dir, args.workers)
        with PrivateRedis(root / "redis") as redis_server:
            seeding = time.perf_counter()
            for name in ("in-process", "cold"):
                create_run(root / name, workers_dir, redis_server.url, f"bench-{name}", args.passed)
            seeding = time.perf_counter() - seeding
            with ModelServer(args.latency, args.calls) as server:
                warm = resume_in_process(root / "in-process", workers_dir, "bench-in-process", server, args,
                                         redis_server.url)
            with ModelServer(args.latency, args.calls) as server:
                cold = resume_cold(root / "cold", "bench-cold", server, args, redis_server.url)
    return {
        "workers": args.workers, "passed": args.passed, "concurrency": args.concurrency,
        "knowledge": "disabled", "retrospectives": "local log only",
        "first_call_in_process_s": round(warm["first_call_s"], 3),
        "first_call_cold_s": round(cold["first_call_s"], 3),
        "resume_total_in_process_s": round(warm["total_s"], 3),
        "resume_total_cold_s": round(cold["total_s"], 3),
        "seed_two_runs_s": round(seeding, 3),
        "target_s": 2.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--passed", type=int, default=900)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--calls", type=int, default=3, help="model calls per remaining worker")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the server takes per reply")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 0 <= args.passed < args.workers:
        parser.error("--passed must be below --workers (something must be left to resume)")
    os.environ.update(QUIET_ENV)
    result = measure(args)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"resume: {result['workers']} workers, {result['passed']} passed: first new model call after "
          f"{result['first_call_in_process_s']:.2f} s (in-process), {result['first_call_cold_s']:.2f} s (cold process); "
          f"target < {result['target_s']:.0f} s; knowledge store {result['knowledge']}")
    print(f"resume: remaining {result['workers'] - result['passed']} workers done after "
          f"{result['resume_total_in_process_s']:.2f} s (in-process), {result['resume_total_cold_s']:.2f} s (cold)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
