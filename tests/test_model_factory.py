"""ModelClientFactory: routing, fallback, credentials (checked before any wave), client building,
and the replay provider's recorded attempts."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from autogen_core import FunctionCall
from autogen_core.models import UserMessage
from autogen_ext.models.openai import OpenAIChatCompletionClient
from rich.console import Console

from agents.metered_client import MeteredClient
from agents.model_factory import ModelClientFactory
from agents.replay import RecordedReplyClient, load_replies
from orchestration.config import Price, ProviderConfig, RoutingConfig, WorkforceConfig
from orchestration.errors import CredentialsError, ProviderError
from orchestration.instruction import WorkerInstruction
from orchestration.launcher import Launcher, LaunchOptions, fixed_sampler
from orchestration.memory_state import MemoryStateStore

ABSENT = "WORKFORCE_TEST_KEY_THAT_IS_NEVER_SET_7f3a"


def worker(number: int, classification: str = "UNSPECIFIED", llm_provider: str | None = None) -> WorkerInstruction:
    return WorkerInstruction(
        worker_id=f"WORKER_{number:03d}", title=f"worker {number}", source=f"WORKER_{number:03d}.md",
        content_hash="0" * 8, priority=1, priority_rule="explicit", task_classification=classification,
        llm_provider=llm_provider,
    )


def config(**routing: Any) -> WorkforceConfig:
    return WorkforceConfig(
        providers={
            "openai": ProviderConfig(kind="openai", model="gpt-4o-mini", api_key_env="OPENAI_API_KEY"),
            "ollama": ProviderConfig(kind="ollama", model="qwen2.5-coder:7b", base_url="http://127.0.0.1:9/v1"),
            "local": ProviderConfig(kind="openai_compatible", model="local-model", base_url="http://127.0.0.1:9/v1",
                                    api_key_env="LOCAL_KEY", timeout_s=7.0, max_retries=4,
                                    requests_per_minute=30, tokens_per_minute=9000),
        },
        routing=RoutingConfig(**{
            "default": "openai",
            "by_classification": {"MECHANICAL": "ollama", "CREATIVE": "openai"},
            "fallback": {"ollama": "openai", "openai": "ollama"},
            **routing,
        }),
        prices={"local-model": Price(prompt_per_1k=0.5, completion_per_1k=1.5)},
    )


def factory(cfg: WorkforceConfig | None = None, environ: dict[str, str] | None = None,
            override: str | None = None, base_dir: Path = Path(".")) -> ModelClientFactory:
    return ModelClientFactory(cfg or config(), base_dir, override=override,
                              environ={"OPENAI_API_KEY": "sk-test"} if environ is None else environ)


# -- routing ---------------------------------------------------------------------------------------
def test_routing_uses_the_default_without_header_or_known_classification() -> None:
    assert factory().route(worker(1)) == "openai"
    assert factory().route(worker(1, "HYBRID")) == "openai"
    assert factory(config(default="local")).route(worker(1)) == "local"


def test_routing_by_classification_beats_the_default() -> None:
    assert factory().route(worker(1, "MECHANICAL")) == "ollama"
    assert factory(config(default="local")).route(worker(1, "CREATIVE")) == "openai"


def test_a_classification_routed_to_an_unconfigured_provider_falls_to_the_default() -> None:
    cfg = config(by_classification={"MECHANICAL": "nowhere"})

    assert factory(cfg).route(worker(1, "MECHANICAL")) == "openai"


def test_the_llm_provider_header_beats_the_classification() -> None:
    assert factory().route(worker(1, "MECHANICAL", llm_provider="local")) == "local"
    assert factory().route(worker(1, "CREATIVE", llm_provider="ollama")) == "ollama"


def test_an_unknown_llm_provider_header_is_ignored() -> None:
    assert factory().route(worker(1, "MECHANICAL", llm_provider="nowhere")) == "ollama"


def test_the_override_beats_everything() -> None:
    chosen = factory(override="local")

    assert chosen.route(worker(1, "MECHANICAL", llm_provider="ollama")) == "local"
    assert chosen.route(worker(2)) == "local"


def test_an_unknown_override_is_rejected_at_once() -> None:
    with pytest.raises(ProviderError, match=r"unknown provider 'nowhere' \(configured: local, ollama, openai\)"):
        factory(override="nowhere")


# -- fallback ----------------------------------------------------------------------------------------
def test_fallback_follows_the_configured_chain() -> None:
    chosen = factory()

    assert chosen.fallback("ollama") == "openai"
    assert chosen.fallback("openai") == "ollama"
    assert chosen.fallback("local") is None


def test_no_fallback_under_an_override() -> None:
    assert factory(override="ollama").fallback("ollama") is None


def test_no_fallback_to_itself_or_to_an_unconfigured_provider() -> None:
    assert factory(config(fallback={"ollama": "ollama"})).fallback("ollama") is None
    assert factory(config(fallback={"ollama": "nowhere"})).fallback("ollama") is None


def test_no_fallback_to_a_provider_without_credentials() -> None:
    assert factory(environ={}).fallback("ollama") is None
    assert factory(environ={"OPENAI_API_KEY": "sk-test"}).fallback("ollama") == "openai"


# -- credentials ----------------------------------------------------------------------------------
def test_missing_credentials_names_the_variable_only_for_openai() -> None:
    chosen = factory(environ={})

    assert chosen.missing_credentials("openai") == "OPENAI_API_KEY"
    assert chosen.missing_credentials("ollama") is None
    assert chosen.missing_credentials("local") is None


def test_an_empty_key_counts_as_missing() -> None:
    assert factory(environ={"OPENAI_API_KEY": ""}).missing_credentials("openai") == "OPENAI_API_KEY"


def test_check_credentials_raises_one_message_naming_the_variable_and_worker_count() -> None:
    workers = [worker(1, "CREATIVE"), worker(2), worker(3, "HYBRID"), worker(4, "MECHANICAL")]

    with pytest.raises(CredentialsError) as caught:
        factory(environ={}).check_credentials(workers)

    message = str(caught.value)
    assert message.count("OPENAI_API_KEY") == 1
    assert "provider 'openai' serves 3 workers" in message
    assert "WORKER_001" in message
    assert "--provider" in message


def test_check_credentials_names_every_missing_variable_once() -> None:
    cfg = config()
    cfg.providers["other"] = ProviderConfig(kind="openai", model="gpt-4o", api_key_env="OTHER_OPENAI_KEY")
    workers = [worker(1), worker(2, llm_provider="other"), worker(3, llm_provider="other")]

    with pytest.raises(CredentialsError) as caught:
        factory(cfg, environ={}).check_credentials(workers)

    message = str(caught.value)
    assert "OPENAI_API_KEY is not set: provider 'openai' serves 1 worker " in message
    assert "OTHER_OPENAI_KEY is not set: provider 'other' serves 2 workers" in message


def test_check_credentials_passes_when_keys_are_present_or_not_needed() -> None:
    factory(environ={"OPENAI_API_KEY": "sk-test"}).check_credentials([worker(1), worker(2, "MECHANICAL")])
    factory(environ={}).check_credentials([worker(1, "MECHANICAL"), worker(2, llm_provider="local")])


def test_the_launcher_checks_credentials_before_anything_runs(tmp_path: Path) -> None:
    workers = tmp_path / "workers"
    workers.mkdir()
    (workers / "WORKER_001_A.md").write_text(
        "# WORKER_001: a\n\n**Priority:** 1\n\n## 1. DELIVERABLES\n\n- `pkg/a.py`\n\n"
        "## 6. TEST_PROCESS\n\n```bash\ntest -f pkg/a.py\n```\n", encoding="utf-8")
    cfg = config()
    cfg.providers["openai"] = cfg.providers["openai"].model_copy(update={"api_key_env": ABSENT})
    cfg.results_dir, cfg.build_dir = str(tmp_path / "results"), str(tmp_path / "build")
    cfg.logs_dir = str(tmp_path / "logs")
    state = MemoryStateStore()
    launcher = Launcher(cfg, tmp_path, LaunchOptions(workers_dir=workers, target=tmp_path / "target"),
                        state=state, console=Console(file=io.StringIO()), sampler=fixed_sampler())

    with pytest.raises(CredentialsError, match=f"{ABSENT} is not set: provider 'openai' serves 1 worker "):
        asyncio.run(launcher.run())

    assert state.latest_run_id() is None
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "build").exists()
    assert not (tmp_path / "target").exists()


# -- clients --------------------------------------------------------------------------------------
def test_an_openai_compatible_client_gets_the_providers_settings() -> None:
    client = factory(environ={"LOCAL_KEY": "local-secret"}).create("local", "WORKER_001", 1)

    assert isinstance(client, MeteredClient)
    assert (client.provider, client.model) == ("local", "local-model")
    assert client.price == Price(prompt_per_1k=0.5, completion_per_1k=1.5)
    inner = client.inner
    assert isinstance(inner, OpenAIChatCompletionClient)
    raw = inner._raw_config
    assert raw["base_url"] == "http://127.0.0.1:9/v1"
    assert raw["api_key"] == "local-secret"
    assert (raw["timeout"], raw["max_retries"]) == (7.0, 4)
    assert client.model_info["function_calling"] is True
    assert (client.limiter.rpm, client.limiter.tpm) == (30, 9000)


def test_a_compatible_provider_without_a_key_gets_a_placeholder() -> None:
    client = factory(environ={}).create("ollama", "WORKER_001", 1)

    assert client.inner._raw_config["api_key"] == "not-needed"
    assert client.price == Price()


def test_an_openai_client_without_its_key_raises_credentials_error() -> None:
    with pytest.raises(CredentialsError, match="OPENAI_API_KEY is not set"):
        factory(environ={}).create("openai", "WORKER_001", 1)


def test_an_openai_provider_without_api_key_env_uses_openai_api_key() -> None:
    cfg = config()
    cfg.providers["plain"] = ProviderConfig(kind="openai", model="gpt-4o-mini")
    chosen = factory(cfg, environ={"OPENAI_API_KEY": "sk-from-default-variable"})
    assert chosen.missing_credentials("plain") is None

    client = chosen.create("plain", "WORKER_001", 1)

    assert client.inner._raw_config["api_key"] == "sk-from-default-variable"


async def test_clients_of_one_provider_share_its_connection_but_not_their_meters() -> None:
    chosen = factory(environ={})

    first, second = chosen.create("local", "WORKER_001", 1), chosen.create("local", "WORKER_002", 2)
    other = chosen.create("ollama", "WORKER_003", 1)

    assert first.inner is second.inner
    assert other.inner is not first.inner
    assert first.usage is not second.usage
    assert not first.owns_inner
    await first.close()
    assert chosen.create("local", "WORKER_004", 1).inner is first.inner  # a worker's close keeps it open
    await chosen.close()
    assert chosen.create("local", "WORKER_005", 1).inner is not first.inner  # the factory's close drops it
    await chosen.close()


def test_recorded_replies_are_never_shared(tmp_path: Path) -> None:
    write_replays(tmp_path / "recorded", "WORKER_001", REPLAYS)
    write_replays(tmp_path / "recorded", "WORKER_002", REPLAYS)
    cfg = config()
    cfg.providers["replay"] = ProviderConfig(kind="replay", model="replay", replays_dir="recorded")
    chosen = factory(cfg, environ={}, base_dir=tmp_path)

    first, again, other = (chosen.create("replay", "WORKER_001", 1), chosen.create("replay", "WORKER_001", 1),
                           chosen.create("replay", "WORKER_002", 1))

    assert len({id(first.inner), id(again.inner), id(other.inner)}) == 3
    assert first.owns_inner


def test_one_rate_limiter_per_provider_is_shared_by_its_clients() -> None:
    chosen = factory(environ={})

    first, second = chosen.create("local", "WORKER_001", 1), chosen.create("local", "WORKER_002", 1)
    other = chosen.create("ollama", "WORKER_003", 1)

    assert first.limiter is second.limiter
    assert other.limiter is not first.limiter


# -- replay -----------------------------------------------------------------------------------------
def write_replays(folder: Path, worker_id: str, attempts: list[list[dict[str, Any]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"attempts": [{"replies": replies} for replies in attempts]}
    (folder / f"{worker_id}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return folder


REPLAYS = [
    [{"tool_calls": [{"name": "write_file", "arguments": {"path": "a.py", "content": "A = 1\n"}}]},
     {"content": "SUMMARY: first"}],
    [{"content": "SUMMARY: second"}],
]


def test_replays_load_the_attempts_reply_by_reply(tmp_path: Path) -> None:
    folder = write_replays(tmp_path / "replays", "WORKER_001", REPLAYS)

    first = load_replies(folder, "WORKER_001", 1)
    second = load_replies(folder, "WORKER_001", 2)

    assert len(first) == 2
    call = first[0].content[0]
    assert isinstance(call, FunctionCall)
    assert call.name == "write_file"
    assert yaml.safe_load(call.arguments) == {"path": "a.py", "content": "A = 1\n"}
    assert first[0].finish_reason == "function_calls"
    assert first[1].content == "SUMMARY: first"
    assert [r.content for r in second] == ["SUMMARY: second"]


def test_later_attempts_reuse_the_last_recorded_one(tmp_path: Path) -> None:
    folder = write_replays(tmp_path / "replays", "WORKER_001", REPLAYS)

    assert [r.content for r in load_replies(folder, "WORKER_001", 3)] == ["SUMMARY: second"]
    assert [r.content for r in load_replies(folder, "WORKER_001", 9)] == ["SUMMARY: second"]


@pytest.mark.parametrize(
    ("text", "match"),
    [(None, "no recorded replies"), ("attempts: []\n", "no attempts"), ("attempts: [\n", "not valid YAML")],
)
def test_bad_replay_files_are_provider_errors(tmp_path: Path, text: str | None, match: str) -> None:
    folder = tmp_path / "replays"
    folder.mkdir()
    if text is not None:
        (folder / "WORKER_001.yaml").write_text(text, encoding="utf-8")

    with pytest.raises(ProviderError, match=match):
        load_replies(folder, "WORKER_001", 1)


async def test_the_replay_provider_builds_a_recorded_client_per_attempt(tmp_path: Path) -> None:
    write_replays(tmp_path / "recorded", "WORKER_001", REPLAYS)
    cfg = config()
    cfg.providers["replay"] = ProviderConfig(kind="replay", model="replay", replays_dir="recorded")
    chosen = factory(cfg, environ={}, base_dir=tmp_path)
    message = [UserMessage(content="go", source="user")]

    first = chosen.create("replay", "WORKER_001", 1)
    third = chosen.create("replay", "WORKER_001", 3)

    assert isinstance(first.inner, RecordedReplyClient)
    assert isinstance((await first.create(message)).content, list)
    assert (await first.create(message)).content == "SUMMARY: first"
    assert (await third.create(message)).content == "SUMMARY: second"
    with pytest.raises(ProviderError, match="ran out"):
        await third.create(message)
    assert first.usage.calls == 2


async def test_the_on_call_hook_sees_every_model_call(tmp_path: Path) -> None:
    write_replays(tmp_path / "recorded", "WORKER_001", REPLAYS)
    cfg = config()
    cfg.providers["replay"] = ProviderConfig(kind="replay", model="replay", replays_dir="recorded")
    calls: list[tuple[str, int]] = []
    chosen = ModelClientFactory(cfg, tmp_path, environ={},
                                on_call=lambda provider, usage: calls.append((provider, usage.completion_tokens)))
    client = chosen.create("replay", "WORKER_001", 1)

    await client.create([UserMessage(content="go", source="user")])
    await client.create([UserMessage(content="go", source="user")])

    assert [provider for provider, _ in calls] == ["replay", "replay"]
    assert all(tokens > 0 for _, tokens in calls)
