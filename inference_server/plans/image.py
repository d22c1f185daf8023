"""Text to image: the plan of one GenerateImage request."""

from __future__ import annotations

import math
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
    decode_input_image,
    guidance_for,
    negative_text,
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
            fill_s=self.spec.batch_fill_ms / 1000,
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
    if request.width or request.height:
        width, height = exact_size(request.width, request.height, request.aspect_ratio, spec)
    else:
        ratio = accepted(
            "aspect_ratio",
            request.aspect_ratio or vocab.DEFAULT_IMAGE_ASPECT_RATIO,
            spec.allowed_aspect_ratios,
            spec,
        )
        width, height = image_size(ratio, spec.width, spec.height, spec.size_factor)
    seed = random_seed(request.HasField("seed"), request.seed)
    init_image, mask_image, strength, edit = image_inputs(request, spec, (width, height))
    run = ImageRun(
        prompt=prompt_text(request.prompt),
        negative_prompt=negative_text(request.negative_prompt, spec),
        width=width,
        height=height,
        num_images=request.num_images,
        steps=steps_for(request.steps, spec),
        guidance=guidance_for(request.HasField("guidance_scale"), request.guidance_scale, spec),
        seed=seed,
        max_sequence_length=spec.max_sequence_length,
        init_image=init_image,
        mask_image=mask_image,
        strength=strength,
        edit=edit,
        loras=loras_for(request.loras, spec),
        cache=step_cache_for(request.fast, spec),
    )
    return ImagePlan(
        spec=spec, run=run, fmt=fmt, seed=seed, preview_every=preview_every(request.preview_every)
    )


def exact_size(width: int, height: int, aspect_ratio: str, spec: ModelSpec) -> tuple[int, int]:
    """A request's own width and height: both given, multiples of the model's factor, within
    its pixel limit, and agreeing with the aspect ratio when one is given too."""
    if width <= 0 or height <= 0:
        raise InvalidArgument("width and height go together: give both or neither")
    factor = spec.size_factor
    if width % factor or height % factor:
        raise InvalidArgument(f"width and height must be multiples of {factor} for {spec.name}")
    if width * height > spec.pixel_limit:
        raise InvalidArgument(
            f"width times height must be at most {spec.name}'s max_pixels {spec.pixel_limit}"
        )
    if aspect_ratio and not vocab.size_matches_ratio(width, height, aspect_ratio):
        raise InvalidArgument(f"aspect_ratio {aspect_ratio} disagrees with {width}x{height}")
    return width, height


def image_inputs(
    request: pb.GenerateImageRequest, spec: ModelSpec, size: tuple[int, int]
) -> tuple[Image.Image | None, Image.Image | None, float, bool]:
    """The input image and mask at the output size, the strength, and whether it is an
    instruction edit; the mode they ask for must be one the model serves."""
    if not request.init_image:
        if request.mask_image or request.HasField("strength"):
            raise InvalidArgument("mask_image and strength need init_image")
        mode = "text_to_image"
    else:
        mode = "inpaint" if request.mask_image else "image_to_image"
    edit = vocab.is_edit(mode, request.HasField("strength"), spec.image_modes)
    if edit:
        if request.HasField("strength"):
            raise InvalidArgument(f"{spec.name} edits by the prompt: no strength")
        mode = "edit"
    if mode not in spec.image_modes:
        raise InvalidArgument(
            f"{spec.name} does not serve {mode}; it serves {', '.join(spec.image_modes)}"
        )
    if mode == "text_to_image":
        return None, None, spec.strength, False
    strength = spec.strength
    if request.HasField("strength"):
        if not 0.0 < request.strength <= 1.0:
            raise InvalidArgument("strength must be above 0 and at most 1")
        strength = request.strength
    init = decode_input_image(request.init_image).convert("RGB").resize(size)
    mask = None
    if request.mask_image:
        mask = decode_input_image(request.mask_image).convert("L").resize(size)
    return init, mask, strength, edit


def loras_for(asked: Sequence[pb.LoraWeight], spec: ModelSpec) -> tuple[tuple[str, float], ...]:
    """The adapters a request applies, each the model offers, at most three, with the
    scale asked for or its default; sorted by name (a batch's key)."""
    offered = {lora.name: lora for lora in spec.loras}
    if len(asked) > vocab.MAX_LORAS:
        raise InvalidArgument(f"at most {vocab.MAX_LORAS} loras a request")
    chosen: dict[str, float] = {}
    for weight in asked:
        lora = offered.get(weight.name)
        if lora is None:
            names = ", ".join(offered) or "none"
            raise InvalidArgument(f"{spec.name} has no lora {weight.name!r}; it offers {names}")
        if weight.name in chosen:
            raise InvalidArgument(f"lora {weight.name!r} is named twice")
        scale = weight.scale if weight.HasField("scale") else lora.scale
        if not math.isfinite(scale) or not -4.0 <= scale <= 4.0:
            raise InvalidArgument("a lora's scale must be within -4 and 4")
        chosen[weight.name] = round(scale, 4)
    return tuple(sorted(chosen.items()))
