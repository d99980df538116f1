"""`ModelClientFactory`: which provider serves a worker, and a metered client for it.

Routing: `--provider` override, else the instruction's `**LLM Provider:**`, else
`routing.by_classification[TASK_CLASSIFICATION]`, else `routing.default`; one fallback per
provider. Transport retries (429 honouring Retry-After, 5xx, timeouts, connection errors,
exponential backoff with jitter) are the OpenAI SDK's own, set by `max_retries`/`timeout_s`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from autogen_core.models import ChatCompletionClient, ModelInfo, RequestUsage
from autogen_ext.models.openai import OpenAIChatCompletionClient
from autogen_ext.models.openai._model_info import get_info

from agents.metered_client import MeteredClient
from agents.rate_limiter import RateLimiter
from agents.replay import RecordedReplyClient, load_replies
from orchestration.config import ProviderConfig, WorkforceConfig
from orchestration.errors import CredentialsError, ProviderError
from orchestration.instruction import WorkerInstruction


class ModelClientFactory:
    """Routes workers to providers and builds their (metered, rate-limited) model clients."""

    def __init__(
        self,
        config: WorkforceConfig,
        base_dir: Path,
        *,
        override: str | None = None,
        environ: Mapping[str, str] | None = None,
        on_call: Callable[[str, RequestUsage], None] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.base_dir = base_dir
        self.override = override
        self.environ = os.environ if environ is None else environ
        self.on_call = on_call
        self.on_event = on_event
        """Told `{"event": "model_call", "worker_id", "attempt", "provider", "tokens"}` per call."""
        self._limiters: dict[str, RateLimiter] = {}
        self._shared: dict[str, ChatCompletionClient] = {}
        if override is not None:
            self.provider_config(override)

    def provider_config(self, name: str) -> ProviderConfig:
        try:
            return self.config.providers[name]
        except KeyError:
            known = ", ".join(sorted(self.config.providers)) or "none"
            raise ProviderError(f"unknown provider {name!r} (configured: {known})") from None

    def route(self, instruction: WorkerInstruction) -> str:
        """The provider a worker starts on."""
        if self.override:
            return self.override
        if instruction.llm_provider and instruction.llm_provider in self.config.providers:
            return instruction.llm_provider
        by_class = self.config.routing.by_classification.get(instruction.task_classification)
        return by_class if by_class in self.config.providers else self.config.routing.default

    def fallback(self, provider: str) -> str | None:
        """The provider tried once after `provider`'s retries, if it is configured and usable."""
        if self.override:
            return None
        candidate = self.config.routing.fallback.get(provider)
        if candidate is None or candidate == provider or candidate not in self.config.providers:
            return None
        return candidate if not self.missing_credentials(candidate) else None

    def missing_credentials(self, provider: str) -> str | None:
        """The environment variable a provider needs and lacks, if any."""
        settings = self.provider_config(provider)
        if settings.kind == "openai":
            name = settings.api_key_env or "OPENAI_API_KEY"
            return None if self.environ.get(name) else name
        return None

    def check_credentials(self, instructions: Iterable[WorkerInstruction]) -> None:
        """One clear message, before any wave starts, naming every missing credential."""
        needs: dict[str, list[str]] = {}
        for instruction in instructions:
            needs.setdefault(self.route(instruction), []).append(instruction.worker_id)
        problems = []
        for provider, workers in sorted(needs.items()):
            variable = self.missing_credentials(provider)
            if variable:
                problems.append(
                    f"{variable} is not set: provider {provider!r} serves {len(workers)} "
                    f"worker{'s' if len(workers) != 1 else ''} (e.g. {workers[0]})"
                )
        if problems:
            raise CredentialsError(
                "; ".join(problems) + ". Set it, or pick another provider with --provider or config routing."
            )

    def create(self, provider: str, worker_id: str, attempt: int) -> MeteredClient:
        """A worker attempt's client: its own meter around the provider's shared connection
        (recorded replies are per worker and attempt, so those are not shared)."""
        settings = self.provider_config(provider)
        shared = settings.kind != "replay"
        if shared and provider not in self._shared:
            self._shared[provider] = self._inner(settings, worker_id, attempt)
        inner = self._shared[provider] if shared else self._inner(settings, worker_id, attempt)
        return MeteredClient(
            inner,
            provider=provider,
            model=settings.model,
            limiter=self._limiter(provider, settings),
            price=self.config.prices.get(settings.model),
            on_call=functools.partial(self._called, worker_id, attempt),
            owns_inner=not shared,
        )

    def _called(self, worker_id: str, attempt: int, provider: str, usage: RequestUsage) -> None:
        if self.on_call is not None:
            self.on_call(provider, usage)
        if self.on_event is not None:
            self.on_event({"event": "model_call", "worker_id": worker_id, "attempt": attempt, "provider": provider,
                           "tokens": usage.prompt_tokens + usage.completion_tokens})

    async def close(self) -> None:
        """Close the shared provider connections."""
        for client in self._shared.values():
            await client.close()
        self._shared.clear()

    def _limiter(self, provider: str, settings: ProviderConfig) -> RateLimiter:
        if provider not in self._limiters:
            self._limiters[provider] = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute)
        return self._limiters[provider]

    def _inner(self, settings: ProviderConfig, worker_id: str, attempt: int) -> ChatCompletionClient:
        if settings.kind == "replay":
            folder = Path(settings.replays_dir or "ai-workers/replays")
            folder = folder if folder.is_absolute() else self.base_dir / folder
            return RecordedReplyClient(load_replies(folder, worker_id, attempt), delay_s=settings.replay_delay_s)
        arguments: dict = {
            "model": settings.model,
            "timeout": settings.timeout_s,
            "max_retries": settings.max_retries,
            "api_key": self._api_key(settings),
        }
        if settings.base_url:
            arguments["base_url"] = settings.base_url
        if settings.kind != "openai" or not _known_model(settings.model):
            arguments["model_info"] = ModelInfo(
                vision=False,
                function_calling=settings.function_calling,
                json_output=True,
                family=settings.family,
                structured_output=False,
            )
        return OpenAIChatCompletionClient(**arguments)

    def _api_key(self, settings: ProviderConfig) -> str:
        name = settings.api_key_env or ("OPENAI_API_KEY" if settings.kind == "openai" else None)
        if name and self.environ.get(name):
            return self.environ[name]
        if settings.kind == "openai":
            raise CredentialsError(f"{name} is not set")
        return "not-needed"


def _known_model(model: str) -> bool:
    try:
        get_info(model)
    except (KeyError, ValueError):
        return False
    return True
