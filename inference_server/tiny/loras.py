"""``demo-style``: a small example adapter (LoRA) for the built-in image model.

Random low-rank weights on the UNet's attention projections, made locally with
peft's ``LoraConfig`` (no download) and written with diffusers'
``save_lora_weights``, so it loads through the same ``load_lora_weights`` path as a
published adapter. It changes the pictures, not into anything in particular.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

DEMO_STYLE = "demo-style"
WEIGHT_NAME = "pytorch_lora_weights.safetensors"
RANK = 4


def build_demo_style(model_folder: Path, folder: Path) -> None:
    """Writes the adapter for the UNet of the pipeline saved in ``model_folder``."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(model_folder / "unet")
    torch.manual_seed(1)
    unet.add_adapter(
        LoraConfig(
            r=RANK,
            lora_alpha=RANK,
            init_lora_weights=False,  # random on both sides: an adapter that does something
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        )
    )
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionXLPipeline.save_lora_weights(
        folder, unet_lora_layers=layers, weight_name=WEIGHT_NAME, safe_serialization=True
    )


def ensure_demo_style(model_folder: Path) -> Path:
    """The adapter's folder inside the built-in model's, made there once (atomically)."""
    folder = model_folder / "loras" / DEMO_STYLE
    if (folder / WEIGHT_NAME).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{DEMO_STYLE}-") as tmp:
        staging = Path(tmp) / DEMO_STYLE
        build_demo_style(model_folder, staging)
        if not (folder / WEIGHT_NAME).exists():
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
    return folder
