"""Open the launcher's stores from the configuration, and close them (and a private Redis).

State: Redis (`REDIS_URL`, else a private AOF redis-server), journalled so a Redis outage
degrades instead of failing. Knowledge: ChromaDB. Retrospectives: mem0 with a local log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestration.config import WorkforceConfig
from orchestration.protocols import KnowledgeStore, RetrospectiveStore, StateStore


@dataclass
class Stores:
    state: StateStore
    knowledge: KnowledgeStore | None = None
    retrospectives: RetrospectiveStore | None = None


def _path(base_dir: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


@contextlib.contextmanager
def open_stores(
    config: WorkforceConfig, base_dir: Path, *, knowledge: bool = True, retrospectives: bool = True
) -> Iterator[Stores]:
    """Every store the run needs; closed (and the private Redis stopped) on exit."""
    with contextlib.ExitStack() as stack:
        stores = Stores(state=stack.enter_context(_state(config, base_dir)))
        if knowledge and config.knowledge.enabled:
            stores.knowledge = stack.enter_context(_knowledge(config, base_dir))
        if retrospectives:
            stores.retrospectives = stack.enter_context(_retrospectives(config, base_dir))
        yield stores


@contextlib.contextmanager
def _state(config: WorkforceConfig, base_dir: Path) -> Iterator[StateStore]:
    from orchestration.journal import open_state_store

    store, server = open_state_store(config.state, base_dir)
    try:
        yield store
    finally:
        store.close()
        if server is not None:
            server.stop()


@contextlib.contextmanager
def _knowledge(config: WorkforceConfig, base_dir: Path) -> Iterator[KnowledgeStore]:
    from orchestration.knowledge import ChromaKnowledgeStore

    store = ChromaKnowledgeStore(config.knowledge, base_dir, embedding_model=config.embedding_model)
    try:
        yield store
    finally:
        store.close()


@contextlib.contextmanager
def _retrospectives(config: WorkforceConfig, base_dir: Path) -> Iterator[RetrospectiveStore]:
    from orchestration.retrospectives import open_retrospective_store

    store = open_retrospective_store(
        config.retrospectives, base_dir, _path(base_dir, config.logs_dir), embedding_model=config.embedding_model
    )
    try:
        yield store
    finally:
        store.close()
