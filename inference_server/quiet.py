"""What the model libraries print: through our logging, without notices or progress bars.

diffusers and transformers each put a handler of their own on their loggers
(bare text on standard error, not propagated) and draw tqdm bars for every
component and shard they load. ``quiet_libraries`` sends their records to the
process's handler instead (one JSON object per line, like every other line)
and turns the bars off, huggingface_hub's download bars included. It drops the
few notices an operator can do nothing about (``_notices``); their other
warnings stay, as warnings.
"""

from __future__ import annotations

import logging


class _Notice(logging.Filter):
    """Drops the records of one logger that carry ``text``: a notice nobody can act on."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _notices() -> dict[str, str]:
    """Logger name -> the text of its notice to drop.

    - transformers' "requires torchvision ... falling back to ...Pil": the PIL image
      processors it falls back to are the ones these pipelines need (they only turn
      an input picture into a tensor); it asks for a package genserve does not use.
    - torchao's, at import (transformers imports it whenever it is installed, the
      ``cuda`` extra): no Triton, an Enum note from pytree, diffusers' fallback for
      old tensor types, and, on a CPU build of torch, its CUDA kernels not loading.
    - diffusers' "modules in AutoencoderKL that should be kept in float32: []": said when
      a pipeline is moved or made with ``from_pipe``, about an empty list of modules.
    - diffusers' "No LoRA keys associated to CLIPTextModel...": an adapter that adapts the
      denoiser only (as most do, ``demo-style`` too) leaves the text encoders alone.
    """
    import torch

    notices = {
        "transformers.utils.import_utils": "requires torchvision (not installed)",
        "torchao.kernel.intmm": "Detected no triton",
        "torch.utils._pytree": "is an Enum subclass and is now natively supported",
        "diffusers.quantizers.torchao.torchao_quantizer": "Unable to import `torchao` Tensor",
        # Said on every move of a VAE that has no such module (the list is empty).
        "diffusers.models.modeling_utils": "should be kept in float32: []",
        # Said for each text encoder an adapter leaves alone (most adapt the denoiser only).
        "diffusers.loaders.lora_base": "No LoRA keys associated to",
    }
    if torch.version.cuda is None:
        notices["torchao"] = "Failed to load"
    return notices


_quietened = False


def quiet_libraries() -> None:
    """Routes diffusers' and transformers' logs through ours, bars off; idempotent.

    Run before the pipelines are imported (some of them say things at import).
    """
    global _quietened
    if _quietened:
        return
    for name, text in _notices().items():  # the loggers the libraries will use
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Notice) and f.text == text for f in logger.filters):
            logger.addFilter(_Notice(text))
    import diffusers.utils.logging as diffusers_logging
    import huggingface_hub.utils
    import transformers.utils.logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_progress_bar()
        library.disable_default_handler()
        library.enable_propagation()
    huggingface_hub.utils.disable_progress_bars()
    _quietened = True
