"""WorkforceWorker: its standing orders, its tools, and a model context that holds only its own task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from autogen_agentchat.messages import TextMessage
from autogen_core import FunctionCall
from autogen_core.models import CreateResult, RequestUsage, SystemMessage, UserMessage
from autogen_ext.models.replay import ReplayChatCompletionClient

from agents.replay import REPLAY_MODEL_INFO
from agents.worker import AUTONOMY_RULES, WorkerContext, WorkforceWorker, system_message, task_message
from orchestration.instruction import WorkerInstruction
from orchestration.loader import load_workers
from orchestration.workdir import WorkDir

OTHER_MARKERS = ("WORKER_001", "zebra ledger", "zebra/ledger.py", "ZEBRA_ONLY_CHECK", "ZEBRA_NOTE")

WORKER_1 = """# WORKER_001: zebra ledger

**Priority:** 1

## 1. DELIVERABLES

- [ ] Create file: `zebra/ledger.py`

## 2. SUCCESS_CRITERIA

- [ ] ZEBRA_ONLY_CHECK passes

## 6. TEST_PROCESS

```bash
python3 -c "import zebra.ledger; print('PASS: ZEBRA_ONLY_CHECK')" || echo "FAIL: ZEBRA_ONLY_CHECK"
```

## IMPLEMENTATION_NOTES

ZEBRA_NOTE: keep the ledger append-only.
"""

WORKER_2 = """# WORKER_002: calc add

**Priority:** 1

## 1. DELIVERABLES

- [ ] Create file: `calc/ops.py` with `add(a, b)`

## 2. SUCCESS_CRITERIA

- [ ] add(2, 3) returns 5

## 3. BOUNDARIES

- **CAN create:** `calc/ops.py`, `calc/__init__.py`

## 6. TEST_PROCESS

```bash
test -f calc/ops.py || echo "FAIL: calc/ops.py missing"
python3 -c "from calc.ops import add; assert add(2, 3) == 5; print('PASS: add')" || echo "FAIL: add is wrong"
```

## IMPLEMENTATION_NOTES

