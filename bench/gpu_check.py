"""``make gpu-check``: every GPU figure of genserve in one command, in minutes.

Made for a short lease of a GPU machine without network (``make gpu-bundle`` first,
here): each row runs in a process of its own under its own time limit, inside one
budget for the whole run (``--budget``), so one slow family cannot eat the others, and
a row that cannot run says why in the table. The models are the published
architectures with random weights (``bench.published``): the speed and memory are the
real models', the pictures noise. The rows:

- ``sdxl``: SDXL at 1024x1024, 20 steps, bfloat16, batch 1 and 4; ``sdxl-fp8``: the same
  with ``quantize = "fp8"`` (torchao); ``sdxl-compiled``: with ``compile = true``
  (genserve's regional ``torch.compile``, max-autotune on CUDA), its compile time apart;
- ``flux``: FLUX.1-schnell at 1024x1024, 4 steps, then with diffusers' first-block step
  cache on its transformer;
- ``video``: LTX-Video at 720p 16:9, its default 5 s at 24 fps and 50 steps, through
  genserve's video call (denoising and decoding; no MP4 encoding: PyAV is not carried);
- ``batching``: an inference server in this process (the one ``genserve inference``
  runs) with ``max_batch_size`` 8 at concurrency 8 over gRPC, against plain diffusers
  one image a call on the same weights;
- ``turns``: SDXL and FLUX.1-schnell taking turns under one memory budget (one model):
  the seconds to bring each back (from CPU memory on a GPU), then its image.

Columns: ``per s``, outputs (images, videos) a second in steady state; ``s/call``, one
call in steady state (the median of ``--runs`` after a first call); ``peak GiB``,
``torch.cuda.max_memory_allocated`` over the steady calls (on a CPU: the process's peak
resident memory); ``first s``, the first call (kernel choice, compilation); ``compile
s``, the first call minus a steady one (compiled rows); ``setup s``, building the random
weights and loading them (apart from the speed).

Run: ``python -m bench.gpu_check [--device cuda] [--scale full|small] [--out DIR]
[--only sdxl flux ...]``; ``--scale small`` (a twentieth of each architecture, 64x64,
2 steps, 360p) is the rehearsal on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "models"
MARKER = "gpu-check-figure "
GIB = 2**30
PROMPT = "a lighthouse on a cliff at dusk, waves breaking below, cinematic light"


@dataclass(frozen=True)
class Scale:
    """Sizes of one run: ``full`` (published, on a GPU) or ``small`` (a dry run on a CPU)."""

    factor: float
    image_side: int
    sdxl_steps: int
    flux_steps: int
    video_resolution: str
    video_seconds: int
    video_steps: int
    batch: int
    concurrency: int
    budget: float
    limits: dict[str, float]


SCALES = {
    "full": Scale(
        1.0, 1024, 20, 4, "720p", 5, 50, 4, 8, 480.0,
        {"sdxl": 90, "sdxl-fp8": 80, "flux": 110, "video": 150, "batching": 150,
         "turns": 120, "sdxl-compiled": 180},
    ),
    "small": Scale(
        0.05, 64, 2, 2, "360p", 1, 2, 4, 8, 160.0,
        {"sdxl": 40, "sdxl-fp8": 40, "flux": 40, "video": 40, "batching": 50,
         "turns": 40, "sdxl-compiled": 80},
    ),
}  # fmt: skip


@dataclass
class Figure:
    """One line of the table."""

    row: str
    figure: str
    per_second: float | None = None
    seconds: float | None = None
    peak_gib: float | None = None
    first_s: float | None = None
    compile_s: float | None = None
    setup_s: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Row:
    """A row: the figures it promises, and the function that measures them in a child."""

    name: str
    figures: tuple[str, ...]
    run: Callable[[argparse.Namespace], None] | None
    why_not: str = ""


# --- in the row's process -------------------------------------------------------------------


def emit(figure: Figure) -> None:
    print(MARKER + json.dumps(asdict(figure)), flush=True)


def log(message: str) -> None:
    print(f"[gpu-check] {message}", file=sys.stderr, flush=True)


def cuda(args: argparse.Namespace) -> bool:
    import torch

    return bool(args.device.startswith("cuda") and torch.cuda.is_available())


def sync(args: argparse.Namespace) -> None:
    import torch

    if cuda(args):
        torch.cuda.synchronize()


def reset_peak(args: argparse.Namespace) -> None:
    import torch

    if cuda(args):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(args: argparse.Namespace) -> float:
    """The GPU allocator's peak since :func:`reset_peak`; on a CPU the process's peak RSS."""
    import torch

    if cuda(args):
        return float(torch.cuda.max_memory_allocated()) / GIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def timed(args: argparse.Namespace, work: Callable[[], object]) -> float:
    sync(args)
    started = time.perf_counter()
    work()
    sync(args)
    return time.perf_counter() - started


def spec_for(family: str, args: argparse.Namespace, **values: object) -> Any:
    """The family's example entry (``examples/models``), with the run's device and dtype and
    ``values`` over it, as the ``ModelSpec`` the server would read."""
    from bench.gpu_families import with_values
    from inference_server.model_config import table_from_mapping

    base: dict[str, object] = {
        "source": "random weights (bench.published)",
        "device": args.device,
        "dtype": args.dtype,
        "preview_decoder": None,  # a download
    }
    text = with_values((EXAMPLES / f"{family}.toml").read_text(), base | values)
    (name, entry), *_ = tomllib.loads(text)["models"].items()
    return table_from_mapping({name: entry}).models[0]


def build(family: str, spec: Any, args: argparse.Namespace) -> tuple[Any, float]:
    """The family with random weights on the device, genserve's options applied; seconds."""
    from bench import published
    from inference_server.speed import apply_speed_options

    started = time.perf_counter()
    log(f"{family}: drawing random weights at scale {args.factor:g}")
    pipe = published.instantiate(family, scale=args.factor, dtype=spec.dtype, device=args.place)
    pipe.set_progress_bar_config(disable=True)
    apply_speed_options(pipe, spec, args.work / "compile")
    return pipe, time.perf_counter() - started


