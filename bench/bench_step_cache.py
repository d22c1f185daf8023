"""Step caches on a small FLUX-class build: seconds, speed-up and pixel difference at 28 steps.

Builds FLUX.1-schnell's architecture with random weights at ``--scale`` of its
published size (``bench.published``; 0.1: 2 double- and 4 single-stream blocks
of 256 channels), then generates the same image (one prompt, one seed) without a
cache and with each of diffusers' step caches, through the server's own
pipeline code (``run_images`` with the model entry's ``cache``). A row per run:
seconds (the best of ``--repeat``), the steps whose last transformer block really
ran (a forward hook inside it), and the mean absolute pixel difference against
the run without a cache (0-255). Random weights make noise-like pictures, so the
difference is an upper bound of what a trained model shows. The goal row holds the
fastest cache to the issue's 1.3x. Run:

    python -m bench.bench_step_cache [--device cpu] [--scale 0.1] [--side 256] [--steps 28]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from bench import published
from bench.rows import Row, goal_row, report
from inference_server.pipelines.image import ImageRequest, ImageRun, run_images
from inference_server.pipelines.step_cache import StepCache

CACHES: dict[str, StepCache] = {
    "first_block": StepCache("first_block", threshold=0.5),
    "taylorseer": StepCache("taylorseer", interval=4),
    "magcache": StepCache("magcache", threshold=0.1),
}
"""The settings measured; a random-weight model's blocks change more from step to step
than a trained one's, so the thresholds are above diffusers' defaults for trained FLUX."""


class _Member:
    def left(self) -> bool:
        return False

    def step(self, step: int, total: int, stage: str) -> None:
        pass

    def leave(self, step: int) -> None:
        raise AssertionError("never leaves")


def _generate(pipe: Any, run: ImageRun) -> np.ndarray:
    (images,) = run_images(pipe, [ImageRequest(run)], [_Member()])
    assert images is not None
    return np.asarray(images[0], dtype=np.float32)


def measure(pipe: Any, side: int, steps: int, repeat: int, device: str) -> list[Row]:
    section = f"step cache · {device} · FLUX-class x{ARGS.scale:g}, {side}px, {steps} steps"
    calls = [0]
    layer = pipe.transformer.single_transformer_blocks[-1].attn.to_q
    layer.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    # FLUX.1-schnell's own T5 length (256 tokens), as its example model file sets.
    base = ImageRun("a lighthouse on a cliff at dusk", "", side, side, 1, steps, 0.0, 7, 256)

    def once(cache: StepCache | None) -> tuple[float, np.ndarray, int]:
        run = ImageRun(**{**base.__dict__, "cache": cache})
        calls[0] = 0
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        image = _generate(pipe, run)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, image, calls[0]

    _generate(pipe, ImageRun(**{**base.__dict__, "steps": 2}))  # warm: kernels, allocator
    settings: dict[str, StepCache | None] = {"no cache": None, **CACHES}
    best = dict.fromkeys(settings, float("inf"))
    images: dict[str, np.ndarray] = {}
    ran: dict[str, int] = {}
    for _ in range(repeat):  # interleaved, so every setting sees the same load
        for name, cache in settings.items():
            seconds, images[name], ran[name] = once(cache)
            best[name] = min(best[name], seconds)
    full_s = best["no cache"]
    rows = [Row(section, "no cache", full_s, "s", note=f"{ran['no cache']} of {steps} steps run")]
    speedups = []
    for name, cache in CACHES.items():
        seconds = best[name]
        difference = float(np.abs(images[name] - images["no cache"]).mean())
        speedups.append(full_s / seconds)
        option = f"threshold {cache.threshold}" if cache.threshold else f"interval {cache.interval}"
        rows += [
            Row(section, name, seconds, "s", note=f"{option}; {ran[name]} of {steps} steps run"),
            Row(section, f"{name} speed-up", full_s / seconds, "x"),
            Row(
                section, f"{name} mean pixel difference", difference, "", note="0-255, vs no cache"
            ),
        ]
    rows.append(
        goal_row(
            section,
            "fastest step cache vs none",
            max(speedups),
            "x",
            at_least=1.3,
            note="the issue's goal, in one run",
        )
    )
    return rows


ARGS = argparse.Namespace()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--scale", type=float, default=0.1, help="of FLUX.1-schnell's size")
    parser.add_argument("--side", type=int, default=128, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--repeat", type=int, default=2, help="runs per row; the best is kept")
    parser.add_argument("--rows", action="store_true", help="rows as JSON lines (bench.run_all)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 64 px, 6 steps, once")
    args = parser.parse_args(namespace=ARGS)
    if args.quick:
        args.side, args.steps, args.repeat = 64, 6, 1
    dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    pipe = published.instantiate("flux-schnell", scale=args.scale, dtype=dtype, device=args.device)
    pipe.set_progress_bar_config(disable=True)
    rows = measure(pipe, args.side, args.steps, args.repeat, args.device)
    report(rows, args.rows, "step caches")


if __name__ == "__main__":
    main()
