"""The model registry's configuration: public names bound to pipelines.

Read from a TOML file (``[models.<public-name>]`` tables). What a model
accepts (aspect ratios, resolutions, durations, mesh options) is part of its
entry, defaulting to the shared vocabulary; the REST bridge learns all of it
through ``ListModels`` and never reads this file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genserve import vocabulary as vocab
from genserve.vocabulary import Kind
from inference_server.pipelines.step_cache import StepCache


class LoraSpec(BaseModel):
    """An adapter (LoRA) a model offers: ``[[models.<name>.loras]]`` in the models file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="the name requests use")
    source: str = Field(
        description="a folder or repository id holding the weights; 'builtin:demo-style': the "
        "small example adapter of the built-in image model, made next to it"
    )
    weight_name: str | None = Field(
        None, description="the weight file in source (diffusers' weight_name); unset: its default"
    )
    scale: float = Field(
        1.0, ge=-4.0, le=4.0, description="the scale a request that sets none gets"
    )


class ModelSpec(BaseModel):
    """One public model name and the pipeline behind it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Kind
    source: str = Field(
        description="repository id, local folder, or 'builtin:<name>' for a small built-in model"
    )
    pipeline: str = Field("auto", description="diffusers pipeline class name, or 'auto'")
    default: bool = False
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    device: str = "cpu"
    devices: list[str] | None = Field(
        None,
        min_length=1,
        description='several devices (or ["auto"]: every CUDA device, else the CPU): one '
        "replica and one queue per device, each request to the replica with the least waiting; "
        "unset: device alone",
    )
    steps: int = Field(4, ge=1, le=200)
    max_steps: int = Field(
        100,
        ge=1,
        le=200,
        description="the most denoising steps a request may ask for (unset: 100, or the "
        "model's own steps where they are more)",
    )
    guidance: float = Field(5.0, ge=0.0, le=30.0)
    min_guidance: float = Field(
        0.0, ge=0.0, le=30.0, description="the lowest guidance scale a request may ask for"
    )
    max_guidance: float = Field(
        20.0, ge=0.0, le=30.0, description="the highest guidance scale a request may ask for"
    )
    width: int = Field(1024, ge=16)
    height: int = Field(1024, ge=16)
    size_factor: int = Field(8, ge=1)
    max_pixels: int | None = Field(
        None,
        ge=256,
        description="images: the most pixels (width times height) a request's width and "
        "height may ask for; unset: four times the native width times height",
    )
    frame_rate: float = Field(24.0, gt=0)
    temporal_factor: int = Field(8, ge=1)
    min_duration: int = Field(vocab.MIN_DURATION_S, ge=vocab.MIN_DURATION_S)
    max_duration: int = Field(vocab.MAX_DURATION_S, ge=vocab.MIN_DURATION_S)
    default_duration: int = Field(vocab.DEFAULT_DURATION_S, ge=vocab.MIN_DURATION_S)
    aspect_ratios: list[str] | None = Field(
        None, description="accepted aspect ratios; unset means every ratio of the vocabulary"
    )
    resolutions: list[vocab.Resolution] = Field(default_factory=lambda: list(vocab.RESOLUTIONS))
    output_formats: list[vocab.OutputFormat] = Field(
        default_factory=lambda: list(vocab.OUTPUT_FORMATS)
    )
    max_images: int = Field(vocab.MAX_IMAGES, ge=vocab.MIN_IMAGES, le=vocab.MAX_IMAGES)
    texture_qualities: list[vocab.TextureQuality] = Field(
        default_factory=lambda: list(vocab.TEXTURE_QUALITIES)
    )
    texture_alignments: list[vocab.TextureAlignment] = Field(
        default_factory=lambda: list(vocab.TEXTURE_ALIGNMENTS)
    )
    orientations: list[vocab.Orientation] = Field(default_factory=lambda: list(vocab.ORIENTATIONS))
    negative_prompt: str = ""
    image_modes: list[vocab.ImageMode] = Field(
        default_factory=lambda: list(vocab.IMAGE_MODES[:1]),
        description="images: what the model serves: text_to_image, image_to_image and "
        "inpaint (the text-to-image weights shared through diffusers' from_pipe), edit",
    )
    strength: float = Field(
        0.75, gt=0.0, le=1.0, description="images: how much of an input image is repainted"
    )
    image_to_video: bool = Field(
        False,
        description="videos: a request may give the first frame (LTX-Video and LTX-2 through "
        "their image-to-video pipelines, made with from_pipe on the loaded weights)",
    )
    first_frame_required: bool = Field(
        False,
        description="videos: the model makes video only from a first frame (an image-to-video "
        "checkpoint such as Wan 2.1 I2V); a request without one is refused before any work. "
        "Needs image_to_video = true",
    )
    loras: list[LoraSpec] = Field(
        default_factory=list,
        description="images: adapters (LoRA) a request may apply, up to three at once; loaded "
        "with the model, switched per call",
    )
    mesh_grid_size: int | None = Field(
        None,
        ge=16,
        le=512,
        description="3D (Shap-E): the side of the grid its surface is decoded on; finer is "
        "more detail, cubically more time and memory; unset: 128 for a checkpoint, 32 for "
        "the small built-in",
    )
    max_sequence_length: int | None = Field(
        None,
        ge=1,
        description="text tokens of the long text encoder (T5) where the pipeline takes "
        "max_sequence_length (image models: FLUX, SD3); unset: the pipeline's default",
    )
    vae_tiling: bool = False
    vae_slicing: bool = Field(
        False, description="decode the images of one call one at a time: less memory, same output"
    )
    cpu_offload: bool = False
    attention: Literal["sdpa", "xformers"] = "sdpa"
    channels_last: bool = False
    compile: bool = False
    quantize: Literal["none", "int8", "fp8"] = Field(
        "none",
        description="torchao weight quantization of the denoiser: int8 anywhere, fp8 on CUDA "
        "GPUs of compute capability 8.9+ (elsewhere skipped with a warning); needs torchao",
    )
    warmup: bool = Field(
        True,
        description="one short generation (2 steps, at a default request's size) right after a "
        "preloaded image model loads, so compiling and kernel choice are not paid by the first "
        "request",
    )
    preload: bool = True
    pin: bool = Field(
        False,
        description="never leaves its device to make room for another model (nor when idle)",
    )
    idle_unload_s: float | None = Field(
        None,
        gt=0,
        description="let go of the model (weights freed) once unused this many seconds; unset: "
        "it stays until another model needs its room",
    )
    max_batch_size: int = Field(
        4,
        ge=1,
        le=64,
        description="image requests of this model with the same size, steps and guidance "
        "merged into one pipeline call; 1 turns batching off (video and 3D always run alone)",
    )
    batch_wait_ms: float = Field(
        5.0,
        ge=0,
        le=10_000,
        description="the longest a request waits for company before its batch starts",
    )
    batch_fill_ms: float = Field(
        50.0,
        ge=0,
        le=10_000,
        description="the longest a batch that would start with fewer requests than the "
        "model's recent demand (its last call's requests and those then waiting, within a "
        "second) waits for them, so closed-loop clients keep sharing calls; about a call's "
        "fixed cost; 0 turns it off (a lone client's demand is one request: it never waits)",
    )
    cache: Literal["none", "first_block", "taylorseer", "magcache"] = Field(
        "none",
        description="a step cache of diffusers for diffusion transformers (FLUX, SD3, Wan, LTX), "
        "used by requests that ask for fast: first_block (First-Block-Cache), taylorseer "
        "(TaylorSeer) or magcache (MagCache); refused with a warning on a UNet (SDXL)",
    )
    cache_threshold: float | None = Field(
        None,
        gt=0,
        le=10,
        description="first_block and magcache: the change below which a step reuses its cached "
        "blocks; higher is faster and further from the full result (unset: 0.05 for "
        "first_block, 0.06 for magcache)",
    )
    cache_interval: int | None = Field(
        None,
        ge=1,
        le=100,
        description="taylorseer: steps predicted between two computed in full (unset: 5)",
    )
    cache_mag_ratios: list[float] | None = Field(
        None,
        description="magcache: the checkpoint's magnitude ratios, one per step of a calibration "
        "run (interpolated to each request's steps); unset: FLUX.1's, shipped by diffusers",
    )
    preview_decoder: str | None = Field(
        None,
        description="a diffusers AutoencoderTiny (repository id or folder, e.g. "
        "madebyollin/taesdxl) that decodes live previews of images; unset: a linear "
        "latent-to-RGB projection",
    )

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_alias(cls, value: Any) -> Any:
        """Model files written before the kinds had one name said ``mesh`` for 3D."""
        return "3d" if value == "mesh" else value

    @model_validator(mode="after")
    def _loras(self) -> ModelSpec:
        names = [lora.name for lora in self.loras]
        if len(set(names)) != len(names):
            raise ValueError("two loras have the same name")
        return self

    @model_validator(mode="after")
    def _first_frame(self) -> ModelSpec:
        if self.first_frame_required and not (self.kind == "video" and self.image_to_video):
            raise ValueError("first_frame_required needs kind = 'video' and image_to_video = true")
        if "ImageToVideo" in self.pipeline and not self.first_frame_required:
            raise ValueError(
                f"{self.pipeline} makes video only from a first frame: set "
                "image_to_video = true and first_frame_required = true"
            )
        return self

    @model_validator(mode="after")
    def _durations(self) -> ModelSpec:
        if self.min_duration > self.max_duration:
            raise ValueError("min_duration is above max_duration")
        if not self.min_duration <= self.default_duration <= self.max_duration:
            raise ValueError("default_duration is outside min_duration..max_duration")
        allowed = vocab.ASPECT_RATIOS[self.kind]
        if self.aspect_ratios is None:
            self.aspect_ratios = list(allowed)
        unknown = [r for r in self.aspect_ratios if r not in allowed]
        if unknown:
            raise ValueError(f"aspect_ratios {unknown} are not among {', '.join(allowed)}")
        if "max_steps" not in self.model_fields_set:
            self.max_steps = max(self.max_steps, self.steps)
        if self.steps > self.max_steps:
            raise ValueError("steps is above max_steps")
        if not self.min_guidance <= self.guidance <= self.max_guidance:
            raise ValueError("guidance is outside min_guidance..max_guidance")
        return self

    @model_validator(mode="after")
    def _cache_options(self) -> ModelSpec:
        named = {
            "cache_threshold": ("first_block", "magcache"),
            "cache_interval": ("taylorseer",),
            "cache_mag_ratios": ("magcache",),
        }
        for option, caches in named.items():
            if getattr(self, option) is not None and self.cache not in caches:
                raise ValueError(
                    f"{option} applies to cache = {' or '.join(map(repr, caches))}, "
                    f"not {self.cache!r}"
                )
        return self

    @property
    def step_cache(self) -> StepCache | None:
        """The step cache fast requests run with; None when the entry names none."""
        if self.cache == "none":
            return None
        ratios = tuple(self.cache_mag_ratios) if self.cache_mag_ratios else None
        return StepCache(self.cache, self.cache_threshold, self.cache_interval, ratios)

    @property
    def pixel_limit(self) -> int:
        """The most pixels one image may have: ``max_pixels``, or four times the native area."""
        return self.max_pixels or 4 * self.width * self.height

    @property
    def allowed_aspect_ratios(self) -> list[str]:
        return list(self.aspect_ratios or ())


class DeviceSpec(BaseModel):
    """One device's room for models (``[devices."cuda:0"]`` in the models file)."""

    model_config = ConfigDict(extra="forbid")

    memory_budget_mb: float | None = Field(
        None,
        gt=0,
        description="MB of model weights (parameters and buffers: estimated from the weight files "
        "before a first load, measured once loaded) the device holds at once; unset: 90% of the "
        "GPU's memory, or of the host's for cpu",
    )
    max_resident_models: int | None = Field(
        None, ge=1, description="at most this many models on the device at once; unset: no cap"
    )


