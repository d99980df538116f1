"""Shared fixtures: the real corpus (skipped when absent) and the machine's Redis."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpora" / "wingman-workers"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("MEM0_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"real instruction corpus not present at {CORPUS} (only in the team's workspace)")
    return CORPUS


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis (127.0.0.1:6379, or REDIS_URL); tests use their own key prefix."""
    return os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def our_redis_servers(base_temp: Path) -> set[int]:
    """Live redis-server processes this test session started: our children, or serving a dir
    under pytest's base temp dir. Other processes on the machine are never looked at twice."""
    ours = {child.pid for child in psutil.Process().children(recursive=True)}
    found = set()
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        info = process.info
        command = " ".join(info.get("cmdline") or [])
        if info.get("status") == psutil.STATUS_ZOMBIE or "redis-server" not in f"{info.get('name')} {command}":
            continue
        if process.pid in ours or str(base_temp) in command:
            found.add(process.pid)
    return found


@pytest.fixture
def no_leftover_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail if a test leaves a redis-server of its own running (and stop that one)."""
    base_temp = tmp_path_factory.getbasetemp().resolve()
    before = our_redis_servers(base_temp)
    yield
    leftovers = our_redis_servers(base_temp) - before
    for pid in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    assert not leftovers, f"redis-server processes left running: {sorted(leftovers)}"


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[object]:
    """A launcher-subprocess workspace with its own Redis (see test_resume.Harness)."""
    from test_resume import REDIS_SERVER, Harness

    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip("redis-server is not installed")
    with Harness(tmp_path) as workspace:
        yield workspace
