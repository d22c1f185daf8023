"""Output downloads from the local store: whole files, byte ranges and ``HEAD``, per second.

A bridge of this tree (no inference server needed) serves files placed in its local
store, as ``/files/<token>/<name>`` serves generated ones. Whole files go out as
Starlette sends files; ranges are read in chunks on worker threads.
Run: ``python -m bench.bench_files [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def _bridge(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GENSERVE_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'genserve.db'}",
        "GENSERVE_INFERENCE_TARGETS": "127.0.0.1:1",
        "GENSERVE_KEY_SECRET": "bench-secret-" + "x" * 40,
        "GENSERVE_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "rest_bridge", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _rate(client: httpx.Client, method: str, url: str, headers: dict[str, str], s: float) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < s:
        r = client.request(method, url, headers=headers)
        assert r.status_code in (200, 206), r.status_code
        done += 1
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        port = 20000 + secrets.randbelow(20000)
        proc = _bridge(data_dir, port)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            with httpx.Client(timeout=60) as client:
                for size in (64 << 10, 1 << 20, 50 << 20):
                    token = secrets.token_hex(16)
                    folder = data_dir / "blobs" / token
                    folder.mkdir(parents=True)
                    (folder / "clip.mp4").write_bytes(os.urandom(size))
                    url = f"{base}/files/{token}/clip.mp4"
                    for label, method, headers in (
                        ("GET whole", "GET", {}),
                        ("GET range", "GET", {"Range": f"bytes={size // 2}-"}),
                        ("HEAD", "HEAD", {}),
                    ):
                        rate = _rate(client, method, url, headers, args.seconds)
                        print(f"{size >> 10:>6} KiB  {label:<10} {rate:8.1f}/s")
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
