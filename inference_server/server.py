"""Starts the gRPC inference server: health, TLS and token, reflection, preloading, drain.

Arguments, settings, the model file and the ports are checked before torch and
the pipelines are imported (a mistake is reported in a second, in one line), and
logging is set up before them too, so what the libraries say at import is logged
like everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import signal
import tomllib
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from pydantic import ValidationError

from genserve._internal import logs
from genserve._internal.cmdline import Parser, listen_problem, one_line, port_number, print_json
from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from inference_server.credentials import TokenInterceptor, link_mode, server_credentials
from inference_server.fairness import Policy
from inference_server.metrics import Metrics
from inference_server.model_config import ModelSpec, ModelTable, load_model_table
from inference_server.progress import StepCallback
from inference_server.quiet import quiet_libraries
from inference_server.settings import ServerSettings
from inference_server.threads import set_wait_policy

if TYPE_CHECKING:
    from inference_server.registry import ModelRegistry

log = logging.getLogger("inference_server")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceService"].full_name


def _load(registry: ModelRegistry, spec: ModelSpec, _on_step: StepCallback) -> None:
    registry.pipeline(spec)


def _ignore_progress(stage: str, step: int, total: int, position: int) -> None:
    """Preloading has no client to tell."""


class InferenceServer:
    """Owns the grpc.aio server and the registry; ``serve`` runs until stopped."""

    def __init__(self, settings: ServerSettings, table: ModelTable | None = None) -> None:
        from inference_server import threads
        from inference_server.registry import ModelRegistry, replica_devices  # torch

        self.settings = settings
        table = table or load_model_table(settings.models_file)
        # Before the device queues start their threads, which take the count set here.
        self.threads = threads.apply(
            settings.cpu_threads, [d for spec in table.models for d in replica_devices(spec)]
        )
        self.registry = ModelRegistry(
            table,
            settings.cache_dir,
            settings.queue_size,
            compile_cache_dir=settings.compile_cache_dir,
        )
        self.encode_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.encode_workers, thread_name_prefix="encode"
        )
        options = [
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            # A second server on a taken port must fail, not share the port with the first.
            ("grpc.so_reuseport", 0),
        ]
        interceptors = (
            [TokenInterceptor(settings.token.get_secret_value())] if settings.token else []
        )
        self.server = grpc.aio.server(options=options, interceptors=interceptors)
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.port = 0
        self.metrics = Metrics()
        for queue in self.registry.queues.values():
            queue.on_depth = self.metrics.queue_depth.labels(queue.device).set
            queue.on_depth(0)
            queue.on_batch = self.metrics.batch_rows.labels(queue.device).observe
            queue.on_fill = partial(self.metrics.filled, queue.device)
        for budget in self.registry.budgets.values():
            budget.on_load = self.metrics.loaded
            budget.on_evict = self.metrics.evicted
        self._stopped = asyncio.Event()

    async def start(self) -> int:
        from inference_server.servicer import InferenceServicer  # the pipelines and diffusers

        pb_grpc.add_InferenceServiceServicer_to_server(
            InferenceServicer(
                self.registry,
                self.encode_pool,
                self.metrics,
                Policy(self.settings.plan_priorities, self.settings.default_plan),
            ),
            self.server,
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
                for queue in self.registry.replica_queues(spec):
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
        log.info(
            "draining: NOT_SERVING, running work has %.0f s to finish",
            self.settings.grace_seconds,
        )
        await self._set_serving(False)
        await self.server.stop(self.settings.grace_seconds)
        await self.registry.stop()
        self.encode_pool.shutdown(wait=False, cancel_futures=True)
        self._stopped.set()
        log.info("inference server stopped")

    async def wait(self) -> None:
        await self.server.wait_for_termination()


def started(settings: ServerSettings, server: InferenceServer) -> dict[str, object]:
    """What ``genserve inference --json`` prints once serving: where, and which models."""
    return {
        "host": settings.host,
        "port": server.port,
        "link": link_mode(settings),
        "service_token": bool(settings.token),
        "metrics_port": settings.metrics_port,
        "models_file": str(settings.models_file) if settings.models_file else None,
        "cache_dir": str(settings.cache_dir),
        "models": [{"name": spec.name, "kind": spec.kind} for spec in server.registry.table.models],
    }


async def serve(
    settings: ServerSettings, table: ModelTable | None = None, *, as_json: bool = False
) -> None:
    server = InferenceServer(settings, table)
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def drain() -> None:
        if not stopping:  # a second signal changes nothing: the drain is under way
            stopping.append(loop.create_task(server.stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, drain)
    await server.start()
    log.info("inference server ready on %s:%d", settings.host, server.port)
    if as_json:
        print_json(started(settings, server), line=True)
    await server.wait()
    for task in stopping:
        await task


def load_settings(args: argparse.Namespace) -> tuple[ServerSettings, ModelTable]:
    """The settings (flags over the environment) and the model table, or a one-line exit."""
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = ServerSettings.with_overrides(**overrides)
    except ValidationError as exc:
        raise SystemExit(f"genserve inference: invalid settings: {one_line(exc)}") from None
    path = settings.models_file
    try:
        table = load_model_table(path)
    except OSError as exc:
        raise SystemExit(
            f"genserve inference: cannot read the models file {path}: {exc.strerror or exc}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(f"genserve inference: the models file {path} is not TOML: {exc}") from None
    except ValidationError as exc:
        raise SystemExit(f"genserve inference: the models file {path}: {one_line(exc)}") from None
    except ValueError as exc:
        raise SystemExit(f"genserve inference: {exc}") from None
    if settings.cache_dir.exists() and not settings.cache_dir.is_dir():
        raise SystemExit(f"genserve inference: the cache folder {settings.cache_dir} is a file")
    return settings, table


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="genserve inference", description="genserve inference server")
    parser.add_argument("--host", help="address to listen on (GENSERVE_INFERENCE_HOST)")
    parser.add_argument(
        "--port", type=port_number, help="gRPC port, 0 for any free one (GENSERVE_INFERENCE_PORT)"
    )
    parser.add_argument(
        "--models-file",
        type=Path,
        help="TOML [models.<name>] tables (GENSERVE_MODELS_FILE; default: the embedded models)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, help="built-in models' folder (GENSERVE_INFERENCE_CACHE_DIR)"
    )
    parser.add_argument(
        "--metrics-port",
        type=partial(port_number, allow_zero=False),
        help="serve Prometheus metrics on this port (GENSERVE_INFERENCE_METRICS_PORT)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="once serving, print where and which models as one JSON line on standard output",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    as_json = args.json
    del args.json  # not a setting
    settings, table = load_settings(args)
    logs.configure("inference", fmt=settings.log_format, level=settings.log_level)
    set_wait_policy()  # before torch loads OpenMP, which reads it once (quiet_libraries: torch)
    quiet_libraries()
    ports = [("gRPC", settings.port), ("metrics", settings.metrics_port)]
    for name, port in ports:
        problem = None if port is None else listen_problem(settings.host, port)
        if problem is not None:
            raise SystemExit(f"genserve inference: {problem} (the {name} port)")
    asyncio.run(serve(settings, table, as_json=as_json))


if __name__ == "__main__":
    main()
