"""Every published family at its real size on a GPU: seconds, peak memory, outputs a second.

For each family it builds the published architecture with random weights
(``bench.published``), writes a models file that is the family's example
(``examples/models/<family>.toml``) pointing at that folder, starts a real
inference server on loopback with it, and makes one generation over gRPC, as a
client would. Printed per family::

    family  params  build s  load s  seconds  loaded GiB  peak GiB  per second  what

- ``load s``: the server's start, ``from_pretrained`` to SERVING (with the
  example's warm-up for image models); ``loaded GiB``: GPU memory allocated then;
- ``seconds``: one request, from the call to the completion, at the example's
  own steps and size (the last of ``--runs``; the first pays for kernel choice);
- ``peak GiB``: ``torch.cuda.max_memory_allocated`` over that request, reset
  once the model is loaded. The server runs in this process (the same
  ``InferenceServer`` that ``genserve inference`` runs, on its own event loop
  thread), so the figure is read from the allocator that served the request;
  the metrics endpoint has no peak (``GpuMemoryCollector`` exports the current
  allocation, which is back to the weights once the request is done);
- ``per second``: outputs (images, videos or meshes) a second for that request.

Weights, outputs and figures of a random model: speed and memory are the real
architecture's, the pictures are noise. Each family's folder is deleted after
its run unless ``--keep`` (LTX-2 alone is over 40 GB).

``--together`` serves every family's file from one server instead, under one
memory budget on the device (``--budget-gb``; ``--max-resident`` caps the count),
and asks each family in turn, for ``--rounds`` rounds: the families take turns
on the device (``inference_server.residency``). Printed per request: where the
model came back from (disk, CPU memory, or already on the device), the seconds
that took (the server's ``genserve_inference_model_load_seconds``), the
request's seconds, the models that left for it, and the loads and evictions the
server's metrics count so far; after each round, where each model is
(``ListModels``).

Run on a GPU::

    python -m bench.gpu_families [--families sdxl flux-schnell ...] [--device cuda]
    python -m bench.gpu_families --together --budget-gb 60

and as a dry run on a CPU (a twentieth of each architecture, small outputs)::

    python -m bench.gpu_families --scale 0.05 --device cpu --steps 2 --image-side 128 \\
        --resolution 360p --duration 1
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import logging
import math
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import torch
from PIL import Image

from bench import published
from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from inference_server.model_config import ModelSpec, ModelTable, load_model_table
from inference_server.quiet import quiet_libraries
from inference_server.server import InferenceServer
from inference_server.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "models"
GIB = 2**30
PROMPT = "a lighthouse on a cliff at dusk, waves breaking below, cinematic light"


def with_values(text: str, values: dict[str, object]) -> str:
    """``text``, a file of one ``[models.x]`` table, with each key set to its value: replaced
    where the file sets it (its comments kept), added at the end of the table otherwise;
    ``None`` removes the key (its default applies)."""
    for key, value in values.items():
        line = "" if value is None else f"{key} = {json.dumps(value)}"  # JSON scalars are TOML
        found = re.search(rf"^{re.escape(key)}\s*=.*$\n?", text, re.MULTILINE)
        if found:
            text = text[: found.start()] + (line and line + "\n") + text[found.end() :]
        elif line:
            text = text.rstrip("\n") + "\n" + line + "\n"
    return text


@dataclass
class Result:
    """One family's line of the table."""

    family: str
    params: int
    build_s: float
    load_s: float
    seconds: float
    resident_gib: float | None
    peak_gib: float | None
    outputs: int
    what: str

    @property
    def per_second(self) -> float:
        return self.outputs / self.seconds


class ServerThread:
    """An ``InferenceServer`` on its own event loop thread, so this thread can be its client."""

    def __init__(self, settings: ServerSettings, table: ModelTable) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="server", daemon=True)
        self.thread.start()

        async def create() -> InferenceServer:  # grpc.aio binds the server to the running loop
            return InferenceServer(settings, table)

        self.server = asyncio.run_coroutine_threadsafe(create(), self.loop).result()

    def start(self) -> int:
        """Starts serving (every model loaded and warmed up); the port."""
        return asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def disc_png(side: int = 256, radius: int = 90) -> bytes:
    """A red disc on transparent ground: the subject an image-to-3D request sends."""
    yy, xx = np.mgrid[0:side, 0:side]
    rgba = np.zeros((side, side, 4), np.uint8)
    centre = side // 2
    rgba[(xx - centre) ** 2 + (yy - centre) ** 2 < radius**2] = (200, 40, 40, 255)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


