"""The inference server's CPU threads: how many, and how they wait at a barrier.

PyTorch's OpenMP runtime (libgomp in the Linux wheels, Intel's in some builds)
lets a team's threads spin at every barrier before they sleep. On a host where
other processes are busy on the same cores, a member of the team is often
descheduled, and the others spin for its whole time slice: a small image went
from 0.22 s to 3.3 s at the median beside other work, where sharing the cores
explains 2-3x. So, unless the operator's environment already says how OpenMP
waits, the server's threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, with
libgomp's ``GOMP_SPINCOUNT`` and Intel's ``KMP_BLOCKTIME`` to match), set before
torch first loads its OpenMP runtime, which reads them once.

How many: ``GENSERVE_INFERENCE_CPU_THREADS``, else ``OMP_NUM_THREADS`` where the
operator set it, else half the cores on a CPU server (the other half is for the
bridge, the encoders and the clients beside it: with passive waiting, a team as
wide as the machine made a small image 0.26 s alone where half of it took 0.14 s,
on 2 cores beside a bridge and its clients) and a few on a GPU server, whose CPU
threads only feed the device and would compete with the encoders.
One inter-op thread: the pipelines run one operator at a time.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
"""What says how OpenMP threads wait; the operator's, where any is set, is kept whole."""
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0"}
GPU_THREADS = 4
"""The most CPU threads a server whose models run on GPUs gives torch."""

CpuThreads = int | Literal["auto"]


@dataclass(frozen=True)
class ThreadPolicy:
    """What the server runs with, and where each part came from (for its log line)."""

    intra_op: int
    inter_op: int
    threads_from: str
    wait_policy: str


def set_wait_policy(environ: MutableMapping[str, str] | None = None) -> str:
    """Passive waiting unless the environment names any wait variable; what applies.

    Must run before torch is imported: OpenMP reads these once, when it loads.
    """
    env = os.environ if environ is None else environ
    given = {name: env[name] for name in WAIT_VARIABLES if name in env}
    if given:
        return "operator's: " + ", ".join(f"{k}={v}" for k, v in given.items())
    if environ is None and "torch" in sys.modules:
        log.warning("torch was loaded before the OpenMP wait policy was set: it may spin")
    env.update(PASSIVE)
    return "passive"


def wait_policy(environ: Mapping[str, str] | None = None) -> str:
    """How OpenMP threads wait in this process, as ``set_wait_policy`` left it."""
    env = os.environ if environ is None else environ
    given = {name: env[name] for name in WAIT_VARIABLES if name in env}
    if given == PASSIVE:
        return "passive"
    if not given:
        return "OpenMP's default (spinning)"
    return "operator's: " + ", ".join(f"{k}={v}" for k, v in given.items())


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def choose(
    setting: CpuThreads,
    devices: Iterable[str],
    environ: Mapping[str, str] | None = None,
    available: int | None = None,
) -> tuple[int, str]:
    """The intra-op thread count and where it came from."""
    env = os.environ if environ is None else environ
    n = cores() if available is None else available
    if setting != "auto":
        return setting, "GENSERVE_INFERENCE_CPU_THREADS"
    given = env.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if given.isdigit() and int(given) > 0:
        return int(given), "OMP_NUM_THREADS"
    if any(d.startswith("cuda") for d in devices):
        return max(1, min(GPU_THREADS, n // 4)), "auto: GPU server"
    return max(1, n // 2), "auto: half the cores"


def apply(setting: CpuThreads, devices: Iterable[str]) -> ThreadPolicy:
    """Sets torch's thread counts for this process; call before the device threads start."""
    import torch

    intra, source = choose(setting, devices)
    torch.set_num_threads(intra)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work already ran (a server in a test)
        pass
    policy = ThreadPolicy(intra, torch.get_num_interop_threads(), source, wait_policy())
    log.info(
        "cpu threads: %d intra-op (%s), %d inter-op, OpenMP wait %s",
        policy.intra_op,
        policy.threads_from,
        policy.inter_op,
        policy.wait_policy,
        extra={
            "intra_op_threads": policy.intra_op,
            "inter_op_threads": policy.inter_op,
            "threads_from": policy.threads_from,
            "wait_policy": policy.wait_policy,
        },
    )
    return policy
