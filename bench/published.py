"""The published model families at their real size, with random weights.

Nothing can be downloaded where genserve is built and tested, yet the speed and
memory of a GPU depend on the real architecture, not on a tiny stand-in. Each
family here lists the components of its published ``model_index.json`` and the
values of their ``config.json`` (written out below, with the repository they
come from), and :func:`build` instantiates exactly those with random weights and
saves the pipeline in the diffusers layout. Loaded back with ``from_pretrained``
it runs the same kernels on the same shapes as the checkpoint: a benchmark of it
measures what the published model would cost, and its pictures are noise.

Where the values come from: the ``config.json`` files of the repositories named
in each family, as recorded by diffusers' conversion scripts
(``scripts/convert_*_to_diffusers.py``) and the model cards. Keys a published
file does not set are left at the class default, as ``from_pretrained`` would.

What differs from a download, by design:

- Tokenizers are built locally (``inference_server.tiny``): small vocabularies
  over the same tokenizer classes. The text encoders keep their published
  vocabulary size; their special-token ids (start, end, padding) follow the
  local tokenizer, since the pooled CLIP embedding is read at the end token.
- ``trimmed`` lists the few published values replaced even at full scale, each
  with its reason (LTX-2's Gemma 3 text encoder loses depth, not width: the
  whole family would not fit on the 64 GiB disk of the machine it is run on).
- ``scale`` below 1 shrinks widths (by whole attention heads, keeping the head
  size and the norm group multiples) and depths, for a dry run on a CPU; the
  links between components (cross-attention width = text encoder width, and so
  on) are derived, so every scale builds a pipeline that runs.

Weights are drawn on the GPU when there is one (seconds, where a CPU takes
minutes for a 12B transformer) and saved in ``dtype``.
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

Config = dict[str, Any]
Components = dict[str, tuple[str, Config]]
"""Component name -> (class name, config values), as ``model_index.json`` lists them."""
Configs = dict[str, Config]
"""Component name -> config values."""

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Scale:
    """Shrinks widths and depths by ``factor``; at 1 every value is kept as published."""

    factor: float

    def count(self, n: int) -> int:
        """Layers, heads, blocks: at least one."""
        return max(1, round(n * self.factor))

    def width(self, n: int, multiple: int) -> int:
        """A width kept a multiple of ``multiple`` (norm groups, head size), at least one."""
        return max(multiple, round(n * self.factor / multiple) * multiple)

    def ladder(self, widths: list[int], multiple: int) -> list[int]:
        """Block widths keeping their published ratios to the first (1, 2, 4, 4 ...)."""
        first = self.width(widths[0], multiple)
        return [first * w // widths[0] for w in widths]


@dataclass(frozen=True)
class Family:
    """One published pipeline: its repository, class, and components' configuration."""

    repo: str
    pipeline: str
    components: Components
    link: Callable[[Configs, Scale], Configs]
    """Scales the components' configs and derives the values that tie them together; returns
    the configs it changes (a component's class stays as published)."""
    trimmed: Mapping[str, Config] = field(default_factory=dict)
    """Published values replaced at every scale (nested: ``{"text_encoder": {"text_config":
    {"num_hidden_layers": 8}}}``), each explained where the family is defined."""


# --- Text and image encoders shared by several families -------------------------------------

# openai/clip-vit-large-patch14 (text tower): SDXL's and SD3's first, FLUX's only CLIP.
CLIP_L: Config = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "layer_norm_eps": 1e-5,
}
# laion/CLIP-ViT-bigG-14-laion2B-39B-b160k (text tower): SDXL's and SD3's second CLIP.
CLIP_BIG_G: Config = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "hidden_act": "gelu",
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "layer_norm_eps": 1e-5,
}
# google/t5-v1_1-xxl (encoder): FLUX's, SD3's and LTX-Video's T5.
T5_XXL: Config = {
    "d_model": 4096,
    "d_ff": 10240,
    "d_kv": 64,
    "num_heads": 64,
    "num_layers": 24,
    "feed_forward_proj": "gated-gelu",
    "vocab_size": 32128,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
    "tie_word_embeddings": False,
}
# google/umt5-xxl (encoder): Wan's text encoder, a T5 with a 256k multilingual vocabulary.
UMT5_XXL: Config = {**T5_XXL, "vocab_size": 256384}
# openai/clip-vit-large-patch14 (vision tower): Shap-E img2img's image encoder.
CLIP_VISION_L: Config = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}
# laion/CLIP-ViT-H-14-laion2B-s32B-b79K (vision tower): Wan 2.1 image-to-video's image
# encoder (the transformer reads its penultimate hidden states, 1280 wide).
CLIP_VISION_H: Config = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 16,
    "num_hidden_layers": 32,
    "image_size": 224,
    "patch_size": 14,
    "projection_dim": 1024,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}
# google/gemma-3-12b-it: LTX-2's text encoder (text and vision towers).
GEMMA3_12B: Config = {
    "text_config": {
        "hidden_size": 3840,
        "intermediate_size": 15360,
        "num_hidden_layers": 48,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "vocab_size": 262208,
        "sliding_window": 1024,
        "max_position_embeddings": 131072,
    },
    "vision_config": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 896,
        "patch_size": 14,
        "vision_use_head": False,
    },
    "mm_tokens_per_image": 256,
}

# The 8x image VAE of SDXL (4 latent channels) and, with 16, of SD3 and FLUX.
_KL_VAE: Config = {
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 1024,
    "force_upcast": True,
}
# SD3's and FLUX's: 16 latent channels, no 1x1 convolutions around the latent.
_KL_VAE_16: Config = {
    **_KL_VAE,
    "latent_channels": 16,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}