def video_resolution(spec: ModelSpec, args: argparse.Namespace) -> str:
    """520p when offered: the nearest to the sizes the model cards show (704x480 to 832x480)."""
    return args.resolution or ("520p" if "520p" in spec.resolutions else spec.resolutions[-1])


def describe(spec: ModelSpec, args: argparse.Namespace) -> tuple[int, str]:
    """How many outputs one request makes, and what they are."""
    steps = args.steps or spec.steps
    if spec.kind == "image":
        return args.images, f"{args.images} image {spec.width}x{spec.height}, {steps} steps"
    if spec.kind == "video":
        duration = args.duration or spec.default_duration
        return 1, (
            f"video {video_resolution(spec, args)} 16:9, {duration} s at {spec.frame_rate:g} fps, "
            f"{steps} steps"
        )
    return 1, f"mesh, {steps} steps"


def request(
    stub: pb_grpc.InferenceServiceStub, spec: ModelSpec, args: argparse.Namespace
) -> Iterable[Any]:
    """The family's request: its own steps and size unless the command line says otherwise."""
    if spec.kind == "image":
        return stub.GenerateImage(
            pb.GenerateImageRequest(
                model=spec.name,
                prompt=PROMPT,
                num_images=args.images,
                aspect_ratio="1:1",
                format=pb.IMAGE_FORMAT_PNG,
                steps=args.steps,
                seed=0,
            )
        )
    if spec.kind == "video":
        return stub.GenerateVideo(
            pb.GenerateVideoRequest(
                model=spec.name,
                prompt=PROMPT,
                resolution=video_resolution(spec, args),
                aspect_ratio="16:9",
                duration_seconds=args.duration or spec.default_duration,
                steps=args.steps,
                seed=0,
                # an image-to-video checkpoint animates a first frame, and needs one
                init_image=disc_png() if spec.first_frame_required else b"",
            )
        )
    return stub.GenerateMesh(
        pb.GenerateMeshRequest(model=spec.name, image=disc_png(), steps=args.steps, seed=0)
    )


def run_once(
    stub: pb_grpc.InferenceServiceStub, spec: ModelSpec, args: argparse.Namespace
) -> float:
    """One generation through gRPC, to its completion; its seconds."""
    started = time.perf_counter()
    completions = [e for e in request(stub, spec, args) if e.WhichOneof("event") == "completion"]
    seconds = time.perf_counter() - started
    if len(completions) != 1:
        raise RuntimeError(f"{spec.name}: the stream ended without a completion")
    return seconds


def stored_parameters(folder: Path) -> int:
    """Numbers in the folder's safetensors files, read from their headers (nothing loaded)."""
    total = 0
    for path in folder.rglob("*.safetensors"):
        with path.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
        for name, tensor in header.items():
            if name != "__metadata__":
                total += math.prod(tensor["shape"])
    return total


def build_once(family: str, folder: Path, args: argparse.Namespace) -> float:
    """Builds the family into ``folder`` unless a kept build is there; the seconds it took."""
    if (folder / "model_index.json").exists():
        return 0.0
    print(f"{family}: building at scale {args.scale:g} in {folder}", flush=True)
    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    published.build(family, folder, scale=args.scale, dtype=args.build_dtype, device=args.device)
    return time.perf_counter() - started


def models_file(family: str, folder: Path, args: argparse.Namespace) -> Path:
    """The family's example file, pointed at ``folder`` and the benchmark's device."""
    example = (EXAMPLES / f"{family}.toml").read_text()
    # No preview decoder: it is a download, and the benchmark asks for no previews.
    values: dict[str, object] = {
        "source": str(folder),
        "device": args.device,
        "preview_decoder": None,
    }
    if not args.device.startswith("cuda"):
        values["dtype"] = "float32"  # half precision on a CPU is slow and partly unsupported
    if args.image_side and 'kind = "image"' in example:
        values |= {"width": args.image_side, "height": args.image_side}
    path = args.cache / f"{family}.toml"
    path.write_text(with_values(example, values))
    return path


