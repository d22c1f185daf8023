"""Each kind's request, declared once: its parameters, its route, its result and its body.

A kind's parameters are one ``TypedDict`` (``ImageParams``, ``VideoParams``,
``ThreeDParams``): the clients' ``generate`` and ``submit`` take them as keywords
(``**params: Unpack[ImageParams]``), and ``request_body`` builds the JSON body from the
same declaration. Adding a parameter to a kind is one line here (and
``python -m genserve.codegen``, which writes the synchronous client).
Unset (or ``None``) parameters are left out: the server applies its defaults.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypedDict

from genserve.results import GenerationResult, ImageResult, ModelResult, VideoResult
from genserve.vocabulary import KINDS, PROJECT_TYPES, Kind

ImageInput: TypeAlias = "str | os.PathLike[str] | bytes"
"""An input image: a path, an ``http(s)`` or ``data:`` URL, or the file's bytes."""


class Lora(TypedDict, total=False):
    """An adapter (LoRA) to apply: a name of the model's ``loras`` and an optional scale."""

    name: str
    scale: float


class ImageParams(TypedDict, total=False):
    """``client.images.generate(prompt, **params)``: each field optional, unset (or
    ``None``) taking the server's default."""

    aspect_ratio: str | None
    """One of ``genserve.vocabulary.IMAGE_ASPECT_RATIOS`` (1:1)."""
    output_format: str | None
    """png, jpeg or webp (png)."""
    num_images: int | None
    """1 to 4 (1)."""
    model: str | None
    """A name of ``client.models.list()`` (the server's default image model)."""
    webhook_url: str | None
    """Called (signed) when the generation ends."""
    seed: int | None
    """0 to 2**32 - 1; image ``i`` uses ``seed + i`` (a random one, returned on each image)."""
    negative_prompt: str | None
    """What the images should not show."""
    steps: int | None
    """Denoising steps, up to the model's ``max_steps`` (the model's default); more cost more."""
    guidance_scale: float | None
    """Classifier-free guidance within the model's range (the model's default)."""
    width: int | None
    """Exact width in pixels, with ``height``, instead of ``aspect_ratio``."""
    height: int | None
    """Exact height in pixels, with ``width``."""
    image: ImageInput | None
    """An input image (a path, an ``http(s)`` or ``data:`` URL, or bytes): image to image,
    inpainting with ``mask``, or an edit, as the model's ``image_modes`` allow."""
    mask: ImageInput | None
    """Inpainting: a mask of ``image`` (white is repainted), given like ``image``."""
    strength: float | None
    """With ``image``: how much of it is repainted, above 0 to 1 (the model's default)."""
    loras: Sequence[Lora | str] | None
    """Adapters (LoRA) to apply, at most 3: ``{"name": ..., "scale": ...}`` or a bare name
    (its default scale); ``client.models.list()`` shows each model's."""
    fast: bool | None
    """Run with the model's step cache (``step_cache`` in ``client.models.list()``): faster,
    a slightly different picture, the same price (False)."""


class VideoParams(TypedDict, total=False):
    """``client.videos.generate(prompt, **params)``: each field optional, unset (or
    ``None``) taking the server's default."""

    model: str | None
    """A name of ``client.models.list()`` (vidu-q2)."""
    duration: int | None
    """Whole seconds (4)."""
    resolution: str | None
    """360p, 520p, 720p or 1080p (720p)."""
    aspect_ratio: str | None
    """One of ``genserve.vocabulary.VIDEO_ASPECT_RATIOS`` (16:9)."""
    webhook_url: str | None
    """Called (signed) when the generation ends."""
    seed: int | None
    """0 to 2**32 - 1 (a random one, returned as the result's ``seed``)."""
    negative_prompt: str | None
    """What the video should not show."""
    image: ImageInput | None
    """The first frame (a path, an ``http(s)`` or ``data:`` URL, or bytes), for models that
    serve image to video."""
    fast: bool | None
    """Run with the model's step cache (``step_cache`` in ``client.models.list()``): faster,
    slightly different frames, the same price (False)."""


class ThreeDParams(TypedDict, total=False):
    """``client.three_d.generate(image, **params)``: exactly one image, the positional
    ``image`` (a path, an ``http(s)`` URL or bytes) or one of the ``image_*`` fields."""

    image_path: str | os.PathLike[str] | None
    """A PNG, JPEG or WebP file, sent as base64."""
    image_url: str | None
    """An ``http(s)`` URL the server fetches."""
    image_bytes: bytes | None
    """The file's bytes, sent as base64."""
    texture_quality: str | None
    """no or standard."""
    texture_alignment: str | None
    """original_image or geometry."""
    orientation: str | None
    """default or align_image."""
    model: str | None
    """A name of ``client.models.list()`` (the server's default 3D model)."""
    webhook_url: str | None
    """Called (signed) when the generation ends."""


