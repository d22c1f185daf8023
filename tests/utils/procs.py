"""Real servers for tests: subprocesses on free ports, waited for, stopped cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tests.utils.lanes import needs

if TYPE_CHECKING:
    import grpc

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        needs("server", f"a server process ({' '.join(args[1:3])})")
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            args, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )

    def wait_until(self, ready: Callable[[], bool], timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"process exited: {self.log()}")
            if ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"not ready after {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


def start_inference(
    cache_dir: Path,
    log_dir: Path,
    models_file: Path | None = None,
    extra_env: dict[str, str] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    launcher: Sequence[str] = (),
) -> tuple[Proc, int, int]:
    """Starts the inference server; returns once it reports SERVING.

    ``credentials``: for a server that serves TLS, how the readiness check connects
    (health checks need no service token). ``launcher``: interpreter arguments before
    the module (a benchmark's ``-m cProfile -o FILE``).
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port, metrics_port = free_port(), free_port()
    env = {
        "GENSERVE_INFERENCE_PORT": str(port),
        "GENSERVE_INFERENCE_METRICS_PORT": str(metrics_port),
        "GENSERVE_INFERENCE_CACHE_DIR": str(cache_dir),
        "GENSERVE_INFERENCE_GRACE_SECONDS": "20",
        **(extra_env or {}),
    }
    if models_file is not None:
        env["GENSERVE_MODELS_FILE"] = str(models_file)
    proc = Proc(
        [sys.executable, *launcher, "-m", "inference_server.server"],
        env,
        log_dir / f"inference-{port}.log",
    )

    def serving() -> bool:
        address = f"127.0.0.1:{port}"
        channel = (
            grpc.insecure_channel(address)
            if credentials is None
            else grpc.secure_channel(address, credentials)
        )
        with channel as ch:
            try:
                reply = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1
                )
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    proc.wait_until(serving, timeout=300)
    return proc, port, metrics_port


def start_bridge(
    env: dict[str, str],
    log_dir: Path,
    wait_healthy: bool = True,
    host: str = "127.0.0.1",
    launcher: Sequence[str] = (),
) -> tuple[Proc, str]:
    """Starts a bridge listening on ``host``; returns once ``/readyz`` answers 200 (an inference
    server is serving), or, with ``wait_healthy=False``, once ``/healthz`` does (the process
    serves). ``launcher``: interpreter arguments before the module, as for the server."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    full_env = {"GENSERVE_PUBLIC_BASE_URL": base, **env}
    proc = Proc(
        [sys.executable, *launcher, "-m", "rest_bridge", "--host", host, "--port", str(port)],
        full_env,
        log_dir / f"bridge-{port}.log",
    )

    def up() -> bool:
        try:
            r = httpx.get(f"{base}/readyz" if wait_healthy else f"{base}/healthz", timeout=3)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    proc.wait_until(up, timeout=120)
    return proc, base
