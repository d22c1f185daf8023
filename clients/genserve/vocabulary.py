"""The words both sides of genserve share: kinds, sizes, limits and options, defined once.

The REST bridge validates with these, the inference server plans with them,
and the SDK offers them; the wire mappings to the proto enums live here too,
so each value has one spelling in JSON, one in the database and one on the wire.
Pure Python apart from the generated enums: nothing here needs a server package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

from genserve.inference.v1 import inference_pb2 as pb

# What a generation produces; the same word in the REST body, the database and the model file.
Kind = Literal["image", "video", "3d"]
KINDS: tuple[Kind, ...] = get_args(Kind)

ProjectType = Literal["all", "images", "videos", "3d"]
PROJECT_TYPES: dict[str, Kind] = {"images": "image", "videos": "video", "3d": "3d"}
"""The document's ``type`` filter of ``GET /api/v1/projects``; ``all`` filters nothing."""

MAX_PROMPT_CHARS = 4000
"""A prompt is 1 to this many characters after trimming."""

MAX_INPUT_PIXELS = 50_000_000
"""The largest input image (3D) in pixels."""

MAX_INPUT_BYTES = 20 * 1024 * 1024
"""The largest input image (3D) in bytes, decoded."""

ImageAspectRatio = Literal[
    "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9", "9:21", "5:4", "4:5"
]
IMAGE_ASPECT_RATIOS: tuple[ImageAspectRatio, ...] = get_args(ImageAspectRatio)
DEFAULT_IMAGE_ASPECT_RATIO: ImageAspectRatio = "1:1"

OutputFormat = Literal["png", "jpeg", "webp"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
DEFAULT_OUTPUT_FORMAT: OutputFormat = "png"

MIN_IMAGES = 1
MAX_IMAGES = 4

ImageMode = Literal["text_to_image", "image_to_image", "inpaint", "edit"]
IMAGE_MODES: tuple[ImageMode, ...] = get_args(ImageMode)
"""What an image model may serve: from a prompt, from an input image (``strength``), an
input image and a mask (white repainted), or an instruction edit of an input image."""


def clean_optional_prompt(value: str | None) -> str | None:
    """``clean_prompt`` for an optional text (a negative prompt): None stays None."""
    return None if value is None else clean_prompt(value)


MAX_LORAS = 3
"""The most adapters (LoRA) one request may apply."""


def is_edit(mode: str, strength_given: bool, modes: Sequence[str]) -> bool:
    """Whether an input image without a mask (``image_to_image``) is an instruction ``edit``
    on a model serving ``modes``: it serves edit, and not image to image with a strength
    given. Both sides decide by this rule (the bridge's check, the server's plan)."""
    if mode != "image_to_image" or "edit" not in modes:
        return False
    return not (strength_given and "image_to_image" in modes)


MAX_SEED = 2**32 - 1
"""Seeds are 0 to this; image ``i`` of a request uses ``seed + i``."""

RATIO_TOLERANCE = 0.05
"""How far (relative) a width and height may be from an aspect ratio given with them."""

VideoAspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4"]
VIDEO_ASPECT_RATIOS: tuple[VideoAspectRatio, ...] = get_args(VideoAspectRatio)
DEFAULT_VIDEO_ASPECT_RATIO: VideoAspectRatio = "16:9"

ASPECT_RATIOS: dict[Kind, tuple[str, ...]] = {
    "image": IMAGE_ASPECT_RATIOS,
    "video": VIDEO_ASPECT_RATIOS,
    "3d": (),
}
"""The aspect ratios each kind's models may offer (a 3D model's follows its input image)."""

Resolution = Literal["360p", "520p", "720p", "1080p"]
RESOLUTIONS: tuple[Resolution, ...] = get_args(Resolution)
DEFAULT_RESOLUTION: Resolution = "720p"

MIN_DURATION_S = 1
"""The shortest video any model may allow, in whole seconds."""
MAX_DURATION_S = 10
"""The longest video the embedded models allow; a model file may set its own bounds."""
DEFAULT_DURATION_S = 4
"""A model file's ``default_duration`` when it names none; requests that name no duration
get their model's (``ListModels`` reports it)."""

TextureQuality = Literal["no", "standard"]
TEXTURE_QUALITIES: tuple[TextureQuality, ...] = get_args(TextureQuality)
TextureAlignment = Literal["original_image", "geometry"]
TEXTURE_ALIGNMENTS: tuple[TextureAlignment, ...] = get_args(TextureAlignment)
Orientation = Literal["default", "align_image"]
ORIENTATIONS: tuple[Orientation, ...] = get_args(Orientation)

ACCOUNT_METADATA = "x-genserve-account"
"""gRPC metadata naming the account a generation is for (the queue lets accounts take turns)."""
PLAN_METADATA = "x-genserve-plan"
"""gRPC metadata naming that account's plan (the queue runs higher plans first)."""


def clean_prompt(value: str) -> str:
    """A prompt trimmed; ValueError unless it is 1 to ``MAX_PROMPT_CHARS`` characters."""
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"must be at most {MAX_PROMPT_CHARS} characters")
    return text


