"""Text to video: ``POST /api/v1/videos``."""

from __future__ import annotations

import functools
import random
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message
from pydantic import Field, StrictBool, StrictStr, field_validator

from genserve import vocabulary as vocab
from genserve.inference.v1 import inference_pb2 as pb
from rest_bridge.edge.answers import Answer, FileAnswer
from rest_bridge.edge.errors import ApiError, validation_error
from rest_bridge.generation.base import (
    GenerationBody,
    GenerationKind,
    GenerationOutcome,
    InputFile,
    Preview,
    WholeNumber,
    fast_allowed,
    one_of,
    preview_every,
)
from rest_bridge.link.catalogue import ModelEntry
from rest_bridge.outbound.image_input import DecodedImage, load_image_input
from rest_bridge.settings import BridgeSettings
from storage.models import Generation

if TYPE_CHECKING:
    from rest_bridge.state import BridgeState

RESOLUTION_SCALE: dict[str, float] = {"360p": 0.25, "520p": 0.5, "720p": 1.0, "1080p": 2.25}
"""A video's price scales with its pixel count relative to 720p, and with duration
relative to 4 s."""


class VideoRequest(GenerationBody):
    prompt: StrictStr
    model: StrictStr = "vidu-q2"
    duration: WholeNumber | None = Field(
        None,
        description="Whole seconds, within the model's range; omitted: the model's default "
        "(both listed by GET /api/v1/models).",
    )
    resolution: vocab.Resolution = vocab.DEFAULT_RESOLUTION
    aspect_ratio: vocab.VideoAspectRatio = vocab.DEFAULT_VIDEO_ASPECT_RATIO
    preview: Preview = False
    seed: WholeNumber | None = Field(
        None,
        ge=0,
        le=vocab.MAX_SEED,
        description="0 to 2^32-1. Unset: a random one, returned as data.seed. The same seed, "
        "parameters and model give the same video.",
        examples=[42],
    )
    negative_prompt: StrictStr | None = Field(
        None,
        description="What the video should not show (the prompt's rules and limits).",
        examples=["blurry, flicker, watermark"],
    )
    image_url: StrictStr | None = Field(
        None,
        description="The first frame (image to video), fetched like /api/v1/3d's image; for "
        "models whose image_to_video is true (GET /api/v1/models), required where "
        "first_frame_required is. Scaled and centre-cropped to the video's frame.",
        examples=["https://example.com/still.png"],
    )
    image_base64: StrictStr | None = Field(
        None,
        description="The first frame as base64 (or a data: URL), instead of image_url.",
        examples=["data:image/png;base64,iVBORw0KGgo..."],
    )
    fast: StrictBool = False
    """Run with the model's step cache: faster, slightly different, the same price."""

    _prompt = field_validator("prompt")(vocab.clean_prompt)
    _negative = field_validator("negative_prompt")(vocab.clean_optional_prompt)

    @property
    def from_image(self) -> bool:
        return self.image_url is not None or self.image_base64 is not None


class VideoFile(FileAnswer):
    duration: float
    resolution: str
    aspect_ratio: str
    model: str
    generation_id: str
    thumbnail: str | None = None
    frame_rate: float | None = None
    frame_count: int | None = None


class VideoAnswer(Answer):
    video: VideoFile
    generation_time: int
    remaining_points: int
    request_id: str
    seed: int | None = None


def whole_if_whole(seconds: float) -> int | float:
    """The document shows ``"duration": 4``; a clip of exactly 4 s answers the same integer.

    Rounded to the millisecond first, so a container's time-base arithmetic
    (3.9999999) does not turn a 4 s clip into a float.
    """
    value = round(seconds, 3)
    return int(value) if value.is_integer() else value


def seconds(body: VideoRequest) -> int:
    """A settled body's duration (``VideoKind.settle`` has filled in the model's default)."""
    assert body.duration is not None, "the body was not settled against its model"
    return body.duration


