"""`IntegrationManager`: only a worker's allowed, changed files reach the target, atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestration.instruction import WorkerInstruction
from orchestration.integration import IntegrationManager, allowed_paths
from orchestration.workdir import WorkDir


def instruction(deliverables: list[str], boundaries: list[str] | None = None) -> WorkerInstruction:
    return WorkerInstruction(
        worker_id="WORKER_007", title="t", source="WORKER_007.md", content_hash="h", priority=1,
        priority_rule="explicit", deliverable_paths=deliverables, boundary_paths=boundaries or [],
    )


@pytest.fixture
def target(tmp_path: Path) -> Path:
    root = tmp_path / "target"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "existing.py").write_text("OLD = 1\n")
    (root / "README.md").write_text("readme\n")
    return root


@pytest.fixture
def manager(target: Path) -> IntegrationManager:
    return IntegrationManager(target)


@pytest.fixture
def workdir(tmp_path: Path, manager: IntegrationManager) -> WorkDir:
    wd = WorkDir(tmp_path / "work")
    manager.seed(wd)
    return wd


def test_allowed_paths_include_boundaries_and_package_inits() -> None:
    found = allowed_paths(instruction(["a/b/c/mod.py", "docs/guide.md"], ["a/b/c/helper.py", "conf/x.yaml"]))
    assert found == [
        "a/b/c/mod.py", "docs/guide.md", "a/b/c/helper.py", "conf/x.yaml",
        "a/b/c/__init__.py", "a/b/__init__.py", "a/__init__.py",
    ]


def test_allowed_paths_add_no_init_for_top_level_or_non_python_files() -> None:
    assert allowed_paths(instruction(["mod.py", "docs/guide.md"])) == ["mod.py", "docs/guide.md"]
    # no duplicates when a boundary path repeats a deliverable
    assert allowed_paths(instruction(["pkg/m.py"], ["pkg/m.py", "pkg/__init__.py"])) == ["pkg/m.py", "pkg/__init__.py"]


def test_seed_copies_the_current_target(manager: IntegrationManager, target: Path, tmp_path: Path) -> None:
    wd = WorkDir(tmp_path / "seeded")
    (tmp_path / "seeded").mkdir()
    (tmp_path / "seeded" / "stale.txt").write_text("stale")
    manager.seed(wd)
    assert (wd.root / "pkg" / "existing.py").read_text() == "OLD = 1\n"
    assert (wd.root / "README.md").read_text() == "readme\n"
    assert not (wd.root / "stale.txt").exists()
    (target / "late.py").write_text("LATE = 1\n")
    manager.seed(wd)
    assert (wd.root / "late.py").read_text() == "LATE = 1\n"


def test_seed_full_copies_the_whole_target(target: Path, tmp_path: Path) -> None:
    (target / "other").mkdir()
    (target / "other" / "unrelated.py").write_text("U = 1\n")
    wd = WorkDir(tmp_path / "full")
    IntegrationManager(target, seed="full").seed(wd, instruction(["pkg/existing.py"]))
    assert wd.listing() == ["README.md", "other/unrelated.py", "pkg/__init__.py", "pkg/existing.py"]


def test_seed_needed_copies_what_the_worker_touches_and_imports(target: Path, tmp_path: Path) -> None:
    (target / "other").mkdir()
    (target / "other" / "unrelated.py").write_text("U = 1\n")
    (target / "pkg" / "helper.py").write_text("H = 1\n")
    (target / "pkg" / "existing.py").write_text("from pkg.helper import H\nOLD = H\n")
    wd = WorkDir(tmp_path / "needed")
    IntegrationManager(target, seed="needed").seed(wd, instruction(["pkg/existing.py"]))
    assert wd.listing() == ["README.md", "pkg/__init__.py", "pkg/existing.py", "pkg/helper.py"]
    assert (wd.root / "pkg" / "existing.py").read_text() == (target / "pkg" / "existing.py").read_text()


def test_top_up_copies_in_what_new_code_imports(target: Path, tmp_path: Path) -> None:
    (target / "lib").mkdir()
    (target / "lib" / "__init__.py").write_text("")
    (target / "lib" / "base.py").write_text("from lib.util import U\nB = U\n")
    (target / "lib" / "util.py").write_text("U = 1\n")
    (target / "lib" / "unused.py").write_text("N = 1\n")
    manager = IntegrationManager(target, seed="needed")
    wd = WorkDir(tmp_path / "work")
    manager.seed(wd, instruction(["pkg/new.py"]))
    assert not (wd.root / "lib").exists()
    wd.write("pkg/new.py", "from lib.base import B\nVALUE = B\n")

    copied = manager.top_up(wd, ["pkg/new.py"])

    assert copied == ["lib/__init__.py", "lib/base.py", "lib/util.py"]
    assert (wd.root / "lib" / "util.py").read_text() == "U = 1\n"
    assert not (wd.root / "lib" / "unused.py").exists()
    assert manager.top_up(wd, ["pkg/new.py"]) == []  # nothing missing any more
    # the copies are the target's own files, so they are neither integrated nor ignored
    changed, ignored = manager.changed_files(instruction(["pkg/new.py"]), wd)
    assert sorted(changed) == ["pkg/new.py"] and ignored == []


def test_top_up_does_nothing_with_full_seeding(target: Path, tmp_path: Path) -> None:
    manager = IntegrationManager(target, seed="full")
    wd = WorkDir(tmp_path / "work")
    manager.seed(wd, instruction(["pkg/new.py"]))
    wd.write("pkg/new.py", "import pkg.existing\n")
    assert manager.top_up(wd, ["pkg/new.py"]) == []


def test_only_allowed_changed_files_are_integrated(
    manager: IntegrationManager, workdir: WorkDir, target: Path
) -> None:
    task = instruction(["pkg/new.py", "pkg/existing.py", "pkg/untouched.py"], ["docs/notes.md"])
    workdir.write("pkg/new.py", "NEW = 2\n")
    workdir.write("pkg/existing.py", "OLD = 2\n")
    workdir.write("docs/notes.md", "notes\n")
    workdir.write("scratch.py", "print('debug')\n")
    workdir.write("README.md", "rewritten\n")
    workdir.write("deep/sub/x.txt", "x\n")

    done = manager.integrate(task, workdir)

    assert done.integrated == ["docs/notes.md", "pkg/existing.py", "pkg/new.py"]
    assert done.ignored == ["README.md", "deep/sub/x.txt", "scratch.py"]
    assert (target / "pkg" / "new.py").read_text() == "NEW = 2\n"
    assert (target / "pkg" / "existing.py").read_text() == "OLD = 2\n"
    assert (target / "docs" / "notes.md").read_text() == "notes\n"
    assert not (target / "scratch.py").exists()
    assert not (target / "deep").exists()
    assert (target / "README.md").read_text() == "readme\n"
    assert not (target / "pkg" / "untouched.py").exists()


def test_unchanged_files_are_not_reported(manager: IntegrationManager, workdir: WorkDir) -> None:
    task = instruction(["pkg/existing.py", "pkg/__init__.py"])
    workdir.write("pkg/existing.py", "OLD = 1\n")  # same content as the target
    changed, ignored = manager.changed_files(task, workdir)
    assert changed == {}
    assert ignored == []
    assert manager.integrate(task, workdir).integrated == []


def test_changed_files_reports_content_and_ignored(manager: IntegrationManager, workdir: WorkDir) -> None:
    task = instruction(["pkg/new.py"])
    workdir.write("pkg/new.py", "NEW = 1\n")
    workdir.write("other.py", "O = 1\n")
    changed, ignored = manager.changed_files(task, workdir)
    assert changed == {"pkg/new.py": "NEW = 1\n"}
    assert ignored == ["other.py"]


def test_package_init_above_a_deliverable_is_integrated(
    manager: IntegrationManager, tmp_path: Path, target: Path
) -> None:
    wd = WorkDir(tmp_path / "w2")
    manager.seed(wd)
    wd.write("lib/sub/mod.py", "M = 1\n")
    wd.write("lib/sub/__init__.py", "")
    wd.write("lib/__init__.py", "")
    wd.write("lib/sub/other.py", "not mine\n")
    done = manager.integrate(instruction(["lib/sub/mod.py"]), wd)
    assert done.integrated == ["lib/__init__.py", "lib/sub/__init__.py", "lib/sub/mod.py"]
    assert done.ignored == ["lib/sub/other.py"]
    assert (target / "lib" / "sub" / "__init__.py").exists()
    assert not (target / "lib" / "sub" / "other.py").exists()


def test_integrate_a_subset(manager: IntegrationManager, workdir: WorkDir, target: Path) -> None:
    task = instruction(["pkg/a.py", "pkg/b.py"])
    workdir.write("pkg/a.py", "A\n")
    workdir.write("pkg/b.py", "B\n")
    done = manager.integrate(task, workdir, paths=["pkg/b.py", "pkg/not-changed.py"])
    assert done.integrated == ["pkg/b.py"]
    assert (target / "pkg" / "b.py").exists() and not (target / "pkg" / "a.py").exists()


def test_integration_is_atomic_per_file(
    manager: IntegrationManager, workdir: WorkDir, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = instruction(["pkg/existing.py", "pkg/new.py"])
    workdir.write("pkg/existing.py", "OLD = 2\n")
    workdir.write("pkg/new.py", "NEW = 1\n")
    inode_before = (target / "pkg" / "existing.py").stat().st_ino
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> None:
        replaced.append((Path(source).name, Path(destination).name))
        # the destination still holds the old content (or nothing) until the rename
        if Path(destination).name == "existing.py":
            assert Path(destination).read_text() == "OLD = 1\n"
        real_replace(source, destination)

    monkeypatch.setattr("orchestration.integration.os.replace", spy)
    manager.integrate(task, workdir)

    assert sorted(replaced) == [(".existing.py.workforce-tmp", "existing.py"), (".new.py.workforce-tmp", "new.py")]
    assert (target / "pkg" / "existing.py").stat().st_ino != inode_before
    left = [p.name for p in target.rglob("*") if "tmp" in p.name]
    assert left == []


def test_ignored_files_skip_python_caches(manager: IntegrationManager, workdir: WorkDir) -> None:
    (workdir.root / "pkg" / "__pycache__").mkdir()
    (workdir.root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\0")
    (workdir.root / "stray.pyc").write_bytes(b"\0")
    _, ignored = manager.changed_files(instruction(["pkg/x.py"]), workdir)
    assert ignored == []


def test_ignored_files_skip_tool_caches(manager: IntegrationManager, workdir: WorkDir) -> None:
    workdir.write(".pytest_cache/v/cache/nodeids", "[]")
    workdir.write("node_modules/left-pad/index.js", "module.exports = 1;")
    _, ignored = manager.changed_files(instruction(["pkg/x.py"]), workdir)
    assert ignored == []
