"""Runs a text-to-image diffusers pipeline with progress and cancellation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

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


def run_image(pipe: Any, run: ImageRun, on_step: StepCallback) -> list[Image.Image]:
    """One call of the pipeline for ``run.num_images`` images.

    ``on_step`` runs after every denoising step; an exception it raises (the
    cancellation) leaves the pipeline at that step.
    """

    def step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        on_step(step + 1, run.steps, "denoising")
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
