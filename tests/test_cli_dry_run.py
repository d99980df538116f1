"""`launch_workforce.py --dry-run` as a user runs it: a subprocess, its exit code, its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestration.instruction import FRAMEWORK_SECTIONS

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "orchestration" / "launch_workforce.py"

SECTIONS = FRAMEWORK_SECTIONS


def worker_md(number: int, phase: str = "1.1 - x", path: str = "pkg/a.py", deps: str = "- None",
              omit: tuple[str, ...] = ()) -> str:
    bodies = {
        "DELIVERABLES": f"- [ ] Create `{path}`",
        "DEPENDENCIES": deps,
        "TEST_PROCESS": f"```bash\ntest -f {path} || echo \"FAIL: missing\"\n```",
        "TASK_CLASSIFICATION": "- **Type:** MECHANICAL",
    }
    lines = [f"# Worker {number:03d}: Test", "", f"**Worker ID:** WORKER_{number:03d}", f"**Phase:** {phase}", ""]
    for index, name in enumerate(SECTIONS, start=1):
        if name not in omit:
            lines += [f"## {index}. {name}", "", bodies.get(name, "- n/a"), ""]
    return "\n".join(lines)


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def write(directory: Path, files: dict[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_bytes(content.encode() if isinstance(content, str) else content)
    return directory


def clean_files() -> dict[str, str]:
    return {
        "WORKER_001_First.md": worker_md(1, path="pkg/shared.py"),
        "WORKER_002_Second.md": worker_md(2, path="pkg/shared.py"),
        "WORKER_003_Third.md": worker_md(3, phase="2 - later", path="pkg/other.py", deps="- WORKER_001 done"),
    }


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKFORCE__") and k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def dry_run_json(directory: Path | str, *extra: str) -> tuple[int, dict[str, Any], subprocess.CompletedProcess[str]]:
    done = run_cli("--all", "--dry-run", "--workers-dir", str(directory), "--json", *extra)
    assert "Traceback" not in done.stderr + done.stdout
    return done.returncode, json.loads(done.stdout), done


def assert_shape(report: dict[str, Any]) -> None:
    assert list(report) == ["workers", "waves", "errors", "warnings"]
    assert isinstance(report["workers"], int)
    for wave in report["waves"]:
        assert list(wave) == ["priority", "lanes"]
        assert isinstance(wave["priority"], int)
        assert all(isinstance(lane, list) and all(isinstance(w, str) for w in lane) for lane in wave["lanes"])
    for item in report["errors"] + report["warnings"]:
        assert list(item) == ["file", "line", "message"]
        assert isinstance(item["file"], str) and isinstance(item["line"], int) and isinstance(item["message"], str)
        assert item["line"] >= 1


def test_clean_dir_prints_the_exact_plan_and_exits_zero(tmp_path: Path) -> None:
    code, report, _ = dry_run_json(write(tmp_path / "workers", clean_files()))

    assert code == 0
    assert_shape(report)
    assert report == {
        "workers": 3,
        "waves": [
            {"priority": 1, "lanes": [["WORKER_001", "WORKER_002"]]},
            {"priority": 2, "lanes": [["WORKER_003"]]},
        ],
        "errors": [],
        "warnings": [],
    }


def test_errors_exit_two_and_still_print_the_valid_plan(tmp_path: Path) -> None:
    bad = worker_md(4, path="/abs/bad.py")
    files = clean_files() | {"WORKER_004_Bad.md": bad}
    code, report, _ = dry_run_json(write(tmp_path / "workers", files))

    assert code == 2
    assert_shape(report)
    assert report["waves"] == [
        {"priority": 1, "lanes": [["WORKER_001", "WORKER_002"]]},
        {"priority": 2, "lanes": [["WORKER_003"]]},
    ]
    assert report["workers"] == 4
    assert report["errors"] == [
        {
            "file": "WORKER_004_Bad.md",
            "line": line_of(bad, "Create `/abs/bad.py`"),
            "message": "deliverable path '/abs/bad.py' is absolute; write it relative to the target",
        }
    ]


def test_diagnostic_file_is_relative_to_the_workers_dir(tmp_path: Path) -> None:
    workers = write(tmp_path / "deep" / "nested" / "workers", {"WORKER_001_X.md": worker_md(1, omit=("MITIGATION",))})
    _, report, _ = dry_run_json(workers)

    assert [w["file"] for w in report["warnings"]] == ["WORKER_001_X.md"]


def test_warnings_alone_exit_zero(tmp_path: Path) -> None:
    workers = write(tmp_path / "workers", {"WORKER_001_X.md": worker_md(1, omit=("MITIGATION", "RETROSPECTIVE"))})
    code, report, _ = dry_run_json(workers)

    assert code == 0
    assert report["errors"] == []
    assert report["warnings"] == [
        {"file": "WORKER_001_X.md", "line": 1, "message": "missing sections: MITIGATION, RETROSPECTIVE"}
    ]
    assert report["waves"] == [{"priority": 1, "lanes": [["WORKER_001"]]}]


def test_strict_turns_warnings_into_errors(tmp_path: Path) -> None:
    workers = write(tmp_path / "workers", {"WORKER_001_X.md": worker_md(1, omit=("MITIGATION", "RETROSPECTIVE"))})
    code, report, _ = dry_run_json(workers, "--strict")

    assert code == 2
    assert_shape(report)
    assert report["warnings"] == []
    assert report["errors"] == [
        {"file": "WORKER_001_X.md", "line": 1, "message": "missing sections: MITIGATION, RETROSPECTIVE"}
    ]


def test_strict_on_a_clean_dir_still_exits_zero(tmp_path: Path) -> None:
    code, _, _ = dry_run_json(write(tmp_path / "workers", clean_files()), "--strict")

    assert code == 0


def test_priority_prints_only_that_wave(tmp_path: Path) -> None:
    workers = write(tmp_path / "workers", clean_files())
    done = run_cli("--priority", "2", "--dry-run", "--workers-dir", str(workers), "--json")
    report = json.loads(done.stdout)

    assert done.returncode == 0
    assert_shape(report)
    assert report["waves"] == [{"priority": 2, "lanes": [["WORKER_003"]]}]


def test_malformed_files_never_produce_a_traceback(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "WORKER_001_Empty.md": "",
        "WORKER_002_Binary.md": bytes(range(256)) * 4,
        "WORKER_003_Title_Only.md": "# Worker 3\n",
        "WORKER_004_Unclosed_Fence.md": worker_md(4, path="pkg/d.py") + "\n```bash\nls\n",
        "WORKER_005_Garbage_Headers.md": "## 3-5. [Standard sections]\n## 0-99. [x]\n**Priority:** P99999999999\n",
        "WORKER_006_Cycle.md": worker_md(6, path="pkg/f.py", deps="- WORKER_007"),
        "WORKER_007_Cycle.md": worker_md(7, path="pkg/g.py", deps="- WORKER_006"),
        "WORKER_no_id.md": "# nothing here\n",
        "WORKER_008_Ok.md": worker_md(8, path="pkg/h.py"),
    }
    workers = write(tmp_path / "workers", files)
    (workers / "WORKER_009_Folder.md").mkdir()

    code, report, _ = dry_run_json(workers)
    human = run_cli("--all", "--dry-run", "--workers-dir", str(workers))

    assert code == 2
    assert_shape(report)
    assert {"WORKER_004", "WORKER_008"} <= {w for wave in report["waves"] for lane in wave["lanes"] for w in lane}
    assert {e["file"] for e in report["errors"]} >= {
        "WORKER_001_Empty.md", "WORKER_003_Title_Only.md", "WORKER_006_Cycle.md", "WORKER_007_Cycle.md",
        "WORKER_no_id.md", "WORKER_009_Folder.md",
    }
    assert human.returncode == 2
    assert "Traceback" not in human.stdout + human.stderr


def test_cycle_error_names_its_members(tmp_path: Path) -> None:
    first = worker_md(1, path="pkg/a.py", deps="- WORKER_002")
    second = worker_md(2, path="pkg/b.py", deps="- WORKER_001")
    code, report, _ = dry_run_json(write(tmp_path / "workers", {"WORKER_001_A.md": first, "WORKER_002_B.md": second}))

    assert code == 2
    assert report["waves"] == []
    assert [(e["file"], e["line"]) for e in report["errors"]] == [
        ("WORKER_001_A.md", line_of(first, "- WORKER_002")),
        ("WORKER_002_B.md", line_of(second, "- WORKER_001")),
    ]
    assert all("WORKER_001" in e["message"] and "WORKER_002" in e["message"] for e in report["errors"])


def test_missing_workers_dir_is_a_one_line_error() -> None:
    done = run_cli("--all", "--dry-run", "--workers-dir", "no-such-workers-dir", "--json")

    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == ["error no-such-workers-dir: workers directory not found"]


def test_missing_workers_dir_error_stays_one_line_for_a_long_path(tmp_path: Path) -> None:
    missing = tmp_path / ("long-folder-name-" * 4) / "workers"
    done = run_cli("--all", "--dry-run", "--workers-dir", str(missing))

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error {missing}: workers directory not found"]


def test_naming_no_waves_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("--dry-run", "--workers-dir", str(write(tmp_path / "workers", clean_files())))

    assert done.returncode == 2
    assert "say which waves" in done.stderr
    assert "Traceback" not in done.stderr


def test_human_output_mentions_each_wave_and_the_summary(tmp_path: Path) -> None:
    done = run_cli("--all", "--dry-run", "--workers-dir", str(write(tmp_path / "workers", clean_files())))

    assert done.returncode == 0
    assert "Wave 1: 2 workers in 1 lanes" in done.stdout
    assert "Wave 2: 1 workers in 1 lanes" in done.stdout
    assert "3 workers read, 3 planned in 2 waves; 0 errors, 0 warnings" in done.stdout


def test_human_output_prints_errors_as_file_line_message(tmp_path: Path) -> None:
    bad = worker_md(4, path="../escape.py")
    files = clean_files() | {"WORKER_004_Bad.md": bad}
    done = run_cli("--all", "--dry-run", "--workers-dir", str(write(tmp_path / "workers", files)))
    line = line_of(bad, "Create `../escape.py`")

    assert done.returncode == 2
    assert f"error WORKER_004_Bad.md:{line}: deliverable path '../escape.py' escapes the target" in done.stdout
    assert "Wave 1" in done.stdout


def test_corpus_dry_run_reports_exactly_the_two_absolute_paths(corpus_dir: Path) -> None:
    code, report, _ = dry_run_json(corpus_dir)

    assert code == 2
    assert_shape(report)
    assert report["workers"] == 226
    assert [(e["file"], e["line"]) for e in report["errors"]] == [
        ("WORKER_055_Content_Quality_Class_Skeleton.md", 14),
        ("WORKER_080_Content_Quality_Tests_Part1.md", 15),
    ]
    assert [wave["priority"] for wave in report["waves"]] == [1, 2, 3, 4, 5]
    assert sum(len(lane) for wave in report["waves"] for lane in wave["lanes"]) == 224
