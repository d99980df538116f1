"""Reading `WORKER_*.md` files: the real corpus, every format variant, and file:line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.config import PlanningConfig
from orchestration.errors import InstructionError
from orchestration.instruction import FRAMEWORK_SECTIONS, Diagnostic, WorkerInstruction
from orchestration.loader import LoadResult, load_workers, read_instruction

NAME = "WORKER_900_Sample.md"

BODIES = {
    "DELIVERABLES": "- [ ] Create file: `pkg/sample.py`\n- [ ] Class `Sample` with `run()`",
    "SUCCESS_CRITERIA": "- [ ] `pkg/sample.py` imports\n- [ ] `Sample().run()` returns 1",
    "BOUNDARIES": "- **CAN create:** `pkg/sample.py`\n- **CANNOT modify:** `pkg/other.py`",
    "DEPENDENCIES": "- Python 3.11",
    "MITIGATION": "- **Rollback:** `rm pkg/sample.py`",
    "TEST_PROCESS": '```bash\n# Test 1: file exists\ntest -f pkg/sample.py || echo "FAIL: missing"\n```',
    "TEST_RESULTS_FORMAT": '```json\n{"worker_id": "900", "status": "pass|fail"}\n```',
    "TASK_CLASSIFICATION": "- **Type:** MECHANICAL\n- **Reasoning:** template work",
    "RETROSPECTIVE": "- What went well",
    "PERFORMANCE_REQUIREMENTS": "- **Target:** < 5 minutes",
}


def worker_md(
    fields: dict[str, str | None] | None = None,
    bodies: dict[str, str | None] | None = None,
    headers: dict[str, str] | None = None,
    numbered: bool = True,
    title: str = "# Worker 900: Sample",
) -> str:
    """A complete, clean instruction; `None` in `fields`/`bodies` drops that field/section."""
    merged_fields = {"Worker ID": "WORKER_900", "Phase": "1.1 - Sample"} | (fields or {})
    merged_bodies: dict[str, str | None] = {**BODIES, **(bodies or {})}
    lines = [title, ""]
    lines += [f"**{key}:** {value}" for key, value in merged_fields.items() if value is not None]
    lines += ["", "---", ""]
    for number, name in enumerate(FRAMEWORK_SECTIONS, start=1):
        body = merged_bodies[name]
        if body is None:
            continue
        default = f"## {number}. {name}" if numbered else f"## {name}"
        lines += [(headers or {}).get(name, default), "", body, "", "---", ""]
    return "\n".join(lines)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based number of the line holding the `occurrence`-th `needle`."""
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in text")


def load(tmp_path: Path, files: dict[str, str | bytes], planning: PlanningConfig | None = None) -> LoadResult:
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (tmp_path / name).write_bytes(data)
    return load_workers(tmp_path, planning)


def load_one(tmp_path: Path, content: str | bytes, name: str = NAME) -> tuple[WorkerInstruction, LoadResult]:
    result = load(tmp_path, {name: content})
    assert len(result.instructions) == 1, result.diagnostics
    return result.instructions[0], result


def messages(diagnostics: list[Diagnostic]) -> list[str]:
    return [d.message for d in diagnostics]


def error_at(result: LoadResult, fragment: str) -> Diagnostic:
    found = [d for d in result.errors if fragment in d.message]
    assert len(found) == 1, f"{fragment!r} not exactly once in {result.errors}"
    return found[0]


# -- the real corpus ----------------------------------------------------------------------------


def test_every_corpus_file_loads_and_only_the_two_absolute_paths_are_errors(corpus_dir: Path) -> None:
    result = load_workers(corpus_dir)

    assert result.files == 226
    assert len(result.instructions) == 226
    assert [(d.file, d.line) for d in result.errors] == [
        ("WORKER_055_Content_Quality_Class_Skeleton.md", 14),
        ("WORKER_080_Content_Quality_Tests_Part1.md", 15),
    ]
    for error in result.errors:
        assert "is absolute" in error.message
        assert "'/Volumes/" in error.message
    assert result.invalid == {"WORKER_055", "WORKER_080"}