class ModelTable(BaseModel):
    """All configured models."""

    models: list[ModelSpec]
    devices: dict[str, DeviceSpec] = Field(default_factory=dict)

    def get(self, name: str, kind: Kind) -> ModelSpec | None:
        for spec in self.models:
            if spec.name == name and spec.kind == kind:
                return spec
        return None

    def default(self, kind: Kind) -> ModelSpec | None:
        of_kind = [m for m in self.models if m.kind == kind]
        for spec in of_kind:
            if spec.default:
                return spec
        return of_kind[0] if of_kind else None

    def names(self, kind: Kind) -> list[str]:
        return [m.name for m in self.models if m.kind == kind]


_TINY_VIDEO: dict[str, object] = {
    "kind": "video",
    "steps": 2,
    "guidance": 3.0,
    "size_factor": 32,
    "frame_rate": 8.0,
    "temporal_factor": 8,
    "min_duration": 1,
    "max_duration": 10,
}

EMBEDDED_MODELS: dict[str, dict[str, object]] = {
    "nano-banana": {
        "kind": "image",
        "source": "builtin:tiny-sdxl",
        "default": True,
        "steps": 4,
        "max_steps": 50,
        "guidance": 5.0,
        "image_modes": ["text_to_image", "image_to_image", "inpaint"],
        "loras": [{"name": "demo-style", "source": "builtin:demo-style"}],
        "width": 128,
        "height": 128,
        "size_factor": 8,
    },
    # The relief model needs no weights and runs in about a second on a CPU;
    # the tiny Shap-E (random weights, built locally) is the learned pipeline's
    # stand-in, loaded on first use so it costs nothing at start-up.
    "relief": {
        "kind": "3d",
        "source": "builtin:relief",
        "default": True,
        "steps": 3,
    },
    "shap-e": {
        "kind": "3d",
        "source": "builtin:tiny-shap-e",
        "pipeline": "ShapEImg2ImgPipeline",
        "steps": 4,
        "guidance": 3.0,
        "preload": False,
    },
    # Both video names run a tiny random-weight LTX model. 8 fps rather than the
    # real models' 24 keeps a default 4 s 720p clip (33 frames) quick on a CPU;
    # a production file sets the checkpoint's own frame rate.
    "vidu-q2": {
        **_TINY_VIDEO,
        "source": "builtin:tiny-ltx-video",
        "pipeline": "LTXPipeline",
        "default": True,
        "image_to_video": True,
    },
    "ltx-2": {
        **_TINY_VIDEO,
        "source": "builtin:tiny-ltx2",
        "pipeline": "LTX2Pipeline",
        "image_to_video": True,
    },
}


def table_from_mapping(raw: dict[str, dict[str, object]]) -> ModelTable:
    return ModelTable(models=[ModelSpec.model_validate({"name": k, **v}) for k, v in raw.items()])


def load_model_table(path: Path | None) -> ModelTable:
    """The configured models: the TOML file's ``[models.*]`` tables, or the embedded set."""
    if path is None:
        return table_from_mapping(EMBEDDED_MODELS)
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    models = raw.get("models")
    if not isinstance(models, dict) or not models:
        raise ValueError(f"{path}: no [models.<name>] tables")
    table = table_from_mapping(models)
    devices = raw.get("devices", {})
    if not isinstance(devices, dict):
        raise ValueError(f'{path}: devices must be tables, such as [devices."cuda:0"]')
    table.devices = {name: DeviceSpec.model_validate(value) for name, value in devices.items()}
    return table
