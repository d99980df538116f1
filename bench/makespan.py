"""Makespan and launcher CPU for N simulated workers against a loopback OpenAI-compatible server.

    python bench/makespan.py [--workers 225] [--calls 3] [--latency 0.5] [--concurrency 25]
                             [--compare-graphflow] [--json]

Each worker makes `--calls` model calls (write its file, list files, then SUMMARY) through the
real OpenAIChatCompletionClient; the server (its own process) answers each after `--latency` s.
Workers are validated by their TEST_PROCESS and integrated, as in a real run.

    ideal_s   = ceil(workers / concurrency) × calls × latency
    ratio     = measured_s / ideal_s                         (target ≤ 1.10 at 225)
    cpu_per_worker_ms = launcher CPU / workers               (target at 1,000 < 2× that at 100)
    --compare-graphflow: CPU of an AutoGen GraphFlow fanning N agents out from one coordinator,
    one recorded reply each, against the launcher's WaveTeam coordinating the same N agents
    (target: ≥ 10× below at 450); the full launcher's CPU is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.loopback_server import LoopbackOpenAIServer, Reply  # noqa: E402
from orchestration.config import ProviderConfig, load_config  # noqa: E402
from orchestration.launcher import Launcher, LaunchOptions, fixed_sampler  # noqa: E402
from orchestration.memory_state import MemoryStateStore  # noqa: E402

_WORKER = re.compile(r"You are (WORKER_\d+)")


def instruction(number: int) -> str:
    wid = f"WORKER_{number:04d}"
    return f"""# {wid}: Simulated module {number}

**Priority:** 1

## 1. DELIVERABLES
- [ ] Create `pkg/w{number:04d}.py` defining `VALUE = {number}`

## 2. SUCCESS_CRITERIA
- `pkg/w{number:04d}.py` defines VALUE = {number}

## 6. TEST_PROCESS
```bash
grep -q "VALUE = {number}" pkg/w{number:04d}.py && echo "PASS: value" || echo "FAIL: value"
```
"""


def scripted(latency: float, calls: int):  # noqa: ANN201 - returns the server's script
    counts: dict[str, int] = {}

    def script(body: dict[str, Any]) -> Reply:
        system = str(body["messages"][0].get("content", ""))
        match = _WORKER.search(system)
        wid = match.group(1) if match else "?"
        counts[wid] = counts.get(wid, 0) + 1
        n = counts[wid]
        number = int(wid.split("_")[1]) if "_" in wid else 0
        if n == 1:
            return Reply(delay_s=latency, tool_calls=[{"name": "write_file", "arguments": {
                "path": f"pkg/w{number:04d}.py", "content": f'"""Module {number}."""\nVALUE = {number}\n'}}])
        if n < calls:
            return Reply(delay_s=latency, tool_calls=[{"name": "list_files", "arguments": {"path": "pkg"}}])
        return Reply(delay_s=latency, content=f"SUMMARY: wrote pkg/w{number:04d}.py")

    return script


def serve(latency: float, calls: int, ready: Any, stop: Any) -> None:
    with LoopbackOpenAIServer(scripted(latency, calls)) as server:
        ready.put(server.base_url)
        stop.wait()


def run_launcher(workers: int, calls: int, concurrency: int, base_url: str, root: Path) -> dict[str, float]:
    workers_dir = root / "workers"
    workers_dir.mkdir()
    for number in range(1, workers + 1):
        (workers_dir / f"WORKER_{number:04d}_sim.md").write_text(instruction(number), encoding="utf-8")
    config = load_config()
    config.providers["loop"] = ProviderConfig(kind="openai_compatible", model="loop-model", base_url=base_url,
                                              timeout_s=60, max_retries=2, requests_per_minute=100_000)
    config.results_dir, config.build_dir, config.logs_dir = (str(root / n) for n in ("results", "build", "logs"))
    config.execution.max_concurrency = concurrency
    config.execution.abort_min_finished = workers + 1
    options = LaunchOptions(workers_dir=workers_dir, target=root / "target", provider="loop")
    launcher = Launcher(config, root, options, state=MemoryStateStore(), sampler=fixed_sampler())
    launcher.console.quiet = True
    cpu, children, wall = time.process_time(), _children_cpu(), time.perf_counter()
    summary = asyncio.run(launcher.run())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if summary["passed"] != workers:
        raise SystemExit(f"makespan: only {summary['passed']}/{workers} workers passed: {summary}")
    return {"measured_s": wall, "launcher_cpu_s": cpu, "children_cpu_s": _children_cpu() - children}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _agents(workers: int) -> list:  # noqa: ANN202 - AssistantAgents, imported lazily
    from autogen_agentchat.agents import AssistantAgent
    from autogen_ext.models.replay import ReplayChatCompletionClient

    return [AssistantAgent(f"w{n}", ReplayChatCompletionClient([f"SUMMARY: done {n}"])) for n in range(workers)]


def graphflow_cpu(workers: int) -> float:
    """CPU seconds of a GraphFlow fanning out from a coordinator to `workers` agents, one reply each."""
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.teams import DiGraphBuilder, GraphFlow
    from autogen_ext.models.replay import ReplayChatCompletionClient

    coordinator = AssistantAgent("coordinator", ReplayChatCompletionClient(["start the wave"]))
    builder = DiGraphBuilder()
    builder.add_node(coordinator)
    for agent in _agents(workers):
        builder.add_node(agent)
        builder.add_edge(coordinator, agent)
    flow = GraphFlow(participants=builder.get_participants(), graph=builder.build())
    started = time.process_time()
    asyncio.run(flow.run(task="run the wave"))
    return time.process_time() - started


def waveteam_cpu(workers: int) -> float:
    """CPU seconds of the launcher's WaveTeam coordinating the same agents (one lane each)."""
    from orchestration.planner import Lane, Wave
    from orchestration.wave_team import LaneDone, RunLane, WaveTeam

    agents = {f"w{n}": agent for n, agent in enumerate(_agents(workers))}

    async def run_lane(message: RunLane) -> LaneDone:
        for name in message.workers:
            await agents[name].run(task="run your task")
        return LaneDone(lane=message.lane, statuses=dict.fromkeys(message.workers, "passed"))

    wave = Wave(priority=1, lanes=[Lane(workers=[name]) for name in agents])
    started = time.process_time()
    asyncio.run(WaveTeam(run_lane).run(wave))
    return time.process_time() - started


