"""Deliverable paths: recognise them in prose and normalise them to relative POSIX form."""

from __future__ import annotations

import posixpath
import re

from orchestration.errors import InstructionError

FILE_EXTENSIONS = frozenset(
    "py pyi json jsonl md rst txt yaml yml toml ini cfg conf env sh bash sql csv tsv html css js "
    "ts tsx jsx go rs java c h cpp hpp rb php lock xml ipynb log cfg j2 tmpl service".split()
)
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
"""`C:\\x`, `C:/x` and the drive-relative `C:x`."""
_PATHLIKE = re.compile(r"^[\w.@~+\-/\\:]+$")
_REPO_ROOT_PREFIX = re.compile(r"^\((?:repo|project) root\)/", re.IGNORECASE)


def looks_like_path(token: str) -> bool:
    """True for `pkg/mod.py`, `mod.py`, `docs/x.md`; false for `Class.method`, URLs, `/route`."""
    token = _REPO_ROOT_PREFIX.sub("", token.strip())
    if not token or "://" in token or not _PATHLIKE.match(token):
        return False
    name = re.split(r"[\\/]", token)[-1]
    stem, dot, extension = name.rpartition(".")
    if not dot or not re.search(r"[A-Za-z_]", stem or name):
        return False
    known = extension.lower() in FILE_EXTENSIONS
    return known or ("/" in token and extension.isalnum() and extension.islower() and len(extension) <= 5)


def normalise_path(raw: str) -> str:
    """Return `raw` as a clean relative POSIX path, or raise InstructionError saying why not."""
    path = _REPO_ROOT_PREFIX.sub("", raw.strip())
    if _WINDOWS_DRIVE.match(path):
        raise InstructionError(f"deliverable path {raw!r} is a Windows drive path; write it relative to the target")
    path = path.replace("\\", "/")
    if path.startswith(("/", "~")):
        raise InstructionError(f"deliverable path {raw!r} is absolute; write it relative to the target")
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise InstructionError(f"deliverable path {raw!r} escapes the target with '..'")
    if normal in ("", "."):
        raise InstructionError(f"deliverable path {raw!r} names no file")
    return normal