def test_corpus_worker_ids_are_unique_and_contiguous(corpus_dir: Path) -> None:
    result = load_workers(corpus_dir)

    assert [i.worker_id for i in result.instructions] == [f"WORKER_{n:03d}" for n in range(226)]


def test_corpus_every_valid_worker_has_paths_and_test_commands(corpus_dir: Path) -> None:
    result = load_workers(corpus_dir)

    assert all(i.deliverable_paths for i in result.valid)
    assert all(i.test_commands for i in result.instructions)


def test_corpus_collapsed_header_and_type_outside_its_section(corpus_dir: Path) -> None:
    result = load_workers(corpus_dir)
    worker = next(i for i in result.instructions if i.worker_id == "WORKER_065")

    for name in ("TASK_CLASSIFICATION", "RETROSPECTIVE", "PERFORMANCE_REQUIREMENTS"):
        assert worker.sections[name].collapsed
        assert worker.sections[name].title == "8-10. [Standard sections]"
    assert worker.task_classification == "MECHANICAL"
    assert not [d for d in result.diagnostics if d.file.startswith("WORKER_065")]


def test_corpus_dependencies_from_header_range_and_not_filenames(corpus_dir: Path) -> None:
    by_id = {i.worker_id: i for i in load_workers(corpus_dir).instructions}

    assert by_id["WORKER_056"].dependencies == ["WORKER_055"]
    assert by_id["WORKER_056"].dependency_lines["WORKER_055"] == 6
    assert by_id["WORKER_055"].dependencies == [f"WORKER_{n:03d}" for n in range(1, 55)]
    assert by_id["WORKER_000"].dependencies == []


def test_corpus_phase_zero_and_phase_six_priorities(corpus_dir: Path) -> None:
    by_id = {i.worker_id: i for i in load_workers(corpus_dir).instructions}
    phase_six = [i for i in by_id.values() if (i.phase or "").startswith("6.")]

    assert by_id["WORKER_000"].priority == 1
    assert phase_six
    assert {i.priority for i in phase_six} == {5}


# -- a clean file -------------------------------------------------------------------------------


def test_clean_instruction_has_no_diagnostics_and_parses_every_part(tmp_path: Path) -> None:
    worker, result = load_one(tmp_path, worker_md())

    assert result.diagnostics == []
    assert worker.worker_id == "WORKER_900"
    assert worker.title == "Worker 900: Sample"
    assert worker.source == NAME
    assert set(worker.sections) == set(FRAMEWORK_SECTIONS)
    assert worker.deliverable_paths == ["pkg/sample.py"]
    assert worker.task_classification == "MECHANICAL"
    assert [c.command for c in worker.test_commands] == ['test -f pkg/sample.py || echo "FAIL: missing"']


# -- header variants ----------------------------------------------------------------------------


def test_numbered_headers_are_recognised(tmp_path: Path) -> None:
    text = worker_md(numbered=True)
    worker, _ = load_one(tmp_path, text)

    assert set(worker.sections) == set(FRAMEWORK_SECTIONS)
    assert worker.sections["DELIVERABLES"].start_line == line_of(text, "## 1. DELIVERABLES")


def test_unnumbered_headers_are_recognised(tmp_path: Path) -> None:
    text = worker_md(numbered=False)
    worker, result = load_one(tmp_path, text)

    assert result.diagnostics == []
    assert set(worker.sections) == set(FRAMEWORK_SECTIONS)
    assert worker.sections["DELIVERABLES"].start_line == line_of(text, "## DELIVERABLES")
    assert worker.deliverable_paths == ["pkg/sample.py"]


def test_lower_case_headers_are_recognised(tmp_path: Path) -> None:
    text = worker_md(headers={"DELIVERABLES": "## deliverables", "TEST_PROCESS": "## 6. test_process"})
    worker, result = load_one(tmp_path, text)

    assert result.errors == []
    assert worker.deliverable_paths == ["pkg/sample.py"]
    assert len(worker.test_commands) == 1


