"""``make bench``: every benchmark, one after another, figures printed.

Pass ``--device cuda`` on a GPU machine; the same scripts run on the CPU here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHES = ["bench.bench_bridge", "bench.bench_video"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    failed = 0
    for module in BENCHES:
        print(f"\n=== {module} ({args.device}) ===", flush=True)
        failed |= subprocess.call([sys.executable, "-m", module, "--device", args.device])
    return failed


if __name__ == "__main__":
    sys.exit(main())
