"""Text to image: ``POST /api/v1/images``.

Beyond the document's fields a request may set its ``seed``, ``negative_prompt``,
``steps``, ``guidance_scale`` and an exact ``width`` and ``height``; each is checked
against the model's entry here (``settle``), before the debit. The price follows the
work: more steps or pixels than the model's defaults cost proportionally more.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message
from pydantic import Field, PrivateAttr, StrictBool, StrictStr, field_validator

from genserve import vocabulary as vocab
from genserve.inference.v1 import inference_pb2 as pb
from rest_bridge.edge.answers import Answer, FileAnswer
from rest_bridge.edge.errors import ApiError, validation_error
from rest_bridge.edge.views import file_view
from rest_bridge.generation.base import (
    GenerationBody,
    GenerationKind,
    GenerationOutcome,
    InputFile,
    Preview,
    StrictBody,
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


class LoraChoice(StrictBody):
    """One adapter a request applies."""

    name: StrictStr = Field(
        min_length=1,
        max_length=64,
        description="A name of the model's loras (GET /api/v1/models).",
        examples=["demo-style"],
    )
    scale: float | None = Field(
        None,
        ge=-4,
        le=4,
        allow_inf_nan=False,
        description="How strongly it applies, -4 to 4. Unset: the adapter's default scale.",
        examples=[0.8],
    )


def _clean_negative(value: str | None) -> str | None:
    return None if value is None else vocab.clean_prompt(value)


class ImageRequest(GenerationBody):
    prompt: StrictStr
    aspect_ratio: vocab.ImageAspectRatio = vocab.DEFAULT_IMAGE_ASPECT_RATIO
    output_format: vocab.OutputFormat = vocab.DEFAULT_OUTPUT_FORMAT
    num_images: WholeNumber = Field(1, ge=vocab.MIN_IMAGES, le=vocab.MAX_IMAGES)
    model: StrictStr = "nano-banana"
    preview: Preview = False
    seed: WholeNumber | None = Field(
        None,
        ge=0,
        le=vocab.MAX_SEED,
        description="0 to 2^32-1; image i uses seed + i. Unset: a random one, returned. "
        "The same seed, parameters and model give the same image.",
        examples=[42],
    )
    negative_prompt: StrictStr | None = Field(
        None,
        description="What the image should not show (the prompt's rules and limits).",
        examples=["blurry, text, watermark"],
    )
    steps: WholeNumber | None = Field(
        None,
        ge=1,
        le=200,
        description="Denoising steps, 1 to the model's max_steps (GET /api/v1/models). "
        "Unset: the model's default. More than the default costs proportionally more.",
        examples=[8],
    )
    guidance_scale: float | None = Field(
        None,
        ge=0,
        le=30,
        allow_inf_nan=False,
        description="Classifier-free guidance, within the model's guidance range. "
        "Unset: the model's default.",
        examples=[5.0],
    )
    width: WholeNumber | None = Field(
        None,
        ge=1,
        le=16384,
        description="Exact width in pixels, with height, instead of aspect_ratio: a multiple "
        "of the model's size_factor, width times height within its max_pixels. More pixels "
        "than the model's native size cost proportionally more.",
        examples=[192],
    )
    height: WholeNumber | None = Field(
        None, ge=1, le=16384, description="Exact height in pixels, with width.", examples=[128]
    )
    image_url: StrictStr | None = Field(
        None,
        description="An input image to start from (image to image; inpainting with a mask), "
        "fetched like /api/v1/3d's; for models whose image_modes allow it.",
        examples=["https://example.com/photo.png"],
    )
    image_base64: StrictStr | None = Field(
        None,
        description="The input image as base64 (or a data: URL), instead of image_url.",
        examples=["data:image/png;base64,iVBORw0KGgo..."],
    )
    mask_url: StrictStr | None = Field(
        None,
        description="Inpainting: a mask of the input image; white is repainted.",
        examples=["https://example.com/mask.png"],
    )
    mask_base64: StrictStr | None = Field(
        None,
        description="The mask as base64 (or a data: URL), instead of mask_url.",
        examples=["data:image/png;base64,iVBORw0KGgo..."],
    )
    strength: float | None = Field(
        None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="With an input image: how much of it is repainted, above 0 to 1 "
        "(the model's default).",
        examples=[0.6],
    )
    fast: StrictBool = Field(
        False,
        description="Run with the model's step cache (`step_cache` in GET /api/v1/models): "
        "faster, a slightly different picture, the same price.",
    )

    loras: list[LoraChoice] | None = Field(
        None,
        max_length=vocab.MAX_LORAS,
        description="Adapters (LoRA) to apply, at most 3, each by a name the model offers "
        "(GET /api/v1/models lists them) with an optional scale.",
        examples=[[{"name": "demo-style", "scale": 0.8}]],
    )

    _prompt = field_validator("prompt")(vocab.clean_prompt)
    _negative = field_validator("negative_prompt")(_clean_negative)
    _edit: bool = PrivateAttr(False)

    @property
    def mode(self) -> str:
        """What the request asks the model for: its ``image_modes`` must include it. An
        input image without a mask is an ``edit`` once settled against an edit model."""
        if self.image_url is None and self.image_base64 is None:
            return "text_to_image"
        if self.mask_url is not None or self.mask_base64 is not None:
            return "inpaint"
        return "edit" if self._edit else "image_to_image"

    @property
    def sized(self) -> bool:
        """Whether the body gives its own width and height (settled: both or neither)."""
        return self.width is not None and self.height is not None

    @property
    def ratio(self) -> str:
        """The aspect ratio of its images: the one given, or that of its width and height."""
        if self.sized and "aspect_ratio" not in self.model_fields_set:
            assert self.width is not None and self.height is not None
            return vocab.size_ratio(self.width, self.height)
        return self.aspect_ratio


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class ImageFile(FileAnswer):
    aspect_ratio: str
    seed: int | None = None


class ImageAnswer(Answer):
    images: list[ImageFile]
    generation_id: str
    generation_time: int
    remaining_points: int
    request_id: str
    seed: int | None = None


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

    def price(self, settings: BridgeSettings, body: ImageRequest, model: ModelEntry) -> int:
        """``price_image`` per image, times the steps over the model's default and the pixels
        over its native size where they are more (rounded up); the defaults cost the same."""
        base = settings.price_image * body.num_images
        default_steps = max(1, model.default_steps)
        steps = max(body.steps or default_steps, default_steps)
        native = max(1, model.native_width * model.native_height)
        pixels = native
        if body.sized:
            assert body.width is not None and body.height is not None
            pixels = max(body.width * body.height, native)
        return _ceil_div(base * steps * pixels, default_steps * native)

    def price_table(self, settings: BridgeSettings) -> dict[str, Any]:
        return {
            "points_per_image": settings.price_image,
            "rule": "points_per_image x num_images, times steps / default_steps and "
            "width x height / (native_width x native_height) where each is above 1, "
            "rounded up",
        }

    def settle(self, body: ImageRequest, model: ModelEntry) -> ImageRequest:
        fast_allowed(body.fast, model)
        one_of("output_format", body.output_format, model.output_formats, model)
        if model.max_images and body.num_images > model.max_images:
            raise validation_error(
                "num_images", f"{model.name} makes at most {model.max_images} per request"
            )
        if (body.width is None) != (body.height is None):
            field = "height" if body.height is None else "width"
            raise validation_error(field, "width and height go together: give both or neither")
        _check_mode(body, model)
        _check_loras(body, model)
        if body.sized:
            _check_size(body, model)
        else:
            one_of("aspect_ratio", body.aspect_ratio, model.aspect_ratios, model)
        if body.steps is not None and model.max_steps and body.steps > model.max_steps:
            raise validation_error(
                "steps", f"must be at most {model.name}'s max_steps {model.max_steps}"
            )
        guidance = body.guidance_scale
        if guidance is not None and model.max_guidance:
            if not model.min_guidance <= guidance <= model.max_guidance:
                raise validation_error(
                    "guidance_scale",
                    f"must be within {model.name}'s guidance range "
                    f"{model.min_guidance:g} to {model.max_guidance:g}",
                )
        update: dict[str, Any] = {}
        if body.seed is None:
            update["seed"] = random.randint(0, vocab.MAX_SEED)
        if body.steps is None and model.default_steps:
            update["steps"] = model.default_steps
        if body.guidance_scale is None and model.max_guidance:
            update["guidance_scale"] = model.default_guidance
        if body.loras:  # each with its scale, so the project records what was applied
            defaults = dict(model.loras)
            update["loras"] = [
                LoraChoice(name=x.name, scale=defaults[x.name] if x.scale is None else x.scale)
                for x in body.loras
            ]
        settled = body.model_copy(update=update) if update else body
        settled._edit = body._edit
        return settled

    def fetches(self, body: ImageRequest) -> bool:
        return body.mode != "text_to_image"

    async def prepare(self, state: BridgeState, body: ImageRequest) -> ImageInputs:
        if body.mode == "text_to_image":
            return ImageInputs()
        settings = state.settings
        load = functools.partial(
            load_image_input,
            policy=settings.fetch_policy(),
            max_bytes=settings.max_upload_bytes,
            max_pixels=vocab.MAX_INPUT_PIXELS,
        )
        image = await load(body.image_url, body.image_base64)
        mask = None
        if body.mode == "inpaint":
            try:
                mask = await load(body.mask_url, body.mask_base64)
            except ApiError as err:
                raise _as_mask_error(err) from err
        return ImageInputs(image, mask)

    def inputs(self, body: ImageRequest, prepared: Any) -> list[InputFile]:
        """The input image and mask, kept with the project (roles ``input`` and ``mask``)."""
        inputs: ImageInputs = prepared or ImageInputs()
        return [
            InputFile(role, d.data, d.format, d.width, d.height)
            for role, d in (("input", inputs.image), ("mask", inputs.mask))
            if d is not None
        ]

    def params(self, body: ImageRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "aspect_ratio": body.ratio,
            "output_format": body.output_format,
            "num_images": body.num_images,
            "seed": body.seed,
            "negative_prompt": body.negative_prompt,
            "steps": body.steps,
            "guidance_scale": body.guidance_scale,
            **({"fast": True} if body.fast else {}),
        }
        if body.sized:
            params["width"], params["height"] = body.width, body.height
        if body.loras:
            params["loras"] = [lora.model_dump() for lora in body.loras]
        if body.mode != "text_to_image":
            params["mode"] = body.mode
            params["strength"] = body.strength
            if body.image_url is not None:
                params["image_url"] = body.image_url
            if body.mask_url is not None:
                params["mask_url"] = body.mask_url
        return params

    def request(self, body: ImageRequest, model: ModelEntry, rid: str, prepared: Any) -> Message:
        request = pb.GenerateImageRequest(
            model=model.name,
            prompt=body.prompt,
            negative_prompt=body.negative_prompt or "",
            aspect_ratio=body.aspect_ratio,
            num_images=body.num_images,
            format=vocab.OUTPUT_FORMAT_TO_PB[body.output_format],
            steps=body.steps or 0,
            request_id=rid,
            preview_every=preview_every(body.preview),
            fast=body.fast,
        )
        if body.sized:
            assert body.width is not None and body.height is not None
            request.width, request.height = body.width, body.height
            if "aspect_ratio" not in body.model_fields_set:
                request.aspect_ratio = ""
        if body.seed is not None:
            request.seed = body.seed
        if body.guidance_scale is not None:
            request.guidance_scale = body.guidance_scale
        for lora in body.loras or ():
            request.loras.add(name=lora.name, scale=lora.scale)
        inputs: ImageInputs = prepared or ImageInputs()
        if inputs.image is not None:
            request.init_image = inputs.image.data
            if body.strength is not None:
                request.strength = body.strength
        if inputs.mask is not None:
            request.mask_image = inputs.mask.data
        return request

    def output(
        self,
        state: BridgeState,
        body: ImageRequest,
        model: ModelEntry,
        outcome: GenerationOutcome,
    ) -> dict[str, Any]:
        seed = outcome.seed if body.seed is None else body.seed
        images = [
            {**file_view(state, a), "aspect_ratio": body.ratio, "seed": seed + a.index}
            for a in outcome.primaries()
        ]
        return {
            "images": images,
            "generation_id": outcome.generation.id,
            "seed": seed,
        }

    def describe(self, model: ModelEntry) -> dict[str, Any]:
        return {
            "aspect_ratios": list(model.aspect_ratios or vocab.IMAGE_ASPECT_RATIOS),
            "output_formats": list(model.output_formats or vocab.OUTPUT_FORMATS),
            "num_images": {"min": vocab.MIN_IMAGES, "max": model.max_images or vocab.MAX_IMAGES},
            "steps": {"default": model.default_steps, "max": model.max_steps},
            "guidance_scale": {
                "default": model.default_guidance,
                "min": model.min_guidance,
                "max": model.max_guidance,
            },
            "size": {
                "native_width": model.native_width,
                "native_height": model.native_height,
                "size_factor": model.size_factor,
                "max_pixels": model.max_pixels,
            },
            "seed": {"min": 0, "max": vocab.MAX_SEED},
            "image_modes": list(model.image_modes or ("text_to_image",)),
            "loras": [{"name": n, "default_scale": scale} for n, scale in model.loras],
        }

    def metadata(self, gen: Generation) -> dict[str, Any]:
        """What the project was made with, so it can be made again."""
        p = gen.params
        keys = (
            "seed",
            "negative_prompt",
            "steps",
            "guidance_scale",
            "width",
            "height",
            "mode",
            "strength",
            "image_url",
            "mask_url",
            "loras",
        )
        return {k: p[k] for k in keys if p.get(k) is not None} | {
            "output_format": p.get("output_format"),
            "num_images": p.get("num_images"),
        }


def _check_loras(body: ImageRequest, model: ModelEntry) -> None:
    """A 422 for an adapter the model does not offer, or one named twice."""
    offered = dict(model.loras)
    seen: set[str] = set()
    for lora in body.loras or ():
        if lora.name not in offered:
            names = ", ".join(offered) or "none"
            raise validation_error(
                "loras", f"{model.name} has no lora {lora.name!r}; it offers {names}"
            )
        if lora.name in seen:
            raise validation_error("loras", f"{lora.name!r} is named twice")
        seen.add(lora.name)


def _check_mode(body: ImageRequest, model: ModelEntry) -> None:
    """A 422 when the request's inputs ask for a mode the model does not serve."""
    has_image = body.image_url is not None or body.image_base64 is not None
    if not has_image:
        for name in ("mask_url", "mask_base64", "strength"):
            if getattr(body, name) is not None:
                raise validation_error(name, "needs an input image: image_url or image_base64")
    modes = model.image_modes or ("text_to_image",)
    body._edit = False  # decided afresh for this model
    body._edit = vocab.is_edit(body.mode, body.strength is not None, modes)
    if body._edit and body.strength is not None:
        raise validation_error("strength", f"{model.name} edits by the prompt: no strength")
    if body.mode not in modes:
        field = "image_url" if body.image_url is not None else "image_base64"
        if body.mode == "inpaint":
            field = "mask_url" if body.mask_url is not None else "mask_base64"
        raise validation_error(
            field, f"{model.name} does not serve {body.mode}; it serves {', '.join(modes)}"
        )


