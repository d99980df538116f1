"""`WorkDir`: confined paths, atomic writes, and commands run the way a worker's are."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from orchestration.errors import ConfinementError
from orchestration.workdir import WorkDir, python_shim_dir, sandbox_binary

ROOT = Path(__file__).resolve().parent.parent
SANDBOXES = ["none", pytest.param("auto", marks=pytest.mark.skipif(
    sandbox_binary() is None, reason="bubblewrap (bwrap) is not installed or not usable here"))]


@pytest.fixture
def workdir(tmp_path: Path) -> WorkDir:
    wd = WorkDir(tmp_path / "work")
    wd.reset()
    return wd


# -- lifecycle ---------------------------------------------------------------------------------
def test_reset_clears_stale_files_and_seeds_from_a_tree(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    (seed / "pkg").mkdir(parents=True)
    (seed / "pkg" / "mod.py").write_text("X = 1\n")
    (seed / "README.md").write_text("hello\n")
    for ignored in (".git", "__pycache__", ".venv", "pkg/__pycache__"):
        (seed / ignored).mkdir(parents=True, exist_ok=True)
        (seed / ignored / "junk.txt").write_text("junk")
    wd = WorkDir(tmp_path / "work")
    wd.reset()
    (wd.root / "stale.py").write_text("left over from an earlier attempt")

    wd.reset(seed_from=seed)

    assert not (wd.root / "stale.py").exists()
    assert (wd.root / "pkg" / "mod.py").read_text() == "X = 1\n"
    assert (wd.root / "README.md").read_text() == "hello\n"
    for ignored in (".git", "__pycache__", ".venv", "pkg/__pycache__"):
        assert not (wd.root / ignored).exists(), ignored
    assert wd.listing() == ["README.md", "pkg/mod.py"]


def test_reset_with_files_seeds_only_those(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    (seed / "pkg").mkdir(parents=True)
    for name in ("pkg/a.py", "pkg/b.py", "top.toml"):
        (seed / name).write_text(name)
    wd = WorkDir(tmp_path / "work")
    wd.reset()
    (wd.root / "stale.py").write_text("stale")
    wd.reset(seed_from=seed, files=["pkg/b.py", "top.toml"])
    assert wd.listing() == ["pkg/b.py", "top.toml"]
    assert (wd.root / "pkg" / "b.py").read_text() == "pkg/b.py"
    wd.reset(seed_from=seed, files=[])
    assert wd.listing() == []


def test_reset_without_seed_gives_an_empty_dir(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path / "work")
    wd.reset(seed_from=tmp_path / "does-not-exist")
    assert wd.root.is_dir()
    assert wd.listing() == []


# -- confinement -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "~/x", "../outside.txt", "a/../../outside.txt", "C:/x.py", "C:x.py", "c:\\x.py",
     "..\\outside.txt", "", "   "],
)
def test_resolve_refuses_paths_that_leave_the_work_dir(workdir: WorkDir, path: str) -> None:
    with pytest.raises(ConfinementError):
        workdir.resolve(path)


def test_resolve_accepts_relative_paths_inside(workdir: WorkDir) -> None:
    assert workdir.resolve("pkg/mod.py") == workdir.root / "pkg" / "mod.py"
    assert workdir.resolve("pkg\\mod.py") == workdir.root / "pkg" / "mod.py"
    assert workdir.resolve("a/../b.py") == workdir.root / "b.py"
    assert workdir.resolve(".") == workdir.root


def test_resolve_refuses_symlinks_that_lead_out(workdir: WorkDir, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (workdir.root / "link").symlink_to(outside)
    (workdir.root / "filelink").symlink_to(outside / "secret.txt")
    (workdir.root / "inside").mkdir()
    (workdir.root / "goodlink").symlink_to(workdir.root / "inside")

    for path in ("link/secret.txt", "link", "filelink", "link/new.py"):
        with pytest.raises(ConfinementError):
            workdir.resolve(path)
    with pytest.raises(ConfinementError):
        workdir.write("link/new.py", "x")
    with pytest.raises(ConfinementError):
        workdir.read("filelink")
    assert not (outside / "new.py").exists()
    assert workdir.resolve("goodlink/x.py") == workdir.root / "inside" / "x.py"


def test_write_is_atomic_and_leaves_no_temp_file(workdir: WorkDir) -> None:
    workdir.write("pkg/mod.py", "old\n")
    inode_before = (workdir.root / "pkg" / "mod.py").stat().st_ino
    path = workdir.write("pkg/mod.py", "new\n")
    assert path.read_text() == "new\n"
    # os.replace of a fresh temp file: a new inode, never a half-written original
    assert path.stat().st_ino != inode_before
    assert sorted(p.name for p in (workdir.root / "pkg").iterdir()) == ["mod.py"]
    assert workdir.read("pkg/mod.py") == "new\n"


def test_write_refuses_a_folder(workdir: WorkDir) -> None:
    (workdir.root / "pkg").mkdir()
    for path in ("pkg", "."):
        with pytest.raises(ConfinementError):
            workdir.write(path, "x")
    assert (workdir.root / "pkg").is_dir()


def test_write_reports_each_written_path(tmp_path: Path) -> None:
    written: list[str] = []
    wd = WorkDir(tmp_path / "work", on_write=written.append)
    wd.reset()
    wd.write("pkg/mod.py", "X = 1\n")
    wd.write("./notes.md", "n")
    assert written == ["pkg/mod.py", "notes.md"]


def test_write_updates_last_activity(workdir: WorkDir) -> None:
    workdir.last_activity = 0.0
    workdir.write("a.txt", "x")
    assert workdir.last_activity > 0.0


# -- commands ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_run_uses_bash_in_the_work_dir(tmp_path: Path, sandbox: str) -> None:
    wd = WorkDir(tmp_path / "work", sandbox=sandbox)
    wd.reset()
    result = await wd.run('pwd; echo "$BASH_VERSION" | head -c 1; echo; arr=(a b); echo "${arr[1]}"', 30)
    lines = result.output.splitlines()
    assert result.exit_code == 0, result.output
    assert lines[0] == str(wd.root)
    assert lines[1].isdigit()
    assert lines[2] == "b"


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_python_is_the_launchers_interpreter(tmp_path: Path, sandbox: str) -> None:
    wd = WorkDir(tmp_path / "work", sandbox=sandbox)
    wd.reset()
    script = "import sys, psutil, yaml, pydantic; print(sys.prefix)"
    result = await wd.run(f'python -c "{script}" && python3 -c "{script}"', 60)
    assert result.exit_code == 0, result.output
    assert result.output.split() == [sys.prefix, sys.prefix]


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_work_dir_is_on_pythonpath(tmp_path: Path, sandbox: str) -> None:
    wd = WorkDir(tmp_path / "work", sandbox=sandbox)
    wd.reset()
    wd.write("pkg/__init__.py", "")
    wd.write("pkg/mod.py", "VALUE = 42\n")
    (wd.root / "sub").mkdir()
    result = await wd.run('cd sub && python3 -c "import pkg.mod; print(pkg.mod.VALUE)" && echo "$PYTHONPATH"', 60)
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["42", str(wd.root)]


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_commands_see_no_secrets(tmp_path: Path, sandbox: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdefghij")
    monkeypatch.setenv("MY_SECRET_TOKEN", "hunter2-very-secret")
    monkeypatch.setenv("HARMLESS_SETTING", "visible-only-if-whitelisted")
    wd = WorkDir(tmp_path / "work", sandbox=sandbox)
    wd.reset()
    result = await wd.run("env", 30)
    assert result.exit_code == 0
    names = {line.split("=", 1)[0] for line in result.output.splitlines() if "=" in line}
    assert "OPENAI_API_KEY" not in names
    assert "MY_SECRET_TOKEN" not in names
    assert "sk-test-0123456789abcdefghij" not in result.output
    assert "hunter2-very-secret" not in result.output
    assert "PATH" in names and "HOME" in names


def test_environment_has_our_interpreter_first_and_no_secrets(
    workdir: WorkDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_abcdefghijklmnopqrstuvwxyz")
    env = workdir.environment()
    assert "GITHUB_TOKEN" not in env
    shim = Path(env["PATH"].split(":")[0])
    assert shim == python_shim_dir()
    for name in ("python", "python3"):
        assert sys.executable in (shim / name).read_text()
    # the shim lives outside the work dir, so it is never listed or integrated
    assert not shim.is_relative_to(workdir.root)
    assert workdir.listing() == []
    assert env["PYTHONPATH"] == str(workdir.root)


async def test_exit_code_and_output_are_reported(workdir: WorkDir) -> None:
    result = await workdir.run("echo out; echo err >&2; exit 3", 30)
    assert result.exit_code == 3
    assert "out" in result.output and "err" in result.output
    assert not result.timed_out
    assert result.tail(4) == result.output[-4:]


def sleepers(marker: str) -> list[psutil.Process]:
    """Live `sleep <marker>` processes, found by their unique argument (PIDs inside a PID
    namespace, as `$!` reports them in the sandbox, are not the host's)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["cmdline"] == ["sleep", marker] and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@pytest.mark.parametrize("sandbox", SANDBOXES)
async def test_timeout_kills_the_whole_process_group(tmp_path: Path, sandbox: str) -> None:
    wd = WorkDir(tmp_path / "work", sandbox=sandbox)
    wd.reset()
    marker = f"10.{secrets.randbelow(10**6):06d}"
    # the children do not hold the output pipe, so run() returns as soon as bash itself is gone
    quiet = ">/dev/null 2>&1"
    command = (
        f"sleep {marker} {quiet} & (sleep {marker} {quiet} & wait) {quiet} & "
        "echo started-before-the-kill; wait"
    )
    running = asyncio.create_task(wd.run(command, 2.0))
    try:
        for _ in range(150):
            if len(sleepers(marker)) == 2 or running.done():
                break
            await asyncio.sleep(0.01)
        assert len(sleepers(marker)) == 2, "the command's children never started"
        result = await running
        assert result.timed_out
        assert "timed out after 2s" in result.output
        assert "started-before-the-kill" in result.output  # what it printed survives the kill
        assert result.exit_code == -signal.SIGKILL  # killed, not finished on its own
        for _ in range(100):  # up to 5 s for the killed children to be reaped
            if not sleepers(marker):
                break
            await asyncio.sleep(0.05)
        assert sleepers(marker) == []
    finally:
        for process in sleepers(marker):
            process.kill()
        await asyncio.gather(running, return_exceptions=True)


async def test_bwrap_requested_but_unusable_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("orchestration.workdir.sandbox_binary", lambda: None)
    wd = WorkDir(tmp_path / "work", sandbox="bwrap")
    wd.reset()
    with pytest.raises(ConfinementError):
        await wd.run("true", 5)
    auto = WorkDir(tmp_path / "auto", sandbox="auto")
    auto.reset()
    assert (await auto.run("echo plain", 5)).output.strip() == "plain"


@pytest.mark.skipif(sandbox_binary() is None, reason="bubblewrap (bwrap) is not installed or not usable here")
async def test_sandbox_makes_the_rest_of_the_filesystem_read_only(workdir: WorkDir, tmp_path: Path) -> None:
    # /tmp is a private tmpfs inside the sandbox, so probe a host folder outside /tmp.
    outside = Path(tempfile.mkdtemp(prefix=".wf-sandbox-probe-", dir=ROOT))
    try:
        (outside / "host-can-write.txt").write_text("yes")  # the folder is writable for us
        result = await workdir.run(f"echo leaked > {outside}/leak.txt", 30)
        assert result.exit_code != 0
        assert "Read-only file system" in result.output
        assert not (outside / "leak.txt").exists()
        # a write into /tmp outside the work dir lands in the sandbox's tmpfs, not on the host
        await workdir.run(f"echo leaked > {tmp_path}/leak.txt", 30)
        assert not (tmp_path / "leak.txt").exists()
        # while the work dir itself stays writable
        inside = await workdir.run("echo kept > kept.txt && cat kept.txt", 30)
        assert inside.exit_code == 0 and (workdir.root / "kept.txt").read_text() == "kept\n"
    finally:
        shutil.rmtree(outside, ignore_errors=True)
