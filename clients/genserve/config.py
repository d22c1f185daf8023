"""Where the SDK and the ``genserve`` command find the bridge and the key.

In order: the arguments given (``Client(base_url=..., api_key=...)``, ``--base-url``),
then ``GENSERVE_BASE_URL`` and ``GENSERVE_API_KEY``, then the file ``genserve login``
writes (``$XDG_CONFIG_HOME/genserve/config.json``, else ``~/.config/genserve/config.json``,
mode 0600), then ``http://127.0.0.1:8000`` for the base URL. The key of the file is
used only for the base URL it was saved with, so it is never sent to another server.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
BASE_URL_ENV = "GENSERVE_BASE_URL"
API_KEY_ENV = "GENSERVE_API_KEY"
CONFIG_FILE_ENV = "GENSERVE_CONFIG"
"""A path to use instead of the usual config file (tests, several servers)."""


def normalize_base_url(url: str) -> str:
    return url.strip().rstrip("/")


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config file's path (it need not exist)."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_FILE_ENV):
        return Path(env[CONFIG_FILE_ENV]).expanduser()
    root = env.get("XDG_CONFIG_HOME") or ""
    base = Path(root).expanduser() if root and Path(root).is_absolute() else None
    if base is None:
        base = Path(env.get("HOME") or Path.home()).expanduser() / ".config"
    return base / "genserve" / "config.json"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The saved settings, or an empty dict when there is no (readable) file."""
    target = path or config_path()
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_config(base_url: str, api_key: str, path: Path | None = None) -> Path:
    """Writes the base URL and key, readable by the user only (0600, folder 0700)."""
    target = path or config_path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({"base_url": normalize_base_url(base_url), "api_key": api_key}, indent=2)
    fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".json", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(body + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    os.chmod(target, 0o600)
    return target


def remove_config(path: Path | None = None) -> bool:
    """Removes the saved settings; False when there were none."""
    target = path or config_path()
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class Settings:
    base_url: str
    api_key: str | None
    key_source: str
    """Where the key came from: ``argument``, ``environment``, ``config`` or ``none``."""


def resolve(
    base_url: str | None = None,
    api_key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """The base URL and key, from the arguments, the environment or the config file."""
    env = os.environ if environ is None else environ
    saved = load_config(config_path(env))
    saved_base = saved.get("base_url")
    saved_base = normalize_base_url(saved_base) if isinstance(saved_base, str) else None
    base = base_url or env.get(BASE_URL_ENV) or saved_base or DEFAULT_BASE_URL
    base = normalize_base_url(base)
    if api_key:
        return Settings(base, api_key, "argument")
    if env.get(API_KEY_ENV):
        return Settings(base, env[API_KEY_ENV], "environment")
    saved_key = saved.get("api_key")
    if isinstance(saved_key, str) and saved_key and saved_base == base:
        return Settings(base, saved_key, "config")
    return Settings(base, None, "none")
