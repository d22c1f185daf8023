"""Text to image: the plan of one GenerateImage request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from genserve import vocabulary as vocab
from genserve.inference.v1 import inference_pb2 as pb
from inference_server.artifacts import Artifact
from inference_server.encoders.images import CONTENT_TYPES, encode_image, encode_thumbnail
from inference_server.errors import InvalidArgument
from inference_server.geometry import image_size
from inference_server.model_config import ModelSpec
from inference_server.pipelines.image import (
    ImageRequest,
    ImageRun,
    batch_key,
    run_image,
    run_images,
)
from inference_server.plans.common import (
    accepted,
    preview_every,
    prompt_text,
    random_seed,
    step_cache_for,
    steps_for,
)
from inference_server.previews import PreviewSink
from inference_server.progress import StepCallback
from inference_server.registry import ModelRegistry
from inference_server.scheduler import Batching, Seat


@dataclass
class ImagePlan:
    spec: ModelSpec
    run: ImageRun
    fmt: str
    seed: int
    preview_every: int = 0
    preview_sink: PreviewSink | None = None

    def work(self, registry: ModelRegistry) -> Any:
        def generate(on_step: StepCallback) -> list[Image.Image]:
            pipe = registry.pipeline(self.spec, on_step)
            return run_image(pipe, self.run, on_step, self.preview_every, self.preview_sink)

        return generate

    def batching(self, registry: ModelRegistry) -> Batching:
        """How it shares a call with others: up to the model's ``max_batch_size`` images."""

        def run_together(seats: Sequence[Seat]) -> list[Any]:
            def loading(step: int, total: int, stage: str) -> None:
                for seat in seats:
                    seat.step(step, total, stage)

            pipe = registry.pipeline(self.spec, loading)
            requests = [seat.payload.request() for seat in seats]
            return run_images(pipe, requests, seats)

        return Batching(
            key=batch_key(self.spec.name, self.run),
            size=self.run.num_images,
            limit=self.spec.max_batch_size,
            wait_s=self.spec.batch_wait_ms / 1000,
            run=run_together,
        )

    def request(self) -> ImageRequest:
        return ImageRequest(self.run, self.preview_every, self.preview_sink)

    def encode(self, raw: list[Image.Image], on_step: StepCallback) -> list[Artifact]:
        artifacts = []
        for i, image in enumerate(raw):
            data = encode_image(image, self.fmt)
            artifacts.append(
                Artifact(
                    data=data,
                    content_type=CONTENT_TYPES[self.fmt],
                    file_name=f"generated-image-{i + 1}.{self.fmt}",
                    index=i,
                    width=image.width,
                    height=image.height,
                )
            )
            artifacts.append(thumbnail_artifact(image, i))
            on_step(i + 1, len(raw), "encoding")
        return artifacts


def thumbnail_artifact(image: Image.Image, index: int, max_side: int = 256) -> Artifact:
    """A small WebP standing for an output in project listings."""
    thumb = image.convert("RGB")
    thumb.thumbnail((max_side, max_side))
    return Artifact(
        data=encode_thumbnail(thumb),
        content_type="image/webp",
        file_name=f"thumbnail-{index + 1}.webp",
        index=index,
        role=pb.ARTIFACT_ROLE_PREVIEW,
        width=thumb.width,
        height=thumb.height,
    )


def plan_image(spec: ModelSpec, request: pb.GenerateImageRequest) -> ImagePlan:
    if not vocab.MIN_IMAGES <= request.num_images <= spec.max_images:
        raise InvalidArgument(
            f"num_images must be between {vocab.MIN_IMAGES} and {spec.max_images} for {spec.name}"
        )
    if request.format == pb.IMAGE_FORMAT_UNSPECIFIED:
        fmt: str = vocab.DEFAULT_OUTPUT_FORMAT
    elif request.format in vocab.OUTPUT_FORMAT_FROM_PB:
        fmt = accepted(
            "output_format", vocab.OUTPUT_FORMAT_FROM_PB[request.format], spec.output_formats, spec
        )
    else:
        raise InvalidArgument("unknown image format")
    ratio = accepted(
        "aspect_ratio",
        request.aspect_ratio or vocab.DEFAULT_IMAGE_ASPECT_RATIO,
        spec.allowed_aspect_ratios,
        spec,
    )
    width, height = image_size(ratio, spec.width, spec.height, spec.size_factor)
    seed = random_seed(request.HasField("seed"), request.seed)
    run = ImageRun(
        prompt=prompt_text(request.prompt),
        negative_prompt=request.negative_prompt or spec.negative_prompt,
        width=width,
        height=height,
        num_images=request.num_images,
        steps=steps_for(request.steps, spec),
        guidance=request.guidance_scale if request.HasField("guidance_scale") else spec.guidance,
        seed=seed,
        max_sequence_length=spec.max_sequence_length,
        cache=step_cache_for(request.fast, spec),
    )
    return ImagePlan(
        spec=spec, run=run, fmt=fmt, seed=seed, preview_every=preview_every(request.preview_every)
    )
