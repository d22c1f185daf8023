"""Each speed option of a model entry changes the loaded pipeline, or says why it cannot here.

The tiny SDXL is loaded through the real loader (or the registry, for the
warm-up) with one option at a time, and the test looks for the option's own
mark on the pipeline: a dtype, a memory format, a VAE flag, a quantized tensor,
a compiled block, compiled code on disk, a scheduler that has run. The CUDA-only
options are checked for what they do on a CPU: a warning, and an unchanged pipeline.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import AttnProcessor2_0

from inference_server.errors import ModelLoadError
from inference_server.geometry import image_size
from inference_server.loader import load_pipeline
from inference_server.model_config import ModelSpec, ModelTable
from inference_server.pipelines.image import ImageRun, run_image
from inference_server.registry import ModelRegistry
from inference_server.speed import cxx_compiler
from inference_server.warmup import warmup_size

needs_no_cuda = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks what a CUDA-only option does on a CPU"
)


def tiny(**options: Any) -> ModelSpec:
    """The tiny SDXL at 64x64 with ``options``; no warm-up unless asked."""
    return ModelSpec.model_validate(
        {
            "name": "speed",
            "kind": "image",
            "source": "builtin:tiny-sdxl",
            "width": 64,
            "height": 64,
            "steps": 2,
            "warmup": False,
            **options,
        }
    )


def load(model_cache: Path, **options: Any) -> Any:
    return load_pipeline(tiny(**options), model_cache)


def generate(pipe: Any) -> None:
    with torch.inference_mode():
        out = pipe(prompt="a", width=64, height=64, num_inference_steps=1, output_type="pil")
    assert out.images[0].size == (64, 64)


def linear_weight(pipe: Any) -> torch.Tensor:
    """A weight of one of the UNet's linear layers (those that quantization replaces)."""
    weight: torch.Tensor = pipe.unet.down_blocks[1].attentions[0].proj_in.weight
    return weight


LoadWarned = Callable[..., Any]
"""``load_warned(warning, **options)``: the pipeline loaded with ``options``."""


@pytest.fixture()
def load_warned(model_cache: Path, caplog: pytest.LogCaptureFixture) -> LoadWarned:
    """Loads with options that the loader must answer with a warning."""

    def load_it(warning: str, **options: Any) -> Any:
        with caplog.at_level(logging.WARNING, "inference_server.speed"):
            pipe = load(model_cache, **options)
        messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(warning in m for m in messages), messages
        return pipe

    return load_it


def test_dtype_is_the_weights_type(model_cache: Path) -> None:
    assert next(load(model_cache).unet.parameters()).dtype == torch.float32
    pipe = load(model_cache, dtype="bfloat16")
    assert {p.dtype for p in pipe.unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in pipe.vae.parameters()} == {torch.bfloat16}


def test_channels_last_changes_the_unet_memory_format(model_cache: Path) -> None:
    plain = load(model_cache).unet.conv_in.weight
    assert plain.is_contiguous() and not plain.is_contiguous(memory_format=torch.channels_last)
    weight = load(model_cache, channels_last=True).unet.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def test_vae_tiling_and_slicing_reach_the_vae(model_cache: Path) -> None:
    plain = load(model_cache).vae
    assert not plain.use_tiling and not plain.use_slicing
    tiled = load(model_cache, vae_tiling=True).vae
    assert tiled.use_tiling and not tiled.use_slicing
    sliced = load(model_cache, vae_slicing=True)
    assert sliced.vae.use_slicing and not sliced.vae.use_tiling
    generate(sliced)


def test_attention_is_sdpa_by_default(model_cache: Path) -> None:
    processors = load(model_cache).unet.attn_processors.values()
    assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors)


@needs_no_cuda
def test_xformers_on_a_cpu_keeps_sdpa_and_says_so(load_warned: LoadWarned) -> None:
    pipe = load_warned("speed: xformers needs CUDA; keeping SDPA", attention="xformers")
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())
    generate(pipe)


@needs_no_cuda
def test_cpu_offload_on_a_cpu_is_ignored_with_a_warning(load_warned: LoadWarned) -> None:
    pipe = load_warned("speed: cpu_offload needs CUDA", cpu_offload=True)
    assert not hasattr(pipe.unet, "_hf_hook"), "no offload hooks"
    assert pipe.device.type == "cpu"
    generate(pipe)


@needs_no_cuda
def test_a_cuda_model_on_a_machine_without_cuda_runs_on_the_cpu(load_warned: LoadWarned) -> None:
    pipe = load_warned("speed: cuda:0 configured but CUDA is not available", device="cuda:0")
    assert pipe.device.type == "cpu"


@needs_no_cuda
def test_fp8_on_a_cpu_runs_unquantized_with_a_warning(load_warned: LoadWarned) -> None:
    pipe = load_warned(
        "quantize = 'fp8' needs a CUDA GPU of compute capability 8.9", quantize="fp8"
    )
    assert type(linear_weight(pipe)) is torch.nn.Parameter
    generate(pipe)