def test_header_words_separated_by_a_space_are_recognised(tmp_path: Path) -> None:
    headers = {"SUCCESS_CRITERIA": "## Success Criteria", "TEST_PROCESS": "## 6. Test Process"}
    worker, result = load_one(tmp_path, worker_md(headers=headers))

    assert result.diagnostics == []
    assert worker.success_criteria == ["`pkg/sample.py` imports", "`Sample().run()` returns 1"]
    assert len(worker.test_commands) == 1


def test_collapsed_header_records_collapsed_sections_not_errors(tmp_path: Path) -> None:
    bodies: dict[str, str | None] = {"BOUNDARIES": None, "DEPENDENCIES": None, "MITIGATION": None}
    text = worker_md(bodies=bodies) + "\n## 3-5. [Standard sections]\n\nSee the team template.\n"
    worker, result = load_one(tmp_path, text)
    header_line = line_of(text, "## 3-5. [Standard sections]")

    assert result.diagnostics == []
    for name in ("BOUNDARIES", "DEPENDENCIES", "MITIGATION"):
        assert worker.sections[name].collapsed
        assert worker.sections[name].start_line == header_line
    assert not worker.sections["DELIVERABLES"].collapsed


def test_collapsed_header_over_a_required_section_is_still_an_error(tmp_path: Path) -> None:
    bodies: dict[str, str | None] = {name: None for name in FRAMEWORK_SECTIONS[:6]}
    text = worker_md(bodies=bodies) + "\n## 1-6. [Standard sections]\n\n`pkg/sample.py`\n"
    result = load(tmp_path, {NAME: text})

    assert sorted(messages(result.errors)) == ["DELIVERABLES section is missing", "TEST_PROCESS section is missing"]


def test_headers_inside_fenced_code_blocks_are_ignored(tmp_path: Path) -> None:
    fenced = "```markdown\n## 6. TEST_PROCESS\n## 1. DELIVERABLES\n- `evil/inside_fence.py`\n```"
    bodies: dict[str, str | None] = {"TEST_PROCESS": None, "TEST_RESULTS_FORMAT": fenced}
    result = load(tmp_path, {NAME: worker_md(bodies=bodies)})
    worker = result.instructions[0]

    assert "TEST_PROCESS section is missing" in messages(result.errors)
    assert worker.deliverable_paths == ["pkg/sample.py"]
    assert "## 1. DELIVERABLES" in worker.sections["TEST_RESULTS_FORMAT"].text


def test_tilde_fence_also_hides_headers(tmp_path: Path) -> None:
    fenced = "~~~\n## 1. DELIVERABLES\n- `evil/inside_fence.py`\n~~~"
    worker, result = load_one(tmp_path, worker_md(bodies={"RETROSPECTIVE": fenced}))

    assert result.diagnostics == []
    assert worker.deliverable_paths == ["pkg/sample.py"]


# -- encodings and line endings -----------------------------------------------------------------


def test_crlf_line_endings_parse_like_lf(tmp_path: Path) -> None:
    text = worker_md()
    (tmp_path / "lf").mkdir()
    (tmp_path / "crlf").mkdir()
    lf, _ = load_one(tmp_path / "lf", text)
    crlf, result = load_one(tmp_path / "crlf", text.replace("\n", "\r\n"))

    assert result.diagnostics == []
    assert crlf.sections["TEST_PROCESS"].start_line == lf.sections["TEST_PROCESS"].start_line
    assert crlf.test_commands == lf.test_commands
    assert crlf.deliverable_paths == lf.deliverable_paths
    assert "\r" not in crlf.sections["DELIVERABLES"].text


def test_crlf_error_lines_are_counted_correctly(tmp_path: Path) -> None:
    text = worker_md(bodies={"DELIVERABLES": "- intro\n- Create `/abs/sample.py`"})
    result = load(tmp_path, {NAME: text.replace("\n", "\r\n")})

    assert error_at(result, "is absolute").line == line_of(text, "/abs/sample.py")