def image_call(pipe: Any, spec: Any, images: int) -> Callable[[], object]:
    import torch

    from inference_server.pipelines.image import accepted_arguments

    arguments: dict[str, Any] = {
        "prompt": [PROMPT] * images,
        "width": spec.width,
        "height": spec.height,
        "num_inference_steps": spec.steps,
        "guidance_scale": spec.guidance,
        "output_type": "pil",
    }
    if spec.max_sequence_length:
        arguments["max_sequence_length"] = spec.max_sequence_length

    def call() -> object:
        with torch.inference_mode():
            generator = torch.Generator("cpu").manual_seed(0)
            return pipe(**accepted_arguments(pipe, arguments | {"generator": generator}))

    return call


def steady(
    args: argparse.Namespace, work: Callable[[], object], runs: int
) -> tuple[float, float, float]:
    """A first call, then ``runs`` timed ones: the first's seconds, the median, the peak."""
    first = timed(args, work)
    reset_peak(args)
    seconds = statistics.median(timed(args, work) for _ in range(runs))
    return first, seconds, peak_gib(args)


def image_figures(
    row: str, pipe: Any, spec: Any, args: argparse.Namespace, setup: float, note: str = ""
) -> list[Figure]:
    """Batch 1 and batch ``--batch``, each emitted as soon as it is measured (its first call
    as soon as it is made: a row stopped in its steady calls still shows that)."""
    out = []
    for images in (1, args.batch):
        log(f"{row}: batch {images}")
        what = f"batch {images}, {spec.width}x{spec.height}, {spec.steps} steps, {spec.dtype}"
        call = image_call(pipe, spec, images)
        first = timed(args, call)
        emit(Figure(row, what, first_s=first, setup_s=setup, note=f"{note}; first call only"))
        reset_peak(args)
        seconds = statistics.median(timed(args, call) for _ in range(args.runs))
        figure = Figure(
            row, what, images / seconds, seconds, peak_gib(args), first, None, setup, note
        )
        if spec.compile:
            figure.compile_s = max(0.0, first - seconds)
        emit(figure)
        out.append(figure)
    return out


