"""A tiny FLUX.1-schnell pipeline (``FluxPipeline``) built from random weights.

The component classes are those of ``black-forest-labs/FLUX.1-schnell``: a
``FluxTransformer2DModel`` over 2x2-packed latents of a 16-channel 8x VAE, CLIP
and T5 text encoders, and the flow-matching Euler scheduler with the schnell
settings (no guidance embedding, no dynamic shift). Only the sizes shrink, so
the server runs FLUX's code path (packed latents included) without a download.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    FluxKontextPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
)

from inference_server.tiny import ltx_video, parts
from inference_server.tiny.tokenizers import build_clip_tokenizer

SEED = 0
CLIP_DIM = 32
T5_DIM = 32
LATENT_CHANNELS = 16


def build_pipeline(*, kontext: bool = False) -> FluxPipeline | FluxKontextPipeline:
    """Assemble the tiny pipeline in memory with seeded random weights.

    ``kontext``: FLUX.1 Kontext [dev]'s ``FluxKontextPipeline`` (an instruction edit model):
    the same components with a guidance embedding and FLUX.1 [dev]'s dynamic shift.
    """
    tokenizer = build_clip_tokenizer()
    tokenizer_2 = ltx_video.build_tokenizer()
    torch.manual_seed(SEED)
    text_encoder = parts.clip_text_encoder(len(tokenizer), CLIP_DIM)
    torch.manual_seed(SEED)
    text_encoder_2 = parts.t5_encoder(tokenizer_2, T5_DIM)
    torch.manual_seed(SEED)
    # Head size 16 split 4/6/6 by the three-axis rotary embedding (the real one: 16/56/56 of 128).
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * LATENT_CHANNELS,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_DIM,
        pooled_projection_dim=CLIP_DIM,
        guidance_embeds=kontext,
        axes_dims_rope=(4, 6, 6),
    )
    torch.manual_seed(SEED)
    vae = parts.kl_vae(
        LATENT_CHANNELS,
        sample_size=64,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        quant_convs=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0 if kontext else 1.0,
        use_dynamic_shifting=kontext,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    cls = FluxKontextPipeline if kontext else FluxPipeline
    return cls(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def build(folder: Path) -> None:
    """Write the tiny pipeline to ``folder`` in the diffusers layout."""
    folder.mkdir(parents=True, exist_ok=True)
    build_pipeline().save_pretrained(folder)


def build_kontext(folder: Path) -> None:
    """Write the tiny FLUX.1 Kontext pipeline (``FluxKontextPipeline``) to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    build_pipeline(kontext=True).save_pretrained(folder)