def test_crlf_multi_line_command_has_no_carriage_returns(tmp_path: Path) -> None:
    script = '```bash\npython3 -c "\nimport os\nprint(1)\n"\n```'
    worker, _ = load_one(tmp_path, worker_md(bodies={"TEST_PROCESS": script}).replace("\n", "\r\n"))

    assert [c.command for c in worker.test_commands] == ['python3 -c "\nimport os\nprint(1)\n"']


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    text = worker_md()
    worker, result = load_one(tmp_path, b"\xef\xbb\xbf" + text.encode())

    assert result.diagnostics == []
    assert worker.title == "Worker 900: Sample"
    assert worker.sections["DELIVERABLES"].start_line == line_of(text, "## 1. DELIVERABLES")


def test_non_utf8_bytes_are_decoded_with_a_warning_at_the_first_bad_line(tmp_path: Path) -> None:
    text = worker_md(bodies={"SUCCESS_CRITERIA": "- [ ] BADBYTE1 quoted\n- [ ] BADBYTE2 second"})
    raw = text.encode().replace(b"BADBYTE1 quoted", b"\x93quoted\x94").replace(b"BADBYTE2", b"caf\xe9")
    worker, result = load_one(tmp_path, raw)

    assert [(d.line, d.severity) for d in result.diagnostics] == [(line_of(text, "BADBYTE1"), "warning")]
    assert "not valid UTF-8" in result.diagnostics[0].message
    assert worker.success_criteria == ["\u201cquoted\u201d", "caf\u00e9 second"]


def test_non_utf8_warning_line_with_a_bom(tmp_path: Path) -> None:
    text = worker_md(bodies={"RETROSPECTIVE": "- BADBYTE here"})
    raw = b"\xef\xbb\xbf" + text.encode().replace(b"BADBYTE", b"\xff")
    _, result = load_one(tmp_path, raw)

    assert [d.line for d in result.warnings] == [line_of(text, "BADBYTE")]


def test_non_utf8_warning_line_with_old_mac_line_endings(tmp_path: Path) -> None:
    text = worker_md(bodies={"RETROSPECTIVE": "- BADBYTE here"})
    raw = text.replace("\n", "\r").encode().replace(b"BADBYTE", b"\xff")
    _, result = load_one(tmp_path, raw)

    assert [d.line for d in result.warnings] == [line_of(text, "BADBYTE")]


# -- classification -----------------------------------------------------------------------------


def test_type_outside_task_classification_still_classifies(tmp_path: Path) -> None:
    text = worker_md(fields={"Type": None}, bodies={"TASK_CLASSIFICATION": None, "RETROSPECTIVE": "**Type:** MECHANICAL"})
    worker, _ = load_one(tmp_path, text)

    assert worker.task_classification == "MECHANICAL"


def test_type_in_header_block_classifies(tmp_path: Path) -> None:
    worker, _ = load_one(tmp_path, worker_md(fields={"Type": "HYBRID"}, bodies={"TASK_CLASSIFICATION": None}))

    assert worker.task_classification == "HYBRID"


def test_type_inside_its_section_wins_over_one_elsewhere(tmp_path: Path) -> None:
    bodies = {"TASK_CLASSIFICATION": "- **Type:** CREATIVE", "RETROSPECTIVE": "**Type:** MECHANICAL"}
    worker, _ = load_one(tmp_path, worker_md(bodies=bodies))

    assert worker.task_classification == "CREATIVE"


def test_no_type_anywhere_is_unspecified(tmp_path: Path) -> None:
    worker, _ = load_one(tmp_path, worker_md(bodies={"TASK_CLASSIFICATION": "To be decided."}))

    assert worker.task_classification == "UNSPECIFIED"


# -- test commands ------------------------------------------------------------------------------


def commands_for(tmp_path: Path, script: str, language: str = "bash") -> list[tuple[str, int]]:
    text = worker_md(bodies={"TEST_PROCESS": f"```{language}\n{script}\n```"})
    worker, _ = load_one(tmp_path, text)
    return [(c.command, c.line) for c in worker.test_commands]


