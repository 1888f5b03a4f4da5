"""Where the CLI finds its server, token and organization.

Each setting comes from the first of: a command-line flag, an environment
variable (`OCORE_URL`, `OCORE_TOKEN`, `OCORE_ORG`), the file `ocore login`
stored in the user's config directory, and the default (URL only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import click

DEFAULT_URL = "http://127.0.0.1:8000"
ENV_NAMES = {"url": "OCORE_URL", "token": "OCORE_TOKEN", "org": "OCORE_ORG"}


@dataclass(frozen=True)
class Settings:
    """Resolved connection settings; `token` and `org` may still be missing."""

    url: str = DEFAULT_URL
    token: str | None = None
    org: str | None = None


def config_path() -> Path:
    """`config.json` in click's app dir for "ocore" (honours $XDG_CONFIG_HOME on Linux)."""
    return Path(click.get_app_dir("ocore")) / "config.json"


def load_stored(path: Path | None = None) -> dict[str, str]:
    """The stored settings, or nothing if there is no readable file."""
    path = path or config_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return (
        {k: v for k, v in data.items() if k in ENV_NAMES and isinstance(v, str) and v} if isinstance(data, dict) else {}
    )


def store(updates: Mapping[str, str | None], path: Path | None = None) -> Path:
    """Merge `updates` into the stored settings; the file is created 0600 (it holds a token)."""
    path = path or config_path()
    merged = {**load_stored(path), **{k: v for k, v in updates.items() if v}}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its old mode otherwise
    with os.fdopen(descriptor, "w") as file:
        json.dump(merged, file, indent=2)
        file.write("\n")
    return path


def resolve(flags: Mapping[str, str | None], environ: Mapping[str, str] | None = None) -> Settings:
    """Flag > environment > stored file > default, setting by setting."""
    environ = os.environ if environ is None else environ
    stored = load_stored()
    values = {
        name: flags.get(name) or environ.get(variable) or stored.get(name) for name, variable in ENV_NAMES.items()
    }
    return Settings(**{k: v for k, v in values.items() if v})
