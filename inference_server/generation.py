"""What each kind of generation runs on the device and how its output is encoded.

A plan is made from a request (validation happens here, before queueing); its
``work`` runs on the device thread, its ``encode`` on the encode pool.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from genserve.inference.v1 import inference_pb2 as pb
from inference_server.artifacts import Artifact
from inference_server.encoders.images import CONTENT_TYPES, encode_image
from inference_server.errors import InvalidArgument
from inference_server.geometry import image_size
from inference_server.model_config import ModelSpec
from inference_server.pipelines.image import ImageJob, run_image
from inference_server.progress import StepCallback
from inference_server.registry import ModelRegistry

MAX_PROMPT = 4000
FORMATS = {
    pb.IMAGE_FORMAT_UNSPECIFIED: "png",
    pb.IMAGE_FORMAT_PNG: "png",
    pb.IMAGE_FORMAT_JPEG: "jpeg",
    pb.IMAGE_FORMAT_WEBP: "webp",
}


class Plan(Protocol):
    seed: int

    def work(self, registry: ModelRegistry) -> Any: ...

    def encode(self, raw: Any, on_step: StepCallback) -> list[Artifact]: ...


def _seed(has_seed: bool, seed: int) -> int:
    return seed if has_seed else random.randrange(2**63)


def _prompt(prompt: str) -> str:
    text = prompt.strip()
    if not text:
        raise InvalidArgument("prompt is empty")
    if len(text) > MAX_PROMPT:
        raise InvalidArgument(f"prompt is longer than {MAX_PROMPT} characters")
    return text


def _steps(requested: int, spec: ModelSpec) -> int:
    if requested < 0 or requested > 200:
        raise InvalidArgument("steps must be between 1 and 200")
    return requested or spec.steps


@dataclass
class ImagePlan:
    spec: ModelSpec
    job: ImageJob
    fmt: str
    seed: int

    def work(self, registry: ModelRegistry) -> Any:
        def run(on_step: StepCallback) -> list[Image.Image]:
            return run_image(registry.pipeline(self.spec), self.job, on_step)

        return run

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
        data=encode_image(thumb, "webp"),
        content_type="image/webp",
        file_name=f"thumbnail-{index + 1}.webp",
        index=index,
        role=pb.ARTIFACT_ROLE_PREVIEW,
        width=thumb.width,
        height=thumb.height,
    )


def plan_image(spec: ModelSpec, request: pb.GenerateImageRequest) -> ImagePlan:
    if not 1 <= request.num_images <= 4:
        raise InvalidArgument("num_images must be between 1 and 4")
    fmt = FORMATS.get(request.format)
    if fmt is None:
        raise InvalidArgument("unknown image format")
    width, height = image_size(
        request.aspect_ratio or "1:1", spec.width, spec.height, spec.size_factor
    )
    seed = _seed(request.HasField("seed"), request.seed)
    job = ImageJob(
        prompt=_prompt(request.prompt),
        negative_prompt=request.negative_prompt or spec.negative_prompt,
        width=width,
        height=height,
        num_images=request.num_images,
        steps=_steps(request.steps, spec),
        guidance=request.guidance_scale if request.HasField("guidance_scale") else spec.guidance,
        seed=seed,
    )
    return ImagePlan(spec=spec, job=job, fmt=fmt, seed=seed)


def decode_input_image(data: bytes) -> Image.Image:
    """The request's image, fully decoded and in RGBA; refuses what is not a picture."""
    if not data:
        raise InvalidArgument("image is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ("PNG", "JPEG", "WEBP"):
                raise InvalidArgument("image must be PNG, JPEG or WebP")
            if img.width * img.height > 50_000_000:
                raise InvalidArgument("image is over 50 megapixels")
            img.load()
            return img.convert("RGBA")
    except (OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise InvalidArgument("image cannot be decoded") from exc
