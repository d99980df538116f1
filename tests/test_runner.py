"""The execution core end to end: `Launcher` → `MassiveOrchestrator` → `WaveTeam` → `WorkerRunner`,
with recorded model replies (the `replay` provider) and the in-memory state store.

Every test writes its own instruction files and replay YAML into `tmp_path`; the recorded replies
drive real AutoGen agents whose tools act on real work dirs, and the workers' TEST_PROCESS
commands run with bash, so what reaches the target is what the launcher would integrate.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from autogen_core.models import SystemMessage, UserMessage
from rich.console import Console

import agents.model_factory as model_factory
from agents.replay import RecordedReplyClient
from orchestration.config import Price, ProviderConfig, RoutingConfig, WorkforceConfig
from orchestration.errors import StateError
from orchestration.launcher import Launcher, LaunchOptions, fixed_sampler
from orchestration.memory_state import MemoryStateStore
from orchestration.planner import Lane, Wave
from orchestration.results import AttemptResult, WorkerResult
from orchestration.wave_team import LaneDone, RunLane, WaveTeam

RUN = "run-test"


# -- instruction files and recorded replies ---------------------------------------------------------
def worker_md(
    number: int, path: str, tests: list[str], *, priority: int = 1, deps: str = "None", performance: str = ""
) -> str:
    wid = f"WORKER_{number:03d}"
    fence = "```"
    lines = [
        f"# {wid}: Test worker {number}", "",
        f"**Worker ID:** {wid}", f"**Priority:** {priority}", f"**Dependencies:** {deps}", "",
        "## 1. DELIVERABLES", "", f"- [ ] Create file: `{path}`", "",
        "## 2. SUCCESS_CRITERIA", "", "- [ ] Every TEST_PROCESS command passes", "",
        "## 3. BOUNDARIES", "", f"- **CAN create:** `{path}`", "",
        "## 6. TEST_PROCESS", "", f"{fence}bash", *tests, fence, "",
        "## 8. TASK_CLASSIFICATION", "", "- **Type:** MECHANICAL", "",
    ]
    if performance:
        lines += ["## 10. PERFORMANCE_REQUIREMENTS", "", performance, ""]
    return "\n".join(lines)


def write_file(path: str, content: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "write_file", "arguments": {"path": path, "content": content}}]}


def run_command(command: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "run_command", "arguments": {"command": command}}]}


def summary(text: str) -> dict[str, Any]:
    return {"content": f"SUMMARY: {text}"}


@dataclass
class Project:
    """A temporary project: instruction files, replays, config, target, and a recorded run."""

    root: Path
    store: MemoryStateStore = field(default_factory=MemoryStateStore)

    def __post_init__(self) -> None:
        self.workers = self.root / "workers"
        self.replays = self.root / "replays"
        self.target = self.root / "target"
        self.workers.mkdir(parents=True, exist_ok=True)
        self.replays.mkdir(parents=True, exist_ok=True)

    def worker(self, number: int, path: str, tests: list[str], attempts: list[list[dict[str, Any]]], **kw: Any) -> str:
        wid = f"WORKER_{number:03d}"
        (self.workers / f"{wid}_Test.md").write_text(worker_md(number, path, tests, **kw), encoding="utf-8")
        data = {"attempts": [{"replies": replies} for replies in attempts]}
        (self.replays / f"{wid}.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return wid

    def config(self, *, fallback: bool = False, delay_s: float = 0.0, **execution: Any) -> WorkforceConfig:
        providers = {
            "replay": ProviderConfig(kind="replay", model="replay", replays_dir=str(self.replays),
                                     replay_delay_s=delay_s),
        }
        if fallback:
            providers["backup"] = ProviderConfig(kind="replay", model="replay-backup",
                                                 replays_dir=str(self.replays), replay_delay_s=delay_s)
        cfg = WorkforceConfig(
            results_dir=str(self.root / "results"), build_dir=str(self.root / "build"),
            logs_dir=str(self.root / "logs"), state_dir=str(self.root / "state"),
            providers=providers,
            routing=RoutingConfig(default="replay", by_classification={},
                                  fallback={"replay": "backup"} if fallback else {}),
        )
        cfg.execution.max_retries = execution.pop("max_retries", 0)
        cfg.execution.command_timeout_s = 30
        for key, value in execution.items():
            setattr(cfg.execution, key, value)
        return cfg

    def launcher(self, cfg: WorkforceConfig, **options: Any) -> Launcher:
        opts = LaunchOptions(workers_dir=self.workers, target=self.target, run_id=RUN, **options)
        return Launcher(cfg, self.root, opts, state=self.store, console=Console(file=io.StringIO()),
                        sampler=fixed_sampler())

    async def run(self, cfg: WorkforceConfig | None = None, **options: Any) -> dict[str, Any]:
        return await self.launcher(cfg or self.config(), **options).run()

    def result(self, wid: str) -> dict[str, Any]:
        return json.loads((self.root / "results" / "workers" / f"{wid}.json").read_text(encoding="utf-8"))

    def result_ids(self) -> list[str]:
        folder = self.root / "results" / "workers"
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def status(self, wid: str) -> str:
        state = self.store.worker(RUN, wid)
        assert state is not None
        return state.status


class RecordingStore(MemoryStateStore):
    """Records successful claims and finishes, in order."""

    def __init__(self, lease_s: float = 30.0) -> None:
        super().__init__(lease_s)
        self.log: list[tuple[str, str]] = []

    def claim(self, run_id: str, worker_id: str, owner: str) -> bool:
        ok = super().claim(run_id, worker_id, owner)
        if ok:
            self.log.append(("claim", worker_id))
        return ok

    def finish(self, run_id: str, worker_id: str, owner: str, status: str, **fields: Any) -> bool:
        ok = super().finish(run_id, worker_id, owner, status, **fields)
        if ok:
            self.log.append(("finish", worker_id))
        return ok


@dataclass
class ModelCall:
    worker_id: str
    attempt: int
    client: RecordedReplyClient

    def messages(self) -> list[Any]:
        return list(self.client.create_calls[0]["messages"]) if self.client.create_calls else []

    def system(self) -> str:
        return "\n".join(m.content for m in self.messages() if isinstance(m, SystemMessage))

    def task(self) -> str:
        return "\n".join(str(m.content) for m in self.messages() if isinstance(m, UserMessage))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[ModelCall]:
    """Every replay client the factory builds, with the worker and attempt it serves."""
    made: list[ModelCall] = []
    pending: list[tuple[str, int]] = []
    real_load = model_factory.load_replies

    def load(folder: Path, worker_id: str, attempt: int) -> Any:
        pending.append((worker_id, attempt))
        return real_load(folder, worker_id, attempt)

    class Recording(RecordedReplyClient):
        def __init__(self, replies: Any, delay_s: float = 0.0) -> None:
            super().__init__(replies, delay_s=delay_s)
            worker_id, attempt = pending.pop()
            made.append(ModelCall(worker_id, attempt, self))

    monkeypatch.setattr(model_factory, "load_replies", load)
    monkeypatch.setattr(model_factory, "RecordedReplyClient", Recording)
    return made


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def appender(tag: str, path: str = "lane/log.txt") -> list[dict[str, Any]]:
    mkdir = f"mkdir -p {path.rsplit('/', 1)[0]} && " if "/" in path else ""
    return [run_command(f"{mkdir}echo {tag} >> {path}"), summary(f"{tag} appended its line.")]


def log_is(expected: str, path: str = "lane/log.txt") -> str:
    return f'test "$(tr "\\n" " " < {path})" = "{expected}" || echo "FAIL: {path} holds $(cat {path})"'


FAILING = ['python3 -c "import pkg.mod as m; assert m.VALUE == 2, m.VALUE" || echo "FAIL: VALUE is wrong"']


# -- lanes -------------------------------------------------------------------------------------------
async def test_lane_runs_in_order_each_worker_building_on_its_predecessor(
    tmp_path: Path, calls: list[ModelCall]
) -> None:
    project = Project(tmp_path, store=RecordingStore())
    project.worker(1, "lane/log.txt", [log_is("W1 ")], [appender("W1")])
    project.worker(2, "lane/log.txt", [log_is("W1 W2 ")], [appender("W2")])
    project.worker(3, "lane/log.txt", [log_is("W1 W2 W3 ")], [appender("W3")])

    result = await project.run()

    assert (result["status"], result["passed"], result["total"]) == ("finished", 3, 3), result
    assert (project.target / "lane" / "log.txt").read_text() == "W1\nW2\nW3\n"
    # each successor's work dir was seeded with its predecessor's integrated output
    build = tmp_path / "build" / RUN
    assert (build / "WORKER_002" / "lane" / "log.txt").read_text() == "W1\nW2\n"
    assert (build / "WORKER_003" / "lane" / "log.txt").read_text() == "W1\nW2\nW3\n"
    assert isinstance(project.store, RecordingStore)
    assert project.store.log == [
        ("claim", "WORKER_001"), ("finish", "WORKER_001"), ("claim", "WORKER_002"), ("finish", "WORKER_002"),
        ("claim", "WORKER_003"), ("finish", "WORKER_003"),
    ]
    by_worker = {c.worker_id: c for c in calls}
    assert [(c.worker_id, c.attempt) for c in calls] == [("WORKER_001", 1), ("WORKER_002", 1), ("WORKER_003", 1)]
    assert "The worker before you" not in by_worker["WORKER_001"].system()
    assert "The worker before you in your lane reported:\nSUMMARY: W1 appended its line." in (
        by_worker["WORKER_002"].system()
    )
    assert "SUMMARY: W2 appended its line." in by_worker["WORKER_003"].system()
    assert "W1 appended" not in by_worker["WORKER_003"].system()
    passed = project.result("WORKER_002")
    assert passed["status"] == "passed" and passed["deliverables_created"] == ["lane/log.txt"]
    assert passed["attempts"][0]["summary"] == "SUMMARY: W2 appended its line."


async def test_a_worker_whose_dependency_failed_is_skipped(project: Project, calls: list[ModelCall]) -> None:
    project.worker(1, "pkg/mod.py", FAILING, [[write_file("pkg/mod.py", "VALUE = 1\n"), summary("v1")]])
    project.worker(2, "pkg/other.py", ['echo "PASS: ok"'], [[write_file("pkg/other.py", "X = 1\n"), summary("x")]],
                   deps="WORKER_001")
    project.worker(3, "pkg/later.py", ['echo "PASS: ok"'], [[write_file("pkg/later.py", "Y = 1\n"), summary("y")]],
                   deps="WORKER_001", priority=2)

    result = await project.run()

    assert (result["failed"], result["skipped"], result["passed"]) == (1, 2, 0), result
    assert [c.worker_id for c in calls] == ["WORKER_001"]
    for wid in ("WORKER_002", "WORKER_003"):
        skipped = project.result(wid)
        assert skipped["status"] == "skipped"
        assert skipped["reason"] == "dependency WORKER_001 did not pass (failed)"
        assert skipped["attempts"] == []
        assert project.status(wid) == "skipped"
    # result files for every worker, the skipped ones included, and the run summary
    assert project.result_ids() == ["WORKER_001", "WORKER_002", "WORKER_003"]
    written = json.loads((project.root / "results" / "execution_summary.json").read_text())
    assert written["skipped"] == 2 and written["run_id"] == RUN
    assert not (project.target / "pkg").exists()


# -- mitigation: retries, fallback, escalation ---------------------------------------------------------
@pytest.mark.parametrize("fallback, status, providers", [
    (True, "escalated", ["replay", "replay", "backup"]),
    (False, "failed", ["replay", "replay"]),
])
async def test_failing_every_attempt(
    project: Project, calls: list[ModelCall], fallback: bool, status: str, providers: list[str]
) -> None:
    project.worker(1, "pkg/mod.py", FAILING, [[write_file("pkg/mod.py", "VALUE = 1\n"), summary("v1")]])

    result = await project.run(project.config(fallback=fallback, max_retries=1))

    assert result[status] == 1, result
    stored = project.result("WORKER_001")
    assert stored["status"] == status
    assert [a["provider"] for a in stored["attempts"]] == providers
    assert [a["number"] for a in stored["attempts"]] == list(range(1, len(providers) + 1))
    assert {a["outcome"] for a in stored["attempts"]} == {"tests_failed"}
    assert stored["reason"].startswith("no attempt passed")
    assert stored["deliverables_created"] == []
    assert project.status("WORKER_001") == status
    assert not (project.target / "pkg" / "mod.py").exists()
    assert [p for p in project.target.rglob("*")] == []
    assert [(c.worker_id, c.attempt) for c in calls] == [("WORKER_001", n) for n in range(1, len(providers) + 1)]


async def test_the_retry_prompt_carries_the_failing_output(project: Project, calls: list[ModelCall]) -> None:
    project.worker(1, "pkg/mod.py", FAILING, [
        [write_file("pkg/mod.py", "VALUE = 1\n"), summary("v1")],
        [write_file("pkg/mod.py", "VALUE = 2\n"), summary("v2")],
    ])

    result = await project.run(project.config(max_retries=1))

    assert result["passed"] == 1, result
    stored = project.result("WORKER_001")
    first, second = stored["attempts"]
    assert (first["outcome"], second["outcome"]) == ("tests_failed", "passed")
    assert "FAIL: VALUE is wrong" in first["error"] and "AssertionError: 1" in first["error"]
    assert first["tests"][0]["passed"] is False and second["tests"][0]["passed"] is True
    assert "rejected" not in calls[0].task()
    retry = calls[1].task()
    assert "Your previous attempt was rejected" in retry
    assert "FAIL: VALUE is wrong" in retry and "AssertionError: 1" in retry
    assert FAILING[0] in retry
    assert (project.target / "pkg" / "mod.py").read_text() == "VALUE = 2\n"


async def test_a_guide_is_rejected_and_retried(project: Project, calls: list[ModelCall]) -> None:
    guide = "def value():\n    # TODO: implement\n    pass\n"
    project.worker(1, "pkg/mod.py", ['echo "PASS: always"'], [
        [write_file("pkg/mod.py", guide), summary("a plan")],
        [write_file("pkg/mod.py", "def value():\n    return 2\n"), summary("done")],
    ])
    result = await project.run(project.config(max_retries=1))
    assert result["passed"] == 1, result
    first = project.result("WORKER_001")["attempts"][0]
    assert first["outcome"] == "guide_detected" and first["tests"] == []
    assert "Guide detected" in calls[1].task()


# -- run health: abort thresholds and budget -----------------------------------------------------------
async def test_abort_threshold_stops_starting_workers(project: Project, calls: list[ModelCall]) -> None:
    for n in range(1, 5):
        project.worker(n, "shared.txt", ['echo "FAIL: always"'], [[write_file("shared.txt", f"{n}\n"), summary("s")]])

    result = await project.run(project.config(abort_min_finished=2))

    assert result["status"] == "aborted"
    assert result["reason"] == "test failures at 100% of 2 finished workers exceed 20%"
    assert (result["failed"], result["pending"]) == (2, 2)
    assert [c.worker_id for c in calls] == ["WORKER_001", "WORKER_002"]
    assert project.status("WORKER_003") == "pending" and project.status("WORKER_004") == "pending"
    assert project.result_ids() == ["WORKER_001", "WORKER_002"]
    run = project.store.get_run(RUN)
    assert run is not None and run.status == "aborted" and "test failures" in run.reason
    assert any(e["event"] == "abort" for e in project.store.events(RUN))


async def test_abort_is_judged_only_after_min_finished(project: Project) -> None:
    for n in range(1, 4):
        project.worker(n, "shared.txt", ['echo "FAIL: always"'], [[write_file("shared.txt", f"{n}\n"), summary("s")]])
    result = await project.run(project.config(abort_min_finished=5))
    assert (result["status"], result["failed"], result["pending"]) == ("finished", 3, 0)


async def test_budget_stops_the_run(project: Project, calls: list[ModelCall]) -> None:
    project.worker(1, "shared.txt", ['grep -q two shared.txt || echo "FAIL: not yet"'], [
        [write_file("shared.txt", "one\n"), summary("one")],
        [write_file("shared.txt", "two\n"), summary("two")],
    ])
    project.worker(2, "shared.txt", ['echo "PASS"'], [[write_file("shared.txt", "three\n"), summary("three")]])
    cfg = project.config(max_retries=1)
    cfg.prices = {"replay": Price(prompt_per_1k=0.0, completion_per_1k=1000.0)}

    result = await project.run(cfg, budget_usd=0.5)

    assert result["status"] == "aborted"
    assert result["reason"].startswith("budget of $0.50 spent")
    assert result["cost_usd"] > 0.5
    assert [(c.worker_id, c.attempt) for c in calls] == [("WORKER_001", 1)]
    first = project.result("WORKER_001")
    assert first["status"] == "failed" and first["reason"] == "budget of $0.50 spent before attempt 2"
    assert result["pending"] == 1 and project.status("WORKER_002") == "pending"


class SlowKnowledge:
    """A KnowledgeStore whose first write is slow (as a real embedding store's can be)."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def index_instructions(self, instructions: Any) -> int:
        return 0

    def similar(self, text: str, k: int = 5, status: str | None = None) -> list[Any]:
        return []

    def prompt_context(self, text: str, k: int | None = None, max_chars: int | None = None,
                       exclude_worker: str | None = None) -> str:
        return ""

    def record(self, record: Any) -> None:
        if not self.records:
            time.sleep(0.5)
        self.records.append(record)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


async def test_a_worker_never_attempted_for_lack_of_budget_stays_pending(project: Project) -> None:
    project.worker(1, "a.txt", ['echo "PASS"'], [[write_file("a.txt", "a\n"), summary("a")]])
    project.worker(2, "b.txt", ['echo "PASS"'], [[write_file("b.txt", "b\n"), summary("b")]])
    cfg = project.config()
    cfg.prices = {"replay": Price(completion_per_1k=1000.0)}
    launcher = project.launcher(cfg, budget_usd=0.5, max_concurrency=1)
    launcher.knowledge = SlowKnowledge()

    result = await launcher.run()

    assert result["status"] == "aborted" and result["passed"] == 1
    assert project.status("WORKER_002") == "pending", project.store.worker(RUN, "WORKER_002")


# -- time limits ---------------------------------------------------------------------------------------
async def test_performance_requirement_time_limit(project: Project) -> None:
    project.worker(1, "pkg/slow.py", ['echo "PASS"'], [[write_file("pkg/slow.py", "X = 1\n"), summary("s")]],
                   performance="- Degradation limit: If execution takes >1 seconds, abort and escalate")
    result = await project.run(project.config(delay_s=20))
    assert result["failed"] == 1
    attempt = project.result("WORKER_001")["attempts"][0]
    assert attempt["outcome"] == "timeout"
    assert attempt["error"] == "time limit of 1s reached"
    assert not (project.target / "pkg").exists()


async def test_worker_timeout_from_config(project: Project) -> None:
    project.worker(1, "pkg/slow.py", ['echo "PASS"'], [[write_file("pkg/slow.py", "X = 1\n"), summary("s")]])
    result = await project.run(project.config(delay_s=20, worker_timeout_s=0.5))
    assert result["failed"] == 1
    attempt = project.result("WORKER_001")["attempts"][0]
    assert (attempt["outcome"], attempt["error"]) == ("timeout", "time limit of 0.5s reached")


async def test_stalled_attempt_is_a_timeout_and_its_command_is_killed(project: Project) -> None:
    marker = f"300.{secrets.randbelow(10**6):06d}"
    hang = run_command(f"sleep {marker} >/dev/null 2>&1 & wait")
    project.worker(1, "pkg/slow.py", ['echo "PASS"'], [[write_file("pkg/slow.py", "X = 1\n"), hang, summary("s")]])
    running = asyncio.create_task(project.run(project.config(stall_timeout_s=0.2)))
    try:
        for _ in range(300):
            if sleepers(marker) or running.done():
                break
            await asyncio.sleep(0.01)
        assert sleepers(marker), "the worker's command never started"
        result = await asyncio.wait_for(running, 60)  # a hang guard: the command must not be waited out
        assert result["failed"] == 1
        attempt = project.result("WORKER_001")["attempts"][0]
        assert attempt["outcome"] == "timeout"
        assert "stalled" in attempt["error"]
        for _ in range(100):
            if not sleepers(marker):
                break
            await asyncio.sleep(0.05)
        assert sleepers(marker) == [], "the stalled attempt's command outlived it"
    finally:
        for process in sleepers(marker):
            process.kill()
        await asyncio.gather(running, return_exceptions=True)


def sleepers(marker: str) -> list[psutil.Process]:
    """Live `sleep <marker>` processes (found by their unique argument, sandbox PID namespace or not)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["cmdline"] == ["sleep", marker] and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


async def test_a_model_call_outlasting_the_stall_limit_is_a_stall(project: Project) -> None:
    project.worker(1, "pkg/slow.py", ['echo "PASS"'], [[write_file("pkg/slow.py", "X = 1\n"), summary("s")]])
    result = await project.run(project.config(delay_s=20, stall_timeout_s=0.2))
    assert result["failed"] == 1
    attempt = project.result("WORKER_001")["attempts"][0]
    assert attempt["outcome"] == "timeout" and "stalled" in attempt["error"]
    assert not (project.target / "pkg").exists()


async def test_timeout_rate_aborts(project: Project) -> None:
    for n in (1, 2):
        project.worker(n, "shared.txt", ['echo "PASS"'], [[write_file("shared.txt", "x\n"), summary("s")]])
    project.worker(3, "shared.txt", ['echo "PASS"'], [[write_file("shared.txt", "x\n"), summary("s")]])
    result = await project.run(project.config(delay_s=20, worker_timeout_s=0.3, abort_min_finished=2))
    assert result["status"] == "aborted" and result["reason"].startswith("timeouts at 100%")
    assert result["pending"] == 1


async def test_a_merge_failing_midway_leaves_no_half_merged_worker(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    wid = project.worker(1, "a.txt", ['echo "PASS"'], [[
        write_file("a.txt", "a\n"), write_file("b.txt", "b\n"), summary("a and b"),
    ]])
    instruction_file = next(project.workers.glob("WORKER_001_*.md"))
    instruction_file.write_text(instruction_file.read_text().replace(
        "- [ ] Create file: `a.txt`", "- [ ] Create file: `a.txt`\n- [ ] Create file: `b.txt`"))
    real_replace = os.replace
    merged: list[str] = []

    def disk_full_on_second_merge(source: Any, destination: Any) -> None:
        if Path(destination).parent == project.target.resolve():
            merged.append(Path(destination).name)
            if len(merged) == 2:
                raise OSError(28, "No space left on device")
        real_replace(source, destination)

    monkeypatch.setattr("orchestration.integration.os.replace", disk_full_on_second_merge)
    await project.run()
    monkeypatch.setattr("orchestration.integration.os.replace", real_replace)

    assert len(merged) == 2, "the merge did not get to its second file"
    assert [p.name for p in project.target.rglob("*.workforce-tmp")] == []
    files = sorted(p.name for p in project.target.iterdir())
    if project.status(wid) in ("failed", "escalated"):
        assert files == [], "a worker recorded as not passed left files in the target"
    else:  # left for --resume to roll forward
        result = await project.run(project.config(), resume=True)
        assert result["passed"] == 1
        assert sorted(p.name for p in project.target.iterdir()) == ["a.txt", "b.txt"]


# -- resume and roll-forward -----------------------------------------------------------------------------
async def test_resume_reruns_nothing_that_passed(project: Project, calls: list[ModelCall]) -> None:
    project.worker(1, "shared.txt", [log_is("W1 ", "shared.txt")], [appender("W1", "shared.txt")])
    project.worker(2, "shared.txt", [log_is("W1 W2 ", "shared.txt")], [appender("W2", "shared.txt")])
    cfg = project.config()
    cfg.prices = {"replay": Price(completion_per_1k=1000.0)}
    first = await project.run(cfg, budget_usd=0.5)  # stops after WORKER_001: the budget is spent
    assert (first["status"], first["passed"], first["pending"]) == ("aborted", 1, 1), first
    assert project.status("WORKER_001") == "passed" and project.status("WORKER_002") == "pending"
    calls.clear()

    second = await project.run(project.config(), resume=True)

    assert (second["status"], second["passed"], second["pending"]) == ("finished", 2, 0), second
    assert [(c.worker_id, c.attempt) for c in calls] == [("WORKER_002", 1)]
    # the resumed lane successor still gets its (earlier-session) predecessor's summary
    w2 = next(c for c in calls if c.worker_id == "WORKER_002")
    assert "SUMMARY: W1 appended its line." in w2.system()
    assert (project.target / "shared.txt").read_text() == "W1\nW2\n"

    calls.clear()
    third = await project.run(project.config(), resume=True)
    assert calls == [] and third["passed"] == 2


async def test_a_crash_mid_merge_is_rolled_forward_without_a_model_call(
    tmp_path: Path, calls: list[ModelCall]
) -> None:
    project = Project(tmp_path, store=MemoryStateStore(lease_s=0.05))
    wid = project.worker(1, "pkg/done.py", ['echo "PASS"'], [])  # no replies: a model call would fail
    launcher = project.launcher(project.config())
    _, the_plan = launcher._plan(None)
    launcher._create_run(RUN, project.target.resolve(), the_plan)
    # what runner._integrate leaves behind when the launcher dies mid-merge
    workdir = tmp_path / "build" / RUN / wid
    (workdir / "pkg").mkdir(parents=True)
    content = b"DONE = True\n"
    (workdir / "pkg" / "done.py").write_bytes(content)
    pending = WorkerResult(
        worker_id=wid, title="Test worker 1", run_id=RUN, wave=1, status="passed",
        attempts=[AttemptResult(number=1, provider="replay", model="replay", outcome="passed",
                                summary="SUMMARY: finished before the crash")],
        deliverables_created=["pkg/done.py"],
    )
    assert project.store.claim(RUN, wid, "dead-launcher")
    project.store.update_worker(RUN, wid, attempt=1, integration={"pkg/done.py": hashlib.sha256(content).hexdigest()},
                                pending_result=pending.model_dump_json())
    await asyncio.sleep(0.1)  # the dead launcher's lease expires
    assert project.status(wid) == "running"

    result = await project.run(project.config(), resume=True)

    assert result["passed"] == 1, result
    assert calls == []
    assert (project.target / "pkg" / "done.py").read_bytes() == content
    assert project.status(wid) == "passed"
    stored = project.result(wid)
    assert stored["status"] == "passed" and stored["attempts"][0]["summary"] == "SUMMARY: finished before the crash"
    assert any(e["event"] == "rolled_forward" for e in project.store.events(RUN))


async def test_an_unfinished_attempt_without_manifest_runs_again(tmp_path: Path, calls: list[ModelCall]) -> None:
    project = Project(tmp_path, store=MemoryStateStore(lease_s=0.05))
    wid = project.worker(1, "pkg/a.py", ['echo "PASS"'], [[write_file("pkg/a.py", "A = 1\n"), summary("a")]])
    launcher = project.launcher(project.config())
    _, the_plan = launcher._plan(None)
    launcher._create_run(RUN, project.target.resolve(), the_plan)
    assert project.store.claim(RUN, wid, "dead-launcher")
    project.store.update_worker(RUN, wid, attempt=1)
    await asyncio.sleep(0.1)

    result = await project.run(project.config(), resume=True)

    assert result["passed"] == 1
    assert [(c.worker_id, c.attempt) for c in calls] == [(wid, 2)]  # attempts count on across sessions
    assert (project.target / "pkg" / "a.py").read_text() == "A = 1\n"


# -- concurrency ---------------------------------------------------------------------------------------
async def test_lanes_of_a_wave_run_concurrently(tmp_path: Path) -> None:
    project = Project(tmp_path, store=RecordingStore())
    project.worker(1, "left.txt", ['echo "PASS"'], [[write_file("left.txt", "l\n"), summary("l")]])
    project.worker(2, "right.txt", ['echo "PASS"'], [[write_file("right.txt", "r\n"), summary("r")]])

    result = await project.run(project.config(delay_s=0.3))

    assert result["passed"] == 2, result
    assert isinstance(project.store, RecordingStore)
    order = project.store.log
    claims = [i for i, (kind, _) in enumerate(order) if kind == "claim"]
    finishes = [i for i, (kind, _) in enumerate(order) if kind == "finish"]
    assert len(claims) == len(finishes) == 2
    assert max(claims) < min(finishes), f"lanes ran one after another: {order}"


async def test_max_concurrency_one_runs_lanes_one_at_a_time(tmp_path: Path) -> None:
    project = Project(tmp_path, store=RecordingStore())
    project.worker(1, "left.txt", ['echo "PASS"'], [[write_file("left.txt", "l\n"), summary("l")]])
    project.worker(2, "right.txt", ['echo "PASS"'], [[write_file("right.txt", "r\n"), summary("r")]])
    result = await project.run(project.config(delay_s=0.05), max_concurrency=1)
    assert result["passed"] == 2
    assert isinstance(project.store, RecordingStore)
    kinds = [kind for kind, _ in project.store.log]
    assert kinds == ["claim", "finish", "claim", "finish"]


async def test_wave_team_sends_every_lane_and_runs_them_concurrently() -> None:
    events: list[tuple[str, int]] = []
    both_started = asyncio.Event()

    async def run_lane(message: RunLane) -> LaneDone:
        events.append(("start", message.lane))
        if len([e for e in events if e[0] == "start"]) == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), timeout=5)
        events.append(("finish", message.lane))
        return LaneDone(lane=message.lane, statuses={w: "passed" for w in message.workers})

    wave = Wave(priority=3, lanes=[Lane(workers=["WORKER_001", "WORKER_002"]), Lane(workers=["WORKER_003"])])
    done = await WaveTeam(run_lane).run(wave)

    assert [d.lane for d in done] == [0, 1]
    assert done[0].statuses == {"WORKER_001": "passed", "WORKER_002": "passed"}
    assert done[1].statuses == {"WORKER_003": "passed"}
    assert [kind for kind, _ in events[:2]] == ["start", "start"]


# -- --resume re-derives the plan ------------------------------------------------------------------
async def test_resume_refuses_a_changed_instruction_until_replan(project: Project) -> None:
    first = project.worker(1, "a.txt", ['grep -q a a.txt && echo "PASS"'], [[write_file("a.txt", "a\n"), summary("a")]])
    second = project.worker(2, "b.txt", ['grep -q b b.txt && echo "PASS"'], [[write_file("b.txt", "b\n"), summary("b")]])
    assert (await project.run())["passed"] == 2
    changed = project.workers / f"{second}_Test.md"
    changed.write_text(changed.read_text(encoding="utf-8") + "\n## 9. RETROSPECTIVE\n\n- note\n", encoding="utf-8")

    with pytest.raises(StateError, match=r"changed: WORKER_002.*--replan"):
        await project.run(resume=True)
    assert project.status(second) == "passed"

    calls: list[str] = []
    cfg = project.config()
    launcher = project.launcher(cfg, resume=True, replan=True)
    launcher.state = RecordingCalls(project.store, calls)
    result = await launcher.run()

    assert result["passed"] == 2 and result["total"] == 2
    assert calls == [second], "only the changed worker runs again"
    assert project.status(first) == "passed" and project.status(second) == "passed"
    stored = project.store.get_run(RUN)
    assert stored is not None and stored.fingerprint[second] != stored.fingerprint[first]


class RecordingCalls:
    """A StateStore wrapper recording which workers were claimed."""

    def __init__(self, inner: MemoryStateStore, calls: list[str]) -> None:
        self._inner = inner
        self._calls = calls

    def claim(self, run_id: str, worker_id: str, owner: str) -> bool:
        claimed = self._inner.claim(run_id, worker_id, owner)
        if claimed:
            self._calls.append(worker_id)
        return claimed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