def test_test_commands_drop_comment_lines_and_keep_file_lines(tmp_path: Path) -> None:
    script = "# Test 1: exists\ntest -f pkg/sample.py\n\n# Test 2: imports\npython3 -c 'import pkg.sample'"
    text = worker_md(bodies={"TEST_PROCESS": f"```bash\n{script}\n```"})
    worker, _ = load_one(tmp_path, text)

    assert [(c.command, c.line) for c in worker.test_commands] == [
        ("test -f pkg/sample.py", line_of(text, "test -f pkg/sample.py")),
        ("python3 -c 'import pkg.sample'", line_of(text, "python3 -c 'import pkg.sample'")),
    ]


def test_multi_line_python_c_is_kept_whole(tmp_path: Path) -> None:
    program = 'python3 -c "\nfrom pkg.sample import Sample\n# Python comment\nassert Sample().run() == 1\nprint(\'PASS\')\n"'

    assert [c for c, _ in commands_for(tmp_path, program)] == [program]


def test_or_echo_fail_is_kept(tmp_path: Path) -> None:
    command = 'python3 -c "import pkg.sample" || echo "FAIL: import failed"'

    assert [c for c, _ in commands_for(tmp_path, command)] == [command]


def test_heredoc_is_one_command(tmp_path: Path) -> None:
    script = "python3 - <<'EOF'\nimport pkg.sample\n# still python\nEOF\necho after"

    assert [c for c, _ in commands_for(tmp_path, script)] == [
        "python3 - <<'EOF'\nimport pkg.sample\n# still python\nEOF",
        "echo after",
    ]


def test_for_loop_is_one_command(tmp_path: Path) -> None:
    script = 'for f in pkg/sample.py pkg/__init__.py; do\n  test -f "$f" || echo "FAIL: $f"\ndone'

    assert [c for c, _ in commands_for(tmp_path, script)] == [script]


def test_line_continuation_is_one_command(tmp_path: Path) -> None:
    script = "python3 -m pytest \\\n  tests/test_sample.py \\\n  -q\nls"

    assert [c for c, _ in commands_for(tmp_path, script)] == ["python3 -m pytest \\\n  tests/test_sample.py \\\n  -q", "ls"]


def test_non_shell_blocks_in_test_process_are_not_commands(tmp_path: Path) -> None:
    body = '```python\nprint("not run")\n```\n\n```sh\nls\n```'
    worker, _ = load_one(tmp_path, worker_md(bodies={"TEST_PROCESS": body}))

    assert [c.command for c in worker.test_commands] == ["ls"]


def test_test_process_without_commands_is_a_warning_at_its_header(tmp_path: Path) -> None:
    text = worker_md(bodies={"TEST_PROCESS": "Run the tests by hand."})
    _, result = load_one(tmp_path, text)

    assert result.errors == []
    assert [(d.line, d.message) for d in result.warnings] == [
        (line_of(text, "## 6. TEST_PROCESS"), "TEST_PROCESS has no fenced shell commands to run")
    ]


# -- priority -----------------------------------------------------------------------------------


def priority_of(tmp_path: Path, fields: dict[str, str | None], planning: PlanningConfig | None = None) -> int:
    result = load(tmp_path, {NAME: worker_md(fields=fields)}, planning)
    return result.instructions[0].priority


def test_explicit_priority_wins_over_phase(tmp_path: Path) -> None:
    assert priority_of(tmp_path, {"Phase": "1.1 - Early", "Priority": "4"}) == 4


def test_phase_major_number_maps_through_config(tmp_path: Path) -> None:
    assert priority_of(tmp_path, {"Phase": "2.3 - x"}) == 2


def test_phase_zero_maps_to_one(tmp_path: Path) -> None:
    assert priority_of(tmp_path, {"Phase": "0 (Pre-Phase 1A Quality Gate)"}) == 1


def test_phase_above_the_map_goes_to_max_priority(tmp_path: Path) -> None:
    assert priority_of(tmp_path, {"Phase": "6.1 - Threshold Tuning"}) == 5