def sdxl_spec(args: argparse.Namespace, **values: object) -> Any:
    side = args.image_side
    return spec_for("sdxl", args, steps=args.sdxl_steps, width=side, height=side, **values)


def row_sdxl(args: argparse.Namespace) -> None:
    spec = sdxl_spec(args)
    pipe, setup = build("sdxl", spec, args)
    image_figures("sdxl", pipe, spec, args, setup, "eager; channels_last, as examples/models")


def row_sdxl_fp8(args: argparse.Namespace) -> None:
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig  # noqa: F401

    from inference_server.speed import FP8_MIN_CAPABILITY, fp8_capable

    spec = sdxl_spec(args, quantize="fp8")
    note = "torchao fp8 weights and activations of the UNet"
    if not fp8_capable(args.place):
        note = (
            "fp8 needs a CUDA GPU of compute capability {}.{}+: ran unquantized here"
            " (torchao imported)".format(*FP8_MIN_CAPABILITY)
        )
    pipe, setup = build("sdxl", spec, args)
    image_figures("sdxl-fp8", pipe, spec, args, setup, note)


def row_sdxl_compiled(args: argparse.Namespace) -> None:
    from inference_server.speed import CUDA_COMPILE_MODE, cxx_compiler

    spec = sdxl_spec(args, compile=True)
    mode = CUDA_COMPILE_MODE if cuda(args) else "default"
    note = f"regional torch.compile, mode {mode}; first s includes compiling"
    if cxx_compiler() is None:
        note = "no C++ compiler: ran eagerly"
    pipe, setup = build("sdxl", spec, args)
    image_figures("sdxl-compiled", pipe, spec, args, setup, note)


def row_flux(args: argparse.Namespace) -> None:
    from diffusers import FirstBlockCacheConfig

    side = args.image_side
    spec = spec_for("flux-schnell", args, steps=args.flux_steps, width=side, height=side)
    pipe, setup = build("flux-schnell", spec, args)
    what = f"batch 1, {side}x{side}, {spec.steps} steps, {spec.dtype}"
    first, seconds, peak = steady(args, image_call(pipe, spec, 1), args.runs)
    emit(Figure("flux", f"{what}, no cache", 1 / seconds, seconds, peak, first, None, setup))
    threshold = args.cache_threshold
    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    first_c, cached, peak_c = steady(args, image_call(pipe, spec, 1), args.runs)
    emit(
        Figure(
            "flux", f"{what}, first-block cache {threshold:g}", 1 / cached, cached, peak_c,
            first_c, None, None,
            f"{seconds / cached:.2f}x no cache; random weights: the steps it skips depend on them",
        )
    )  # fmt: skip


def row_video(args: argparse.Namespace) -> None:
    from inference_server.pipelines.video import run_video
    from inference_server.video_geometry import frame_count, video_size

    spec = spec_for("ltx-video", args, steps=args.video_steps)
    width, height = video_size(args.video_resolution, "16:9", spec.size_factor)
    frames = frame_count(args.video_seconds, spec.frame_rate, spec.temporal_factor)
    pipe, setup = build("ltx-video", spec, args)

    def call(steps: int) -> Callable[[], object]:
        return lambda: run_video(
            pipe, prompt=PROMPT, negative_prompt=spec.negative_prompt, width=width,
            height=height, num_frames=frames, frame_rate=spec.frame_rate, steps=steps,
            guidance=spec.guidance, seed=0, on_step=lambda *_: None,
        )  # fmt: skip

    log(f"video: warm-up, 2 steps (LTX's least) at {width}x{height}, {frames} frames")
    first = timed(args, call(2))
    reset_peak(args)
    seconds = timed(args, call(spec.steps))
    what = (
        f"ltx-video {args.video_resolution} ({width}x{height}), {args.video_seconds} s at "
        f"{spec.frame_rate:g} fps ({frames} frames), {spec.steps} steps, {spec.dtype}"
    )
    emit(
        Figure("video", what, 1 / seconds, seconds, peak_gib(args), first, None, setup,
               "first s: a 2-step call of the same shape; no MP4 encoding")
    )  # fmt: skip


