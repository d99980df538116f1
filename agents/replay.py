"""The `replay` provider: recorded model replies per worker, for the offline demo and tests.

`ai-workers/replays/<WORKER_ID>.yaml` holds `attempts: [{replies: [...]}, …]`; each reply is
either `{content: "text"}` or `{tool_calls: [{name, arguments}]}`. Attempt N replays
`attempts[N-1]` (the last one again if there are fewer).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import CreateResult, LLMMessage, ModelFamily, ModelInfo, RequestUsage
from autogen_core.tools import Tool, ToolSchema
from autogen_ext.models.replay import ReplayChatCompletionClient
from pydantic import BaseModel

from orchestration.errors import ProviderError

REPLAY_MODEL_INFO = ModelInfo(
    vision=False, function_calling=True, json_output=False, family=ModelFamily.UNKNOWN, structured_output=False
)


def load_replies(replays_dir: Path, worker_id: str, attempt: int) -> list[CreateResult]:
    """The recorded replies of `worker_id`'s attempt number `attempt` (1-based)."""
    path = replays_dir / f"{worker_id}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ProviderError(f"no recorded replies: {exc.strerror}", path=path, worker_id=worker_id) from exc
    except yaml.YAMLError as exc:
        raise ProviderError(f"recorded replies are not valid YAML: {exc}", path=path) from exc
    attempts = data.get("attempts") or []
    if not attempts:
        raise ProviderError("recorded replies have no attempts", path=path, worker_id=worker_id)
    chosen = attempts[min(attempt, len(attempts)) - 1]
    return [_result(reply, f"{worker_id}-{attempt}-{n}") for n, reply in enumerate(chosen.get("replies", []))]


def _result(reply: Mapping[str, Any], call_prefix: str) -> CreateResult:
    usage = RequestUsage(prompt_tokens=0, completion_tokens=len(json.dumps(reply)) // 4)
    calls = reply.get("tool_calls")
    if calls:
        content: Any = [
            FunctionCall(id=f"{call_prefix}-{i}", name=c["name"], arguments=json.dumps(c.get("arguments", {})))
            for i, c in enumerate(calls)
        ]
        return CreateResult(finish_reason="function_calls", content=content, usage=usage, cached=False)
    return CreateResult(finish_reason="stop", content=str(reply.get("content", "")), usage=usage, cached=False)


class RecordedReplyClient(ReplayChatCompletionClient):
    """ReplayChatCompletionClient with an optional pause before each reply."""

    def __init__(self, replies: Sequence[CreateResult], delay_s: float = 0.0) -> None:
        super().__init__(list(replies), model_info=REPLAY_MODEL_INFO)
        self._delay_s = delay_s

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
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        if self._current_index >= len(self.chat_completions):
            raise ProviderError("the recorded replies ran out before the worker finished")
        return await super().create(
            messages, tools=list(tools), tool_choice=tool_choice, json_output=json_output,
            extra_create_args=extra_create_args, cancellation_token=cancellation_token,
        )