def test_neither_priority_nor_phase_uses_the_config_default(tmp_path: Path) -> None:
    planning = PlanningConfig(default_priority=3)

    assert priority_of(tmp_path, {"Phase": None}, planning) == 3
    assert load(tmp_path, {NAME: worker_md(fields={"Phase": None})}).instructions[0].priority == 5


def test_custom_phase_priority_map_changes_results(tmp_path: Path) -> None:
    planning = PlanningConfig(phase_priority={1: 3, 2: 1}, max_priority=4)

    assert priority_of(tmp_path, {"Phase": "1.1 - x"}, planning) == 3
    assert priority_of(tmp_path, {"Phase": "2 - y"}, planning) == 1
    assert priority_of(tmp_path, {"Phase": "7 - z"}, planning) == 4


def test_priority_rule_says_which_rule_decided(tmp_path: Path) -> None:
    result = load(tmp_path, {NAME: worker_md(fields={"Phase": "2.3 - x"})})

    assert result.instructions[0].priority_rule == "phase 2.3 → 2"


def test_out_of_range_explicit_priority_warns_at_its_line_and_falls_back(tmp_path: Path) -> None:
    text = worker_md(fields={"Phase": "3.1 - x", "Priority": "9"})
    result = load(tmp_path, {NAME: text})

    assert result.instructions[0].priority == 3
    assert [(d.line, d.severity) for d in result.diagnostics] == [(line_of(text, "**Priority:**"), "warning")]


# -- dependencies -------------------------------------------------------------------------------


def dependency_files(worker: str, ids: range) -> dict[str, str]:
    files = {f"WORKER_{n:03d}_Dep.md": worker_md(fields={"Worker ID": f"WORKER_{n:03d}"}) for n in ids}
    files[NAME] = worker
    return files


def test_dependency_from_header_line(tmp_path: Path) -> None:
    text = worker_md(fields={"Dependencies": "WORKER_064 complete"})
    result = load(tmp_path, dependency_files(text, range(64, 65)))
    worker = next(i for i in result.instructions if i.worker_id == "WORKER_900")

    assert worker.dependencies == ["WORKER_064"]
    assert worker.dependency_lines == {"WORKER_064": line_of(text, "**Dependencies:**")}


def test_dependency_from_header_line_with_colon_outside_bold(tmp_path: Path) -> None:
    text = worker_md().replace("**Phase:** 1.1 - Sample", "**Phase:** 1.1 - Sample\n**Dependencies**: WORKER_064")
    result = load(tmp_path, dependency_files(text, range(64, 65)))
    worker = next(i for i in result.instructions if i.worker_id == "WORKER_900")

    assert worker.dependency_lines == {"WORKER_064": line_of(text, "**Dependencies**:")}


def test_dependencies_from_prose_in_the_dependencies_section(tmp_path: Path) -> None:
    text = worker_md(bodies={"DEPENDENCIES": "- Needs the skeleton from WORKER_002\n- and the client from WORKER_003."})
    result = load(tmp_path, dependency_files(text, range(1, 4)))
    worker = next(i for i in result.instructions if i.worker_id == "WORKER_900")

    assert worker.dependencies == ["WORKER_002", "WORKER_003"]
    assert worker.dependency_lines == {
        "WORKER_002": line_of(text, "WORKER_002"),
        "WORKER_003": line_of(text, "WORKER_003"),
    }


def test_dependency_range_expands(tmp_path: Path) -> None:
    text = worker_md(bodies={"DEPENDENCIES": "- Phase 1 complete (WORKER_001-003)"})
    result = load(tmp_path, dependency_files(text, range(1, 4)))
    worker = next(i for i in result.instructions if i.worker_id == "WORKER_900")

    assert worker.dependencies == ["WORKER_001", "WORKER_002", "WORKER_003"]


def test_self_reference_is_not_a_dependency(tmp_path: Path) -> None:
    text = worker_md(
        fields={"Dependencies": "None (this is WORKER_900)"},
        bodies={"DEPENDENCIES": "- This is WORKER_900 - first in sequence\n- Range WORKER_899-900"},
    )
    result = load(tmp_path, dependency_files(text, range(899, 900)))
    worker = next(i for i in result.instructions if i.worker_id == "WORKER_900")

    assert worker.dependencies == ["WORKER_899"]


