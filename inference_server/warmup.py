"""One short generation right after a model loads, so that no client waits for a first call.

A pipeline's first call pays for what later calls reuse: torch.compile's
tracing and code generation (or reading it back from the compile cache),
cuDNN's and SDPA's choice of kernels for the shapes, CUDA's lazy loading of
kernel modules and the allocator's first blocks. Made at load, on the device
thread, that cost lands before the server reports SERVING.

Image models only. A video or 3D warm-up would cost a real generation's
decoding (a video VAE over every frame, a mesh grid) for a benefit limited to
the one frame count or grid it ran; their first request pays instead.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from genserve import vocabulary as vocab
from inference_server.errors import ModelLoadError
from inference_server.geometry import image_size
from inference_server.model_config import ModelSpec
from inference_server.pipelines.image import ImageRun, run_image

log = logging.getLogger(__name__)

# Two steps: the first call of the compiled denoiser compiles, the second runs compiled
# code with the scheduler's second timestep, as every later step does.
WARMUP_STEPS = 2


def _unheard(step: int, total: int, stage: str) -> None:
    """A warm-up has nobody to tell of its progress."""


def wants_warmup(spec: ModelSpec) -> bool:
    """An image model set to warm up and loaded ahead of requests.

    A model loaded on first use is loaded inside that request: a warm-up there
    would only add its steps to the request's own.
    """
    return spec.warmup and spec.preload and spec.kind == "image"


def warmup_size(spec: ModelSpec) -> tuple[int, int]:
    """The size a request naming no aspect ratio gets: the default ratio over the model's area."""
    allowed = spec.allowed_aspect_ratios
    ratio: str = vocab.DEFAULT_IMAGE_ASPECT_RATIO
    if ratio not in allowed and allowed:
        ratio = allowed[0]
    return image_size(ratio, spec.width, spec.height, spec.size_factor)


def warm_up(pipe: Any, spec: ModelSpec) -> float:
    """Runs the pipeline once as a request would, at a default request's size; its seconds.

    Through ``run_image``, the requests' own path (inference mode, prompts as
    lists, PIL output, classifier-free guidance as configured, the arguments
    the pipeline takes), so compiled code is traced under the guards requests
    meet and the VAE's decoder is warmed too. Out of memory is raised as it is
    (the same as for a request); any other failure is a load failure.

    A compiled model that batches runs a second time with two images: the
    second batch size a compiled function meets makes it recompile with the
    batch dimension dynamic, which then serves every batch size; without it
    the first batch of two or more users would wait for that compile.
    """
    steps = min(WARMUP_STEPS, spec.steps)
    width, height = warmup_size(spec)
    run = ImageRun(
        prompt="warm-up",
        negative_prompt=spec.negative_prompt,
        width=width,
        height=height,
        num_images=1,
        steps=steps,
        guidance=spec.guidance,
        seed=0,
        max_sequence_length=spec.max_sequence_length,
    )
    sizes = [1, 2] if spec.compile and spec.max_batch_size > 1 else [1]
    started = time.perf_counter()
    try:
        for images in sizes:
            run.num_images = images
            run_image(pipe, run, _unheard)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"{spec.name}: warm-up failed ({exc}); set warmup = false to load without one"
        ) from exc
    seconds = time.perf_counter() - started
    log.info(
        "%s warmed up: %d steps at %dx%d, batches of %s in %.2f s",
        spec.name,
        steps,
        width,
        height,
        " and ".join(map(str, sizes)),
        seconds,
    )
    return seconds
