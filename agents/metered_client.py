"""`MeteredClient`: any ChatCompletionClient plus rate limiting, token/cost accounting and an
activity signal (for stall detection). Transport retries stay with the provider's own client."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient, CreateResult, LLMMessage, ModelInfo, RequestUsage
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from agents.rate_limiter import RateLimiter
from orchestration.config import Price


@dataclass
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class MeteredClient(ChatCompletionClient):
    """Delegates to `inner`; waits on the provider's limiter; counts tokens and cost."""

    def __init__(
        self,
        inner: ChatCompletionClient,
        *,
        provider: str,
        model: str,
        limiter: RateLimiter | None = None,
        price: Price | None = None,
        on_call: Callable[[str, RequestUsage], None] | None = None,
        owns_inner: bool = True,
    ) -> None:
        self.inner = inner
        self.owns_inner = owns_inner
        self.provider = provider
        self.model = model
        self.limiter = limiter
        self.price = price or Price()
        self.usage = Usage()
        self.last_activity = time.monotonic()
        """When the last call started or ended: a call that itself outlasts the stall limit is a stall."""
        self._last_usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._on_call = on_call

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Tool | Any = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},  # noqa: B006 - mirrors the base signature
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        expected = self._estimate(messages, tools)
        if self.limiter is not None:
            await self.limiter.acquire(expected)
        self.last_activity = time.monotonic()
        try:
            result = await self.inner.create(
                messages, tools=list(tools), tool_choice=tool_choice, json_output=json_output,
                extra_create_args=extra_create_args, cancellation_token=cancellation_token,
            )
        finally:
            self.last_activity = time.monotonic()
        self._account(result.usage, expected)
        return result

    @staticmethod
    def _estimate(messages: Sequence[LLMMessage], tools: Sequence[Tool | ToolSchema]) -> int:
        """About four characters a token. Not the provider's tokenizer: tiktoken fetches
        unknown encodings from the network, synchronously, on the event loop."""
        return (sum(len(str(m.content)) for m in messages) + 200 * len(tools)) // 4

    def _account(self, usage: RequestUsage, expected: int) -> None:
        self.usage.calls += 1
        self._last_usage = usage
        self.usage.prompt_tokens += usage.prompt_tokens
        self.usage.completion_tokens += usage.completion_tokens
        self.usage.cost_usd += (
            usage.prompt_tokens * self.price.prompt_per_1k + usage.completion_tokens * self.price.completion_per_1k
        ) / 1000
        if self.limiter is not None:
            self.limiter.record(max(0, usage.prompt_tokens + usage.completion_tokens - expected))
        if self._on_call is not None:
            self._on_call(self.provider, usage)

    def create_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Tool | Any = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},  # noqa: B006 - mirrors the base signature
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        return self._stream(messages, tools, tool_choice, json_output, extra_create_args, cancellation_token)

    async def _stream(self, *args: Any) -> AsyncGenerator[str | CreateResult, None]:
        result = await self.create(
            args[0], tools=args[1], tool_choice=args[2], json_output=args[3],
            extra_create_args=args[4], cancellation_token=args[5],
        )
        yield result

    async def close(self) -> None:
        """Close the inner client unless it is shared (the factory closes shared ones)."""
        if self.owns_inner:
            await self.inner.close()

    def actual_usage(self) -> RequestUsage:
        return self._last_usage

    def total_usage(self) -> RequestUsage:
        return RequestUsage(prompt_tokens=self.usage.prompt_tokens, completion_tokens=self.usage.completion_tokens)

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = ()) -> int:
        return self.inner.count_tokens(messages, tools=list(tools))

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = ()) -> int:
        return self.inner.remaining_tokens(messages, tools=list(tools))

    @property
    def capabilities(self) -> Any:  # deprecated in autogen-core; kept for the abstract base
        return self.inner.model_info

    @property
    def model_info(self) -> ModelInfo:
        return self.inner.model_info