def test_worker_file_names_are_not_dependencies(tmp_path: Path) -> None:
    body = "- Template: `ai-workers/workers/WORKER_001_Some_File.md`\n- Copy WORKER_002_Other_File.md first"
    worker, result = load_one(tmp_path, worker_md(bodies={"DEPENDENCIES": body}))

    assert worker.dependencies == []
    assert result.errors == []


# -- errors -------------------------------------------------------------------------------------


def test_empty_file_is_an_error_at_line_one(tmp_path: Path) -> None:
    result = load(tmp_path, {NAME: ""})

    assert result.instructions == []
    assert [(d.file, d.line, d.message) for d in result.errors] == [(NAME, 1, "file is empty")]


def test_whitespace_only_file_is_empty(tmp_path: Path) -> None:
    result = load(tmp_path, {NAME: b"\xef\xbb\xbf \r\n\t\n"})

    assert messages(result.errors) == ["file is empty"]


def test_missing_deliverables_is_an_error(tmp_path: Path) -> None:
    result = load(tmp_path, {NAME: worker_md(bodies={"DELIVERABLES": None})})

    assert [(d.file, d.line, d.message) for d in result.errors] == [(NAME, 1, "DELIVERABLES section is missing")]
    assert result.invalid == {"WORKER_900"}
    assert result.valid == []


def test_missing_test_process_is_an_error(tmp_path: Path) -> None:
    result = load(tmp_path, {NAME: worker_md(bodies={"TEST_PROCESS": None})})

    assert [(d.file, d.line, d.message) for d in result.errors] == [(NAME, 1, "TEST_PROCESS section is missing")]
    assert result.valid == []


def test_other_missing_sections_are_one_warning(tmp_path: Path) -> None:
    result = load(tmp_path, {NAME: worker_md(bodies={"MITIGATION": None, "RETROSPECTIVE": None})})

    assert result.errors == []
    assert [(d.line, d.message) for d in result.warnings] == [(1, "missing sections: MITIGATION, RETROSPECTIVE")]
    assert [i.worker_id for i in result.valid] == ["WORKER_900"]


def test_absolute_deliverable_path_is_an_error_at_its_line(tmp_path: Path) -> None:
    body = "Create the module:\n\n- **File:** `/Volumes/Data/pkg/sample.py`\n- Class `Sample`"
    text = worker_md(bodies={"DELIVERABLES": body})
    result = load(tmp_path, {NAME: text})
    error = error_at(result, "is absolute")

    assert (error.file, error.line) == (NAME, line_of(text, "/Volumes/Data"))
    assert "'/Volumes/Data/pkg/sample.py'" in error.message
    assert result.valid == []


def test_windows_drive_path_is_an_error_at_its_line(tmp_path: Path) -> None:
    text = worker_md(bodies={"DELIVERABLES": "- first\n- second\n- Create `C:\\x\\y.py`"})
    result = load(tmp_path, {NAME: text})

    assert error_at(result, "Windows drive path").line == line_of(text, "C:\\x\\y.py")


def test_dotdot_escape_is_an_error_at_its_line(tmp_path: Path) -> None:
    text = worker_md(bodies={"DELIVERABLES": "- Create `pkg/sample.py`\n- Update `../shared/config.py`"})
    result = load(tmp_path, {NAME: text})

    assert error_at(result, "escapes the target").line == line_of(text, "../shared/config.py")


def test_exact_file_path_field_is_checked_too(tmp_path: Path) -> None:
    body = "- Create the module\n\n**Exact File Path:** /srv/pkg/sample.py"
    text = worker_md(bodies={"DELIVERABLES": body})
    result = load(tmp_path, {NAME: text})

    assert error_at(result, "is absolute").line == line_of(text, "**Exact File Path:**")