class VideoKind(GenerationKind[VideoRequest]):
    kind = "video"
    path = "/api/v1/videos"
    operation = "create_video"
    body = VideoRequest
    rpc = "GenerateVideo"
    file_stem = "generated-video"
    answer_model = VideoAnswer
    preview_stem = "thumbnail"

    def timeout_s(self, settings: BridgeSettings) -> float:
        return settings.video_timeout_s

    def price(self, settings: BridgeSettings, body: VideoRequest, model: ModelEntry) -> int:
        scale = RESOLUTION_SCALE[body.resolution]
        return max(1, round(settings.price_video * (seconds(body) / 4) * scale))

    def price_table(self, settings: BridgeSettings) -> dict[str, Any]:
        return {
            "points_for_4s_720p": settings.price_video,
            "resolution_scale": RESOLUTION_SCALE,
            "scales_with_duration": True,
        }

    def settle(self, body: VideoRequest, model: ModelEntry) -> VideoRequest:
        fast_allowed(body.fast, model)
        duration = model.default_duration if body.duration is None else body.duration
        if not model.min_duration <= duration <= model.max_duration:
            raise validation_error(
                "duration",
                f"must be whole seconds from {model.min_duration} to {model.max_duration} "
                f"for {model.name}",
            )
        one_of("resolution", body.resolution, model.resolutions, model)
        one_of("aspect_ratio", body.aspect_ratio, model.aspect_ratios, model)
        if body.from_image and not model.image_to_video:
            field = "image_url" if body.image_url is not None else "image_base64"
            raise validation_error(field, f"{model.name} does not serve image_to_video")
        if not body.from_image and model.first_frame_required:
            raise validation_error(
                "image_url",
                f"{model.name} makes video only from a first frame: give image_url or image_base64",
            )
        update: dict[str, Any] = {"duration": duration}
        if body.seed is None:
            update["seed"] = random.randint(0, vocab.MAX_SEED)
        return body.model_copy(update=update)

    def fetches(self, body: VideoRequest) -> bool:
        return bool(body.from_image)

    async def prepare(self, state: BridgeState, body: VideoRequest) -> DecodedImage | None:
        if not body.from_image:
            return None
        settings = state.settings
        load = functools.partial(
            load_image_input,
            policy=settings.fetch_policy(),
            max_bytes=settings.max_upload_bytes,
            max_pixels=vocab.MAX_INPUT_PIXELS,
        )
        return await load(body.image_url, body.image_base64)

    def inputs(self, body: VideoRequest, prepared: Any) -> list[InputFile]:
        """The first frame, kept with the project (role ``input``)."""
        if not isinstance(prepared, DecodedImage):
            return []
        return [InputFile("input", prepared.data, prepared.format, prepared.width, prepared.height)]

    def params(self, body: VideoRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "duration": body.duration,
            "resolution": body.resolution,
            "aspect_ratio": body.aspect_ratio,
            "seed": body.seed,
            **({"fast": True} if body.fast else {}),
        }
        if body.negative_prompt is not None:
            params["negative_prompt"] = body.negative_prompt
        if body.from_image:
            params["mode"] = "image_to_video"
            if body.image_url is not None:
                params["image_url"] = body.image_url
        return params

    def request(self, body: VideoRequest, model: ModelEntry, rid: str, prepared: Any) -> Message:
        request = pb.GenerateVideoRequest(
            model=model.name,
            prompt=body.prompt,
            negative_prompt=body.negative_prompt or "",
            aspect_ratio=body.aspect_ratio,
            resolution=body.resolution,
            duration_seconds=seconds(body),
            request_id=rid,
            preview_every=preview_every(body.preview),
            fast=body.fast,
        )
        if body.seed is not None:
            request.seed = body.seed
        if isinstance(prepared, DecodedImage):
            request.init_image = prepared.data
        return request

    def output(
        self,
        state: BridgeState,
        body: VideoRequest,
        model: ModelEntry,
        outcome: GenerationOutcome,
    ) -> dict[str, Any]:
        """The document's ``video`` object, then the additions (poster, rate, frame count).

        Size and duration come from the stored file's metadata, which the inference
        server read back from the encoded MP4, so they describe the file itself.
        """
        primaries = outcome.primaries()
        if not primaries:
            raise ApiError(502, "inference_error", "The inference server sent no video.")
        primary = primaries[0]
        preview = outcome.preview(0)
        fps = model.frame_rate
        video = {
            "url": state.file_url(primary.token, primary.file_name),
            "content_type": primary.content_type,
            "file_name": primary.file_name,
            "file_size": primary.file_size,
            "width": primary.width,
            "height": primary.height,
            "duration": whole_if_whole(primary.duration),
            "resolution": body.resolution,
            "aspect_ratio": body.aspect_ratio,
            "model": body.model,
            "generation_id": outcome.generation.id,
            "thumbnail": state.file_url(preview.token, preview.file_name) if preview else None,
            "frame_rate": fps,
            "frame_count": round(primary.duration * fps),
        }
        return {
            "video": video,
            "seed": outcome.seed if body.seed is None else body.seed,
        }

    def describe(self, model: ModelEntry) -> dict[str, Any]:
        return {
            "resolutions": list(model.resolutions or vocab.RESOLUTIONS),
            "aspect_ratios": list(model.aspect_ratios or vocab.VIDEO_ASPECT_RATIOS),
            "duration": {
                "min": model.min_duration,
                "max": model.max_duration,
                "default": model.default_duration,
            },
            "frame_rate": model.frame_rate,
            "seed": {"min": 0, "max": vocab.MAX_SEED},
            "image_to_video": model.image_to_video,
            "first_frame_required": model.first_frame_required,
        }

    def metadata(self, gen: Generation) -> dict[str, Any]:
        p = gen.params
        made_with = {k: p[k] for k in ("seed", "negative_prompt", "mode", "image_url") if k in p}
        return {
            "duration": p.get("duration"),
            "resolution": p.get("resolution"),
            "model": gen.model,
        } | made_with


VIDEO = VideoKind()
