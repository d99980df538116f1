"""`WorkDir`: a worker's isolated directory, the only place its tools may read, write or run in.

Paths are confined (absolute paths, `..` escapes and symlinks that lead out are refused).
Commands run with bash in the work dir, with the launcher's own interpreter first on PATH as
`python`/`python3`, the work dir on PYTHONPATH, a scrubbed environment (no secrets), their own
process group (killed whole on timeout) and, where `bwrap` is installed, a read-only view of
the rest of the filesystem.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fnmatch
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestration.errors import ConfinementError
from orchestration.redaction import scrub_env

IGNORED_NAMES = (
    ".git", "__pycache__", "*.pyc", ".venv", "venv", "node_modules", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", ".workforce", "validation_build",
)
"""Names never seeded into a work dir nor reported as a worker's changes (caches, VCS, venvs)."""
SEED_IGNORE = shutil.ignore_patterns(*IGNORED_NAMES)


def is_ignored(relative: str) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in relative.split("/") for pattern in IGNORED_NAMES)
OUTPUT_TAIL = 2000


@functools.cache
def python_shim_dir() -> Path:
    """A folder (one per launcher process) whose `python` and `python3` run this interpreter.

    Shell scripts rather than symlinks: a symlinked venv interpreter starts without the venv."""
    folder = Path(tempfile.mkdtemp(prefix="workforce-python-"))
    for name in ("python", "python3"):
        shim = folder / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
        shim.chmod(0o755)
    atexit.register(shutil.rmtree, folder, True)
    return folder


@dataclass
class CommandResult:
    command: str
    exit_code: int | None
    output: str
    duration_s: float
    timed_out: bool = False

    def tail(self, limit: int = OUTPUT_TAIL) -> str:
        return self.output[-limit:]


class WorkDir:
    """One worker attempt's directory: confined file access and command execution."""

    def __init__(
        self, root: Path, *, sandbox: str = "auto", on_write: Callable[[str], object] | None = None
    ) -> None:
        self.root = root.resolve()
        self.sandbox = sandbox
        self.on_write = on_write
        """Called with each path the worker writes (the launcher seeds what it imports)."""
        self.last_activity = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------
    def reset(self, seed_from: Path | None = None, files: list[str] | None = None) -> None:
        """Empty the directory (stale output of an earlier attempt goes) and seed it from a
        tree: all of it, or only `files` (relative paths) when given."""
        if self.root.exists():
            shutil.rmtree(self.root)
        if seed_from is not None and seed_from.is_dir() and files is None:
            shutil.copytree(seed_from, self.root, ignore=SEED_IGNORE, symlinks=True)
        self.root.mkdir(parents=True, exist_ok=True)
        if seed_from is not None:
            for relative in files or []:
                destination = self.root / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(seed_from / relative, destination)

    # -- paths -----------------------------------------------------------------------------
    def resolve(self, relative: str) -> Path:
        """The absolute path of `relative` inside the work dir, or ConfinementError."""
        text = relative.strip().replace("\\", "/")
        if not text or text.startswith(("/", "~")) or (len(text) > 1 and text[1] == ":"):
            raise ConfinementError(f"path {relative!r} must be relative to the work dir")
        candidate = (self.root / text).resolve()
        if candidate != self.root and not candidate.is_relative_to(self.root):
            raise ConfinementError(f"path {relative!r} leads outside the work dir")
        return candidate

    def write(self, relative: str, content: str) -> Path:
        path = self.resolve(relative)
        if path == self.root or path.is_dir():
            raise ConfinementError(f"path {relative!r} is a folder, not a file")
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(content, encoding="utf-8")
        os.replace(temporary, path)
        self.touch()
        if self.on_write is not None:
            self.on_write(path.relative_to(self.root).as_posix())
        return path

    def read(self, relative: str, limit: int = 100_000) -> str:
        path = self.resolve(relative)
        self.touch()
        return path.read_text(encoding="utf-8", errors="replace")[:limit]

    def listing(self, relative: str = ".", limit: int = 500) -> list[str]:
        base = self.resolve(relative)
        self.touch()
        found = []
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if path.is_file() and "__pycache__" not in rel:
                found.append(rel)
            if len(found) >= limit:
                break
        return found

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    # -- commands --------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """What a command sees: no secrets; our interpreter first on PATH; the work dir importable."""
        bin_dir = python_shim_dir()
        return scrub_env(
            {
                "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
                "PYTHONPATH": str(self.root),
                "HOME": str(self.root),
                "TMPDIR": str(self.root),
                "PYTHONDONTWRITEBYTECODE": "1",
                "LANG": os.environ.get("LANG", "C.UTF-8"),
            }
        )

    async def run(self, command: str, timeout_s: float) -> CommandResult:
        """Run `command` with bash in the work dir; kill its whole process group on timeout."""
        started = time.monotonic()
        self.touch()
        process = await asyncio.create_subprocess_exec(
            *self._argv(command),
            cwd=self.root,
            env=self.environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        chunks: list[bytes] = []
        reader = asyncio.create_task(_drain(process.stdout, chunks))
        timed_out = False
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
            _kill_group(process.pid)
            await process.wait()
        except asyncio.CancelledError:
            _kill_group(process.pid)
            await process.wait()
            raise
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, 5)
        output = b"".join(chunks)
        self.touch()
        text = output.decode("utf-8", errors="replace")
        if timed_out:
            text += f"\n[workforce] command timed out after {timeout_s:g}s"
        return CommandResult(command, process.returncode, text, time.monotonic() - started, timed_out)

    def _argv(self, command: str) -> list[str]:
        bwrap = sandbox_binary() if self.sandbox in ("auto", "bwrap") else None
        if bwrap is None:
            if self.sandbox == "bwrap":
                raise ConfinementError("sandbox 'bwrap' requested but bubblewrap is not usable here")
            setpriv = shutil.which("setpriv")
            # Die with the launcher even if it is SIGKILLed (a preexec_fn would cost a full fork).
            return [setpriv, "--pdeathsig", "KILL", "--", "bash", "-c", command] if setpriv else ["bash", "-c", command]
        root = str(self.root)
        # Everything read-only (also /tmp: TMPDIR is the work dir; a private tmpfs on /tmp would
        # hide an interpreter or checkout that lives there), the work dir writable.
        return [
            bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--bind", root, root, "--unshare-pid", "--die-with-parent", "--chdir", root,
            "bash", "-c", command,
        ]


@functools.cache
def sandbox_binary() -> str | None:
    """`bwrap` if it is installed and works here (user namespaces allowed), else None."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    probe = subprocess.run(
        [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "true"], capture_output=True, timeout=10, check=False
    )
    if probe.returncode != 0:
        return None
    return bwrap


async def _drain(stream: asyncio.StreamReader | None, chunks: list[bytes]) -> None:
    """Collect output as it arrives, so what a command printed survives a timeout kill."""
    if stream is None:
        return
    while chunk := await stream.read(65536):
        chunks.append(chunk)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