def test_exact_file_path_with_repo_root_prefix_is_relative(tmp_path: Path) -> None:
    body = "- Create the module\n\n**Exact File Path:** (repo root)/pkg/sample.py"
    worker, result = load_one(tmp_path, worker_md(bodies={"DELIVERABLES": body}))

    assert result.errors == []
    assert worker.deliverable_paths == ["pkg/sample.py"]


def test_paths_outside_deliverables_are_not_checked(tmp_path: Path) -> None:
    worker, result = load_one(tmp_path, worker_md(bodies={"RETROSPECTIVE": "- Compare with `/etc/hosts.txt`"}))

    assert result.errors == []
    assert worker.deliverable_paths == ["pkg/sample.py"]


def test_duplicate_worker_ids_are_errors_naming_both_files(tmp_path: Path) -> None:
    first, second = "WORKER_007_First.md", "WORKER_007_Second.md"
    result = load(tmp_path, {first: worker_md(fields={"Worker ID": None}), second: worker_md(fields={"Worker ID": None})})

    assert len(result.errors) == 1
    error = result.errors[0]
    assert (error.file, error.line) == (second, 1)
    assert "WORKER_007" in error.message
    assert first in error.message
    assert second in error.message
    assert result.invalid == {"WORKER_007"}
    assert result.valid == []


def test_dependency_on_unknown_worker_is_an_error_at_the_dependency_line(tmp_path: Path) -> None:
    text = worker_md(bodies={"DEPENDENCIES": "- Python 3.11\n- WORKER_123 must be complete"})
    result = load(tmp_path, {NAME: text})

    assert [(d.file, d.line, d.message) for d in result.errors] == [
        (NAME, line_of(text, "WORKER_123"), "depends on unknown worker WORKER_123")
    ]
    assert result.invalid == {"WORKER_900"}


def test_file_without_any_worker_id_is_an_error(tmp_path: Path) -> None:
    text = worker_md(fields={"Worker ID": None}, title="# Sample task")
    result = load(tmp_path, {"WORKER_notes.md": text})

    assert result.instructions == []
    assert [(d.file, d.line) for d in result.errors] == [("WORKER_notes.md", 1)]
    assert "no worker id" in result.errors[0].message


def test_missing_directory_raises_instruction_error(tmp_path: Path) -> None:
    with pytest.raises(InstructionError, match="workers directory not found"):
        load_workers(tmp_path / "absent")


def test_only_worker_markdown_files_are_read(tmp_path: Path) -> None:
    result = load(tmp_path, {NAME: worker_md(), "README.md": "", "WORKER_901.txt": "", "notes.md": "# x"})

    assert result.files == 1


def test_unreadable_entry_is_an_error_not_an_exception(tmp_path: Path) -> None:
    (tmp_path / "WORKER_901_Folder.md").mkdir()
    result = load(tmp_path, {NAME: worker_md()})

    assert [(d.file, d.line) for d in result.errors] == [("WORKER_901_Folder.md", 1)]
    assert "cannot read file" in result.errors[0].message
    assert [i.worker_id for i in result.valid] == ["WORKER_900"]


FRAGMENTS = st.sampled_from(
    [
        "# Worker 5", "## 1. DELIVERABLES", "## 6. TEST_PROCESS", "## DEPENDENCIES", "## 3-5. [Standard sections]",
        "## 11-99. [x]", "```bash", "```", "~~~", "**Priority:** 99999999999999999999", "**Phase:** x",
        "**Worker ID:** WORKER_0", "- `a/b.py`", "- `/x.py`", "- `C:\\x.py`", "- `..`", "WORKER_001-9999",
        'python3 -c "', "cat <<EOF", "EOF", "for x in y; do", "\\", "$(", "'", "**Type:**", "\r", "\x00",
    ]
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=25), tail=st.binary(max_size=4))
def test_reading_never_raises_on_arbitrary_content(tmp_path: Path, lines: list[str], tail: bytes) -> None:
    path = tmp_path / "WORKER_042_Fuzz.md"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + tail)

    instruction, diagnostics = read_instruction(path, PlanningConfig())

    assert instruction is not None or any(d.severity == "error" for d in diagnostics)
    assert all(d.line >= 1 for d in diagnostics)
