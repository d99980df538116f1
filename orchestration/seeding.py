"""Which files of the target tree a worker's work dir needs — so seeding costs what the worker
touches, not the size of the tree (a full copy per worker is O(workers × files) over a run).

Needed: the files it may write, the target's top-level files (pyproject, conftest, …), the
package `__init__.py` files above them, paths its TEST_PROCESS names, and the transitive local
imports of all Python among them (and of modules its test commands import).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from orchestration.instruction import WorkerInstruction

_IMPORT_IN_TEXT = re.compile(r"(?:^|[\s;\"'(])(?:from\s+([\w.]+)\s+import|import\s+([\w.]+(?:\s*,\s*[\w.]+)*))")
_PATH_TOKEN = re.compile(r"[\w./-]+")
_SKIP_DIRS = frozenset({".git", "__pycache__", ".venv", "venv", "node_modules", ".workforce"})


def needed_files(instruction: WorkerInstruction, target: Path, extra: Iterable[str] = ()) -> list[str]:
    """Relative paths (files) of `target` to copy into the worker's work dir; `extra` adds
    paths the caller knows it needs (its dependencies' deliverables)."""
    commands = "\n".join(c.command for c in instruction.test_commands)
    found: set[str] = set(_top_level_files(target))
    found |= {p for p in [*instruction.allowed_paths(), *extra] if _inside(target, p) and (target / p).is_file()}
    found |= _named_paths(commands, target)
    modules = _imported_modules(commands) | {_module_of(p) for p in instruction.allowed_paths() if p.endswith(".py")}
    starts = [f for f in found if f.endswith(".py")]
    for module in modules:
        starts.extend(_module_files(module, target))
    return sorted(found | _import_closure(starts, target))


def missing_imports(root: Path, written: Iterable[str], target: Path) -> list[str]:
    """Target files that the Python files a worker wrote import (transitively) and its work
    dir lacks (imports its instruction never declared; doctest lines in Markdown count)."""
    starts: list[str] = []
    for path in written:
        modules = _imports_of(root / path, path) if path.endswith(".py") else _imports_in_text(root / path)
        for module in modules:
            starts.extend(_module_files(module, target))
    return sorted(p for p in _import_closure(starts, target) if not (root / p).exists())


def _import_closure(starts: list[str], target: Path) -> set[str]:
    queue, seen = list(starts), set()
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        queue.extend(_package_inits(path, target))
        if path.endswith(".py"):
            for module in _imports_of(target / path, path):
                queue.extend(_module_files(module, target))
    return seen


def _inside(target: Path, relative: str) -> bool:
    """A relative path that stays inside the target (no absolute paths, no `..`)."""
    pure = PurePosixPath(relative)
    return bool(relative) and not pure.is_absolute() and ".." not in pure.parts


def _top_level_files(target: Path) -> list[str]:
    return [p.name for p in target.iterdir() if p.is_file()] if target.is_dir() else []


def _named_paths(commands: str, target: Path) -> set[str]:
    """Existing files (or every file below existing folders) that the commands mention."""
    found: set[str] = set()
    for token in set(_PATH_TOKEN.findall(commands)):
        token = token[2:] if token.startswith("./") else token
        if ("/" not in token and "." not in token) or not _inside(target, token) or token in (".", ".."):
            continue
        candidate = target / token
        try:
            if candidate.is_file():
                found.add(PurePosixPath(token).as_posix())
            elif candidate.is_dir():
                found |= _walk(candidate, target)
        except OSError:
            continue
    return found


def _walk(folder: Path, target: Path) -> set[str]:
    files = set()
    for path in folder.rglob("*"):
        rel = path.relative_to(target)
        if path.is_file() and not _SKIP_DIRS.intersection(rel.parts):
            files.add(rel.as_posix())
    return files


def _imported_modules(text: str) -> set[str]:
    modules: set[str] = set()
    for source, names in _IMPORT_IN_TEXT.findall(text):
        if source:
            modules.add(source)
        for name in (names or "").split(","):
            if name.strip():
                modules.add(name.strip())
    return modules


def _imports_in_text(file: Path) -> set[str]:
    """`import x` / `from x import y` lines in any text file (doctests in Markdown, scripts)."""
    try:
        return _imported_modules(file.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return set()


def _module_of(path: str) -> str:
    return path[:-3].replace("/", ".").removesuffix(".__init__")


def _module_files(module: str, target: Path) -> list[str]:
    """`a.b.c` → the existing `a/b/c.py` or `a/b/c/__init__.py`, and the same for `a.b`."""
    parts = module.split(".")
    files = []
    for end in range(len(parts), 0, -1):
        base = "/".join(parts[:end])
        for candidate in (f"{base}.py", f"{base}/__init__.py"):
            if (target / candidate).is_file():
                files.append(candidate)
    return files


def _package_inits(path: str, target: Path) -> list[str]:
    return [
        f"{parent.as_posix()}/__init__.py"
        for parent in PurePosixPath(path).parents
        if parent.as_posix() != "." and (target / parent / "__init__.py").is_file()
    ]


def _imports_of(file: Path, relative: str) -> set[str]:
    """Modules a Python file imports, relative imports resolved against its package."""
    try:
        tree = ast.parse(file.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError, OSError):
        return set()
    package = PurePosixPath(relative).parent.as_posix().replace("/", ".").strip(".")
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module or "", node.level, package)
            modules.add(base)
            modules.update(f"{base}.{alias.name}".strip(".") for alias in node.names)
    return {m for m in modules if m}


def _absolute(module: str, level: int, package: str) -> str:
    if level == 0:
        return module
    parts = package.split(".") if package else []
    parts = parts[: len(parts) - (level - 1)] if level > 1 else parts
    return ".".join([*parts, module] if module else parts)
