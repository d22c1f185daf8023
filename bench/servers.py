"""Real servers for benchmarks: inference servers from a table of models, bridges with keys.

Built on the test helpers (``tests/utils/procs.py``) and ``bench.load``'s keys, so
a benchmark starts the same processes the tests and ``make load`` do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import httpx

from bench.load import SECRET, new_keys
from tests.utils.procs import Proc, start_bridge, start_inference

S = TypeVar("S")
T = TypeVar("T")
ModelTable = dict[str, dict[str, str | int | float | bool]]

MAX_MESSAGE = 64 * 1024 * 1024


def toml_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    return repr(value)


def write_models(path: Path, models: ModelTable) -> Path:
    """A models file with one ``[models.<name>]`` table per entry."""
    tables = []
    for name, fields in models.items():
        lines = [f"[models.{name}]", *(f"{k} = {toml_value(v)}" for k, v in fields.items())]
        tables.append("\n".join(lines))
    path.write_text("\n\n".join(tables) + "\n")
    return path


@dataclass
class Inference:
    """A running inference server, the OpenMP threads it was given, its metrics port."""

    proc: Proc
    port: int
    threads: int | None
    metrics_port: int | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(
            self.target,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
            ],
        )


@dataclass(frozen=True)
class InferenceSpec:
    """What to start: a name for its files, its models, its threads (None: the server's own
    choice) and any other environment variables."""

    name: str
    models: ModelTable
    threads: int | None = None
    env: dict[str, str] = field(default_factory=dict)


def start_inferences(
    cache: Path, folder: Path, specs: list[InferenceSpec], launcher: Sequence[str] = ()
) -> list[Inference]:
    """Starts every server at once (their start-ups overlap) and waits until all serve.

    ``threads`` sets ``OMP_NUM_THREADS``: servers sharing a CPU's cores each get
    their share rather than one thread per core apiece, which makes the OpenMP
    teams spin against each other.
    """

    def one(spec: InferenceSpec) -> Inference:
        models = write_models(folder / f"{spec.name}.toml", spec.models)
        env = {"OMP_NUM_THREADS": str(spec.threads)} if spec.threads else {}
        env.update(spec.env)
        proc, port, metrics_port = start_inference(
            cache, folder, models_file=models, extra_env=env, launcher=launcher
        )
        return Inference(proc, port, spec.threads, metrics_port)

    return start_all(specs, one, lambda inference: inference.proc.stop())


@dataclass
class Bridge:
    """A running bridge on its own SQLite database, and API keys of one account on it."""

    proc: Proc
    base: str
    keys: list[str]

    def client(self, connections: int) -> httpx.Client:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.Client(base_url=self.base, limits=limits)


def start_bridges(
    folder: Path,
    fleets: list[list[Inference]],
    keys: int = 1,
    launcher: Sequence[str] = (),
    extra_env: dict[str, str] | None = None,
) -> list[Bridge]:
    """One bridge per list of inference servers, started at once; each has ``keys`` keys.

    The databases are made one after the other: migrations in two threads of one
    process break SQLite's module.
    """
    prepared = []
    for n, targets in enumerate(fleets):
        home = folder / f"bridge-{n}"
        home.mkdir()
        db_url = f"sqlite:///{home / 'bench.db'}"
        _, plaintexts = new_keys(db_url, keys)
        env = {
            "GENSERVE_DATA_DIR": str(home / "data"),
            "DATABASE_URL": db_url,
            "GENSERVE_INFERENCE_TARGETS": ",".join(t.target for t in targets),
            "GENSERVE_KEY_SECRET": SECRET,
            **(extra_env or {}),
        }
        prepared.append((env, home, plaintexts))

    def one(spec: tuple[dict[str, str], Path, list[str]]) -> Bridge:
        env, home, plaintexts = spec
        proc, base = start_bridge(env, home, launcher=launcher)
        return Bridge(proc, base, plaintexts)

    return start_all(prepared, one, lambda bridge: bridge.proc.stop())


def start_all(specs: Sequence[S], start: Callable[[S], T], stop: Callable[[T], object]) -> list[T]:
    """``start`` for every spec at once; if one fails, the others are stopped and it raises."""
    with ThreadPoolExecutor(max(1, len(specs))) as pool:
        futures = [pool.submit(start, spec) for spec in specs]
        started: list[T] = []
        failure: BaseException | None = None
        for future in futures:
            try:
                started.append(future.result())
            except BaseException as exc:  # the others are still waited for, then stopped
                failure = failure or exc
    if failure is not None:
        for item in started:
            stop(item)
        raise failure
    return started
