"""Logging: `workforce.log` (everything), `errors.log` (errors), warnings on stderr; every
record passes through `redaction.redact` first."""

from __future__ import annotations

import logging
from pathlib import Path

from orchestration.redaction import redact

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_QUIET = ("mem0", "autogen_core", "autogen_agentchat", "autogen_ext", "httpx", "openai", "chromadb", "mem0",
          "sentence_transformers", "urllib3", "httpcore")


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def configure_logging(logs_dir: Path, verbose: bool = False) -> None:
    """Attach the launcher's handlers once (idempotent)."""
    root = logging.getLogger()
    if any(getattr(h, "_workforce", False) for h in root.handlers):
        return
    logs_dir.mkdir(parents=True, exist_ok=True)
    redacting = RedactingFilter()
    handlers: list[logging.Handler] = [
        logging.FileHandler(logs_dir / "workforce.log", encoding="utf-8"),
        logging.FileHandler(logs_dir / "errors.log", encoding="utf-8"),
        logging.StreamHandler(),
    ]
    handlers[1].setLevel(logging.ERROR)
    handlers[2].setLevel(logging.INFO if verbose else logging.WARNING)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler.addFilter(redacting)
        handler._workforce = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.ERROR)
