"""Runs a text-to-image diffusers pipeline with progress and cancellation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from inference_server.previews import PreviewSink, due, family_of, image_preview
from inference_server.progress import StepCallback


@dataclass
class ImageRun:
    """One call of the pipeline, every default resolved: ``num_images`` images of one prompt."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_images: int
    steps: int
    guidance: float
    seed: int


def run_image(
    pipe: Any,
    run: ImageRun,
    on_step: StepCallback,
    preview_every: int = 0,
    on_preview: PreviewSink | None = None,
) -> list[Image.Image]:
    """One call of the pipeline for ``run.num_images`` images.

    ``on_step`` runs after every denoising step; an exception it raises (the
    cancellation) leaves the pipeline at that step. Decoding (the VAE, inside the
    pipeline's call) is reported as ``(0, 1)`` when it starts and ``(1, 1)`` when done.
    Every ``preview_every`` steps the first image's latents go to ``on_preview``.
    """
    family = family_of(pipe)

    def step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        on_step(step + 1, run.steps, "denoising")
        if on_preview is not None and due(step + 1, preview_every, run.steps):
            preview = image_preview(
                kwargs["latents"],
                family,
                (run.width, run.height),
                getattr(pipe, "genserve_preview_decoder", None),
            )
            on_preview(step + 1, run.steps, preview)
        if step + 1 == run.steps:
            on_step(0, 1, "decoding")
        return kwargs

    generator = torch.Generator(device="cpu").manual_seed(run.seed)
    with torch.inference_mode():
        out = pipe(
            prompt=run.prompt,
            negative_prompt=run.negative_prompt or None,
            width=run.width,
            height=run.height,
            num_images_per_prompt=run.num_images,
            num_inference_steps=run.steps,
            guidance_scale=run.guidance,
            generator=generator,
            callback_on_step_end=step_end,
            output_type="pil",
        )
    on_step(1, 1, "decoding")
    images: list[Image.Image] = list(out.images)
    return images
