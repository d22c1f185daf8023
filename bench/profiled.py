"""Runs a module under cProfile, switched on and off by signals, for a benchmark's servers.

``python -m bench.profiled OUT -m MODULE ARGS...`` runs ``MODULE`` as ``python -m`` would;
``SIGUSR1`` starts profiling its main thread (the event loop of our servers), ``SIGUSR2``
stops and writes the figures to ``OUT``. So a benchmark profiles the rounds it
chooses, not the imports and model loading, and the file is written whatever way the
server later exits (uvicorn re-raises the signal that stopped it). Times are the
thread's CPU time: on a shared machine, wall time charges a function for the moments
the thread was not running at all.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
import time
from types import FrameType

START = signal.SIGUSR1
STOP = signal.SIGUSR2


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        raise SystemExit("usage: python -m bench.profiled OUT -m MODULE [ARGS...]")
    out, module = sys.argv[1], sys.argv[3]
    profile = cProfile.Profile(time.thread_time)

    def start(_signum: int, _frame: FrameType | None) -> None:
        profile.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profile.disable()
        profile.dump_stats(out)

    signal.signal(START, start)
    signal.signal(STOP, stop)
    sys.argv = [module, *sys.argv[4:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
