"""Starts the gRPC inference server: health, TLS and token, reflection, preloading, drain."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import signal
from functools import partial
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import ValidationError

from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from inference_server.metrics import Metrics
from inference_server.model_config import ModelSpec, load_model_table
from inference_server.progress import StepCallback
from inference_server.registry import ModelRegistry
from inference_server.security import TokenInterceptor, link_mode, server_credentials
from inference_server.servicer import InferenceServicer
from inference_server.settings import ServerSettings

log = logging.getLogger("inference_server")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name


def _load(registry: ModelRegistry, spec: ModelSpec, _on_step: StepCallback) -> None:
    registry.pipeline(spec)


def _ignore_progress(stage: str, step: int, total: int, position: int) -> None:
    """Preloading has no client to tell."""


class InferenceServer:
    """Owns the grpc.aio server and the registry; ``serve`` runs until stopped."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(
            load_model_table(settings.models_file), settings.cache_dir, settings.queue_size
        )
        self.encode_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.encode_workers, thread_name_prefix="encode"
        )
        options = [
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
        ]
        interceptors = (
            [TokenInterceptor(settings.token.get_secret_value())] if settings.token else []
        )
        self.server = grpc.aio.server(options=options, interceptors=interceptors)
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.port = 0
        self.metrics = Metrics()
        self._stopped = asyncio.Event()

    async def start(self) -> int:
        pb_grpc.add_InferenceServiceServicer_to_server(
            InferenceServicer(self.registry, self.encode_pool, self.metrics), self.server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if self.settings.reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
            )
        address = f"{self.settings.host}:{self.settings.port}"
        credentials = server_credentials(self.settings)
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        await self._set_serving(False)
        await self.server.start()
        if self.settings.metrics_port is not None:
            self.metrics.serve(self.settings.host, self.settings.metrics_port)
        self.registry.start()
        log.info(
            "inference server listening on %s:%d (%s, %s, reflection %s)",
            self.settings.host,
            self.port,
            link_mode(self.settings),
            "service token required" if self.settings.token else "no service token",
            "on" if self.settings.reflection else "off",
        )
        await self._preload()
        await self._set_serving(True)
        return self.port

    async def _preload(self) -> None:
        """Loads every model marked ``preload`` before reporting SERVING."""
        for spec in self.registry.table.models:
            if spec.preload:
                queue = self.registry.queue_for(spec)
                queued = queue.submit(partial(_load, self.registry, spec), _ignore_progress)
                await queued.future
                log.info("model %s ready", spec.name)

    async def _set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def stop(self) -> None:
        """Drain: NOT_SERVING first, let running RPCs finish within the grace period."""
        await self._set_serving(False)
        await self.server.stop(self.settings.grace_seconds)
        await self.registry.stop()
        self.encode_pool.shutdown(wait=False, cancel_futures=True)
        self._stopped.set()

    async def wait(self) -> None:
        await self.server.wait_for_termination()


async def serve(settings: ServerSettings) -> None:
    server = InferenceServer(settings)
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stopping.append(loop.create_task(server.stop())))
    await server.start()
    print(f"inference server ready on {settings.host}:{server.port}", flush=True)
    await server.wait()
    for task in stopping:
        await task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="genserve inference server")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--models-file", type=Path)
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--metrics-port", type=int)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = ServerSettings(**overrides)
    except ValidationError as exc:
        raise SystemExit(f"genserve inference: invalid settings\n{exc}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
