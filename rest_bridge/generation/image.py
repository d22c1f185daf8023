"""Text to image: ``POST /api/v1/images``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message
from pydantic import Field, StrictBool, StrictStr, field_validator

from genserve import vocabulary as vocab
from genserve.inference.v1 import inference_pb2 as pb
from rest_bridge.edge.answers import Answer, FileAnswer
from rest_bridge.edge.errors import validation_error
from rest_bridge.edge.views import file_view
from rest_bridge.generation.base import (
    GenerationBody,
    GenerationKind,
    GenerationOutcome,
    Preview,
    WholeNumber,
    fast_allowed,
    one_of,
    preview_every,
)
from rest_bridge.link.catalogue import ModelEntry
from rest_bridge.settings import BridgeSettings

if TYPE_CHECKING:
    from rest_bridge.state import BridgeState


class ImageRequest(GenerationBody):
    prompt: StrictStr
    aspect_ratio: vocab.ImageAspectRatio = vocab.DEFAULT_IMAGE_ASPECT_RATIO
    output_format: vocab.OutputFormat = vocab.DEFAULT_OUTPUT_FORMAT
    num_images: WholeNumber = Field(1, ge=vocab.MIN_IMAGES, le=vocab.MAX_IMAGES)
    model: StrictStr = "nano-banana"
    preview: Preview = False
    fast: StrictBool = False
    """Run with the model's step cache: faster, slightly different, the same price."""

    _prompt = field_validator("prompt")(vocab.clean_prompt)


class ImageFile(FileAnswer):
    aspect_ratio: str


class ImageAnswer(Answer):
    images: list[ImageFile]
    generation_id: str
    generation_time: int
    remaining_points: int
    request_id: str


class ImageKind(GenerationKind[ImageRequest]):
    kind = "image"
    path = "/api/v1/images"
    operation = "create_images"
    body = ImageRequest
    rpc = "GenerateImage"
    file_stem = "generated-image"
    answer_model = ImageAnswer
    preview_stem = "thumbnail"

    def timeout_s(self, settings: BridgeSettings) -> float:
        return settings.image_timeout_s

    def price(self, settings: BridgeSettings, body: ImageRequest) -> int:
        return settings.price_image * body.num_images

    def price_table(self, settings: BridgeSettings) -> dict[str, Any]:
        return {"points_per_image": settings.price_image}

    def settle(self, body: ImageRequest, model: ModelEntry) -> ImageRequest:
        fast_allowed(body.fast, model)
        one_of("aspect_ratio", body.aspect_ratio, model.aspect_ratios, model)
        one_of("output_format", body.output_format, model.output_formats, model)
        if model.max_images and body.num_images > model.max_images:
            raise validation_error(
                "num_images", f"{model.name} makes at most {model.max_images} per request"
            )
        return body

    def params(self, body: ImageRequest) -> dict[str, Any]:
        return {
            "aspect_ratio": body.aspect_ratio,
            "output_format": body.output_format,
            "num_images": body.num_images,
            **({"fast": True} if body.fast else {}),
        }

    def request(self, body: ImageRequest, model: ModelEntry, rid: str, prepared: Any) -> Message:
        return pb.GenerateImageRequest(
            model=model.name,
            prompt=body.prompt,
            aspect_ratio=body.aspect_ratio,
            num_images=body.num_images,
            format=vocab.OUTPUT_FORMAT_TO_PB[body.output_format],
            request_id=rid,
            preview_every=preview_every(body.preview),
            fast=body.fast,
        )

    def output(
        self,
        state: BridgeState,
        body: ImageRequest,
        model: ModelEntry,
        outcome: GenerationOutcome,
    ) -> dict[str, Any]:
        images = [
            {**file_view(state, a), "aspect_ratio": body.aspect_ratio} for a in outcome.primaries()
        ]
        return {
            "images": images,
            "generation_id": outcome.generation.id,
        }

    def describe(self, model: ModelEntry) -> dict[str, Any]:
        return {
            "aspect_ratios": list(model.aspect_ratios or vocab.IMAGE_ASPECT_RATIOS),
            "output_formats": list(model.output_formats or vocab.OUTPUT_FORMATS),
            "num_images": {"min": vocab.MIN_IMAGES, "max": model.max_images or vocab.MAX_IMAGES},
        }


IMAGE = ImageKind()
