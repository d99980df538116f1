"""Secrets stay out of worker environments, logs and stores."""

from __future__ import annotations

import logging

import pytest

from orchestration.logs import RedactingFilter
from orchestration.redaction import MASK, is_secret_name, redact, scrub_env, secret_values

ENV = {
    "OPENAI_API_KEY": "sk-live-abcdefghijklmnopqrstuv",
    "MY_SECRET_TOKEN": "hunter2-hunter2",
    "DB_PASSWORD": "correct-horse",
    "SHORT_KEY": "abc",
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/me",
    "EDITOR": "vim",
}


def test_redact_masks_secret_env_values() -> None:
    text = "key=hunter2-hunter2 pw=correct-horse path=/usr/bin:/bin"
    masked = redact(text, ENV)
    assert "hunter2-hunter2" not in masked and "correct-horse" not in masked
    assert masked == f"key={MASK} pw={MASK} path=/usr/bin:/bin"


def test_redact_leaves_short_values_and_plain_text() -> None:
    assert redact("abc is fine, vim too", ENV) == "abc is fine, vim too"


@pytest.mark.parametrize(
    "token",
    [
        "sk-proj-ABCDEFGHIJKLMNOPqrstuvwx1234",
        "sk-0123456789abcdefABCDEF",
        "ghp_abcdefghijklmnopqrstuvwxyz0123",
        "AKIAABCDEFGHIJKLMNOP",
        "Bearer abcdefghijklmnop.qrstu",
    ],
)
def test_redact_masks_key_shaped_tokens_not_in_the_env(token: str) -> None:
    masked = redact(f"header: {token} end", {})
    assert token not in masked
    assert masked == f"header: {MASK} end"


def test_redact_does_not_mask_short_sk_words() -> None:
    assert redact("task-sk-1 risk-free sk-short", {}) == "task-sk-1 risk-free sk-short"


def test_secret_values_longest_first() -> None:
    env = {"A_TOKEN": "abcdef", "B_TOKEN": "abcdefghij"}
    assert secret_values(env) == ["abcdefghij", "abcdef"]
    assert redact("abcdefghij", env) == MASK


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "GITHUB_TOKEN", "MY_SECRET", "db_password", "AUTH_HEADER"])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


def test_scrub_env_keeps_basics_and_drops_secrets() -> None:
    clean = scrub_env(environ=ENV)
    assert clean == {"PATH": "/usr/bin:/bin", "HOME": "/home/me"}


def test_scrub_env_adds_extra_but_never_secret_names() -> None:
    clean = scrub_env({"PYTHONPATH": "/w", "SNEAKY_TOKEN": "x"}, environ={**ENV, "LC_CTYPE": "C.UTF-8"})
    assert clean["PYTHONPATH"] == "/w"
    assert clean["LC_CTYPE"] == "C.UTF-8"
    assert "SNEAKY_TOKEN" not in clean
    assert not any(is_secret_name(k) for k in clean)


def test_scrub_env_reads_the_process_env_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abcdefghijklmnopqrstuvwx")
    monkeypatch.setenv("MY_SECRET_TOKEN", "tok-123456")
    clean = scrub_env()
    assert "OPENAI_API_KEY" not in clean and "MY_SECRET_TOKEN" not in clean
    assert "PATH" in clean


def test_redacting_filter_masks_a_secret_in_a_log_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SECRET_TOKEN", "super-secret-value-42")
    record = logging.LogRecord(
        "workforce", logging.INFO, __file__, 1, "calling with %s and %s",
        ("super-secret-value-42", "sk-abcdefghijklmnopqrstuvwx"), None,
    )
    assert RedactingFilter().filter(record) is True
    message = record.getMessage()
    assert "super-secret-value-42" not in message
    assert "sk-abcdefghijklmnopqrstuvwx" not in message
    assert message == f"calling with {MASK} and {MASK}"


def test_redacting_filter_on_a_handler(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MY_SECRET_TOKEN", "another-secret-99")
    logger = logging.getLogger("workforce.test_redaction")
    caplog.handler.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("token is %s", "another-secret-99")
    finally:
        caplog.handler.filters.clear()
    assert "another-secret-99" not in caplog.text
    assert MASK in caplog.text
