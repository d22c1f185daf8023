"""The repository's scripts run as a user runs them: ``python -m <module>`` from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from tests.utils.procs import ROOT


def run_module(
    module: str, *args: str, timeout: float, env: Mapping[str, str] | None = None
) -> str:
    """What ``python -m module args`` prints, once it has exited with 0 (``env`` added to ours).

    A failure shows the output and the end of the error stream, where the traceback is.
    """
    run = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    return run.stdout