def _clip_text(config: Config, s: Scale) -> Config:
    heads = s.count(config["num_attention_heads"])
    head_size = config["hidden_size"] // config["num_attention_heads"]
    hidden = heads * head_size
    return {
        **config,
        "num_attention_heads": heads,
        "hidden_size": hidden,
        "intermediate_size": config["intermediate_size"] * hidden // config["hidden_size"],
        "projection_dim": config["projection_dim"] * hidden // config["hidden_size"],
        "num_hidden_layers": s.count(config["num_hidden_layers"]),
    }


def _t5(config: Config, s: Scale) -> Config:
    heads = s.count(config["num_heads"])
    width = heads * config["d_model"] // config["num_heads"]
    return {
        **config,
        "num_heads": heads,
        "d_model": width,
        "d_ff": config["d_ff"] * width // config["d_model"],
        "num_layers": s.count(config["num_layers"]),
    }


def _kl_vae(config: Config, s: Scale) -> Config:
    return {
        **config,
        "block_out_channels": s.ladder(config["block_out_channels"], config["norm_num_groups"]),
        "layers_per_block": s.count(config["layers_per_block"]),
    }


def _counts(values: list[int], s: Scale) -> list[int]:
    return [s.count(v) for v in values]


def _ltx_vae(config: Config, s: Scale) -> Config:
    """The video VAE of both LTX families: encoder and decoder ladders scaled alike."""
    return {
        **config,
        "block_out_channels": s.ladder(config["block_out_channels"], 8),
        "decoder_block_out_channels": s.ladder(config["decoder_block_out_channels"], 8),
        "layers_per_block": _counts(config["layers_per_block"], s),
        "decoder_layers_per_block": _counts(config["decoder_layers_per_block"], s),
    }


# --- SDXL and SDXL-Turbo ---------------------------------------------------------------------

# stabilityai/stable-diffusion-xl-base-1.0: unet/config.json. Its ``attention_head_dim`` is
# the number of heads per block (heads of 64 channels), a naming diffusers kept from SD 2.
SDXL_UNET: Config = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 2,
    "attention_head_dim": [5, 10, 20],
    "transformer_layers_per_block": [1, 2, 10],
    "cross_attention_dim": 2048,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "use_linear_projection": True,
    "norm_num_groups": 32,
}
# The noise schedule SDXL was trained on, which SDXL-Turbo keeps.
_SDXL_NOISE: Config = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
}
# stabilityai/stable-diffusion-xl-base-1.0: scheduler/scheduler_config.json.
SDXL_SCHEDULER: Config = {
    **_SDXL_NOISE,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}


def _sdxl_components(unet: Config, scheduler: tuple[str, Config]) -> Components:
    return {
        "unet": ("UNet2DConditionModel", unet),
        "vae": ("AutoencoderKL", {**_KL_VAE, "latent_channels": 4, "scaling_factor": 0.13025}),
        "text_encoder": ("CLIPTextModel", CLIP_L),
        "text_encoder_2": ("CLIPTextModelWithProjection", CLIP_BIG_G),
        "tokenizer": ("CLIPTokenizer", {}),
        "tokenizer_2": ("CLIPTokenizer", {}),
        "scheduler": scheduler,
    }


