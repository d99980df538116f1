"""The launcher's exception tree.

    WorkforceError                 base of everything raised on purpose
    ├── ConfigError                config/workforce.yaml or an override is invalid
    ├── InstructionError           an instruction file cannot be used (carries path, line)
    ├── PlanError                  the wave plan cannot be built (cycle, later-wave dependency)
    ├── ConfinementError           a worker tried to leave its work dir
    ├── ProviderError              a model provider is misconfigured or failed for good
    │   └── CredentialsError       a provider's credentials are missing
    ├── StateError                 persisted state is missing, invalid or inconsistent
    └── RunAborted                 an abort threshold or the budget ended the run (terminal)

Errors carry keyword-only context (`path`, `line`, `worker_id`) so callers can report them
without parsing messages. Third-party exceptions are translated at the boundary with `raise … from`.
"""

from __future__ import annotations

from pathlib import Path


class WorkforceError(Exception):
    """Base class: a failure the launcher reports to the user without a traceback."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        worker_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.worker_id = worker_id

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        who = f"[{self.worker_id}] " if self.worker_id else ""
        return f"{where}{who}{self.message}"


class ConfigError(WorkforceError):
    """The configuration file or an environment override is invalid."""


class InstructionError(WorkforceError):
    """An instruction file cannot be used."""


class PlanError(WorkforceError):
    """The wave plan cannot be built."""


class ConfinementError(WorkforceError):
    """A path or command would reach outside a worker's work dir."""


class ProviderError(WorkforceError):
    """A model provider is misconfigured or failed permanently."""


class CredentialsError(ProviderError):
    """A provider's credentials are missing from the environment."""


class StateError(WorkforceError):
    """Persisted state is missing, invalid or inconsistent with the plan."""


class RunAborted(WorkforceError):
    """A terminal condition (abort threshold, budget) ended the run; state is saved."""
