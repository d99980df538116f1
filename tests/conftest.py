"""Shared fixtures: the real corpus (skipped when absent) and the machine's Redis."""

from __future__ import annotations

import os
from pathlib import Path

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