def image_fields(image: ImageInput, prefix: str = "image") -> dict[str, str]:
    """``{prefix}_url`` for an ``http(s)`` URL, else ``{prefix}_base64`` (a ``data:`` URL as
    given, bytes or a file's contents encoded)."""
    if isinstance(image, bytes | bytearray):
        return {f"{prefix}_base64": base64.b64encode(bytes(image)).decode("ascii")}
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        return {f"{prefix}_url": image}
    if isinstance(image, str) and image.startswith("data:"):
        return {f"{prefix}_base64": image}  # the server reads its base64 part
    return {f"{prefix}_base64": base64.b64encode(Path(image).read_bytes()).decode("ascii")}


def _image_prompt_body(prompt: Any, values: dict[str, Any]) -> dict[str, Any]:
    """An image or video body: the prompt, and the input ``image`` and ``mask`` as the
    body's ``image_*`` and ``mask_*`` fields."""
    image, mask = values.pop("image", None), values.pop("mask", None)
    if values.get("loras") is not None:
        values["loras"] = [{"name": x} if isinstance(x, str) else dict(x) for x in values["loras"]]
    inputs: dict[str, Any] = {}
    if image is not None:
        inputs.update(image_fields(image))
    if mask is not None:
        inputs.update(image_fields(mask, "mask"))
    return {"prompt": prompt, **values, **inputs}


def _image_body(image: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The 3D body from exactly one image: a path, a URL or bytes (``image`` guesses which)."""
    image_path = values.pop("image_path", None)
    image_url = values.pop("image_url", None)
    image_bytes = values.pop("image_bytes", None)
    given = [v for v in (image, image_path, image_url, image_bytes) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one image: image_path, image_url or image_bytes")
    body: dict[str, Any] = {}
    if isinstance(image, bytes | bytearray):
        image_bytes = bytes(image)
    elif isinstance(image, str) and image.startswith(("http://", "https://")):
        image_url = image
    elif isinstance(image, str) and image.startswith("data:"):
        body["image_base64"] = image  # a data URL; the server reads its base64 part
    elif image is not None:
        image_path = image
    if image_url is not None:
        body["image_url"] = image_url
    elif image_bytes is not None:
        body["image_base64"] = base64.b64encode(image_bytes).decode("ascii")
    elif image_path is not None:
        body["image_base64"] = base64.b64encode(Path(image_path).read_bytes()).decode("ascii")
    return {**body, **values}


@dataclass(frozen=True)
class KindSpec:
    """What the SDK knows of one kind: where it is posted, what it takes and answers."""

    kind: Kind
    path: str
    params: type[Any]
    """The kind's ``TypedDict``: its keys are the body's optional fields, in order."""
    result: type[GenerationResult]
    body: Callable[[Any, dict[str, Any]], dict[str, Any]]
    """The body from the positional argument (a prompt, an image) and the set parameters."""

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.params.__annotations__)


def _path(kind: Kind) -> str:
    """``/api/v1/images``: a kind's route is its ``type`` word of the projects listing."""
    return "/api/v1/" + next(word for word, k in PROJECT_TYPES.items() if k == kind)


_DECLARED: dict[Kind, tuple[type[Any], type[GenerationResult], Callable[..., dict[str, Any]]]] = {
    "image": (ImageParams, ImageResult, _image_prompt_body),
    "video": (VideoParams, VideoResult, _image_prompt_body),
    "3d": (ThreeDParams, ModelResult, _image_body),
}
KIND_SPECS: dict[Kind, KindSpec] = {
    kind: KindSpec(kind, _path(kind), *_DECLARED[kind]) for kind in KINDS
}
"""Every kind of ``genserve.vocabulary.KINDS``; a kind missing here fails at import."""


def request_body(
    spec: KindSpec,
    first: Any,
    params: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    *,
    method: str = "generate",
) -> dict[str, Any]:
    """The JSON body of one generation: the declared parameters that are set, then
    ``extra`` (fields this SDK does not know yet) over them."""
    fields = spec.fields
    for name in params:
        if name not in fields:
            raise TypeError(f"{method}() got an unexpected keyword argument {name!r}")
    values = {name: params[name] for name in fields if params.get(name) is not None}
    return {**spec.body(first, values), **(extra or {})}
