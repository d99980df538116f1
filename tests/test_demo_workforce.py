"""The offline demo workforce in `ai-workers/`: instructions, recorded replies, and what they build.

No launcher and no model: the recorded `write_file` calls are applied wave by wave, lane by lane,
into a temporary target tree, and every worker's own TEST_PROCESS commands are run against it
with bash, the way the launcher validates a worker.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestration.config import ExecutionConfig
from orchestration.instruction import WorkerInstruction
from orchestration.loader import LoadResult, load_workers
from orchestration.planner import WavePlan, plan

ROOT = Path(__file__).resolve().parent.parent
WORKERS_DIR = ROOT / "ai-workers" / "workers"
REPLAYS_DIR = ROOT / "ai-workers" / "replays"
TOOLS = frozenset({"write_file", "read_file", "list_files", "run_command"})
LANE_FILE = "textkit/normalize.py"
RETRY_FILE = "textkit/readability.py"
"""The worker whose first attempt writes buggy code that fails its own tests."""
GUIDE_FILE = "textkit/wrap.py"
"""The worker whose first attempt writes a prose guide instead of code."""


@dataclass
class CommandResult:
    command: str
    returncode: int
    output: str

    @property
    def passed(self) -> bool:
        failed_line = any(line.lstrip().startswith("FAIL") for line in self.output.splitlines())
        return self.returncode == 0 and not failed_line


@dataclass
class Outcome:
    """What the simulated run produced: the final tree and every command's result."""

    tree: Path
    env: dict[str, str]
    final: dict[str, list[CommandResult]] = field(default_factory=dict)
    first_attempt: dict[str, list[CommandResult]] = field(default_factory=dict)
    first_attempt_files: dict[str, dict[str, str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def loaded() -> LoadResult:
    return load_workers(WORKERS_DIR)


@pytest.fixture(scope="module")
def demo_plan(loaded: LoadResult) -> WavePlan:
    return plan(loaded)


@pytest.fixture(scope="module")
def replays(loaded: LoadResult) -> dict[str, dict[str, Any]]:
    return {
        i.worker_id: yaml.safe_load((REPLAYS_DIR / f"{i.worker_id}.yaml").read_text(encoding="utf-8"))
        for i in loaded.instructions
        if (REPLAYS_DIR / f"{i.worker_id}.yaml").is_file()
    }


def _worker_by_file(loaded: LoadResult, path: str) -> WorkerInstruction:
    matches = [i for i in loaded.instructions if path in i.deliverable_paths]
    assert len(matches) == 1, f"expected one worker delivering {path}, got {[i.worker_id for i in matches]}"
    return matches[0]


def _writes(attempt: dict[str, Any]) -> dict[str, str]:
    """path → content of the attempt's write_file calls, later writes winning."""
    files: dict[str, str] = {}
    for reply in attempt["replies"]:
        for call in reply.get("tool_calls") or []:
            if call["name"] == "write_file":
                files[call["arguments"]["path"]] = call["arguments"]["content"]
    return files


def _apply(tree: Path, files: dict[str, str]) -> None:
    for path, content in files.items():
        target = tree / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


def _run(command: str, tree: Path, env: dict[str, str]) -> CommandResult:
    done = subprocess.run(
        ["bash", "-c", command], cwd=tree, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60, check=False,
    )
    return CommandResult(command=command, returncode=done.returncode, output=done.stdout + done.stderr)


def _environment(bin_dir: Path, tree: Path) -> dict[str, str]:
    """`python`/`python3` are this interpreter; the tree is importable (as `WorkDir` runs commands).

    The two names are small exec wrappers rather than symlinks: a symlink to a venv's python
    outside the venv's `bin/` finds no `pyvenv.cfg` and starts the base interpreter instead.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n', encoding="utf-8")
        wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(tree)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("LANG", "C.UTF-8")
    return env


@pytest.fixture(scope="module")
def outcome(
    tmp_path_factory: pytest.TempPathFactory,
    demo_plan: WavePlan,
    replays: dict[str, dict[str, Any]],
) -> Outcome:
    base = tmp_path_factory.mktemp("demo")
    tree = base / "target"
    tree.mkdir()
    result = Outcome(tree=tree, env=_environment(base / "bin", tree))
    for wave in demo_plan.waves:
        for lane in wave.lanes:
            for wid in lane.workers:
                instruction = demo_plan.instructions[wid]
                attempts = replays[wid]["attempts"]
                if len(attempts) > 1:
                    scratch = base / f"{wid}-attempt-1"
                    shutil.copytree(tree, scratch)
                    first = _writes(attempts[0])
                    _apply(scratch, first)
                    result.first_attempt_files[wid] = first
                    env = {**result.env, "PYTHONPATH": str(scratch)}
                    result.first_attempt[wid] = [
                        _run(c.command, scratch, env) for c in instruction.test_commands
                    ]
                _apply(tree, _writes(attempts[-1]))
                result.final[wid] = [_run(c.command, tree, result.env) for c in instruction.test_commands]
    return result


# -- (1) the instruction set ---------------------------------------------------------------------
def test_demo_loads_without_errors_or_warnings(loaded: LoadResult) -> None:
    assert [str(d) for d in loaded.diagnostics] == []
    assert 12 <= loaded.files == len(loaded.instructions) <= 20


def test_every_instruction_has_the_ten_sections(loaded: LoadResult) -> None:
    from orchestration.instruction import FRAMEWORK_SECTIONS

    for instruction in loaded.instructions:
        missing = [s for s in FRAMEWORK_SECTIONS if s not in instruction.sections]
        assert not missing, f"{instruction.source}: missing {missing}"
        assert instruction.priority_rule == "explicit" and instruction.phase, instruction.source
        assert instruction.task_classification in {"MECHANICAL", "CREATIVE", "HYBRID"}, instruction.source
        assert 3 <= len(instruction.test_commands) <= 6, instruction.source
        assert instruction.deliverable_paths, instruction.source


def test_plan_has_three_waves_and_the_normalize_lane(loaded: LoadResult, demo_plan: WavePlan) -> None:
    assert demo_plan.diagnostics == []
    assert [w.priority for w in demo_plan.waves] == [1, 2, 3]
    assert sorted(demo_plan.workers) == sorted(i.worker_id for i in loaded.instructions)
    writers = sorted(i.worker_id for i in loaded.instructions if LANE_FILE in i.deliverable_paths)
    assert len(writers) >= 3
    lanes = [lane.workers for wave in demo_plan.waves for lane in wave.lanes]
    assert writers in lanes, f"{LANE_FILE} writers {writers} are not one lane in id order: {lanes}"
    by_id = {i.worker_id: i for i in loaded.instructions}
    for earlier, later in zip(writers, writers[1:], strict=False):
        assert earlier in by_id[later].dependencies, f"{later} does not declare {earlier}"


def test_dependencies_point_to_the_same_or_an_earlier_wave(loaded: LoadResult) -> None:
    by_id = {i.worker_id: i for i in loaded.instructions}
    declared = [(i, dep) for i in loaded.instructions for dep in i.dependencies]
    assert declared
    assert any(by_id[dep].priority < i.priority for i, dep in declared), "no cross-wave dependency"
    for instruction, dep in declared:
        assert by_id[dep].priority <= instruction.priority, f"{instruction.worker_id} → {dep}"


# -- (2) the recorded replies ----------------------------------------------------------------------
def test_every_worker_has_a_well_formed_replay(
    loaded: LoadResult, replays: dict[str, dict[str, Any]]
) -> None:
    assert sorted(replays) == sorted(i.worker_id for i in loaded.instructions)
    assert sorted(p.stem for p in REPLAYS_DIR.glob("*.yaml")) == sorted(replays)
    rounds = ExecutionConfig().max_tool_rounds
    for instruction in loaded.instructions:
        wid = instruction.worker_id
        assert set(replays[wid]) == {"attempts"}, wid
        attempts = replays[wid]["attempts"]
        assert 1 <= len(attempts) <= 2, wid
        for attempt in attempts:
            replies = attempt["replies"]
            assert 2 <= len(replies) <= rounds, wid
            *calls, last = replies
            assert set(last) == {"content"} and last["content"].startswith("SUMMARY: "), wid
            for reply in calls:
                assert set(reply) == {"tool_calls"} and reply["tool_calls"], wid
                for call in reply["tool_calls"]:
                    assert set(call) == {"name", "arguments"}, wid
                    assert call["name"] in TOOLS, f"{wid}: unknown tool {call['name']}"
                    assert all(isinstance(v, str) for v in call["arguments"].values()), wid
            written = _writes(attempt)
            assert written, f"{wid}: an attempt that writes nothing"
            allowed = set(instruction.deliverable_paths) | set(instruction.boundary_paths)
            assert set(written) <= allowed, f"{wid} writes outside its deliverables: {set(written) - allowed}"
        assert set(_writes(attempts[-1])) == set(instruction.deliverable_paths), wid


def test_exactly_two_workers_retry_the_bug_and_the_guide(
    loaded: LoadResult, replays: dict[str, dict[str, Any]]
) -> None:
    retried = sorted(w for w, r in replays.items() if len(r["attempts"]) > 1)
    special = [_worker_by_file(loaded, RETRY_FILE), _worker_by_file(loaded, GUIDE_FILE)]
    assert retried == sorted(i.worker_id for i in special)


# -- (3) the intended final outcome ----------------------------------------------------------------
def test_every_worker_passes_its_own_test_process(outcome: Outcome, demo_plan: WavePlan) -> None:
    assert list(outcome.final) == demo_plan.workers
    failures = {
        wid: [f"{r.command}\n--> exit {r.returncode}\n{r.output}" for r in results if not r.passed]
        for wid, results in outcome.final.items()
    }
    assert {w: f for w, f in failures.items() if f} == {}
    assert all(results for results in outcome.final.values())


def test_the_lane_leaves_every_normalize_function_in_place(outcome: Outcome) -> None:
    source = (outcome.tree / LANE_FILE).read_text(encoding="utf-8")
    for name in ("normalize_whitespace", "strip_accents", "slugify"):
        assert f"def {name}(" in source


def test_textkit_is_standard_library_only(outcome: Outcome) -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "before = set(sys.modules)\n"
        "import textkit\n"
        "for m in pkgutil.iter_modules(textkit.__path__):\n"
        "    if m.name != '__main__':\n"
        "        importlib.import_module('textkit.' + m.name)\n"
        "roots = {n.split('.')[0] for n in set(sys.modules) - before}\n"
        "print(*sorted(roots - set(sys.stdlib_module_names) - {'textkit'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=outcome.tree, env=outcome.env, capture_output=True, text=True, timeout=60, check=True,
    )
    assert done.stdout.split() == []


# -- (4) the two first attempts that must fail -------------------------------------------------
def test_the_retry_worker_first_attempt_fails_its_tests(loaded: LoadResult, outcome: Outcome) -> None:
    wid = _worker_by_file(loaded, RETRY_FILE).worker_id
    first = outcome.first_attempt[wid]
    assert RETRY_FILE in outcome.first_attempt_files[wid]
    compile(outcome.first_attempt_files[wid][RETRY_FILE], RETRY_FILE, "exec")  # real code, just wrong
    assert any(not r.passed for r in first), "attempt 1 was meant to fail a TEST_PROCESS command"
    assert any(r.passed for r in first), "attempt 1 should be close: some checks pass"
    assert all(r.passed for r in outcome.final[wid])


def test_the_guide_worker_first_attempt_is_prose(loaded: LoadResult, outcome: Outcome) -> None:
    wid = _worker_by_file(loaded, GUIDE_FILE).worker_id
    text = outcome.first_attempt_files[wid][GUIDE_FILE]
    assert "Step 1" in text
    with pytest.raises(SyntaxError):
        compile(text, GUIDE_FILE, "exec")
    assert not any(r.passed for r in outcome.first_attempt[wid])
    compile((outcome.tree / GUIDE_FILE).read_text(encoding="utf-8"), GUIDE_FILE, "exec")


# -- (5) the finished tree -----------------------------------------------------------------------
def test_pytest_passes_inside_the_finished_tree(outcome: Outcome) -> None:
    done = subprocess.run(
        ["python", "-m", "pytest", "-q"],
        cwd=outcome.tree, env=outcome.env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout
