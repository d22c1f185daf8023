"""``genserve up``: the inference server and the bridge on the embedded defaults, one command.

Both servers run as subprocesses (``python -m inference_server.server``,
``python -m rest_bridge``): the bridge never imports the inference server.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genserve.cli import Subparsers


def _wait_healthy(base: str, procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    import httpx  # here, not at the top: `genserve --help` loads this module

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"a server exited during start-up (code {proc.returncode})")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"not healthy after {timeout:.0f}s; see the logs under data/logs")


def up(host: str, port: int, grpc_port: int, email: str) -> int:
    data = Path(os.environ.get("GENSERVE_DATA_DIR", "data"))
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = os.environ.get("GENSERVE_PUBLIC_BASE_URL", f"http://{host}:{port}")
    env = {
        **os.environ,
        "GENSERVE_INFERENCE_PORT": str(grpc_port),
        "GENSERVE_INFERENCE_TARGETS": f"127.0.0.1:{grpc_port}",
        "GENSERVE_PUBLIC_BASE_URL": base,
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "inference_server.server"],
            env=env,
            stdout=(logs / "inference.log").open("ab"),
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "rest_bridge", "--host", host, "--port", str(port)],
            env=env,
            stdout=(logs / "bridge.log").open("ab"),
            stderr=subprocess.STDOUT,
        ),
    ]

    def stop(*_: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(35)
            except subprocess.TimeoutExpired:
                proc.kill()

    def on_sigterm(*_: object) -> None:
        stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        print(f"starting genserve (logs in {logs}) ...", flush=True)
        _wait_healthy(base, procs, timeout=600)
        key = subprocess.run(  # through the genserve command, as an operator would
            [
                sys.executable,
                "-m",
                "genserve.cli",
                "keys",
                "create",
                "--email",
                email,
                "--name",
                "make-up",
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(f"\ngenserve is up.\n  Base URL: {base}\n  API key:  {key}\n", flush=True)
        print(
            f'Try it:\n  curl -X POST "{base}/api/v1/images" \\\n'
            f'    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\\n'
            '    -d \'{"prompt": "A majestic eagle soaring over mountains at sunset", '
            '"aspect_ratio": "16:9", "output_format": "webp"}\'\n\nCtrl-C stops both servers.',
            flush=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


def cmd_up(args: argparse.Namespace) -> int:
    return up(args.host, args.port, args.grpc_port, args.email)


def register(subparsers: Subparsers) -> None:
    command = subparsers.add_parser(
        "up", help="start the inference server and the bridge, print a key"
    )
    command.add_argument("--host", default="127.0.0.1")
    command.add_argument("--port", type=int, default=8000)
    command.add_argument("--grpc-port", type=int, default=50051)
    command.add_argument("--email", default="operator@localhost")
    command.set_defaults(func=cmd_up)