@dataclass(frozen=True)
class ImageInputs:
    """An image request's fetched and decoded inputs (none for text to image)."""

    image: DecodedImage | None = None
    mask: DecodedImage | None = None


def _as_mask_error(err: ApiError) -> ApiError:
    """An input loader's error about ``image_*`` fields, said of the ``mask_*`` ones."""
    details = [
        {**d, "field": str(d.get("field", "")).replace("image_", "mask_")}
        for d in (err.details or [])
    ]
    return ApiError(
        err.status,
        err.code,
        err.message.replace("image_url", "mask_url").replace("image_base64", "mask_base64"),
        details=details or None,
        headers=err.headers,
    )


def _check_size(body: ImageRequest, model: ModelEntry) -> None:
    """A 422 unless the body's width and height suit the model (and its aspect ratio)."""
    assert body.width is not None and body.height is not None
    factor = model.size_factor or 1
    for name, value in (("width", body.width), ("height", body.height)):
        if value % factor:
            raise validation_error(
                name, f"must be a multiple of {model.name}'s size_factor {factor}"
            )
    if model.max_pixels and body.width * body.height > model.max_pixels:
        raise validation_error(
            "width", f"width x height must be at most {model.name}'s max_pixels {model.max_pixels}"
        )
    if "aspect_ratio" in body.model_fields_set and not vocab.size_matches_ratio(
        body.width, body.height, body.aspect_ratio
    ):
        raise validation_error(
            "aspect_ratio", f"{body.aspect_ratio} disagrees with {body.width}x{body.height}"
        )


IMAGE = ImageKind()