def test_int8_quantizes_the_denoiser_weights(model_cache: Path) -> None:
    pytest.importorskip("torchao", reason="torchao is in the cuda extra")
    from torchao.utils import TorchAOBaseTensor

    assert not isinstance(linear_weight(load(model_cache)), TorchAOBaseTensor)
    pipe = load(model_cache, quantize="int8")
    weight = linear_weight(pipe)
    assert isinstance(weight, TorchAOBaseTensor), type(weight)
    assert not isinstance(pipe.vae.decoder.conv_in.weight, TorchAOBaseTensor), "the denoiser only"
    generate(pipe)


def test_quantizing_without_torchao_names_what_to_install(
    model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing torchao stops the load (the model would not fit or run as configured)."""
    monkeypatch.setitem(sys.modules, "torchao", None)  # `import torchao` now raises ImportError
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    with pytest.raises(ModelLoadError, match=r"needs torchao: pip install 'genserve\[cuda\]'"):
        load(model_cache, quantize="int8")


def compiled_blocks(pipe: Any) -> list[bool]:
    """For each of the UNet's transformer blocks: whether it is wrapped by torch.compile."""
    return [
        m._compiled_call_impl is not None
        for m in pipe.unet.modules()
        if isinstance(m, BasicTransformerBlock)
    ]


@pytest.fixture()
def inductor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inductor with its C++ compiler (else the test is skipped), caching where the model entry
    says rather than where the environment does (the variable is restored after the test)."""
    if cxx_compiler() is None:
        pytest.skip("inductor needs a C++ compiler")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)


@pytest.mark.usefixtures("inductor")
def test_compile_is_regional(model_cache: Path, tmp_path: Path) -> None:
    """Only the repeated transformer blocks are compiled, not the whole UNet (nothing runs)."""
    plain = compiled_blocks(load(model_cache))
    assert plain and not any(plain)
    pipe = load_pipeline(tiny(compile=True), model_cache, tmp_path / "compile")
    assert compiled_blocks(pipe) == [True] * len(plain)
    assert pipe.unet._compiled_call_impl is None


def test_compile_without_a_cxx_compiler_runs_eagerly(load_warned: LoadWarned) -> None:
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"cpp.cxx": (None, "no-such-c++-compiler")}):
        pipe = load_warned("speed: compile needs a C++ compiler", compile=True)
    blocks = compiled_blocks(pipe)
    assert blocks and not any(blocks)


def test_warm_up_runs_the_pipeline_once_at_load(
    model_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fresh scheduler has no timesteps; one that ran the warm-up's two steps has."""
    cold, warm, lazy = tiny(name="cold"), tiny(name="warm", warmup=True), tiny(name="lazy")
    lazy = lazy.model_copy(update={"warmup": True, "preload": False})
    registry = ModelRegistry(ModelTable(models=[cold, warm, lazy]), model_cache, queue_size=1)
    with caplog.at_level(logging.INFO, "inference_server.warmup"):
        assert registry.pipeline(warm).scheduler.num_inference_steps == 2
        assert registry.pipeline(cold).scheduler.num_inference_steps is None
        # Loaded by its first request: a warm-up would only delay that request.
        assert registry.pipeline(lazy).scheduler.num_inference_steps is None
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == [
        "warm warmed up: 2 steps at 64x64, batches of 1"
    ]


@pytest.mark.usefixtures("inductor")
def test_compile_at_warm_up_fills_the_persistent_cache(model_cache: Path, tmp_path: Path) -> None:
    """The warm-up compiles (about a minute on two cores) into the configured folder.

    It runs a batch of one and one of two, so the second compile makes the batch
    dimension dynamic: a later batch of three compiles nothing more.
    """
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # nothing compiled earlier in this process is reused
    cache = tmp_path / "compile"
    spec = tiny(compile=True, warmup=True, max_batch_size=4)
    registry = ModelRegistry(
        ModelTable(models=[spec]), model_cache, queue_size=1, compile_cache_dir=cache
    )
    pipe = registry.pipeline(spec)
    assert pipe.scheduler.num_inference_steps == 2
    graphs = [p for p in (cache / "fxgraph").rglob("*") if p.is_file()]
    assert graphs, f"no compiled graphs under {cache}"
    compiled = counters["stats"]["unique_graphs"]
    assert compiled > 0
    three = ImageRun("a batch", "", 64, 64, 3, 2, spec.guidance, 1)
    assert len(run_image(pipe, three, lambda *a: None)) == 3
    assert counters["stats"]["unique_graphs"] == compiled
    generate(pipe)


def test_warm_up_runs_at_the_size_of_a_request_without_a_ratio() -> None:
    assert warmup_size(tiny(width=128, height=128)) == (128, 128)  # 1:1, the default ratio
    wide = tiny(width=128, height=128, aspect_ratios=["16:9"])
    assert warmup_size(wide) == image_size("16:9", 128, 128, 8) != (128, 128)
