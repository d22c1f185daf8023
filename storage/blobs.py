"""Blob stores: where output files live. A local folder by default."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

_SAFE_KEY = re.compile(r"^[0-9a-f]{32}/[A-Za-z0-9._-]{1,200}$")


class BlobStore(Protocol):
    """Stores immutable files under ``<token>/<file name>`` keys."""

    def put(self, key: str, data: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def path(self, key: str) -> Path | None: ...


def check_key(key: str) -> str:
    if not _SAFE_KEY.match(key) or ".." in key:
        raise ValueError(f"not a blob key: {key!r}")
    return key


class LocalBlobStore:
    """A folder; writes go to a temporary file renamed into place, so none is ever half-written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _target(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        target = self._target(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, key: str) -> None:
        target = self._target(key)
        target.unlink(missing_ok=True)
        try:
            target.parent.rmdir()
        except OSError:
            pass

    def path(self, key: str) -> Path | None:
        try:
            target = self._target(key)
        except ValueError:
            return None
        return target if target.is_file() else None
