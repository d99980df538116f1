"""`ValidationEngine` and `detect_guide`: when a worker's output counts as passing, real code."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.instruction import TestCommand as Command
from orchestration.instruction import WorkerInstruction
from orchestration.records import TestOutcome as Outcome
from orchestration.validation import ValidationEngine, command_failed, detect_guide
from orchestration.workdir import CommandResult, WorkDir


def instruction(*commands: str) -> WorkerInstruction:
    return WorkerInstruction(
        worker_id="WORKER_001", title="t", source="WORKER_001.md", content_hash="h", priority=1,
        priority_rule="explicit", deliverable_paths=["pkg/mod.py"],
        test_commands=[Command(command=c, line=n) for n, c in enumerate(commands, start=1)],
    )


def result(output: str, exit_code: int | None = 0, timed_out: bool = False) -> CommandResult:
    return CommandResult(command="cmd", exit_code=exit_code, output=output, duration_s=0.1, timed_out=timed_out)


# -- command_failed ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "output, exit_code, timed_out",
    [
        ("PASS: fine\n", 1, False),
        ("", 127, False),
        ("FAIL: missing file\n", 0, False),
        ("PASS: a\n  FAIL: b\n", 0, False),
        ("❌ broken\n", 0, False),
        ("PASS: so far\n", None, True),
        ("PASS: so far\n", 0, True),
    ],
)
def test_command_failed(output: str, exit_code: int | None, timed_out: bool) -> None:
    assert command_failed(result(output, exit_code, timed_out))


@pytest.mark.parametrize(
    "output",
    ["PASS: all good\n", "", "PASS: a\nPASS: b\n", "no FAIL here at line start\n", "✅ ok\n", "PASS: 0 FAIL\n"],
)
def test_command_passes(output: str) -> None:
    assert not command_failed(result(output))


# -- run_tests / feedback ----------------------------------------------------------------------
async def test_run_tests_runs_every_command_in_the_work_dir(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path / "work")
    wd.reset()
    wd.write("pkg/__init__.py", "")
    wd.write("pkg/mod.py", "VALUE = 3\n")
    commands = (
        'test -f pkg/mod.py && echo "PASS: exists" || echo "FAIL: missing"',
        'python3 -c "import pkg.mod; assert pkg.mod.VALUE == 4" || echo "FAIL: wrong value"',
        "exit 5",
        'echo "PASS: plain"',
        "sleep 5",
    )
    outcomes = await ValidationEngine(command_timeout_s=1.0).run_tests(instruction(*commands), wd)

    assert [o.command for o in outcomes] == list(commands)
    assert [o.passed for o in outcomes] == [True, False, False, True, False]
    assert outcomes[0].exit_code == 0 and "PASS: exists" in outcomes[0].output_tail
    assert outcomes[1].exit_code == 0 and "FAIL: wrong value" in outcomes[1].output_tail
    assert "AssertionError" in outcomes[1].output_tail
    assert outcomes[2].exit_code == 5
    assert outcomes[4].timed_out and not outcomes[3].timed_out


async def test_run_tests_with_no_commands(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path / "work")
    wd.reset()
    assert await ValidationEngine(5).run_tests(instruction(), wd) == []


def test_feedback_has_only_the_failing_commands_and_their_output_tails() -> None:
    outcomes = [
        Outcome(command="echo PASS-ONE", passed=True, exit_code=0, output_tail="PASS-ONE output"),
        Outcome(command="cmd-two", passed=False, exit_code=0, output_tail="x" * 3000 + "FAIL: two broke"),
        Outcome(command="cmd-three", passed=False, exit_code=None, output_tail="slow", timed_out=True),
    ]
    text = ValidationEngine.feedback(outcomes)
    assert "PASS-ONE" not in text
    assert "$ cmd-two" in text and "FAIL: two broke" in text
    assert "$ cmd-three" in text and "timed out" in text and "slow" in text
    # only the tail of a long output
    assert "x" * 1500 not in text
    assert ValidationEngine.feedback(outcomes[:1]) == ""


# -- detect_guide ------------------------------------------------------------------------------
PROSE_PY = """\
To build the module, follow these steps carefully.
Step 1: Create a function called normalize that takes a string.
Step 2: Use a regular expression to collapse the whitespace.
Then return the result to the caller and write some tests.
"""

STUB_PY = '''\
"""Normaliser."""


def normalize(text: str) -> str:
    # TODO: implement
    pass
'''

REAL_PY = '''\
"""Normaliser."""

import re


def normalize(text: str) -> str:
    # TODO: implement unicode handling later
    return re.sub(r"\\s+", " ", text).strip()
'''

STEPS_TEXT = """\
Here's how you can do it:
Step 1: Create the file textkit/normalize.py.
Step 2: Add a normalize_whitespace function.
"""


def test_prose_python_file_is_a_guide() -> None:
    reason = detect_guide({"pkg/mod.py": PROSE_PY})
    assert reason is not None and "pkg/mod.py" in reason and "prose" in reason


def test_stub_with_todo_and_pass_only_is_a_guide() -> None:
    reason = detect_guide({"pkg/mod.py": STUB_PY})
    assert reason is not None and "pkg/mod.py" in reason


def test_stub_raising_not_implemented_is_a_guide() -> None:
    text = 'def f():\n    """Normalise."""\n    # TODO: implement\n    raise NotImplementedError\n'
    assert detect_guide({"pkg/mod.py": text}) is not None


def test_real_code_is_not_a_guide() -> None:
    assert detect_guide({"pkg/mod.py": REAL_PY}) is None
    assert detect_guide({"pkg/mod.py": REAL_PY, "pkg/other.py": "X = 1\n"}, final_text="SUMMARY: done") is None


def test_empty_work_with_a_step_by_step_reply_is_a_guide() -> None:
    reason = detect_guide({}, final_text=STEPS_TEXT)
    assert reason is not None and "no files" in reason
    assert detect_guide({}, final_text="SUMMARY: nothing needed changing.") is None


def test_a_step_list_in_the_reply_is_fine_when_files_were_written() -> None:
    assert detect_guide({"pkg/mod.py": REAL_PY}, final_text=STEPS_TEXT) is None


def test_markdown_deliverables_are_not_judged_as_code() -> None:
    guide_md = "# Usage\n\nStep 1: install.\nStep 2: import textkit.\nTODO: implement more docs\n"
    assert detect_guide({"docs/usage.md": guide_md}) is None
    assert detect_guide({"docs/usage.md": guide_md, "pkg/mod.py": REAL_PY}) is None


def test_non_python_code_with_step_prose_is_a_guide() -> None:
    script = "#!/bin/sh\n# Step 1: create the folder\n# Step 2: copy the files\n"
    assert detect_guide({"tools/setup.sh": script}) is not None
    assert detect_guide({"tools/setup.sh": "#!/bin/sh\n# Step 1: build\nmake\n"}) is None