def measure(args: argparse.Namespace) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    ready, stop = context.Queue(), context.Event()
    server = context.Process(target=serve, args=(args.latency, args.calls, ready, stop), daemon=True)
    server.start()
    try:
        base_url = ready.get(timeout=30)
        with tempfile.TemporaryDirectory(prefix="makespan-") as folder:
            timing = run_launcher(args.workers, args.calls, args.concurrency, base_url, Path(folder))
    finally:
        stop.set()
        server.join(10)
    ideal = math.ceil(args.workers / args.concurrency) * args.calls * args.latency
    result: dict[str, Any] = {
        "workers": args.workers, "calls": args.calls, "latency_s": args.latency, "concurrency": args.concurrency,
        "ideal_s": round(ideal, 3), "measured_s": round(timing["measured_s"], 3),
        "ratio": round(timing["measured_s"] / ideal, 3),
        "launcher_cpu_s": round(timing["launcher_cpu_s"], 3),
        "cpu_per_worker_ms": round(timing["launcher_cpu_s"] / args.workers * 1000, 2),
        "children_cpu_s": round(timing["children_cpu_s"], 3),
    }
    if args.compare_graphflow:
        result["graphflow_cpu_s"] = round(graphflow_cpu(args.workers), 3)
        result["waveteam_cpu_s"] = round(waveteam_cpu(args.workers), 3)
        result["graphflow_over_waveteam"] = round(result["graphflow_cpu_s"] / max(1e-9, result["waveteam_cpu_s"]), 1)
        result["graphflow_over_launcher"] = round(result["graphflow_cpu_s"] / max(1e-9, result["launcher_cpu_s"]), 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=225)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--compare-graphflow", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args)
    if args.json:
        print(json.dumps(result))
        return 0
    line = (f"makespan: {result['workers']} workers × {result['calls']} calls @ {result['latency_s']}s, "
            f"concurrency {result['concurrency']}: ideal {result['ideal_s']:.2f}s, measured {result['measured_s']:.2f}s, "
            f"ratio {result['ratio']:.3f}; launcher CPU {result['launcher_cpu_s']:.2f}s "
            f"= {result['cpu_per_worker_ms']:.1f} ms/worker (children {result['children_cpu_s']:.2f}s)")
    if args.compare_graphflow:
        line += (f"\ncoordination of the same {result['workers']} in-memory agents (one recorded reply each): "
                 f"GraphFlow fan-out {result['graphflow_cpu_s']:.2f}s CPU, WaveTeam {result['waveteam_cpu_s']:.2f}s "
                 f"= {result['graphflow_over_waveteam']:.1f}× less; the full launcher run above used "
                 f"{1 / max(1e-9, result['graphflow_over_launcher']):.2f}× GraphFlow's CPU "
                 f"(it also makes {result['calls']} HTTP calls, runs tests and merges per worker)")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
