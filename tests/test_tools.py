"""The four worker tools: confined to the work dir, failures as "error: ..." text, commands with
a scrubbed environment and the launcher's interpreter."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest
from autogen_core import CancellationToken
from autogen_core.tools import FunctionTool

from agents.tools import TOOL_NAMES, workdir_tools
from orchestration.workdir import WorkDir


@pytest.fixture
def workdir(tmp_path: Path) -> WorkDir:
    wd = WorkDir(tmp_path / "work")
    wd.reset()
    return wd


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("top secret\n", encoding="utf-8")
    return folder


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def tools(workdir: WorkDir, timeout_s: float = 10.0) -> dict[str, FunctionTool]:
    return {t.name: t for t in workdir_tools(workdir, timeout_s)}


async def call(workdir: WorkDir, name: str, timeout_s: float = 10.0, **arguments: str) -> str:
    result = await tools(workdir, timeout_s)[name].run_json(arguments, CancellationToken())
    assert isinstance(result, str)
    return result


def test_the_four_tools_with_descriptions_and_schemas(workdir: WorkDir) -> None:
    found = tools(workdir)

    assert tuple(found) == TOOL_NAMES
    assert all(t.description for t in found.values())
    assert set(found["write_file"].schema["parameters"]["required"]) == {"path", "content"}
    assert found["run_command"].schema["parameters"]["required"] == ["command"]


# -- files ----------------------------------------------------------------------------------------
async def test_write_read_and_list_inside_the_work_dir(workdir: WorkDir) -> None:
    reply = await call(workdir, "write_file", path="pkg/mod.py", content="X = 1\n")

    assert reply == "wrote pkg/mod.py (6 characters)"
    assert (workdir.root / "pkg" / "mod.py").read_text(encoding="utf-8") == "X = 1\n"
    assert await call(workdir, "read_file", path="pkg/mod.py") == "X = 1\n"
    assert await call(workdir, "list_files") == "pkg/mod.py"
    assert await call(workdir, "list_files", path="pkg") == "pkg/mod.py"


async def test_an_empty_work_dir_lists_no_files(workdir: WorkDir) -> None:
    assert await call(workdir, "list_files", path=".") == "(no files)"


async def test_reading_a_missing_file_is_an_error_text(workdir: WorkDir) -> None:
    assert await call(workdir, "read_file", path="nope.py") == "error: nope.py does not exist"


@pytest.mark.parametrize("path", ["/etc/passwd", "~/x.py", "C:/x.py", "../x.py", "pkg/../../x.py", ""])
async def test_writes_outside_the_work_dir_are_refused(workdir: WorkDir, path: str) -> None:
    reply = await call(workdir, "write_file", path=path, content="escaped")

    assert reply.startswith("error: ")
    assert not (workdir.root.parent / "x.py").exists()
    assert await call(workdir, "list_files") == "(no files)"


@pytest.mark.parametrize("path", ["/etc/hostname", "../outside/secret.txt", "~/.bashrc"])
async def test_reads_outside_the_work_dir_are_refused(workdir: WorkDir, outside: Path, path: str) -> None:
    reply = await call(workdir, "read_file", path=path)

    assert reply.startswith("error: ")
    assert "top secret" not in reply


@pytest.mark.parametrize("path", ["/", "..", "../outside"])
async def test_listing_outside_the_work_dir_is_refused(workdir: WorkDir, outside: Path, path: str) -> None:
    reply = await call(workdir, "list_files", path=path)

    assert reply.startswith("error: ")
    assert "secret.txt" not in reply


async def test_a_symlinked_folder_that_leads_out_is_refused(workdir: WorkDir, outside: Path) -> None:
    (workdir.root / "link").symlink_to(outside, target_is_directory=True)

    write = await call(workdir, "write_file", path="link/new.txt", content="escaped")
    read = await call(workdir, "read_file", path="link/secret.txt")
    listing = await call(workdir, "list_files", path="link")

    assert write.startswith("error: ") and "outside the work dir" in write
    assert read.startswith("error: ") and "top secret" not in read
    assert listing.startswith("error: ")
    assert names(outside) == ["secret.txt"]


async def test_a_symlinked_file_that_leads_out_is_refused(workdir: WorkDir, outside: Path) -> None:
    (workdir.root / "notes.txt").symlink_to(outside / "secret.txt")

    read = await call(workdir, "read_file", path="notes.txt")
    write = await call(workdir, "write_file", path="notes.txt", content="overwritten")

    assert read.startswith("error: ") and "top secret" not in read
    assert write.startswith("error: ")
    assert (outside / "secret.txt").read_text(encoding="utf-8") == "top secret\n"


@pytest.mark.parametrize("path", [".", "pkg/.."])
async def test_writing_to_the_work_dir_itself_leaves_nothing_outside(workdir: WorkDir, path: str) -> None:
    reply = await call(workdir, "write_file", path=path, content="leak")

    assert reply.startswith("error: ")
    assert names(workdir.root.parent) == ["work"]


async def test_writing_over_a_folder_is_an_error_text_not_an_exception(workdir: WorkDir) -> None:
    (workdir.root / "pkg").mkdir()

    assert (await call(workdir, "write_file", path="pkg", content="x")).startswith("error: ")
    assert (await call(workdir, "read_file", path="pkg")).startswith("error: ")


# -- commands --------------------------------------------------------------------------------------
async def test_run_command_returns_the_exit_code_and_output(workdir: WorkDir) -> None:
    reply = await call(workdir, "run_command", command="echo out; echo err >&2; exit 3")

    status, output = reply.split("\n", 1)
    assert status == "exit code 3"
    assert "out" in output and "err" in output


async def test_run_command_runs_in_the_work_dir_with_it_importable(workdir: WorkDir) -> None:
    await call(workdir, "write_file", path="pkg/mod.py", content="VALUE = 41 + 1\n")

    reply = await call(workdir, "run_command", command="pwd; python -c 'from pkg.mod import VALUE; print(VALUE)'")

    assert reply.splitlines() == ["exit code 0", str(workdir.root), "42"]


def gone_by_argument(argument: str, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        alive = [p for p in psutil.process_iter(["cmdline"]) if argument in (p.info["cmdline"] or [])]
        if not alive:
            return True
        time.sleep(0.01)
    return False


async def test_run_command_times_out_and_kills_the_process_group(workdir: WorkDir) -> None:
    marker = "30.4217"  # a unique argument: pids inside the sandbox's pid namespace are not host pids
    reply = await call(workdir, "run_command", timeout_s=0.5, command=f"sleep {marker} & echo started; wait")

    assert reply.startswith("timed out\n")
    assert "command timed out after 0.5s" in reply
    assert gone_by_argument(marker)




async def test_a_timed_out_command_keeps_the_output_it_printed_before(workdir: WorkDir) -> None:
    reply = await call(workdir, "run_command", timeout_s=0.5, command="echo started-before-hang; sleep 30")

    assert reply.startswith("timed out\n")
    assert "started-before-hang" in reply


async def test_run_command_environment_has_no_secrets(workdir: WorkDir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent-secret-0123456789abcdef")
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "token-parent-secret")
    monkeypatch.setenv("HARMLESS_SETTING", "visible-or-not")

    reply = await call(workdir, "run_command", command="env")

    assert reply.startswith("exit code 0")
    assert "OPENAI_API_KEY" not in reply
    assert "sk-parent-secret" not in reply
    assert "SOME_SERVICE_TOKEN" not in reply and "token-parent-secret" not in reply
    assert f"PYTHONPATH={workdir.root}" in reply
    assert f"HOME={workdir.root}" in reply


async def test_python_in_commands_is_the_launchers_interpreter(workdir: WorkDir) -> None:
    script = "import sys; print(sys.prefix); print(sys.version_info[:2])"

    for name in ("python", "python3"):
        reply = await call(workdir, "run_command", command=f'{name} -c "{script}"')
        lines = reply.splitlines()
        assert lines[0] == "exit code 0", reply
        assert lines[1] == sys.prefix
        assert lines[2] == str(sys.version_info[:2])


async def test_a_failing_command_is_reported_not_raised(workdir: WorkDir) -> None:
    reply = await call(workdir, "run_command", command="definitely-not-a-command-xyz")

    assert reply.startswith("exit code 127")
    assert "not found" in reply
