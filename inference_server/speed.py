"""The speed and memory options of a model's entry, applied to its loaded pipeline.

One model file serves a developer's CPU and a CUDA server alike: an option that
cannot run where the pipeline is placed (xformers, fp8, CPU offload on a CPU;
compile without a C++ compiler) is skipped with a warning naming the model, and
the pipeline runs as if it were unset. Only a request that can never be met
anywhere, quantizing without torchao, stops the load.

The order matters: placement first (torchao quantizes the weights where they
lie, and offload hooks must see the final modules), then the VAE's memory
options, attention, quantization, memory format, and compile last, so that it
traces the denoiser as it will run. Compile itself is lazy: the first call
traces and generates code, which is why a model is warmed up after loading
(``warmup.py``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from inference_server.errors import ModelLoadError
from inference_server.model_config import ModelSpec

log = logging.getLogger(__name__)

# fp8 matrix multiplication needs Ada (8.9) or Hopper (9.0) and later.
FP8_MIN_CAPABILITY = (8, 9)
QUANTIZE_EXTRA = "pip install 'genserve[cuda]' (or torchao alone)"
# max-autotune searches kernel configurations once per shape (kept in the compile cache);
# CUDA graphs stay off: a graph pins its inputs' memory and every new shape records another.
CUDA_COMPILE_MODE = "max-autotune-no-cudagraphs"


def on_cuda(spec: ModelSpec) -> bool:
    """Whether the model is configured for CUDA and CUDA is there."""
    return spec.device.startswith("cuda") and torch.cuda.is_available()


def placement(spec: ModelSpec) -> str:
    """The device the model runs on: the configured one, or the CPU where CUDA is missing."""
    return spec.device if on_cuda(spec) or not spec.device.startswith("cuda") else "cpu"


def denoiser_of(pipe: Any) -> Any:
    """The module run at every step (a UNet or a transformer), or ``None`` (Shap-E's prior)."""
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


def apply_speed_options(pipe: Any, spec: ModelSpec, compile_cache_dir: Path) -> None:
    """Places the pipeline and applies every speed and memory option of ``spec``."""
    cuda = on_cuda(spec)
    place(pipe, spec, cuda)
    vae_memory(pipe, spec)
    attention(pipe, spec, cuda)
    denoiser = denoiser_of(pipe)
    if spec.quantize != "none":
        quantize(denoiser, spec)
    if spec.channels_last:
        channels_last(pipe, spec)
    if spec.compile:
        compile_denoiser(denoiser, spec, cuda, compile_cache_dir)


def place(pipe: Any, spec: ModelSpec, cuda: bool) -> None:
    """The whole pipeline on its device, or model offload (one component on the GPU at a time).

    Offload trades speed for memory and only means something with a GPU: on a
    CPU every weight already lives in main memory.
    """
    if spec.device.startswith("cuda") and not cuda:
        log.warning(
            "%s: %s configured but CUDA is not available; running on the CPU",
            spec.name,
            spec.device,
        )
    if spec.cpu_offload and cuda:
        pipe.enable_model_cpu_offload(device=spec.device)
        return
    if spec.cpu_offload:
        log.warning("%s: cpu_offload needs CUDA; ignored on the CPU", spec.name)
    pipe.to(placement(spec))


def vae_memory(pipe: Any, spec: ModelSpec) -> None:
    """Tiled decoding (large pictures, long videos) and sliced decoding (one image at a time).

    Set on the VAE itself: diffusers' pipeline-level switches are deprecated or
    missing on some pipelines (LTX has none).
    """
    for on, name in ((spec.vae_tiling, "tiling"), (spec.vae_slicing, "slicing")):
        if not on:
            continue
        vae = getattr(pipe, "vae", None)
        enable = getattr(vae, f"enable_{name}", None)
        if enable is None:
            log.warning("%s: vae_%s set but the pipeline has no VAE offering it", spec.name, name)
            continue
        try:
            enable()
        except NotImplementedError as exc:
            log.warning("%s: vae_%s not available: %s", spec.name, name, exc)


def attention(pipe: Any, spec: ModelSpec, cuda: bool) -> None:
    """xformers' kernels where asked and installed; PyTorch's SDPA otherwise.

    SDPA needs nothing done: diffusers picks ``AttnProcessor2_0`` (and its
    counterparts in the transformers) whenever PyTorch has
    ``scaled_dot_product_attention``, and PyTorch chooses flash or
    memory-efficient kernels under it for the device.
    """
    if spec.attention != "xformers":
        return
    if not cuda:
        log.warning("%s: xformers needs CUDA; keeping SDPA", spec.name)
        return
    try:
        pipe.enable_xformers_memory_efficient_attention()
    except (ImportError, NotImplementedError, ValueError) as exc:
        log.warning("%s: xformers unavailable, keeping SDPA: %s", spec.name, exc)


def fp8_capable(device: str) -> bool:
    """Whether ``device`` is a CUDA GPU with fp8 matrix multiplication (compute capability 8.9+)."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(torch.device(device)) >= FP8_MIN_CAPABILITY


def quantize(denoiser: Any, spec: ModelSpec) -> None:
    """torchao weight quantization of the denoiser's linear layers, where they lie.

    ``int8``: int8 weights, activations in the model's dtype; half the memory of
    float16 weights and faster where the step is bound by reading weights, on a
    CPU too. ``fp8``: fp8 weights and per-call fp8 activations, running the
    GPU's fp8 matrix units; on anything but a CUDA GPU of compute capability 8.9
    or later it is skipped with a warning (a CPU developer can load a production
    file), so a model that only fits in fp8 fails there as out of memory.
    Only the denoiser: the text encoders and the VAE run once per request.
    """
    if denoiser is None:
        log.warning("%s: quantize = %r but the pipeline has no denoiser", spec.name, spec.quantize)
        return
    if spec.quantize == "fp8" and not fp8_capable(placement(spec)):
        log.warning(
            "%s: quantize = 'fp8' needs a CUDA GPU of compute capability %d.%d or later; "
            "running unquantized",
            spec.name,
            *FP8_MIN_CAPABILITY,
        )
        return
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            Int8WeightOnlyConfig,
            quantize_,
        )
    except ImportError as exc:
        raise ModelLoadError(
            f"{spec.name}: quantize = {spec.quantize!r} needs torchao: {QUANTIZE_EXTRA}"
        ) from exc
    config = (
        Int8WeightOnlyConfig()
        if spec.quantize == "int8"
        else Float8DynamicActivationFloat8WeightConfig()
    )
    quantize_(denoiser, config)


def channels_last(pipe: Any, spec: ModelSpec) -> None:
    """NHWC weights for a UNet's convolutions (what cuDNN's fastest kernels read).

    UNets only: a transformer denoiser has almost no convolutions, and a video
    VAE's are 3D.
    """
    unet = getattr(pipe, "unet", None)
    if unet is None:
        log.warning("%s: channels_last applies to UNets only; ignored", spec.name)
        return
    unet.to(memory_format=torch.channels_last)


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would use (``$CXX`` or g++), or ``None``.

    Inductor builds its CPU kernels with it, and Triton its launchers on CUDA.
    """
    from torch._inductor import cpp_builder

    try:
        return cpp_builder.get_cpp_compiler()
    except Exception:  # inductor's InvalidCxxCompiler, or a search that fails another way
        return None


