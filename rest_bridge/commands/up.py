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
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genserve._internal.cmdline import Subparsers


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(nothing logged)"


def _wait_ready(
    local: str, procs: dict[str, subprocess.Popen[bytes]], logs: Path, timeout: float
) -> None:
    """Until the bridge's ``/readyz`` is 200: its database and an inference server answer."""
    import httpx  # here, not at the top: `genserve --help` loads this module

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                log = logs / f"{name}.log"
                raise SystemExit(
                    f"genserve up: the {name} server exited during start-up "
                    f"(status {proc.returncode}): {_last_line(log)} (log: {log})"
                )
        try:
            if httpx.get(f"{local}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"genserve up: not ready after {timeout:.0f}s; see the logs in {logs}")


def _local_url(host: str, port: int) -> str:
    """Where this machine reaches the bridge (a wildcard address is reached on loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def up(host: str, port: int, grpc_port: int, email: str) -> int:
    from genserve._internal.cmdline import listen_problem

    for address, what in (((host, port), "--port"), (("127.0.0.1", grpc_port), "--grpc-port")):
        problem = listen_problem(*address)
        if problem is not None:
            raise SystemExit(f"genserve up: {problem} ({what})")
    data = Path(os.environ.get("GENSERVE_DATA_DIR", "data"))
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    local = _local_url(host, port)
    base = os.environ.get("GENSERVE_PUBLIC_BASE_URL", local)
    env = {
        **os.environ,
        "GENSERVE_INFERENCE_PORT": str(grpc_port),
        "GENSERVE_INFERENCE_TARGETS": f"127.0.0.1:{grpc_port}",
        "GENSERVE_PUBLIC_BASE_URL": base,
    }
    servers = {
        "inference": subprocess.Popen(
            [sys.executable, "-m", "inference_server.server"],
            env=env,
            stdout=(logs / "inference.log").open("ab"),
            stderr=subprocess.STDOUT,
        ),
        "bridge": subprocess.Popen(
            [sys.executable, "-m", "rest_bridge", "--host", host, "--port", str(port)],
            env=env,
            stdout=(logs / "bridge.log").open("ab"),
            stderr=subprocess.STDOUT,
        ),
    }
    procs = list(servers.values())

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
        _wait_ready(local, servers, logs, timeout=600)
        made = subprocess.run(  # through the genserve command, as an operator would
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
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            raise SystemExit(f"genserve up: no key was created: {made.stderr.strip()}")
        key = made.stdout.strip()
        link = subprocess.run(  # the key's account has no password: a one-time link signs in
            [sys.executable, "-m", "genserve.cli", "accounts", "login-link", email],
            env=env,
            capture_output=True,
            text=True,
        )
        if link.returncode != 0:
            raise SystemExit(f"genserve up: no log-in link was made: {link.stderr.strip()}")
        print(
            f"\ngenserve is up.\n  Base URL: {base}\n  API key:  {key}\n"
            f"  Web log-in for {email} (one use, 15 minutes): {link.stdout.strip()}\n"
            f"  Models:   GET {base}/api/v1/models    API docs: {base}/docs\n",
            flush=True,
        )
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
    from genserve._internal.cmdline import port_number
    from rest_bridge.commands.database import email_address

    port = partial(port_number, allow_zero=False)
    command = subparsers.add_parser(
        "up", help="start the inference server and the bridge, print a key"
    )
    command.add_argument("--host", default="127.0.0.1", help="the bridge's address")
    command.add_argument("--port", type=port, default=8000, help="the bridge's HTTP port")
    command.add_argument(
        "--grpc-port", type=port, default=50051, help="the inference server's port (loopback)"
    )
    command.add_argument(
        "--email",
        type=email_address,
        default="operator@localhost",
        help="the account the printed key belongs to (created if new)",
    )
    command.set_defaults(func=cmd_up)
