"""The one data directory of a machine's genserve, the same from whatever folder a command runs.

``GENSERVE_DATA_DIR`` when set; else ``$XDG_DATA_HOME/genserve``; else
``~/.local/share/genserve`` (the per-user data folder of the XDG convention, which
platformdirs follows on Linux). The database, output files, key secret, the
operator's key, logs and built-in models live under it.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """The data directory when ``GENSERVE_DATA_DIR`` is unset: absolute, never the cwd's."""
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "genserve"


def data_dir() -> Path:
    """``GENSERVE_DATA_DIR`` (made absolute) or the default, for processes without settings."""
    chosen = os.environ.get("GENSERVE_DATA_DIR", "").strip()
    return Path(chosen).expanduser().absolute() if chosen else default_data_dir()