Use plain integer addition.
"""


@pytest.fixture(scope="module")
def instructions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, WorkerInstruction]:
    folder = tmp_path_factory.mktemp("workers")
    (folder / "WORKER_001_Zebra.md").write_text(WORKER_1, encoding="utf-8")
    (folder / "WORKER_002_Calc.md").write_text(WORKER_2, encoding="utf-8")
    loaded = load_workers(folder)
    assert not loaded.errors, loaded.errors
    return {i.worker_id: i for i in loaded.instructions}


@pytest.fixture
def calc(instructions: dict[str, WorkerInstruction]) -> WorkerInstruction:
    return instructions["WORKER_002"]


def usage() -> RequestUsage:
    return RequestUsage(prompt_tokens=5, completion_tokens=5)


def tool_call(name: str, **arguments: str) -> CreateResult:
    return CreateResult(finish_reason="function_calls", cached=False, usage=usage(),
                        content=[FunctionCall(id=f"call-{name}", name=name, arguments=json.dumps(arguments))])


def reply(text: str) -> CreateResult:
    return CreateResult(finish_reason="stop", content=text, cached=False, usage=usage())


def client(*replies: CreateResult) -> ReplayChatCompletionClient:
    return ReplayChatCompletionClient(list(replies), model_info=REPLAY_MODEL_INFO)


def agent(instruction: WorkerInstruction, model: ReplayChatCompletionClient, root: Path,
          context: WorkerContext | None = None, max_tool_rounds: int = 5) -> WorkforceWorker:
    workdir = WorkDir(root)
    workdir.reset()
    return WorkforceWorker(instruction, model, workdir, command_timeout_s=10.0, max_tool_rounds=max_tool_rounds,
                           context=context)


def all_text(model: ReplayChatCompletionClient) -> str:
    return "\n".join(str(m.content) for call in model.create_calls for m in call["messages"])


# -- the system message ------------------------------------------------------------------------------
def test_the_system_message_names_the_worker_its_files_tests_and_rules(calc: WorkerInstruction) -> None:
    text = system_message(calc, WorkerContext())

    assert text.startswith("You are WORKER_002, an autonomous coding worker. Your task: calc add.")
    assert "calc add" in calc.title
    assert "- calc/ops.py" in text
    assert "- calc/__init__.py" in text
    assert "`import calc.ops`" in text
    for command in calc.test_commands:
        assert f"$ {command.command}" in text
    assert len(calc.test_commands) == 2
    assert AUTONOMY_RULES in text
    assert "SUMMARY:" in text
    assert "add(2, 3) returns 5" in text
    assert "Use plain integer addition." in text


def test_the_system_message_carries_the_predecessor_summary_only_when_given(calc: WorkerInstruction) -> None:
    summary = "SUMMARY: calc/__init__.py created with __version__ = '1.0'."

    with_summary = system_message(calc, WorkerContext(predecessor_summary=summary))
    without = system_message(calc, WorkerContext())

    assert "The worker before you in your lane reported:\n" + summary in with_summary
    assert "worker before you" not in without


def test_the_system_message_carries_similar_work_and_lessons(calc: WorkerInstruction) -> None:
    text = system_message(calc, WorkerContext(similar_work="def sub(a, b): return a - b",
                                              lessons=["run the tests first", "write whole files"]))

    assert "Similar work that passed its tests before (for reference):\ndef sub(a, b): return a - b" in text
    assert "Lessons from earlier workers:\n- run the tests first\n- write whole files" in text


def test_the_task_message_carries_feedback_only_on_a_retry(calc: WorkerInstruction) -> None:
    first = task_message(calc)
    retry = task_message(calc, "$ test -f calc/ops.py\nFAIL: calc/ops.py missing")

    assert "WORKER_002" in first
    assert "rejected" not in first
    assert retry.startswith(first)
    assert "Your previous attempt was rejected. Fix these problems:\n$ test -f calc/ops.py\nFAIL: calc/ops.py missing" \
        in retry


# -- running ------------------------------------------------------------------------------------------
async def test_the_worker_writes_files_through_its_tools_and_ends_with_its_summary(
    calc: WorkerInstruction, tmp_path: Path
) -> None:
    model = client(
        tool_call("write_file", path="calc/ops.py", content="def add(a, b):\n    return a + b\n"),
        tool_call("run_command", command="python -c 'from calc.ops import add; print(add(2, 3))'"),
        reply("SUMMARY: calc/ops.py defines add."),
    )
    worker = agent(calc, model, tmp_path / "work")

    result = await worker.run(task=task_message(calc))

    assert (tmp_path / "work" / "calc" / "ops.py").read_text(encoding="utf-8").startswith("def add")
    final = result.messages[-1]
    assert isinstance(final, TextMessage)
    assert (final.source, final.content) == ("WORKER_002", "SUMMARY: calc/ops.py defines add.")
    assert len(model.create_calls) == 3
    tool_outputs = [str(m.content) for m in model.create_calls[-1]["messages"] if "FunctionExecutionResult" in
                    type(m).__name__]
    assert "wrote calc/ops.py" in tool_outputs[0]
    assert "exit code 0" in tool_outputs[1] and "5" in tool_outputs[1]
    assert {t["name"] for t in model.create_calls[0]["tools"]} == {"write_file", "read_file", "list_files",
                                                                "run_command"}


async def test_the_model_context_holds_only_its_own_task(
    instructions: dict[str, WorkerInstruction], calc: WorkerInstruction, tmp_path: Path
) -> None:
    zebra_model = client(tool_call("write_file", path="zebra/ledger.py", content="ENTRIES = []  # ZEBRA\n"),
                         reply("SUMMARY: ZEBRA_ONLY_CHECK ledger written."))
    calc_model = client(tool_call("write_file", path="calc/ops.py", content="def add(a, b):\n    return a + b\n"),
                        reply("SUMMARY: add written."))
    predecessor = "SUMMARY: calc/__init__.py exists (lane predecessor)."
    zebra = agent(instructions["WORKER_001"], zebra_model, tmp_path / "zebra")
    worker = agent(calc, calc_model, tmp_path / "calc", context=WorkerContext(predecessor_summary=predecessor))

    await zebra.run(task=task_message(instructions["WORKER_001"]))
    await worker.run(task=task_message(calc, "$ test -f calc/ops.py\nFAIL: calc/ops.py missing"))

    seen = all_text(calc_model)
    for marker in OTHER_MARKERS:
        assert marker not in seen, marker
    assert "ZEBRA_ONLY_CHECK" in all_text(zebra_model)  # the markers are real: the other worker saw them
    first = calc_model.create_calls[0]["messages"]
    assert [type(m) for m in first] == [SystemMessage, UserMessage]
    assert first[0].content == system_message(calc, WorkerContext(predecessor_summary=predecessor))
    assert predecessor in first[0].content
    assert "previous attempt was rejected" in first[1].content
    assert not (tmp_path / "calc" / "zebra").exists()


async def test_the_tool_rounds_are_bounded(calc: WorkerInstruction, tmp_path: Path) -> None:
    model = client(*[tool_call("list_files", path=".") for _ in range(5)], reply("SUMMARY: never reached"))
    worker = agent(calc, model, tmp_path / "work", max_tool_rounds=2)

    result = await worker.run(task=task_message(calc))

    assert len(model.create_calls) == 2
    assert not any(isinstance(m, TextMessage) and m.content.startswith("SUMMARY") for m in result.messages)


async def test_a_tool_the_model_misuses_comes_back_as_an_error_text(calc: WorkerInstruction, tmp_path: Path) -> None:
    model = client(tool_call("write_file", path="../escape.py", content="x = 1\n"), reply("SUMMARY: tried"))
    worker = agent(calc, model, tmp_path / "work")

    await worker.run(task=task_message(calc))

    outputs = [str(m.content) for m in model.create_calls[-1]["messages"] if "FunctionExecutionResult" in
               type(m).__name__]
    assert "error: " in outputs[0]
    assert not (tmp_path / "escape.py").exists()
