"""MeteredClient: token and cost accounting from a price table, the on_call hook, the limiter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from autogen_core.models import CreateResult, LLMMessage, RequestUsage, UserMessage
from autogen_ext.models.replay import ReplayChatCompletionClient

from agents.metered_client import MeteredClient
from orchestration.config import Price

PRICE = Price(prompt_per_1k=0.5, completion_per_1k=2.0)


def result(prompt: int, completion: int, content: str = "ok") -> CreateResult:
    return CreateResult(finish_reason="stop", content=content, cached=False,
                        usage=RequestUsage(prompt_tokens=prompt, completion_tokens=completion))


def messages(text: str = "one two three four") -> list[LLMMessage]:
    return [UserMessage(content=text, source="user")]


class FakeLimiter:
    def __init__(self) -> None:
        self.acquired: list[int] = []
        self.recorded: list[int] = []

    async def acquire(self, tokens: int = 0) -> float:
        self.acquired.append(tokens)
        return 0.0

    def record(self, extra_tokens: int) -> None:
        self.recorded.append(extra_tokens)


def metered(replies: Sequence[CreateResult], **kwargs: Any) -> MeteredClient:
    inner = ReplayChatCompletionClient(list(replies))
    return MeteredClient(inner, provider="loop", model="loop-model", **kwargs)


async def test_tokens_and_cost_come_from_the_replies_and_the_price_table() -> None:
    client = metered([result(1000, 200), result(3000, 300)], price=PRICE)

    await client.create(messages())
    await client.create(messages())

    assert client.usage.calls == 2
    assert (client.usage.prompt_tokens, client.usage.completion_tokens) == (4000, 500)
    assert client.usage.tokens == 4500
    assert client.usage.cost_usd == pytest.approx(4000 * 0.5 / 1000 + 500 * 2.0 / 1000)
    assert client.total_usage() == RequestUsage(prompt_tokens=4000, completion_tokens=500)


async def test_without_a_price_tokens_count_but_cost_nothing() -> None:
    client = metered([result(1000, 200)])

    await client.create(messages())

    assert client.usage.tokens == 1200
    assert client.usage.cost_usd == 0


async def test_on_call_is_told_the_provider_and_usage_of_every_call() -> None:
    calls: list[tuple[str, RequestUsage]] = []
    client = metered([result(10, 1), result(20, 2)], on_call=lambda provider, usage: calls.append((provider, usage)))

    first = await client.create(messages())
    await client.create(messages())

    assert first.content == "ok"
    assert calls == [("loop", RequestUsage(prompt_tokens=10, completion_tokens=1)),
                     ("loop", RequestUsage(prompt_tokens=20, completion_tokens=2))]


async def test_the_limiter_is_asked_for_the_estimate_and_charged_the_rest() -> None:
    limiter = FakeLimiter()
    client = metered([result(100, 50), result(1, 0)], limiter=limiter)  # type: ignore[arg-type]

    await client.create(messages("x" * 40))  # about four characters a token
    await client.create(messages("y" * 400))

    assert limiter.acquired == [10, 100]
    assert limiter.recorded == [150 - 10, 0]  # the rest is charged after the reply, never a negative charge


async def test_the_estimate_counts_tool_schemas_without_the_providers_tokenizer() -> None:
    class NoTokenizer(ReplayChatCompletionClient):
        def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Any] = ()) -> int:
            raise AssertionError("the tokenizer may fetch encodings over the network; it must not be used")

    limiter = FakeLimiter()
    client = MeteredClient(NoTokenizer([result(1, 1)]), provider="p", model="m", limiter=limiter)  # type: ignore[arg-type]
    schema = {"name": "t", "description": "d", "parameters": {"type": "object", "properties": {}}}

    await client.create(messages("z" * 100), tools=[schema, schema])  # type: ignore[list-item]

    assert limiter.acquired == [(100 + 2 * 200) // 4]


async def test_activity_is_stamped_around_each_call() -> None:
    client = metered([result(1, 1)])
    client.last_activity = 0.0

    await client.create(messages())

    assert client.last_activity > 0.0


async def test_a_failing_call_is_not_counted() -> None:
    client = metered([])

    with pytest.raises(ValueError, match="No more mock responses"):
        await client.create(messages())

    assert client.usage.calls == 0
    assert client.usage.tokens == 0


async def test_streaming_yields_the_one_metered_result() -> None:
    client = metered([result(7, 3, "streamed")], price=PRICE)

    chunks = [chunk async for chunk in client.create_stream(messages())]

    assert [c.content for c in chunks if isinstance(c, CreateResult)] == ["streamed"]
    assert client.usage.tokens == 10


class Closable(ReplayChatCompletionClient):
    closed = 0

    async def close(self) -> None:
        self.closed += 1


async def test_model_info_is_delegated_and_close_closes_an_owned_client() -> None:
    inner = Closable([result(1, 1)])
    client = MeteredClient(inner, provider="p", model="m")

    assert client.model_info == inner.model_info
    assert client.count_tokens(messages("a b c")) == 3
    await client.close()
    assert inner.closed == 1


async def test_close_leaves_a_shared_client_open() -> None:
    inner = Closable([result(1, 1)])

    await MeteredClient(inner, provider="p", model="m", owns_inner=False).close()

    assert inner.closed == 0