def row_batching(args: argparse.Namespace) -> None:
    """Plain diffusers one image a call, then the server at concurrency 8, batching on."""
    import grpc
    import torch

    from bench import published
    from bench.gpu_families import ServerThread
    from bench.stats import Tally, burst
    from genserve.inference.v1 import inference_pb2 as pb
    from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
    from inference_server.model_config import table_from_mapping
    from inference_server.settings import ServerSettings

    c = args.concurrency
    side = args.image_side
    folder = args.work / "sdxl"
    started = time.perf_counter()
    log("batching: drawing SDXL's random weights and saving them for the server")
    pipe = published.instantiate("sdxl", scale=args.factor, dtype=args.dtype, device=args.place)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(folder)
    entry: dict[str, object] = {
        "kind": "image", "source": str(folder), "device": args.device, "dtype": args.dtype,
        "steps": args.sdxl_steps, "guidance": 5.0, "width": side, "height": side,
        "max_batch_size": c,
    }  # fmt: skip
    table = table_from_mapping({"sdxl": entry})
    settings = ServerSettings.with_overrides(
        host="127.0.0.1", port=0, cache_dir=args.work, metrics_port=None, grace_seconds=5.0
    )
    server = ServerThread(settings, table)
    try:
        port = server.start()
        setup = time.perf_counter() - started
        spec = table.models[0]
        plain = Tally()
        call = image_call(pipe, spec, 1)
        log(f"batching: plain diffusers, {c} images one a call")
        timed(args, call)
        reset_peak(args)
        for _ in range(c):
            seconds = timed(args, call)
            plain.add(1, seconds, [seconds])
        plain_peak = peak_gib(args)
        emit(
            Figure("batching", f"plain diffusers, one image a call, {side}x{side}",
                   plain.per_second, plain.wall / plain.images, plain_peak, None, None, setup,
                   "the reference; the same weights, in this process")
        )  # fmt: skip
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.InferenceServiceStub(channel)

            def send(i: int) -> None:
                request = pb.GenerateImageRequest(
                    model="sdxl", prompt=f"{PROMPT}, take {i}", aspect_ratio="1:1",
                    num_images=1, format=pb.IMAGE_FORMAT_PNG, seed=i,
                )  # fmt: skip
                events = list(stub.GenerateImage(request, timeout=600))
                if not events or events[-1].WhichOneof("event") != "completion":
                    raise RuntimeError("the stream ended without a completion")

            log(f"batching: the server at concurrency {c}, max_batch_size {c}")
            burst(send, c, 1, Tally())  # a first batch of this size: kernel choice
            reset_peak(args)
            served = Tally()
            for _ in range(args.runs):
                burst(send, c, 1, served)
            emit(
                Figure("batching", f"gRPC c={c}, batching on (max_batch_size {c})",
                       served.per_second, served.wall / args.runs, peak_gib(args), None, None,
                       None, f"{served.per_second / plain.per_second:.2f}x plain diffusers;"
                       f" s/call: one burst of {c}; peak with both pipelines resident")
            )  # fmt: skip
    finally:
        server.stop()
        del pipe
        if cuda(args):
            torch.cuda.empty_cache()


