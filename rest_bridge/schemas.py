"""Request bodies, exactly the document's fields, strictly typed; unknown fields refused."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

MAX_PROMPT = 4000

ImageAspectRatio = Literal[
    "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9", "9:21", "5:4", "4:5"
]
VideoAspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4"]
Resolution = Literal["360p", "520p", "720p", "1080p"]
OutputFormat = Literal["png", "jpeg", "webp"]


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class GenerationBody(StrictBody):
    """Fields every generation accepts beyond the document's (optional additions)."""

    webhook_url: Annotated[StrictStr, Field(min_length=1, max_length=2048)] | None = None


def _clean_prompt(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    if len(text) > MAX_PROMPT:
        raise ValueError(f"must be at most {MAX_PROMPT} characters")
    return text


class ImageRequest(GenerationBody):
    prompt: StrictStr
    aspect_ratio: ImageAspectRatio = "1:1"
    output_format: OutputFormat = "png"
    num_images: Annotated[StrictInt, Field(ge=1, le=4)] = 1
    model: StrictStr = "nano-banana"

    _prompt = field_validator("prompt")(_clean_prompt)


class VideoRequest(GenerationBody):
    prompt: StrictStr
    model: StrictStr = "vidu-q2"
    duration: StrictInt = 4
    resolution: Resolution = "720p"
    aspect_ratio: VideoAspectRatio = "16:9"

    _prompt = field_validator("prompt")(_clean_prompt)


class MeshRequest(GenerationBody):
    """The document's 3D body; ``model`` is an extension (absent: the server's default).

    Exactly one image field must be given; the route checks that, since a
    missing and an empty field mean different things to the client.
    """

    image_url: StrictStr | None = None
    image_base64: StrictStr | None = None
    texture_quality: Literal["no", "standard"] = "standard"
    texture_alignment: Literal["original_image", "geometry"] = "original_image"
    orientation: Literal["default", "align_image"] = "default"
    model: StrictStr | None = None
