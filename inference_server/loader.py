"""Loads a configured model: the real ``from_pretrained`` path for every source.

Built-in small models are written to a cache folder on first use and then
loaded back from it exactly as an operator's local checkpoint would be.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from inference_server.errors import ModelLoadError
from inference_server.model_config import LoraSpec, ModelSpec
from inference_server.pipelines.step_cache import check_applies
from inference_server.quiet import quiet_libraries
from inference_server.speed import apply_speed_options, placement
from inference_server.tiny.loras import DEMO_STYLE, ensure_demo_style

log = logging.getLogger(__name__)

# builtin name -> module holding ``build(folder)``; the relief model needs no weights.
BUILTIN_BUILDERS: dict[str, str] = {
    "tiny-sdxl": "inference_server.tiny.sdxl",
    "tiny-ltx-video": "inference_server.tiny.ltx_video",
    "tiny-ltx2": "inference_server.tiny.ltx2",
    "tiny-shap-e": "inference_server.tiny.shap_e",
    "tiny-flux": "inference_server.tiny.flux",
    "tiny-sd3": "inference_server.tiny.sd3",
    "tiny-wan": "inference_server.tiny.wan",
}
WEIGHTLESS = {"relief"}

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def dtype_keyword() -> str:
    """``dtype``, the name diffusers reads the weights' type from; older ones: ``torch_dtype``.

    A diffusers that knows ``dtype`` warns (a FutureWarning) on every load that
    passes the old name.
    """
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def builtin_name(spec: ModelSpec) -> str | None:
    return spec.source.removeprefix("builtin:") if spec.source.startswith("builtin:") else None


def ensure_builtin(name: str, cache_dir: Path) -> Path:
    """The folder of a built-in small model, building it there once (atomically)."""
    folder = cache_dir / name
    if (folder / "model_index.json").exists():
        return folder
    module_name = BUILTIN_BUILDERS.get(name)
    if module_name is None:
        raise ModelLoadError(f"unknown built-in model {name!r}")
    build: Callable[[Path], None] = importlib.import_module(module_name).build
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{name}-") as tmp:
        staging = Path(tmp) / name
        log.info("building built-in model %s in %s", name, folder)
        build(staging)
        if not (folder / "model_index.json").exists():
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
    return folder


def resolve_source(spec: ModelSpec, cache_dir: Path) -> str:
    name = builtin_name(spec)
    return str(ensure_builtin(name, cache_dir)) if name is not None else spec.source


def pipeline_class(spec: ModelSpec) -> Any:
    diffusers = importlib.import_module("diffusers")
    if spec.pipeline == "auto":
        return diffusers.DiffusionPipeline
    cls = getattr(diffusers, spec.pipeline, None)
    if cls is None:
        raise ModelLoadError(f"{spec.name}: diffusers has no pipeline class {spec.pipeline!r}")
    return cls


def load_pipeline(spec: ModelSpec, cache_dir: Path, compile_cache_dir: Path | None = None) -> Any:
    """``from_pretrained`` by repository id or folder, then device, memory and speed options.

    ``compile_cache_dir``: where compiled code is kept between starts; unset:
    ``compile`` inside ``cache_dir``.
    """
    if builtin_name(spec) in WEIGHTLESS:
        return None
    quiet_libraries()
    source = resolve_source(spec, cache_dir)
    try:
        pipe = pipeline_class(spec).from_pretrained(source, **{dtype_keyword(): DTYPES[spec.dtype]})
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{spec.name}: cannot load {source!r}: {exc}") from exc
    load_loras(pipe, spec, source)
    apply_speed_options(pipe, spec, compile_cache_dir or cache_dir / "compile")
    pipe.set_progress_bar_config(disable=True)
    # None where the model names no cache, or names one its denoiser cannot take (a warning).
    pipe.genserve_step_cache = check_applies(pipe, spec.name, spec.step_cache)
    if spec.preview_decoder:
        pipe.genserve_preview_decoder = load_preview_decoder(spec)
    return pipe


def lora_source(lora: LoraSpec, model_source: str) -> str:
    """Where an adapter's weights are: its folder or repository id; ``builtin:demo-style``
    is made next to the built-in model the first time."""
    if lora.source == "builtin:" + DEMO_STYLE:
        return str(ensure_demo_style(Path(model_source)))
    if lora.source.startswith("builtin:"):
        raise ModelLoadError(f"unknown built-in adapter {lora.source!r}")
    return lora.source


def load_loras(pipe: Any, spec: ModelSpec, source: str) -> None:
    """Loads each adapter of the entry once, under its name, and leaves them off: a call
    switches on the ones it asks for (``pipelines.image.use_loras``).

    A compiled model gets diffusers' hot-swap first (``enable_lora_hotswap``), so the
    adapters' weights are swapped in place of each other's without recompiling.
    """
    if not spec.loras:
        return
    if not hasattr(pipe, "load_lora_weights"):
        raise ModelLoadError(f"{spec.name}: {type(pipe).__name__} takes no LoRA adapters")
    if spec.compile and hasattr(pipe, "enable_lora_hotswap"):
        pipe.enable_lora_hotswap(target_rank=128)
    for lora in spec.loras:
        where = lora_source(lora, source)
        extra = {"weight_name": lora.weight_name} if lora.weight_name else {}
        try:
            pipe.load_lora_weights(where, adapter_name=lora.name, **extra)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"{spec.name}: cannot load adapter {lora.name!r} from {where!r}: {exc}"
            ) from exc
    pipe.disable_lora()


def load_preview_decoder(spec: ModelSpec) -> Any:
    """The tiny autoencoder that decodes previews, on the pipeline's device and dtype."""
    from diffusers import AutoencoderTiny

    assert spec.preview_decoder is not None
    try:
        decoder = AutoencoderTiny.from_pretrained(
            spec.preview_decoder, **{dtype_keyword(): DTYPES[spec.dtype]}
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{spec.name}: cannot load preview decoder {spec.preview_decoder!r}: {exc}"
        ) from exc
    return decoder.to(placement(spec))