def row_turns(args: argparse.Namespace) -> None:
    """SDXL and FLUX.1-schnell taking turns on one device under a budget that holds one
    (``max_resident_models = 1``), through the inference server's own ``DeviceBudget``:
    each switch sends the other to CPU memory (on a GPU; on a CPU it is let go) and a
    model asked for again comes back by a copy, not a load."""
    from inference_server.residency import DeviceBudget

    side = args.image_side
    specs = {
        "sdxl": sdxl_spec(args),
        "flux-schnell": spec_for("flux-schnell", args, steps=args.flux_steps, width=side,
                                 height=side),
    }  # fmt: skip
    budget = DeviceBudget(args.place, max_resident=1)
    moves: list[tuple[str, str, float]] = []
    budget.on_load = lambda name, source, seconds: moves.append((name, source, seconds))

    def ask(family: str) -> tuple[float, float]:
        """Brings ``family`` onto the device and makes one image: (switch s, call s)."""
        sync(args)
        started = time.perf_counter()
        pipe = budget.acquire(family, lambda: build(family, specs[family], args)[0], lambda: None)
        sync(args)
        switch = time.perf_counter() - started
        return switch, timed(args, image_call(pipe, specs[family], 1))

    ask("sdxl")
    ask("flux-schnell")  # sdxl leaves
    reset_peak(args)
    for family, note in (("sdxl", ""), ("flux-schnell", "; budget: one model")):
        back, call = ask(family)  # the other leaves, this one comes back
        source = moves[-1][1]
        how = "a copy from CPU memory" if source == "cpu" else "built again: a CPU lets it go"
        emit(
            Figure(
                "turns",
                f"back to {family} ({how})",
                1 / (back + call),
                back,
                peak_gib(args),
                None,
                None,
                None,
                f"switch s in s/call; then a {call:.2f} s image{note}",
            )
        )


ROWS: tuple[Row, ...] = (
    Row("sdxl", ("batch 1", "batch N"), row_sdxl),
    Row("sdxl-fp8", ("batch 1", "batch N"), row_sdxl_fp8),
    Row("flux", ("no cache", "first-block cache"), row_flux),
    Row("video", ("ltx-video",), row_video),
    Row("batching", ("plain diffusers", "gRPC, batching on"), row_batching),
    Row("turns", ("back to sdxl", "back to flux-schnell"), row_turns),
    Row("sdxl-compiled", ("batch 1", "batch N"), row_sdxl_compiled),
)
"""In the order they run: the compiled row last, as the likeliest to need all its time."""


def preflight() -> None:
    """Imports everything a row imports, so that a package missing from the bundle fails
    every row at once, and by name (``tests/bench/test_gpu_bundle.py`` runs it with the
    bundle and the image's packages alone)."""
    import diffusers  # noqa: F401
    import grpc  # noqa: F401
    import torch  # noqa: F401
    import torchao.quantization  # noqa: F401
    from diffusers import FirstBlockCacheConfig  # noqa: F401

    import bench.gpu_families
    import bench.published  # noqa: F401
    import inference_server.pipelines.image
    import inference_server.pipelines.video
    import inference_server.server
    import inference_server.servicer
    import inference_server.speed
    import inference_server.tiny.ltx2
    import inference_server.tiny.ltx_video
    import inference_server.tiny.tokenizers  # noqa: F401


def versions() -> dict[str, str]:
    """What ran the check: Python, the device, and the packages that matter."""
    import importlib.metadata

    import torch

    found = {"python": platform.python_version()}
    for name in ("torch", "diffusers", "transformers", "torchao", "grpcio", "protobuf",
                 "pydantic", "huggingface-hub", "numpy"):  # fmt: skip
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name()
        found["capability"] = "{}.{}".format(*torch.cuda.get_device_capability())
        found["cuda"] = str(torch.version.cuda)
    else:
        found["gpu"] = "none"
    return found