def bench_family(family: str, args: argparse.Namespace) -> Result:
    """Build, serve, one request (``--runs`` of them), figures; the build deleted unless kept."""
    folder = args.cache / f"{family}-x{args.scale:g}"
    try:
        build_s = build_once(family, folder, args)
        table = load_model_table(models_file(family, folder, args))
        (spec,) = table.models
        result = measure(spec, table, args)
        result.build_s = build_s
        result.params = stored_parameters(folder)
        return result
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def measure(spec: ModelSpec, table: ModelTable, args: argparse.Namespace) -> Result:
    """Serves ``table`` in this process and times ``spec``'s request over gRPC."""
    settings = ServerSettings.with_overrides(
        host="127.0.0.1", port=0, cache_dir=args.cache, metrics_port=None, grace_seconds=5.0
    )
    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    started = time.perf_counter()
    server = ServerThread(settings, table)
    try:
        port = server.start()
        load_s = time.perf_counter() - started
        resident = torch.cuda.memory_allocated() / GIB if cuda else None
        with grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 * 2**20)]
        ) as channel:
            stub = pb_grpc.InferenceServiceStub(channel)
            seconds = 0.0
            for _ in range(args.runs):
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                seconds = run_once(stub, spec, args)
            peak = torch.cuda.max_memory_allocated() / GIB if cuda else None
    finally:
        server.stop()
        del server
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    outputs, what = describe(spec, args)
    return Result(spec.name, 0, 0.0, load_s, seconds, resident, peak, outputs, what)


@dataclass
class Turn:
    """One request of ``--together``: a family's turn on the shared device."""

    round: int
    family: str
    source: str
    back_s: float | None
    seconds: float
    left: list[str]
    loads: int
    evictions: int


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
WATCHED = (
    "genserve_inference_model_loads_total",
    "genserve_inference_model_evictions_total",
    "genserve_inference_model_load_seconds_sum",
)
STATES = {
    pb.MODEL_STATE_ON_DEVICE: "on the device",
    pb.MODEL_STATE_IN_CPU_MEMORY: "in CPU memory",
    pb.MODEL_STATE_NOT_LOADED: "not loaded",
}


def samples(server: InferenceServer) -> Samples:
    """The server's load and eviction counts and load seconds, by their labels."""
    found: Samples = {}
    for family in server.metrics.registry.collect():
        for sample in family.samples:
            if sample.name in WATCHED:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def grown(before: Samples, after: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """What rose between two readings of the series ``name``, by labels."""
    return {
        labels: value - before.get((n, labels), 0.0)
        for (n, labels), value in after.items()
        if n == name and value > before.get((n, labels), 0.0)
    }


def together_table(args: argparse.Namespace, folders: dict[str, Path]) -> ModelTable:
    """Every family's example in one table, loaded on first use, under one device budget."""
    models: list[ModelSpec] = []
    for family, folder in folders.items():
        path = models_file(family, folder, args)
        path.write_text(with_values(path.read_text(), {"preload": False}))
        models += load_model_table(path).models
    room: dict[str, object] = {}
    if args.budget_gb:
        room["memory_budget_mb"] = args.budget_gb * 1024
    if args.max_resident:
        room["max_resident_models"] = args.max_resident
    return ModelTable.model_validate({"models": models, "devices": {args.device: room}})


def bench_together(args: argparse.Namespace) -> tuple[list[Turn], list[str]]:
    """Builds every family, serves them from one server, and asks each in turn per round."""
    folders = {family: args.cache / f"{family}-x{args.scale:g}" for family in args.families}
    try:
        for family, folder in folders.items():
            build_once(family, folder, args)
        table = together_table(args, folders)
        return serve_in_turns(table, args)
    finally:
        if not args.keep:
            for folder in folders.values():
                shutil.rmtree(folder, ignore_errors=True)


def serve_in_turns(table: ModelTable, args: argparse.Namespace) -> tuple[list[Turn], list[str]]:
    settings = ServerSettings.with_overrides(
        host="127.0.0.1", port=0, cache_dir=args.cache, metrics_port=None, grace_seconds=5.0
    )
    server = ServerThread(settings, table)
    turns: list[Turn] = []
    states: list[str] = []
    try:
        port = server.start()
        with grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 * 2**20)]
        ) as channel:
            stub = pb_grpc.InferenceServiceStub(channel)
            for round_ in range(1, args.rounds + 1):
                for spec in table.models:
                    turns.append(take_turn(server.server, stub, spec, args, round_))
                    print_turns(turns[-1:])
                listed = stub.ListModels(pb.ListModelsRequest())
                where = ", ".join(f"{m.name} {STATES.get(m.state, '?')}" for m in listed.models)
                states.append(f"after round {round_}: {where}")
                print(states[-1], flush=True)
    finally:
        server.stop()
        del server
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return turns, states


