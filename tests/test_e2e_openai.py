"""End to end through the real OpenAIChatCompletionClient and the OpenAI SDK's transport.

A scripted OpenAI-compatible server on 127.0.0.1 (agents/loopback_server.py) answers every
model call: a 429 with Retry-After, a 500 and a reply slower than the client's timeout are
retried by the SDK; a worker whose first attempt writes buggy code is retried with its test
failures fed back; passing deliverables are integrated and the results files written.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from agents.loopback_server import LoopbackOpenAIServer, Reply
from orchestration.config import Price, ProviderConfig, WorkforceConfig, load_config
from orchestration.launcher import Launcher, LaunchOptions, fixed_sampler
from orchestration.memory_state import MemoryStateStore

MODEL = "loop-model"
PRICE = Price(prompt_per_1k=1.0, completion_per_1k=2.0)
PROMPT_TOKENS, COMPLETION_TOKENS = 50, 20
CALL_TOKENS = PROMPT_TOKENS + COMPLETION_TOKENS
CALL_COST = (PROMPT_TOKENS * PRICE.prompt_per_1k + COMPLETION_TOKENS * PRICE.completion_per_1k) / 1000
RETRY_MARKER = "previous attempt was rejected"
_WORKER = re.compile(r"^You are (WORKER_\d+)")

OPS_CODE = '"""Arithmetic."""\n\n\ndef add(a, b):\n    return a + b\n'
SHOUT_GOOD = '"""Shouting."""\n\n\ndef shout(text):\n    return text.upper() + "!"\n'
SHOUT_BUGGY = '"""Shouting."""\n\n\ndef shout(text):\n    return text + "?"\n'
STATS_CODE = (
    '"""Statistics on top of calc.ops."""\n\nfrom calc.ops import add\n\n\n'
    "def mean(values):\n    total = 0\n    for value in values:\n        total = add(total, value)\n"
    "    return total / len(values)\n"
)
GUIDE_TEXT = (
    "Step 1: Open calc/ops.py in your editor.\n"
    "Step 2: Define a function add(a, b) that returns the sum.\n"
    "TODO: implement\n"
)

ADD_TEST = (
    "python3 -c \"from calc.ops import add; assert add(2, 3) == 5, add(2, 3); print('PASS: add')\" "
    '|| echo "FAIL: add is wrong"'
)
SHOUT_TEST = (
    "python3 -c \"from strkit.shout import shout; r = shout('hi'); assert r == 'HI!', 'got ' + repr(r); "
    "print('PASS: shout')\" || echo \"FAIL: shout is wrong\""
)
MEAN_TEST = (
    "python3 -c \"from calc.ops import add; from calc.stats import mean; assert mean([1, 2, 3]) == 2; "
    "print('PASS: mean')\" "
    '|| echo "FAIL: mean is wrong"'
)


def instruction(number: int, title: str, priority: int, deliverable: str, tests: list[str],
                dependencies: str = "None") -> str:
    commands = "\n".join(f"# Test {i}\n{command}\n" for i, command in enumerate(tests, 1))
    return f"""# WORKER_{number:03d}: {title}

**Worker ID:** WORKER_{number:03d}
**Priority:** {priority}
**Dependencies:** {dependencies}

---

## 1. DELIVERABLES

- [ ] Create file: `{deliverable}`

## 2. SUCCESS_CRITERIA

- [ ] All TEST_PROCESS commands print PASS and none prints FAIL

## 3. BOUNDARIES

- **CAN create:** `{deliverable}`

## 6. TEST_PROCESS