def run_child(args: argparse.Namespace) -> int:
    """``--row NAME``: one row in this process, its figures on stdout as they come."""
    from inference_server.quiet import quiet_libraries

    quiet_libraries()
    preflight()  # a package missing from the bundle fails the row at once, by name
    print(MARKER + json.dumps({"versions": versions()}), flush=True)
    row = next(r for r in ROWS if r.name == args.row)
    assert row.run is not None
    args.place = args.device if cuda(args) or not args.device.startswith("cuda") else "cpu"
    if not cuda(args):
        import torch

        # One thread: a team of threads on cores shared with anything else spins at every
        # barrier (bench/bench_serving.py); the CPU run is a rehearsal, not a figure.
        torch.set_num_threads(1)
    row.run(args)
    return 0


# --- in the parent ---------------------------------------------------------------------------


@dataclass
class Outcome:
    """A child's end: its figures, the versions it reported, and why it stopped short."""

    figures: list[Figure] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    problem: str = ""
    seconds: float = 0.0


def last_error(text: str) -> str:
    """The last line that names an exception, from a child's log."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[:300]
    return lines[-1][:300] if lines else ""


def child(row: str, argv: list[str], limit: float, log_file: Path) -> Outcome:
    """Runs ``--row row`` in a process (group) of its own, killed past ``limit`` seconds."""
    cmd = [sys.executable, "-m", "bench.gpu_check", "--row", row, *argv]
    outcome = Outcome()
    started = time.perf_counter()
    with log_file.open("a") as logf, tempfile.TemporaryFile("w+") as err:
        logf.write(f"\n===== {row} (limit {limit:.0f} s): {' '.join(cmd)}\n")
        logf.flush()
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, start_new_session=True
        )
        assert proc.stdout is not None
        stdout = proc.stdout

        def read() -> None:
            for line in stdout:
                if not line.startswith(MARKER):
                    logf.write(line)
                    continue
                data = json.loads(line[len(MARKER) :])
                if "versions" in data:
                    outcome.versions = data["versions"]
                    continue
                figure = Figure(**data)
                figures = outcome.figures
                if figures and (figures[-1].row, figures[-1].figure) == (row, figure.figure):
                    figures.pop()  # a first call's figure, now complete
                figures.append(figure)
                if figure.per_second is not None:
                    print(f"  {row}: {figure.figure}: {figure.per_second:.3g}/s", flush=True)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        reader.join(timeout=10)
        err.seek(0)
        errors = err.read()
        logf.write(errors)
    outcome.seconds = time.perf_counter() - started
    if code is None:
        outcome.problem = f"stopped at its limit of {limit:.0f} s"
    elif code != 0:
        outcome.problem = f"failed (exit {code}): {last_error(errors)}"
    return outcome


def row_lines(row: Row, outcome: Outcome) -> list[Figure]:
    """The row's figures, and a line saying why for each figure it promised but did not give."""
    lines = list(outcome.figures)
    why = outcome.problem or row.why_not or "gave no figure"
    if outcome.problem and lines:
        lines[-1].note += f" (then {why})"
    for promised in row.figures[len(lines) :]:
        lines.append(Figure(row.name, promised, note=why))
    return lines


def cell(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}" if value < 100 else f"{value:.0f}"


COLUMNS = ("row", "figure", "per s", "s/call", "peak GiB", "first s", "compile s", "setup s")


def table(lines: list[Figure], title: str) -> str:
    """The table, in Markdown: printed, and written to ``--out``."""
    rows = [
        (f.row, f.figure, cell(f.per_second, 3), cell(f.seconds), cell(f.peak_gib, 1),
         cell(f.first_s), cell(f.compile_s, 1), cell(f.setup_s, 1), f.note)
        for f in lines
    ]  # fmt: skip
    header = (*COLUMNS, "note")
    text = [f"## {title}", "", "| " + " | ".join(header) + " |"]
    text.append("| " + " | ".join("---" for _ in header) + " |")
    text += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(text) + "\n"