def use_compile_cache(folder: Path) -> None:
    """Points inductor's on-disk caches (graphs, kernels, autotuning) at ``folder``.

    A restart then loads compiled code instead of generating it again: dynamo
    still traces, but code generation and autotuning, the slow part, are read
    back. The variable is process-wide and read when compiling, so every model
    of this server shares the folder (entries are keyed by content).
    """
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder.resolve())


def compile_denoiser(denoiser: Any, spec: ModelSpec, cuda: bool, cache_dir: Path) -> None:
    """Regional ``torch.compile`` of the denoiser, with a persistent cache.

    Regional: only the block a model repeats (``_repeated_blocks``: SDXL's
    transformer block, LTX's) is compiled, once, and reused by every instance,
    so compiling takes seconds where the whole model takes minutes, for most
    of the speed. A denoiser without repeated blocks is compiled whole.

    On CUDA with max-autotune; on a CPU in the default mode, and only where a
    C++ compiler is found (else skipped with a warning). Compiling happens at
    the first call, which the warm-up makes.
    """
    if denoiser is None:
        log.warning("%s: compile set but the pipeline has no denoiser", spec.name)
        return
    if cxx_compiler() is None:
        log.warning(
            "%s: compile needs a C++ compiler (g++, or $CXX) for inductor; running eagerly",
            spec.name,
        )
        return
    use_compile_cache(cache_dir)
    mode = CUDA_COMPILE_MODE if cuda else None
    if getattr(denoiser, "_repeated_blocks", None):
        try:
            denoiser.compile_repeated_blocks(mode=mode)
            return
        except ValueError as exc:  # the declared blocks are not in this model
            log.info("%s: regional compile unavailable (%s); compiling whole", spec.name, exc)
    denoiser.compile(mode=mode)