```bash
{commands}```
"""


def write_workforce(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def three_workers(folder: Path) -> Path:
    return write_workforce(folder, {
        "WORKER_001_Add.md": instruction(1, "calc add", 1, "calc/ops.py", [ADD_TEST]),
        "WORKER_002_Shout.md": instruction(2, "strkit shout", 1, "strkit/shout.py", [SHOUT_TEST]),
        "WORKER_003_Mean.md": instruction(3, "calc mean", 2, "calc/stats.py", [MEAN_TEST],
                                          dependencies="WORKER_001"),
    })


def one_worker(folder: Path) -> Path:
    return write_workforce(folder, {"WORKER_001_Add.md": instruction(1, "calc add", 1, "calc/ops.py", [ADD_TEST])})


# -- reading requests ----------------------------------------------------------------------------
def worker_of(body: dict[str, Any]) -> str:
    match = _WORKER.match(str(body["messages"][0].get("content") or ""))
    return match.group(1) if match else "?"


def user_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body["messages"] if m["role"] == "user")


def is_retry_attempt(body: dict[str, Any]) -> bool:
    return RETRY_MARKER in user_text(body)


def tool_results(body: dict[str, Any]) -> list[str]:
    return [str(m.get("content") or "") for m in body["messages"] if m["role"] == "tool"]


def write(path: str, content: str) -> Reply:
    return Reply(tool_calls=[{"name": "write_file", "arguments": {"path": path, "content": content}}],
                 prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS)


def run(command: str) -> Reply:
    return Reply(tool_calls=[{"name": "run_command", "arguments": {"command": command}}],
                 prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS)


def text(content: str) -> Reply:
    return Reply(content=content, prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS)


class Scripted:
    """Routes each request by worker and by how many calls that worker has had (thread-safe)."""

    def __init__(self, route: Callable[[str, int, dict[str, Any]], Reply]) -> None:
        self.route = route
        self.calls: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        wid = worker_of(body)
        with self._lock:
            self.calls[wid] += 1
            number = self.calls[wid]
        try:
            return self.route(wid, number, body)
        except Exception as exc:  # noqa: BLE001 - a script bug must surface as a failed assertion, not a hang
            self.unexpected.append(f"{wid} call {number}: {exc!r}")
            return Reply(status=400)


# -- running ------------------------------------------------------------------------------------
def make_config(tmp_path: Path, base_url: str, *, max_retries: int = 3, execution_retries: int = 2) -> WorkforceConfig:
    cfg = load_config(environ={})
    cfg.providers["loop"] = ProviderConfig(
        kind="openai_compatible", model=MODEL, base_url=base_url, timeout_s=1.0, max_retries=max_retries,
        function_calling=True,
    )
    cfg.prices[MODEL] = PRICE
    cfg.results_dir = str(tmp_path / "results")
    cfg.build_dir = str(tmp_path / "build")
    cfg.logs_dir = str(tmp_path / "logs")
    cfg.state_dir = str(tmp_path / "state")
    cfg.execution.worker_timeout_s = 40.0
    cfg.execution.stall_timeout_s = 30.0
    cfg.execution.command_timeout_s = 20.0
    cfg.execution.max_retries = execution_retries
    cfg.execution.max_tool_rounds = 6
    cfg.monitor.interval_s = 0.2
    return cfg


def launch(cfg: WorkforceConfig, tmp_path: Path, workers: Path, provider: str | None = "loop") -> dict[str, Any]:
    options = LaunchOptions(workers_dir=workers, target=tmp_path / "target", provider=provider)
    launcher = Launcher(cfg, tmp_path, options, state=MemoryStateStore(),
                        console=Console(file=io.StringIO()), sampler=fixed_sampler())
    return asyncio.run(launcher.run())


def worker_result(tmp_path: Path, wid: str) -> dict[str, Any]:
    return json.loads((tmp_path / "results" / "workers" / f"{wid}.json").read_text(encoding="utf-8"))


def outcomes(result: dict[str, Any]) -> list[str]:
    return [a["outcome"] for a in result["attempts"]]


# -- the main scenario ------------------------------------------------------------------------------
def main_route(wid: str, number: int, body: dict[str, Any]) -> Reply:
    results = tool_results(body)
    if wid == "WORKER_001":
        if number == 1:
            return Reply(status=429, headers={"Retry-After": "0.1"})
        if number == 2:
            return Reply(status=500)
        if not results:
            return write("calc/ops.py", OPS_CODE)
        if len(results) == 1:
            return run("python -c 'import sys; from calc.ops import add; print(add(2, 3), sys.executable)'")
        return text("SUMMARY: calc/ops.py defines add(a, b).")
    if wid == "WORKER_002":
        if results:
            return text("SUMMARY: strkit/shout.py defines shout(text).")
        return write("strkit/shout.py", SHOUT_GOOD if is_retry_attempt(body) else SHOUT_BUGGY)
    if wid == "WORKER_003":
        if number == 1:
            return Reply(delay_s=2.5, content="too late")
        if results:
            return text("SUMMARY: calc/stats.py defines mean(values) on top of add.")
        return write("calc/stats.py", STATS_CODE)
    raise AssertionError(f"request from an unknown worker {wid}")


@pytest.fixture(scope="module")
def main_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("e2e")
    workers = three_workers(tmp_path / "workers")
    target_when_retried: list[list[str]] = []

    def route(wid: str, number: int, body: dict[str, Any]) -> Reply:
        if wid == "WORKER_002" and is_retry_attempt(body) and not tool_results(body):
            target = tmp_path / "target"
            target_when_retried.append(sorted(p.relative_to(target).as_posix() for p in target.rglob("*.py")))
        return main_route(wid, number, body)

    script = Scripted(route)
    with LoopbackOpenAIServer(script) as server:
        summary = launch(make_config(tmp_path, server.base_url), tmp_path, workers)
    return {"tmp": tmp_path, "summary": summary, "script": script, "requests": list(server.requests),
            "target_when_retried": target_when_retried}


def requests_of(main_run: dict[str, Any], wid: str) -> list[dict[str, Any]]:
    return [body for body in main_run["requests"] if worker_of(body) == wid]


def test_every_worker_passes_and_the_script_saw_no_surprises(main_run: dict[str, Any]) -> None:
    summary = main_run["summary"]

    assert main_run["script"].unexpected == []
    assert summary["status"] == "finished"
    assert summary["total"] == 3
    assert summary["passed"] == summary["total"]
    assert (summary["failed"], summary["escalated"], summary["skipped"], summary["pending"]) == (0, 0, 0, 0)


def test_transport_errors_and_the_timeout_are_retried_by_the_client(main_run: dict[str, Any]) -> None:
    first = requests_of(main_run, "WORKER_001")
    third = requests_of(main_run, "WORKER_003")

    # 429 (Retry-After) → 500 → the same request succeeds; then run_command, then the summary.
    assert len(first) == 5
    assert first[0] == first[1] == first[2]
    # the slow reply → the client times out and sends the same request again.
    assert len(third) == 3
    assert third[0] == third[1]
    assert len(requests_of(main_run, "WORKER_002")) == 4
    assert len(main_run["requests"]) == 12


def test_each_worker_result_file_records_its_attempts(main_run: dict[str, Any]) -> None:
    tmp = main_run["tmp"]
    expected = {"WORKER_001": (["passed"], 3), "WORKER_002": (["tests_failed", "passed"], 4),
                "WORKER_003": (["passed"], 2)}

    for wid, (outcome_list, successful_calls) in expected.items():
        result = worker_result(tmp, wid)
        assert result["worker_id"] == wid
        assert result["status"] == "passed"
        assert outcomes(result) == outcome_list
        assert [a["number"] for a in result["attempts"]] == list(range(1, len(outcome_list) + 1))
        for attempt in result["attempts"]:
            assert attempt["provider"] == "loop"
            assert attempt["model"] == MODEL
            assert attempt["tokens"] > 0
            assert attempt["tests"], wid
            for test in attempt["tests"]:
                assert test["passed"] is (attempt["outcome"] == "passed")
                assert test["output_tail"]
        assert result["tokens"] == successful_calls * CALL_TOKENS
        assert result["cost_usd"] == pytest.approx(successful_calls * CALL_COST)
        assert result["attempts"][-1]["summary"].startswith("SUMMARY:")


def test_passing_tests_output_and_failing_tests_output_are_kept(main_run: dict[str, Any]) -> None:
    shout = worker_result(main_run["tmp"], "WORKER_002")
    failed, passed = shout["attempts"]

    assert failed["tests"][0]["command"] == SHOUT_TEST
    assert "FAIL: shout is wrong" in failed["tests"][0]["output_tail"]
    assert "got 'hi?'" in failed["tests"][0]["output_tail"]
    assert "FAIL: shout is wrong" in failed["error"]
    assert "PASS: shout" in passed["tests"][0]["output_tail"]
    assert "PASS: add" in worker_result(main_run["tmp"], "WORKER_001")["attempts"][0]["tests"][0]["output_tail"]


def test_the_execution_summary_file_matches_the_run(main_run: dict[str, Any]) -> None:
    tmp = main_run["tmp"]
    data = json.loads((tmp / "results" / "execution_summary.json").read_text(encoding="utf-8"))

    assert data == main_run["summary"]
    for key in ("run_id", "target", "total", "passed", "failed", "escalated", "success_rate", "cost_usd",
                "duration_s", "waves"):
        assert key in data, key
    assert data["target"] == str((tmp / "target").resolve())
    assert (data["total"], data["passed"], data["failed"], data["escalated"]) == (3, 3, 0, 0)
    assert data["success_rate"] == 1.0
    assert data["cost_usd"] == pytest.approx((3 + 4 + 2) * CALL_COST)
    assert data["tokens"] == (3 + 4 + 2) * CALL_TOKENS
    assert [(w["priority"], w["total"], w["passed"]) for w in data["waves"]] == [(1, 2, 2), (2, 1, 1)]


def test_passing_deliverables_are_integrated_and_the_rejected_code_is_not(main_run: dict[str, Any]) -> None:
    target = main_run["tmp"] / "target"

    assert (target / "calc" / "ops.py").read_text(encoding="utf-8") == OPS_CODE
    assert (target / "strkit" / "shout.py").read_text(encoding="utf-8") == SHOUT_GOOD
    assert (target / "calc" / "stats.py").read_text(encoding="utf-8") == STATS_CODE
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert files == ["calc/ops.py", "calc/stats.py", "strkit/shout.py"]
    assert not any('"?"' in (target / f).read_text(encoding="utf-8") for f in files)
    # between the rejected attempt and the retry, the buggy shout.py was not in the target
    assert len(main_run["target_when_retried"]) == 1
    assert "strkit/shout.py" not in main_run["target_when_retried"][0]


def test_the_retry_prompt_carries_the_failing_command_and_its_output(main_run: dict[str, Any]) -> None:
    shout = requests_of(main_run, "WORKER_002")
    first_attempt = [b for b in shout if not is_retry_attempt(b)]
    second_attempt = [b for b in shout if is_retry_attempt(b)]

    assert len(first_attempt) == 2 and len(second_attempt) == 2
    retry_prompt = user_text(second_attempt[0])
    assert "These test commands failed" in retry_prompt
    assert f"$ {SHOUT_TEST}" in retry_prompt
    assert "FAIL: shout is wrong" in retry_prompt
    assert "got 'hi?'" in retry_prompt
    # a retry starts a fresh conversation: no tool traffic of the rejected attempt comes along
    assert tool_results(second_attempt[0]) == []


def test_tools_ran_in_the_work_dir_with_the_launcher_interpreter(main_run: dict[str, Any]) -> None:
    import sys

    add = requests_of(main_run, "WORKER_001")
    results = tool_results(add[-1])

    assert results[0].startswith("wrote calc/ops.py")
    assert results[1].startswith("exit code 0")
    assert f"5 {sys.executable}" in results[1]


def test_a_later_wave_sees_the_earlier_waves_integrated_files(main_run: dict[str, Any]) -> None:
    # WORKER_003's tests import calc.ops, which only WORKER_001 wrote (in wave 1).
    mean = worker_result(main_run["tmp"], "WORKER_003")

    assert "PASS: mean" in mean["attempts"][0]["tests"][0]["output_tail"]


def test_each_request_carries_only_its_own_workers_task(main_run: dict[str, Any]) -> None:
    for body in main_run["requests"]:
        wid = worker_of(body)
        others = {"WORKER_001", "WORKER_002", "WORKER_003"} - {wid}
        serialized = json.dumps(body["messages"])
        assert wid in serialized
        assert not any(other in serialized for other in others), wid
        assert body["model"] == MODEL
        assert {t["function"]["name"] for t in body["tools"]} == {"write_file", "read_file", "list_files",
                                                                  "run_command"}


# -- failures ---------------------------------------------------------------------------------------
def test_a_provider_that_always_fails_ends_the_worker_failed_without_raising(tmp_path: Path) -> None:
    workers = one_worker(tmp_path / "workers")
    with LoopbackOpenAIServer(lambda body: Reply(status=500)) as server:
        cfg = make_config(tmp_path, server.base_url, max_retries=1, execution_retries=1)
        summary = launch(cfg, tmp_path, workers)
        requests = len(server.requests)

    result = worker_result(tmp_path, "WORKER_001")
    assert result["status"] == "failed"
    assert outcomes(result) == ["provider_error", "provider_error"]
    assert all("InternalServerError" in a["error"] or "500" in a["error"] for a in result["attempts"])
    assert "provider_error" in result["reason"]
    assert requests == 2 * 2  # two attempts, each a request and one transport retry
    assert (summary["total"], summary["passed"], summary["failed"]) == (1, 0, 1)
    assert summary["success_rate"] == 0.0
    on_disk = json.loads((tmp_path / "results" / "execution_summary.json").read_text(encoding="utf-8"))
    assert on_disk["failed"] == 1
    target = tmp_path / "target"
    assert [p for p in target.rglob("*") if p.is_file()] == []


def test_a_failing_provider_falls_back_once_then_the_worker_is_escalated(tmp_path: Path) -> None:
    workers = one_worker(tmp_path / "workers")
    with LoopbackOpenAIServer(lambda body: Reply(status=500)) as server:
        cfg = make_config(tmp_path, server.base_url, max_retries=0, execution_retries=1)
        cfg.providers["loop2"] = cfg.providers["loop"].model_copy(update={"model": "loop-model-2"})
        cfg.routing.default = "loop"
        cfg.routing.fallback = {"loop": "loop2"}
        summary = launch(cfg, tmp_path, workers, provider=None)
        models = [body["model"] for body in server.requests]

    result = worker_result(tmp_path, "WORKER_001")
    assert result["status"] == "escalated"
    assert [(a["provider"], a["outcome"]) for a in result["attempts"]] == [
        ("loop", "provider_error"), ("loop", "provider_error"), ("loop2", "provider_error")]
    assert models == [MODEL, MODEL, "loop-model-2"]
    assert (summary["passed"], summary["escalated"]) == (0, 1)
    assert [p for p in (tmp_path / "target").rglob("*") if p.is_file()] == []


def test_a_guide_instead_of_code_is_detected_and_not_integrated(tmp_path: Path) -> None:
    def route(wid: str, number: int, body: dict[str, Any]) -> Reply:
        if tool_results(body):
            return text("SUMMARY: wrote a guide for calc/ops.py.")
        return write("calc/ops.py", GUIDE_TEXT)

    workers = one_worker(tmp_path / "workers")
    script = Scripted(route)
    with LoopbackOpenAIServer(script) as server:
        summary = launch(make_config(tmp_path, server.base_url, execution_retries=1), tmp_path, workers)
        retry_prompts = [user_text(b) for b in server.requests if is_retry_attempt(b)]

    assert script.unexpected == []
    result = worker_result(tmp_path, "WORKER_001")
    assert result["status"] == "failed"
    assert outcomes(result) == ["guide_detected", "guide_detected"]
    assert all(a["tests"] == [] for a in result["attempts"])
    assert "Guide detected" in result["attempts"][0]["error"]
    assert retry_prompts and "Guide detected" in retry_prompts[0]
    assert summary["failed"] == 1
    assert not (tmp_path / "target" / "calc" / "ops.py").exists()


def dependent_route(wid: str, number: int, body: dict[str, Any]) -> Reply:
    if tool_results(body):
        return text(f"SUMMARY: {wid} done.")
    return write("calc/ops.py", OPS_CODE) if wid == "WORKER_001" else write("calc/stats.py", STATS_CODE)


@pytest.mark.parametrize(
    "seed",
    [
        "full",
        "needed",
    ],
)
def test_a_dependent_worker_can_import_its_dependencys_deliverable(tmp_path: Path, seed: str) -> None:
    # WORKER_002's test imports only calc.stats; the calc.stats it writes imports calc.ops (WORKER_001).
    only_stats = (
        "python3 -c \"from calc.stats import mean; assert mean([1, 2, 3]) == 2; print('PASS: mean')\" "
        '|| echo "FAIL: mean is wrong"'
    )
    workers = write_workforce(tmp_path / "workers", {
        "WORKER_001_Add.md": instruction(1, "calc add", 1, "calc/ops.py", [ADD_TEST]),
        "WORKER_002_Mean.md": instruction(2, "calc mean", 2, "calc/stats.py", [only_stats],
                                          dependencies="WORKER_001"),
    })
    with LoopbackOpenAIServer(Scripted(dependent_route)) as server:
        cfg = make_config(tmp_path, server.base_url, execution_retries=0)
        cfg.execution.seed = seed
        summary = launch(cfg, tmp_path, workers)

    assert outcomes(worker_result(tmp_path, "WORKER_002")) == ["passed"]
    assert summary["passed"] == 2


def test_a_test_process_naming_an_absolute_folder_still_runs(tmp_path: Path) -> None:
    def route(wid: str, number: int, body: dict[str, Any]) -> Reply:
        return text("SUMMARY: done.") if tool_results(body) else write("calc/ops.py", OPS_CODE)

    workers = write_workforce(tmp_path / "workers", {
        "WORKER_001_Add.md": instruction(1, "calc add", 1, "calc/ops.py", [ADD_TEST, 'test -d /usr/bin || echo "FAIL"']),
    })
    with LoopbackOpenAIServer(Scripted(route)) as server:
        summary = launch(make_config(tmp_path, server.base_url, execution_retries=0), tmp_path, workers)

    assert worker_result(tmp_path, "WORKER_001")["reason"] == ""
    assert summary["passed"] == 1
