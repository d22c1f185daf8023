"""A small StableDiffusionXLPipeline with random weights, for tests and the embedded default.

Same classes and loading path as a real SDXL checkpoint; it runs 4 steps at
128x128 in well under a second on a CPU. Its pictures are noise, not art.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    EulerDiscreteScheduler,
    SchedulerMixin,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)

from inference_server.tiny import parts
from inference_server.tiny.tokenizers import build_clip_tokenizer

HIDDEN = 32


def build(folder: Path, *, scheduler: SchedulerMixin | None = None) -> None:
    """Writes the pipeline to ``folder`` with ``save_pretrained``.

    ``scheduler`` replaces SDXL's (Euler, leading timesteps): SDXL-Turbo is the
    same network with Euler ancestral on trailing timesteps.
    """
    torch.manual_seed(0)
    tokenizer = build_clip_tokenizer()
    tokenizer_2 = build_clip_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 1),
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + HIDDEN,
        cross_attention_dim=2 * HIDDEN,
        use_linear_projection=True,
        norm_num_groups=8,
    )
    vae = parts.kl_vae(4, sample_size=128)
    if scheduler is None:
        scheduler = EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            timestep_spacing="leading",
            steps_offset=1,
        )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=parts.clip_text_encoder(len(tokenizer), HIDDEN),
        text_encoder_2=parts.clip_text_encoder_with_projection(len(tokenizer_2), HIDDEN),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder)