def short_side(resolution: str) -> int:
    """The short side of the output in pixels: ``"720p"`` is 720 (a name already accepted)."""
    return int(resolution[:-1])


def ratio_parts(aspect_ratio: str) -> tuple[int, int]:
    """``"16:9"`` as ``(16, 9)`` (a ratio already accepted)."""
    w, h = aspect_ratio.split(":")
    return int(w), int(h)


def size_matches_ratio(width: int, height: int, aspect_ratio: str) -> bool:
    """Whether ``width`` x ``height`` is ``aspect_ratio`` within ``RATIO_TOLERANCE``."""
    try:
        rw, rh = ratio_parts(aspect_ratio)
    except ValueError:
        return False
    if rw <= 0 or rh <= 0 or width <= 0 or height <= 0:
        return False
    return abs((width * rh) / (height * rw) - 1) <= RATIO_TOLERANCE


def size_ratio(width: int, height: int) -> str:
    """``"W:H"`` of a size in lowest terms (``1024x576`` is ``"16:9"``)."""
    d = math.gcd(width, height) or 1
    return f"{width // d}:{height // d}"


# The wire spellings: one mapping per enum, read by both sides.
KIND_TO_PB: dict[Kind, pb.ModelKind.ValueType] = {
    "image": pb.MODEL_KIND_IMAGE,
    "video": pb.MODEL_KIND_VIDEO,
    "3d": pb.MODEL_KIND_MESH,
}
OUTPUT_FORMAT_TO_PB: dict[OutputFormat, pb.ImageFormat.ValueType] = {
    "png": pb.IMAGE_FORMAT_PNG,
    "jpeg": pb.IMAGE_FORMAT_JPEG,
    "webp": pb.IMAGE_FORMAT_WEBP,
}
TEXTURE_QUALITY_TO_PB: dict[TextureQuality, pb.TextureQuality.ValueType] = {
    "no": pb.TEXTURE_QUALITY_NO,
    "standard": pb.TEXTURE_QUALITY_STANDARD,
}
TEXTURE_ALIGNMENT_TO_PB: dict[TextureAlignment, pb.TextureAlignment.ValueType] = {
    "original_image": pb.TEXTURE_ALIGNMENT_ORIGINAL_IMAGE,
    "geometry": pb.TEXTURE_ALIGNMENT_GEOMETRY,
}
ORIENTATION_TO_PB: dict[Orientation, pb.Orientation.ValueType] = {
    "default": pb.ORIENTATION_DEFAULT,
    "align_image": pb.ORIENTATION_ALIGN_IMAGE,
}
KIND_FROM_PB = {v: k for k, v in KIND_TO_PB.items()}
OUTPUT_FORMAT_FROM_PB = {v: k for k, v in OUTPUT_FORMAT_TO_PB.items()}
TEXTURE_QUALITY_FROM_PB = {v: k for k, v in TEXTURE_QUALITY_TO_PB.items()}
TEXTURE_ALIGNMENT_FROM_PB = {v: k for k, v in TEXTURE_ALIGNMENT_TO_PB.items()}
ORIENTATION_FROM_PB = {v: k for k, v in ORIENTATION_TO_PB.items()}