def _link_sdxl(c: Configs, s: Scale) -> Configs:
    text = _clip_text(c["text_encoder"], s)
    text_2 = _clip_text(c["text_encoder_2"], s)
    unet = c["unet"]
    channels = s.ladder(unet["block_out_channels"], 64)
    return {
        "unet": {
            **unet,
            "block_out_channels": channels,
            "attention_head_dim": [w // 64 for w in channels],
            "layers_per_block": s.count(unet["layers_per_block"]),
            "transformer_layers_per_block": _counts(unet["transformer_layers_per_block"], s),
            "cross_attention_dim": text["hidden_size"] + text_2["hidden_size"],
            # six micro-conditioning sizes (original, crop, target) plus the pooled text
            "projection_class_embeddings_input_dim": 6 * unet["addition_time_embed_dim"]
            + text_2["projection_dim"],
        },
        "vae": _kl_vae(c["vae"], s),
        "text_encoder": text,
        "text_encoder_2": text_2,
    }


SDXL = Family(
    repo="stabilityai/stable-diffusion-xl-base-1.0",
    pipeline="StableDiffusionXLPipeline",
    components=_sdxl_components(SDXL_UNET, ("EulerDiscreteScheduler", SDXL_SCHEDULER)),
    link=_link_sdxl,
)

# stabilityai/sdxl-turbo: SDXL 1.0 distilled (adversarial diffusion distillation). The same
# UNet, VAE and text encoders; the UNet's sample size is 64 (512 px), and the scheduler is
# Euler ancestral with trailing timesteps, so that one step starts from pure noise.
SDXL_TURBO = Family(
    repo="stabilityai/sdxl-turbo",
    pipeline="StableDiffusionXLPipeline",
    components=_sdxl_components(
        {**SDXL_UNET, "sample_size": 64},
        ("EulerAncestralDiscreteScheduler", {**_SDXL_NOISE, "timestep_spacing": "trailing"}),
    ),
    link=_link_sdxl,
)


# --- FLUX.1-schnell --------------------------------------------------------------------------


def _link_flux(c: Configs, s: Scale) -> Configs:
    clip = _clip_text(c["text_encoder"], s)
    t5 = _t5(c["text_encoder_2"], s)
    vae = _kl_vae(c["vae"], s)
    transformer = c["transformer"]
    return {
        "transformer": {
            **transformer,
            # heads of 128 channels, split 16/56/56 by the 3-axis rotary embedding
            "num_attention_heads": s.count(transformer["num_attention_heads"]),
            "num_layers": s.count(transformer["num_layers"]),
            "num_single_layers": s.count(transformer["num_single_layers"]),
            "joint_attention_dim": t5["d_model"],
            "pooled_projection_dim": clip["hidden_size"],  # CLIP's pooled output, unprojected
            "in_channels": 4 * vae["latent_channels"],  # 2x2 patches packed into tokens
        },
        "vae": vae,
        "text_encoder": clip,
        "text_encoder_2": t5,
    }


# black-forest-labs/FLUX.1-schnell: transformer/, vae/, scheduler/ configs. A 12B rectified
# flow transformer (19 double-stream and 38 single-stream blocks), distilled to 1-4 steps
# without guidance (hence no guidance embedding).
FLUX_SCHNELL = Family(
    repo="black-forest-labs/FLUX.1-schnell",
    pipeline="FluxPipeline",
    components={
        "transformer": (
            "FluxTransformer2DModel",
            {
                "patch_size": 1,
                "in_channels": 64,
                "num_layers": 19,
                "num_single_layers": 38,
                "attention_head_dim": 128,
                "num_attention_heads": 24,
                "joint_attention_dim": 4096,
                "pooled_projection_dim": 768,
                "guidance_embeds": False,
                "axes_dims_rope": [16, 56, 56],
            },
        ),
        "vae": ("AutoencoderKL", {**_KL_VAE_16, "scaling_factor": 0.3611, "shift_factor": 0.1159}),
        "text_encoder": ("CLIPTextModel", CLIP_L),
        "text_encoder_2": ("T5EncoderModel", T5_XXL),
        "tokenizer": ("CLIPTokenizer", {}),
        "tokenizer_2": ("T5TokenizerFast", {}),
        "scheduler": (
            "FlowMatchEulerDiscreteScheduler",
            {
                "num_train_timesteps": 1000,
                "shift": 1.0,
                "use_dynamic_shifting": False,
                "base_shift": 0.5,
                "max_shift": 1.15,
                "base_image_seq_len": 256,
                "max_image_seq_len": 4096,
            },
        ),
    },
    link=_link_flux,
)


# black-forest-labs/FLUX.1-Kontext-dev: FLUX.1 [dev]'s 12B transformer (with its guidance
# embedding: guidance-distilled) trained to edit an input image by an instruction; the input's
# latents join the sequence. FLUX.1 [dev]'s scheduler: shift 3 with resolution-dependent
# dynamic shifting.
FLUX_KONTEXT = Family(
    repo="black-forest-labs/FLUX.1-Kontext-dev",
    pipeline="FluxKontextPipeline",
    components={
        **FLUX_SCHNELL.components,
        "transformer": (
            "FluxTransformer2DModel",
            {**FLUX_SCHNELL.components["transformer"][1], "guidance_embeds": True},
        ),
        "scheduler": (
            "FlowMatchEulerDiscreteScheduler",
            {
                **FLUX_SCHNELL.components["scheduler"][1],
                "shift": 3.0,
                "use_dynamic_shifting": True,
            },
        ),
    },
    link=_link_flux,
)


# --- Stable Diffusion 3.5 Medium -------------------------------------------------------------


def _link_sd3(c: Configs, s: Scale) -> Configs:
    clip_l = _clip_text(c["text_encoder"], s)
    clip_g = _clip_text(c["text_encoder_2"], s)
    t5 = _t5(c["text_encoder_3"], s)
    vae = _kl_vae(c["vae"], s)
    transformer = c["transformer"]
    heads = s.count(transformer["num_attention_heads"])
    layers = s.count(transformer["num_layers"])
    dual = len(transformer["dual_attention_layers"])
    return {
        "transformer": {
            **transformer,
            "num_attention_heads": heads,
            "num_layers": layers,
            "caption_projection_dim": heads * transformer["attention_head_dim"],
            # MMDiT-X: the first 13 of 24 blocks add a second self-attention
            "dual_attention_layers": list(
                range(max(1, round(dual * layers / transformer["num_layers"])))
            ),
            "joint_attention_dim": t5["d_model"],
            "pooled_projection_dim": clip_l["projection_dim"] + clip_g["projection_dim"],
            "in_channels": vae["latent_channels"],
            "out_channels": vae["latent_channels"],
        },
        "vae": vae,
        "text_encoder": clip_l,
        "text_encoder_2": clip_g,
        "text_encoder_3": t5,
    }


# stabilityai/stable-diffusion-3.5-medium: a 2.5B MMDiT-X (24 blocks of 1536 channels,
# 13 with dual attention, QK RMS norm), three text encoders, a 16-channel VAE.
SD35_MEDIUM = Family(
    repo="stabilityai/stable-diffusion-3.5-medium",
    pipeline="StableDiffusion3Pipeline",
    components={
        "transformer": (
            "SD3Transformer2DModel",
            {
                "sample_size": 128,
                "patch_size": 2,
                "in_channels": 16,
                "out_channels": 16,
                "num_layers": 24,
                "attention_head_dim": 64,
                "num_attention_heads": 24,
                "joint_attention_dim": 4096,
                "caption_projection_dim": 1536,
                "pooled_projection_dim": 2048,
                "pos_embed_max_size": 384,
                "dual_attention_layers": list(range(13)),
                "qk_norm": "rms_norm",
            },
        ),
        "vae": ("AutoencoderKL", {**_KL_VAE_16, "scaling_factor": 1.5305, "shift_factor": 0.0609}),
        "text_encoder": ("CLIPTextModelWithProjection", CLIP_L),
        "text_encoder_2": ("CLIPTextModelWithProjection", CLIP_BIG_G),
        "text_encoder_3": ("T5EncoderModel", T5_XXL),
        "tokenizer": ("CLIPTokenizer", {}),
        "tokenizer_2": ("CLIPTokenizer", {}),
        "tokenizer_3": ("T5TokenizerFast", {}),
        "scheduler": (
            "FlowMatchEulerDiscreteScheduler",
            {"num_train_timesteps": 1000, "shift": 3.0},
        ),
    },
    link=_link_sd3,
)


# --- LTX-Video --------------------------------------------------------------------------------

# The flow-matching schedule both LTX families publish: the shift grows with the token count.
_LTX_SCHEDULER: Config = {
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.95,
    "max_shift": 2.05,
    "base_image_seq_len": 1024,
    "max_image_seq_len": 4096,
    "shift_terminal": 0.1,
}


def _link_ltx_video(c: Configs, s: Scale) -> Configs:
    t5 = _t5(c["text_encoder"], s)
    transformer = c["transformer"]
    heads = s.count(transformer["num_attention_heads"])
    return {
        "transformer": {
            **transformer,
            "num_attention_heads": heads,
            "cross_attention_dim": heads * transformer["attention_head_dim"],
            "num_layers": s.count(transformer["num_layers"]),
            "caption_channels": t5["d_model"],
        },
        "vae": _ltx_vae(c["vae"], s),
        "text_encoder": t5,
    }


# Lightricks/LTX-Video (the diffusers folders at the repository's root: version 0.9.0).
# A 2B video transformer over a 128-channel latent that is 32x smaller in space and 8x in time.
LTX_VIDEO = Family(
    repo="Lightricks/LTX-Video",
    pipeline="LTXPipeline",
    components={
        "transformer": (
            "LTXVideoTransformer3DModel",
            {
                "in_channels": 128,
                "out_channels": 128,
                "patch_size": 1,
                "patch_size_t": 1,
                "num_attention_heads": 32,
                "attention_head_dim": 64,
                "cross_attention_dim": 2048,
                "num_layers": 28,
                "activation_fn": "gelu-approximate",
                "qk_norm": "rms_norm_across_heads",
                "norm_elementwise_affine": False,
                "norm_eps": 1e-6,
                "caption_channels": 4096,
                "attention_bias": True,
                "attention_out_bias": True,
            },
        ),
        "vae": (
            "AutoencoderKLLTXVideo",
            {
                "in_channels": 3,
                "out_channels": 3,
                "latent_channels": 128,
                "block_out_channels": [128, 256, 512, 512],
                "decoder_block_out_channels": [128, 256, 512, 512],
                "layers_per_block": [4, 3, 3, 3, 4],
                "decoder_layers_per_block": [4, 3, 3, 3, 4],
                "spatio_temporal_scaling": [True, True, True, False],
                "decoder_spatio_temporal_scaling": [True, True, True, False],
                "decoder_inject_noise": [False, False, False, False, False],
                "upsample_residual": [False, False, False, False],
                "upsample_factor": [1, 1, 1, 1],
                "patch_size": 4,
                "patch_size_t": 1,
                "resnet_norm_eps": 1e-6,
                "scaling_factor": 1.0,
                "encoder_causal": True,
                "decoder_causal": False,
                "timestep_conditioning": False,
            },
        ),
        "text_encoder": ("T5EncoderModel", T5_XXL),
        "tokenizer": ("T5TokenizerFast", {}),
        "scheduler": ("FlowMatchEulerDiscreteScheduler", _LTX_SCHEDULER),
    },
    link=_link_ltx_video,
)


# --- LTX-2 -------------------------------------------------------------------------------------


def _link_ltx2(c: Configs, s: Scale) -> Configs:
    connectors = c["connectors"]
    connector_heads = s.count(connectors["video_connector_num_attention_heads"])
    caption = connector_heads * connectors["video_connector_attention_head_dim"]
    gemma = c["text_encoder"]
    text, vision = gemma["text_config"], gemma["vision_config"]
    text_heads = s.count(text["num_attention_heads"])
    text_layers = s.count(text["num_hidden_layers"])
    vision_heads = s.count(vision["num_attention_heads"])
    vision_width = vision_heads * vision["hidden_size"] // vision["num_attention_heads"]
    transformer = c["transformer"]
    heads = s.count(transformer["num_attention_heads"])
    audio_heads = s.count(transformer["audio_num_attention_heads"])
    audio_vae = c["audio_vae"]
    return {
        "text_encoder": {
            **gemma,
            "text_config": {
                **text,
                # the connectors read the text encoder's width: the two shrink together
                "hidden_size": caption,
                "intermediate_size": text["intermediate_size"] * caption // text["hidden_size"],
                "num_attention_heads": text_heads,
                "num_key_value_heads": max(
                    1, text_heads * text["num_key_value_heads"] // text["num_attention_heads"]
                ),
                "num_hidden_layers": text_layers,
            },
            "vision_config": {
                **vision,
                "hidden_size": vision_width,
                "intermediate_size": vision["intermediate_size"]
                * vision_width
                // vision["hidden_size"],
                "num_attention_heads": vision_heads,
                "num_hidden_layers": s.count(vision["num_hidden_layers"]),
            },
        },
        "connectors": {
            **connectors,
            "caption_channels": caption,
            # every hidden state of the text encoder (its layers and the embedding) is read
            "text_proj_in_factor": text_layers + 1,
            "video_connector_num_attention_heads": connector_heads,
            "audio_connector_num_attention_heads": s.count(
                connectors["audio_connector_num_attention_heads"]
            ),
            "video_connector_num_layers": s.count(connectors["video_connector_num_layers"]),
            "audio_connector_num_layers": s.count(connectors["audio_connector_num_layers"]),
        },
        "transformer": {
            **transformer,
            "num_attention_heads": heads,
            "cross_attention_dim": heads * transformer["attention_head_dim"],
            "audio_num_attention_heads": audio_heads,
            "audio_cross_attention_dim": audio_heads * transformer["audio_attention_head_dim"],
            "num_layers": s.count(transformer["num_layers"]),
            "caption_channels": caption,
        },
        "vae": _ltx_vae(c["vae"], s),
        "audio_vae": {
            **audio_vae,
            # kept: diffusers sizes the audio latents' statistics by base_channels, which must
            # be the width of a packed audio token (8 channels x 64 / 4 mel bins = 128)
            "base_channels": audio_vae["latent_channels"] * audio_vae["mel_bins"] // 4,
            "num_res_blocks": s.count(audio_vae["num_res_blocks"]),
        },
        # five upsampling stages halve the channels: a multiple of 32 stays whole
        "vocoder": {
            **c["vocoder"],
            "hidden_channels": s.width(c["vocoder"]["hidden_channels"], 32),
        },
    }


# Lightricks/LTX-2 (version 2.0): a 19B audio-video transformer (48 blocks; video 32x128,
# audio 32x64 channels) reading Gemma 3 12B through two connector transformers; a video VAE
# (32x space, 8x time, 128 channels), an audio VAE and a vocoder to 24 kHz stereo.
LTX2 = Family(
    repo="Lightricks/LTX-2",
    pipeline="LTX2Pipeline",
    components={
        "transformer": (
            "LTX2VideoTransformer3DModel",
            {
                "in_channels": 128,
                "out_channels": 128,
                "patch_size": 1,
                "patch_size_t": 1,
                "num_attention_heads": 32,
                "attention_head_dim": 128,
                "cross_attention_dim": 4096,
                "vae_scale_factors": [8, 32, 32],
                "pos_embed_max_pos": 20,
                "base_height": 2048,
                "base_width": 2048,
                "audio_in_channels": 128,
                "audio_out_channels": 128,
                "audio_patch_size": 1,
                "audio_patch_size_t": 1,
                "audio_num_attention_heads": 32,
                "audio_attention_head_dim": 64,
                "audio_cross_attention_dim": 2048,
                "audio_scale_factor": 4,
                "audio_pos_embed_max_pos": 20,
                "audio_sampling_rate": 16000,
                "audio_hop_length": 160,
                "num_layers": 48,
                "activation_fn": "gelu-approximate",
                "qk_norm": "rms_norm_across_heads",
                "norm_elementwise_affine": False,
                "norm_eps": 1e-6,
                "caption_channels": 3840,
                "attention_bias": True,
                "attention_out_bias": True,
                "rope_theta": 10000.0,
                "rope_double_precision": True,
                "causal_offset": 1,
                "timestep_scale_multiplier": 1000,
                "cross_attn_timestep_scale_multiplier": 1000,
                "rope_type": "split",
            },
        ),
        "connectors": (
            "LTX2TextConnectors",
            {
                "caption_channels": 3840,
                "text_proj_in_factor": 49,
                "video_connector_num_attention_heads": 30,
                "video_connector_attention_head_dim": 128,
                "video_connector_num_layers": 2,
                "video_connector_num_learnable_registers": 128,
                "audio_connector_num_attention_heads": 30,
                "audio_connector_attention_head_dim": 128,
                "audio_connector_num_layers": 2,
                "audio_connector_num_learnable_registers": 128,
                "connector_rope_base_seq_len": 4096,
                "rope_theta": 10000.0,
                "rope_double_precision": True,
                "causal_temporal_positioning": False,
                "rope_type": "split",
            },
        ),
        "vae": (
            "AutoencoderKLLTX2Video",
            {
                "in_channels": 3,
                "out_channels": 3,
                "latent_channels": 128,
                "block_out_channels": [256, 512, 1024, 2048],
                "decoder_block_out_channels": [256, 512, 1024],
                "layers_per_block": [4, 6, 6, 2, 2],
                "decoder_layers_per_block": [5, 5, 5, 5],
                "spatio_temporal_scaling": [True, True, True, True],
                "decoder_spatio_temporal_scaling": [True, True, True],
                "decoder_inject_noise": [False, False, False, False],
                "downsample_type": ["spatial", "temporal", "spatiotemporal", "spatiotemporal"],
                "upsample_type": ["spatiotemporal", "spatiotemporal", "spatiotemporal"],
                "upsample_residual": [True, True, True],
                "upsample_factor": [2, 2, 2],
                "timestep_conditioning": False,
                "patch_size": 4,
                "patch_size_t": 1,
                "resnet_norm_eps": 1e-6,
                "encoder_causal": True,
                "decoder_causal": False,
                "encoder_spatial_padding_mode": "zeros",
                "decoder_spatial_padding_mode": "reflect",
                "spatial_compression_ratio": 32,
                "temporal_compression_ratio": 8,
            },
        ),
        "audio_vae": (
            "AutoencoderKLLTX2Audio",
            {
                "base_channels": 128,
                "output_channels": 2,
                "ch_mult": [1, 2, 4],
                "num_res_blocks": 2,
                "attn_resolutions": None,
                "in_channels": 2,
                "resolution": 256,
                "latent_channels": 8,
                "norm_type": "pixel",
                "causality_axis": "height",
                "dropout": 0.0,
                "mid_block_add_attention": False,
                "sample_rate": 16000,
                "mel_hop_length": 160,
                "is_causal": True,
                "mel_bins": 64,
                "double_z": True,
            },
        ),
        "vocoder": (
            "LTX2Vocoder",
            {
                "in_channels": 128,
                "hidden_channels": 1024,
                "out_channels": 2,
                "upsample_kernel_sizes": [16, 15, 8, 4, 4],
                "upsample_factors": [6, 5, 2, 2, 2],
                "resnet_kernel_sizes": [3, 7, 11],
                "resnet_dilations": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                "act_fn": "leaky_relu",
                "leaky_relu_negative_slope": 0.1,
                "antialias": False,
                "final_act_fn": "tanh",
                "final_bias": True,
                "output_sampling_rate": 24000,
            },
        ),
        "text_encoder": ("Gemma3ForConditionalGeneration", GEMMA3_12B),
        "tokenizer": ("GemmaTokenizerFast", {}),
        "scheduler": ("FlowMatchEulerDiscreteScheduler", _LTX_SCHEDULER),
    },
    link=_link_ltx2,
    # Gemma 3 12B (24 GB in bf16) beside the 38 GB transformer is more than the 64 GiB disk of
    # the benchmark machine holds. The prompt is read by 8 of its 48 layers, at full width, so
    # the connectors see 9 hidden states instead of 49; the transformer, the VAEs and the
    # vocoder, which make the per-step cost, are untouched.
    trimmed={"text_encoder": {"text_config": {"num_hidden_layers": 8}}},
)


# --- Wan 2.1 T2V 1.3B --------------------------------------------------------------------------


def _link_wan(c: Configs, s: Scale) -> Configs:
    umt5 = _t5(c["text_encoder"], s)
    transformer = c["transformer"]
    heads = s.count(transformer["num_attention_heads"])
    width = heads * transformer["attention_head_dim"]
    published_width = transformer["num_attention_heads"] * transformer["attention_head_dim"]
    vae = c["vae"]
    return {
        "transformer": {
            **transformer,
            "num_attention_heads": heads,
            "ffn_dim": transformer["ffn_dim"] * width // published_width,
            "num_layers": s.count(transformer["num_layers"]),
            "text_dim": umt5["d_model"],
        },
        "vae": {
            **vae,
            "base_dim": s.width(vae["base_dim"], 8),
            "num_res_blocks": s.count(vae["num_res_blocks"]),
        },
        "text_encoder": umt5,
    }


# Wan-AI/Wan2.1-T2V-1.3B-Diffusers: a 1.3B transformer (30 blocks of 12x128 channels,
# 2x2 spatial patches) over the Wan VAE (8x space, 4x time, 16 channels; its published
# latent means and deviations are the class defaults), UMT5-XXL, and UniPC on flow sigmas
# shifted by 3 (the 480p setting).
WAN_T2V_1_3B = Family(
    repo="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    pipeline="WanPipeline",
    components={
        "transformer": (
            "WanTransformer3DModel",
            {
                "patch_size": [1, 2, 2],
                "num_attention_heads": 12,
                "attention_head_dim": 128,
                "in_channels": 16,
                "out_channels": 16,
                "text_dim": 4096,
                "freq_dim": 256,
                "ffn_dim": 8960,
                "num_layers": 30,
                "cross_attn_norm": True,
                "qk_norm": "rms_norm_across_heads",
                "eps": 1e-6,
                "added_kv_proj_dim": None,
            },
        ),
        "vae": (
            "AutoencoderKLWan",
            {
                "base_dim": 96,
                "z_dim": 16,
                "dim_mult": [1, 2, 4, 4],
                "num_res_blocks": 2,
                "attn_scales": [],
                "temperal_downsample": [False, True, True],
                "dropout": 0.0,
            },
        ),
        "text_encoder": ("UMT5EncoderModel", UMT5_XXL),
        "tokenizer": ("T5TokenizerFast", {}),
        "scheduler": (
            "UniPCMultistepScheduler",
            {
                "prediction_type": "flow_prediction",
                "use_flow_sigmas": True,
                "num_train_timesteps": 1000,
                "flow_shift": 3.0,
            },
        ),
    },
    link=_link_wan,
)


# --- Wan 2.1 I2V 14B 480P ----------------------------------------------------------------------


def _link_wan_i2v(c: Configs, s: Scale) -> Configs:
    linked = _link_wan(c, s)
    vision = _clip_text(c["image_encoder"], s)
    transformer = linked["transformer"]
    return {
        **linked,
        "image_encoder": vision,
        "transformer": {
            **transformer,
            # the CLIP tower's hidden states, projected to keys and values as wide as attention
            "image_dim": vision["hidden_size"],
            "added_kv_proj_dim": transformer["num_attention_heads"]
            * transformer["attention_head_dim"],
        },
    }


# Wan-AI/Wan2.1-I2V-14B-480P-Diffusers: a 14B transformer (40 blocks of 40x128 channels) whose
# input is the noise, a first-frame mask and the first frame's latents (16 + 4 + 16 channels),
# and whose cross-attention also reads CLIP ViT-H/14's penultimate hidden states (1280 wide,
# through added key/value projections); the T2V family's VAE, UMT5-XXL, and UniPC on flow
# sigmas shifted by 3 (the 480p setting).
WAN_I2V_14B_480P = Family(
    repo="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    pipeline="WanImageToVideoPipeline",
    components={
        "transformer": (
            "WanTransformer3DModel",
            {
                "patch_size": [1, 2, 2],
                "num_attention_heads": 40,
                "attention_head_dim": 128,
                "in_channels": 36,
                "out_channels": 16,
                "text_dim": 4096,
                "freq_dim": 256,
                "ffn_dim": 13824,
                "num_layers": 40,
                "cross_attn_norm": True,
                "qk_norm": "rms_norm_across_heads",
                "eps": 1e-6,
                "image_dim": 1280,
                "added_kv_proj_dim": 5120,
                "rope_max_seq_len": 1024,
            },
        ),
        "vae": WAN_T2V_1_3B.components["vae"],
        "text_encoder": ("UMT5EncoderModel", UMT5_XXL),
        "tokenizer": ("T5TokenizerFast", {}),
        "image_encoder": ("CLIPVisionModelWithProjection", CLIP_VISION_H),
        "image_processor": ("CLIPImageProcessor", {}),
        "scheduler": WAN_T2V_1_3B.components["scheduler"],
    },
    link=_link_wan_i2v,
)


# --- Shap-E image to 3D ------------------------------------------------------------------------


def _link_shap_e(c: Configs, s: Scale) -> Configs:
    vision = _clip_text(c["image_encoder"], s)
    prior = c["prior"]
    heads = s.count(prior["num_attention_heads"])
    inner = heads * prior["attention_head_dim"]
    renderer = c["shap_e_renderer"]
    hidden = s.width(renderer["d_hidden"], 8)
    latent = (
        inner
        * prior["embedding_dim"]
        // (prior["num_attention_heads"] * prior["attention_head_dim"])
    )
    return {
        "image_encoder": vision,
        "prior": {
            **prior,
            "num_attention_heads": heads,
            "num_layers": s.count(prior["num_layers"]),
            "embedding_dim": latent,
            # one latent token per row of the renderer's four MLP weight matrices
            "num_embeddings": 4 * hidden,
            "time_embed_dim": 4 * inner,
            "embedding_proj_dim": vision["hidden_size"],
            "clip_embed_dim": 2 * latent,
        },
        "shap_e_renderer": {
            **renderer,
            "d_latent": latent,
            "d_hidden": hidden,
            # 93: the renderer's positional encoding of a point, fixed by its code
            "param_shapes": [[hidden, 93], [hidden, hidden], [hidden, hidden], [hidden, hidden]],
        },
    }


# openai/shap-e-img2img: a 24-layer prior over 1024 latent tokens of 1024 channels,
# conditioned on CLIP ViT-L/14 image features, decoded by an implicit MLP (NeRF/STF).
SHAP_E = Family(
    repo="openai/shap-e-img2img",
    pipeline="ShapEImg2ImgPipeline",
    components={
        "prior": (
            "PriorTransformer",
            {
                "num_attention_heads": 8,
                "attention_head_dim": 128,
                "num_layers": 24,
                "embedding_dim": 1024,
                "num_embeddings": 1024,
                "additional_embeddings": 0,
                "time_embed_act_fn": "gelu",
                "norm_in_type": "layer",
                "embedding_proj_norm_type": "layer",
                "encoder_hid_proj_type": None,
                "added_emb_type": None,
                "time_embed_dim": 4096,
                "embedding_proj_dim": 1024,
                "clip_embed_dim": 2048,
            },
        ),
        "image_encoder": ("CLIPVisionModel", CLIP_VISION_L),
        "image_processor": ("CLIPImageProcessor", {}),
        "shap_e_renderer": (
            "ShapERenderer",
            {
                "param_shapes": [[256, 93], [256, 256], [256, 256], [256, 256]],
                "d_latent": 1024,
                "d_hidden": 256,
                "n_output": 12,
                "n_hidden_layers": 6,
                "act_fn": "swish",
                "insert_direction_at": 4,
                "background": [255.0, 255.0, 255.0],
            },
        ),
        "scheduler": (
            "HeunDiscreteScheduler",
            {
                "beta_schedule": "exp",
                "num_train_timesteps": 1024,
                "prediction_type": "sample",
                "use_karras_sigmas": True,
                "clip_sample": True,
                "clip_sample_range": 1.0,
            },
        ),
    },
    link=_link_shap_e,
)


FAMILIES: dict[str, Family] = {
    "sdxl": SDXL,
    "sdxl-turbo": SDXL_TURBO,
    "flux-schnell": FLUX_SCHNELL,
    "flux-kontext-dev": FLUX_KONTEXT,
    "sd3.5-medium": SD35_MEDIUM,
    "ltx-video": LTX_VIDEO,
    "ltx-2": LTX2,
    "wan2.1-t2v-1.3b": WAN_T2V_1_3B,
    "wan2.1-i2v-14b-480p": WAN_I2V_14B_480P,
    "shap-e": SHAP_E,
}


# --- Building -----------------------------------------------------------------------------------


def _merge(base: Config, override: Config) -> Config:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def component_configs(family: str, scale: float = 1.0, *, trim: bool = True) -> Components:
    """Every component's class and configuration for ``family`` at ``scale``.

    At scale 1 without ``trim`` this is the published configuration itself
    (the links derive the values they set from the published ones).
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1]; got {scale}")
    spec = FAMILIES[family]
    components = copy.deepcopy(spec.components)
    if trim:
        for name, override in spec.trimmed.items():
            cls, config = components[name]
            components[name] = (cls, _merge(config, override))
    changed = spec.link({name: config for name, (_cls, config) in components.items()}, Scale(scale))
    return {name: (cls, changed.get(name, config)) for name, (cls, config) in components.items()}


def _class(name: str) -> Any:
    """A component class by the name ``model_index.json`` gives it."""
    for module in (
        "diffusers",
        "transformers",
        "diffusers.pipelines.ltx2",
        "diffusers.pipelines.ltx2.vocoder",
        "diffusers.pipelines.shap_e",
    ):
        found = getattr(importlib.import_module(module), name, None)
        if found is not None:
            return found
    raise KeyError(f"no component class {name!r}")


def _tokenizer(cls: str) -> Any:
    """The local stand-in for a published tokenizer, of the same class."""
    from transformers import T5TokenizerFast

    from inference_server.tiny import ltx2, ltx_video
    from inference_server.tiny.tokenizers import build_clip_tokenizer

    if cls == "CLIPTokenizer":
        return build_clip_tokenizer()
    if cls == "T5TokenizerFast":
        # 512 tokens: the longest prompt any of these pipelines asks for (Wan, FLUX).
        return T5TokenizerFast(
            vocab=ltx_video.tokenizer_pieces(), extra_ids=0, model_max_length=512
        )
    if cls == "GemmaTokenizerFast":
        return ltx2.build_tokenizer()
    raise KeyError(f"no local tokenizer for {cls!r}")


def _local_token_ids(cls: str, config: Config, tokenizers: dict[str, Any]) -> Config:
    """Special-token ids of the local tokenizers (CLIP pools its output at the end token)."""
    if cls.startswith("CLIPText"):
        return {**config, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    if cls.startswith("Gemma3"):
        gemma = tokenizers["GemmaTokenizerFast"]
        vocab = gemma.get_vocab()
        return {
            **config,
            "text_config": {
                **config["text_config"],
                "pad_token_id": gemma.pad_token_id,
                "eos_token_id": gemma.eos_token_id,
                "bos_token_id": gemma.bos_token_id,
            },
            "boi_token_index": vocab["<start_of_image>"],
            "eoi_token_index": vocab["<end_of_image>"],
            "image_token_index": vocab["<image_soft_token>"],
        }
    return config


def _model(cls_name: str, config: Config) -> Any:
    cls = _class(cls_name)
    config_class = getattr(cls, "config_class", None)
    if config_class is not None and cls.__module__.startswith("transformers"):
        return cls(config_class(**config))
    return cls(**config)


def _cast(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Weights in ``dtype``, but for the modules the class keeps in float32 (Wan's norms and
    time embedding, say), as ``from_pretrained`` keeps them: the saved files are as published."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point():
                kept = any(part in name.split(".") for part in keep)
                tensor.data = tensor.data.to(torch.float32 if kept else dtype)
    return model


def instantiate(
    family: str,
    *,
    scale: float = 1.0,
    dtype: str = "bfloat16",
    device: str | None = None,
    trim: bool = True,
) -> Any:
    """The pipeline in memory, its weights drawn on ``device`` (the GPU when there is one)."""
    import diffusers

    spec = FAMILIES[family]
    configs = component_configs(family, scale, trim=trim)
    where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizers = {cls: _tokenizer(cls) for cls, _config in configs.values() if "Tokenizer" in cls}
    parts: dict[str, Any] = {}
    torch.manual_seed(0)
    for name, (cls, config) in configs.items():
        if cls in tokenizers:
            parts[name] = _tokenizer(cls)  # one object per component, as a download has
        elif cls.endswith("Scheduler"):
            parts[name] = _class(cls).from_config(config)
        elif cls == "CLIPImageProcessor":
            from inference_server.tiny.parts import clip_image_processor

            # The published preprocessor_config.json (the family lists no values of its own).
            parts[name] = clip_image_processor(configs["image_encoder"][1]["image_size"])
        else:
            with where:
                model = _model(cls, _local_token_ids(cls, config, tokenizers))
            parts[name] = _cast(model, DTYPES[dtype]).eval()
    pipe = getattr(diffusers, spec.pipeline)(**parts)
    if family == "shap-e":
        # Built from a config, the renderer has no marching-cubes table and a random surface:
        # given one, mesh extraction costs what a trained model's does, rather than nothing
        # (no surface) or far more (millions of specks).
        from inference_server.tiny.shap_e import shape_surface

        shape_surface(pipe)
    return pipe


def build(
    family: str,
    folder: Path,
    *,
    scale: float = 1.0,
    dtype: str = "bfloat16",
    device: str | None = None,
    trim: bool = True,
) -> None:
    """Save a random-weight pipeline of ``family`` at its published size (times ``scale``)."""
    pipe = instantiate(family, scale=scale, dtype=dtype, device=device, trim=trim)
    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(folder)
    del pipe
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def human(n: float) -> str:
    """``12.0B``, ``335M``: parameter counts as model cards write them."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.{1 if n < 100 * size else 0}f}{unit}"
    return str(math.floor(n))
