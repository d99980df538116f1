"""Keep the launcher's secrets out of worker processes, logs and every store.

`scrub_env` builds the environment a worker command runs with; `redact` masks secret values
(and anything shaped like an API key) in text before it is logged or stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|SESSION|COOKIE|PRIVATE)", re.I)
_SAFE_NAMES = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "TERM", "TZ", "TMPDIR", "USER", "SHELL"})
_KEY_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,}|ghp_[A-Za-z0-9]{20,}|xox[abp]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}"
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{16,})"
)
MASK = "***"


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-named environment variables long enough to be worth masking."""
    env = os.environ if environ is None else environ
    return sorted({v for k, v in env.items() if is_secret_name(k) and len(v) >= 6}, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Mask secret env values and key-shaped tokens in `text`."""
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    return _KEY_SHAPES.sub(MASK, text)


def scrub_env(extra: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for worker commands: safe basics only, no secrets, plus `extra`."""
    env = os.environ if environ is None else environ
    clean = {k: v for k, v in env.items() if k in _SAFE_NAMES or k.startswith("LC_")}
    clean.update(extra or {})
    return {k: v for k, v in clean.items() if not is_secret_name(k)}
