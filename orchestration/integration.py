"""`IntegrationManager`: merge a passing worker's deliverables into the target tree.

Only paths the instruction allows (DELIVERABLES, plus what BOUNDARIES permits) are merged, each
file atomically (temp file + rename). Lanes of a wave own disjoint paths, so merges never
conflict; a worker that did not pass is never merged, so it leaves no trace in the target.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.instruction import WorkerInstruction
from orchestration.seeding import missing_imports, needed_files
from orchestration.workdir import WorkDir, is_ignored


@dataclass
class Integration:
    integrated: list[str] = field(default_factory=list)
    """Allowed files that were new or changed, now in the target."""
    ignored: list[str] = field(default_factory=list)
    """Changed files outside the instruction's allowed paths (left out)."""


def allowed_paths(instruction: WorkerInstruction) -> list[str]:
    return instruction.allowed_paths()


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (FileNotFoundError, IsADirectoryError):
        return None


class IntegrationManager:
    """Seeds work dirs from the target and merges passing deliverables back into it."""

    def __init__(self, target: Path, seed: str = "needed") -> None:
        self.target = target.resolve()
        self.target.mkdir(parents=True, exist_ok=True)
        self.seed_mode = seed
        self._lock = threading.Lock()

    def seed(self, workdir: WorkDir, instruction: WorkerInstruction | None = None, extra: list[str] | None = None) -> None:
        """A fresh work dir holding what the worker needs of the current target tree
        (`seed: full` copies all of it)."""
        with self._lock:
            if self.seed_mode == "full" or instruction is None:
                workdir.reset(seed_from=self.target)
            else:
                workdir.reset(seed_from=self.target, files=needed_files(instruction, self.target, extra or []))

    def top_up(self, workdir: WorkDir, written: list[str]) -> list[str]:
        """Copy in target files that the worker's new code imports but its work dir lacks."""
        if self.seed_mode == "full":
            return []
        with self._lock:
            missing = missing_imports(workdir.root, written, self.target)
            for relative in missing:
                destination = workdir.root / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.target / relative, destination)
        return missing

    def changed_files(self, instruction: WorkerInstruction, workdir: WorkDir) -> tuple[dict[str, str], list[str]]:
        """(allowed path → new content, changed paths that are not allowed)."""
        allowed = set(allowed_paths(instruction))
        changed: dict[str, str] = {}
        for path in sorted(allowed):
            source = workdir.root / path
            if source.is_file() and _digest(source) != _digest(self.target / path):
                changed[path] = source.read_text(encoding="utf-8", errors="replace")
        ignored = [p for p in self._modified(workdir) if p not in allowed]
        return changed, ignored

    def _modified(self, workdir: WorkDir) -> list[str]:
        found = []
        for path in workdir.root.rglob("*"):
            rel = path.relative_to(workdir.root).as_posix()
            if not path.is_file() or is_ignored(rel):
                continue
            if _digest(path) != _digest(self.target / rel):
                found.append(rel)
        return sorted(found)

    def integrate(
        self, instruction: WorkerInstruction, workdir: WorkDir, paths: list[str] | None = None
    ) -> Integration:
        """Copy the allowed changed files (or the given subset of them) into the target."""
        changed, ignored = self.changed_files(instruction, workdir)
        if paths is not None:
            changed = {p: changed[p] for p in paths if p in changed}
        with self._lock:
            self._merge(workdir, sorted(changed))
        return Integration(integrated=sorted(changed), ignored=ignored)

    def _merge(self, workdir: WorkDir, paths: list[str]) -> None:
        """Copy each file in atomically; if any fails, put back what was replaced (all or nothing)."""
        previous: dict[str, bytes | None] = {}
        try:
            for path in paths:
                destination = self.target / path
                previous[path] = destination.read_bytes() if destination.is_file() else None
                destination.parent.mkdir(parents=True, exist_ok=True)
                temporary = destination.with_name(f".{destination.name}.workforce-tmp")
                try:
                    shutil.copy2(workdir.root / path, temporary)
                    os.replace(temporary, destination)
                finally:
                    temporary.unlink(missing_ok=True)
        except OSError:
            for path, content in previous.items():
                destination = self.target / path
                if content is None:
                    destination.unlink(missing_ok=True)
                else:
                    destination.write_bytes(content)
            raise