def forwarded(args: argparse.Namespace) -> list[str]:
    """The options a row's process gets: the parent's, resolved."""
    return [
        "--device", args.device, "--scale", args.scale, "--runs", str(args.runs),
        "--work", str(args.work), "--cache-threshold", str(args.cache_threshold),
    ]  # fmt: skip


def run_all(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log_file = out / "gpu-check.log"
    log_file.write_text("")
    deadline = time.perf_counter() + args.budget
    chosen = [r for r in ROWS if not args.only or r.name in args.only]
    if not args.device.startswith("cuda"):  # inductor compiles in the row's process, no pool
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="gpu-check-", dir=args.work_root) as work:
        args.work = Path(work)
        argv = forwarded(args)
        print(f"gpu-check: {args.device}, scale {args.scale}, budget {args.budget:.0f} s")
        lines: list[Figure] = []
        found: dict[str, str] = {}
        summary: dict[str, Any] = {"versions": found, "rows": {}}
        for row in chosen:
            left = deadline - time.perf_counter()
            limit = min(args.limits[row.name], left) if row.run else 0.0
            if row.run is None:
                outcome = Outcome()
            elif limit < 15:
                outcome = Outcome(problem=f"no time left in the {args.budget:.0f} s budget")
            else:
                print(f"{row.name}: up to {limit:.0f} s", flush=True)
                outcome = child(row.name, argv, limit, log_file)
                empty(args.work)
                found.update(outcome.versions)
            lines += row_lines(row, outcome)
            summary["rows"][row.name] = {"seconds": round(outcome.seconds, 1),
                                         "problem": outcome.problem}  # fmt: skip
    used = args.budget - (deadline - time.perf_counter())
    where = found.get("gpu", "?")
    if where == "none":
        where = f"CPU ({len(os.sched_getaffinity(0))} cores)"
    title = f"genserve gpu-check · {where} · {args.device} · scale {args.scale} · {used:.0f} s"
    ran_with = ", ".join(f"{k} {v}" for k, v in found.items() if k != "gpu")
    text = table(lines, title) + f"\n{ran_with}\n\n" + COLUMN_NOTES
    print("\n" + text, flush=True)
    (out / "gpu-check.md").write_text(text)
    summary["figures"] = [asdict(f) for f in lines]
    summary["seconds"] = round(used, 1)
    (out / "gpu-check.json").write_text(json.dumps(summary, indent=1))
    missing = [f for f in lines if f.per_second is None]
    return 1 if missing else 0


COLUMN_NOTES = """\
per s: outputs (images, videos) a second in steady state; s/call: one call in steady state;
peak GiB: the GPU allocator's peak over the steady calls (on a CPU: the process's peak
resident memory); first s: the first call (kernel choice, compiling); compile s: first call
minus a steady one; setup s: drawing the random weights and loading them. A failed row's
traceback is in gpu-check.log.
"""


def empty(folder: Path) -> None:
    """Empties the work folder between rows (a saved SDXL is 7 GB)."""
    import shutil

    for path in folder.iterdir():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu_check", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--device", default=None, help="cuda (when there is one) or cpu")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-results")))
    parser.add_argument("--only", nargs="+", choices=[r.name for r in ROWS])
    parser.add_argument("--budget", type=float, help="seconds for every row together")
    parser.add_argument("--runs", type=int, default=2, help="steady calls after the first")
    parser.add_argument("--cache-threshold", type=float, default=0.2, help="first-block cache")
    parser.add_argument("--work-root", type=Path, help="where built models go (a temp folder)")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.budget = args.budget or scale.budget
    args.limits = scale.limits
    args.factor = scale.factor
    args.image_side = scale.image_side
    args.sdxl_steps, args.flux_steps = scale.sdxl_steps, scale.flux_steps
    args.video_resolution, args.video_seconds = scale.video_resolution, scale.video_seconds
    args.video_steps, args.batch = scale.video_steps, scale.batch
    args.concurrency = scale.concurrency
    # Half precision on a CPU is slow and partly unsupported: float32 there.
    args.dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.row:
        return run_child(args)
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
