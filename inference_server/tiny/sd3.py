"""A tiny Stable Diffusion 3.5 pipeline (``StableDiffusion3Pipeline``) from random weights.

The component classes are those of ``stabilityai/stable-diffusion-3.5-medium``:
an MMDiT-X ``SD3Transformer2DModel`` (dual attention in its first block, QK RMS
norm), two CLIP text encoders with projection and a T5, a 16-channel 8x VAE and
the flow-matching Euler scheduler shifted by 3. Only the sizes shrink.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from transformers import CLIPTextModelWithProjection

from inference_server.tiny import ltx_video, parts
from inference_server.tiny.tokenizers import build_clip_tokenizer

SEED = 0
CLIP_DIM = 32
T5_DIM = 2 * CLIP_DIM
"""The pipeline pads the two CLIPs' joined output up to T5's width, so T5 is at least as wide."""
LATENT_CHANNELS = 16


def _clip(vocab_size: int) -> CLIPTextModelWithProjection:
    torch.manual_seed(SEED)
    return parts.clip_text_encoder_with_projection(vocab_size, CLIP_DIM)


def build_pipeline() -> StableDiffusion3Pipeline:
    """Assemble the tiny pipeline in memory with seeded random weights."""
    tokenizer = build_clip_tokenizer()
    tokenizer_2 = build_clip_tokenizer()
    tokenizer_3 = ltx_video.build_tokenizer()
    text_encoder = _clip(len(tokenizer))
    text_encoder_2 = _clip(len(tokenizer_2))
    torch.manual_seed(SEED)
    text_encoder_3 = parts.t5_encoder(tokenizer_3, T5_DIM)
    torch.manual_seed(SEED)
    heads, head_size = 4, 8
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=head_size,
        num_attention_heads=heads,
        joint_attention_dim=T5_DIM,
        caption_projection_dim=heads * head_size,
        pooled_projection_dim=2 * CLIP_DIM,
        pos_embed_max_size=32,  # patches per side: images up to 512 px
        dual_attention_layers=(0,),
        qk_norm="rms_norm",
    )
    torch.manual_seed(SEED)
    vae = parts.kl_vae(
        LATENT_CHANNELS,
        sample_size=64,
        scaling_factor=1.5305,
        shift_factor=0.0609,
        quant_convs=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )


def build(folder: Path) -> None:
    """Write the tiny pipeline to ``folder`` in the diffusers layout."""
    folder.mkdir(parents=True, exist_ok=True)
    build_pipeline().save_pretrained(folder)