def take_turn(
    server: InferenceServer,
    stub: pb_grpc.InferenceServiceStub,
    spec: ModelSpec,
    args: argparse.Namespace,
    round_: int,
) -> Turn:
    """One request for ``spec``, with what the server's metrics counted for it."""
    before = samples(server)
    seconds = run_once(stub, spec, args)
    after = samples(server)
    loads = grown(before, after, WATCHED[0])
    sources = sorted({dict(labels)["source"] for labels in loads})
    back = grown(before, after, WATCHED[2])
    left = [
        f"{dict(labels)['model']} ({dict(labels)['to']})"
        for labels in grown(before, after, WATCHED[1])
    ]
    totals = [sum(v for (n, _), v in after.items() if n == name) for name in WATCHED[:2]]
    return Turn(
        round_,
        spec.name,
        "+".join(sources) or "on the device",
        sum(back.values()) if back else None,
        seconds,
        left,
        int(totals[0]),
        int(totals[1]),
    )


def budget_words(args: argparse.Namespace) -> str:
    """The device and its budget, as the header of ``--together``'s table says them."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    budget = f"{args.budget_gb:g} GB" if args.budget_gb else "the default budget"
    cap = f", at most {args.max_resident} at once" if args.max_resident else ""
    return f"{device} ({args.device}), {budget}{cap}"


def print_turns(turns: list[Turn], header: str = "") -> None:
    columns = ("round", "family", "back from", "back s", "request s", "left for it", "loads",
               "evictions")  # fmt: skip
    rows = [
        (
            str(t.round),
            t.family,
            t.source,
            "-" if t.back_s is None else f"{t.back_s:.2f}",
            f"{t.seconds:.2f}",
            ", ".join(t.left) or "-",
            str(t.loads),
            str(t.evictions),
        )
        for t in turns
    ]
    if header:
        print(f"\nfamilies taking turns from one server on {header}")
        widths = [max(len(x) for x in column) for column in zip(columns, *rows, strict=True)]
        for line in (columns, *rows):
            print("  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    else:
        for line in rows:
            print("turn  " + "  ".join(line), flush=True)


def print_table(results: list[Result], device: str) -> None:
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"\npublished families on {device_name} ({device})")
    header = (
        "family",
        "params",
        "build s",
        "load s",
        "seconds",
        "loaded GiB",
        "peak GiB",
        "per second",
        "what",
    )
    rows = [
        (
            r.family,
            published.human(r.params),
            f"{r.build_s:.1f}",
            f"{r.load_s:.2f}",
            f"{r.seconds:.2f}",
            "-" if r.resident_gib is None else f"{r.resident_gib:.1f}",
            "-" if r.peak_gib is None else f"{r.peak_gib:.1f}",
            f"{r.per_second:.3f}",
            r.what,
        )
        for r in results
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    for line in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_families", description=__doc__)
    parser.add_argument(
        "--families",
        nargs="+",
        choices=sorted(published.FAMILIES),
        default=list(published.FAMILIES),
    )
    parser.add_argument("--scale", type=float, default=1.0, help="architecture size; 1: published")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "published-models")
    parser.add_argument("--runs", type=int, default=2, help="requests per family; the last counts")
    parser.add_argument("--steps", type=int, default=0, help="0: the example's own steps")
    parser.add_argument("--images", type=int, default=1, help="images per image request")
    parser.add_argument("--image-side", type=int, default=0, help="0: the example's own size")
    parser.add_argument("--resolution", default="", help="video; empty: the largest offered")
    parser.add_argument("--duration", type=int, default=0, help="video seconds; 0: the default")
    parser.add_argument("--keep", action="store_true", help="keep each family's built folder")
    parser.add_argument(
        "--together", action="store_true", help="every family from one server, one budget"
    )
    parser.add_argument(
        "--budget-gb", type=float, default=0, help="--together: the device's budget; 0: default"
    )
    parser.add_argument(
        "--max-resident", type=int, default=0, help="--together: models at once; 0: no cap"
    )
    parser.add_argument("--rounds", type=int, default=2, help="--together: turns of every family")
    args = parser.parse_args(argv)
    args.build_dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    quiet_libraries()  # the libraries' notices through this logging, their progress bars off
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.together:
        turns, states = bench_together(args)
        print_turns(turns, budget_words(args))
        for line in states:
            print(line)
        return 0
    results = []
    failed = []
    for family in args.families:
        try:
            results.append(bench_family(family, args))
        except Exception as exc:  # one family's failure is reported; the others still run
            logging.exception("%s failed", family)
            failed.append(f"{family}: {type(exc).__name__}: {exc}")
            continue
        print_table(results[-1:], args.device)
    print_table(results, args.device)
    for line in failed:
        print(f"FAILED {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
