"""What the model libraries print: through our logging, without notices or progress bars.

diffusers and transformers each put a handler of their own on their loggers
(bare text on standard error, not propagated) and draw tqdm bars for every
component and shard they load. ``quiet_libraries`` sends their records to the
process's handler instead (one JSON object per line, like every other line)
and turns the bars off, huggingface_hub's download bars included. It drops one
notice an operator can do nothing about (``_TorchvisionNotice``); their other
warnings stay, as warnings.
"""

from __future__ import annotations

import logging

_TORCHVISION_LOGGER = "transformers.utils.import_utils"


class _TorchvisionNotice(logging.Filter):
    """Drops transformers' "requires torchvision ... falling back to ...Pil" notice.

    The PIL image processors it falls back to are the ones these pipelines need
    (they only turn an input picture into a tensor); the notice asks for a
    package genserve does not use.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


_quietened = False


def quiet_libraries() -> None:
    """Routes diffusers' and transformers' logs through ours, bars off; idempotent.

    Run before the pipelines are imported (some of them say things at import).
    """
    global _quietened
    if _quietened:
        return
    notices = logging.getLogger(_TORCHVISION_LOGGER)  # the logger transformers will use
    if not any(isinstance(f, _TorchvisionNotice) for f in notices.filters):
        notices.addFilter(_TorchvisionNotice())
    import diffusers.utils.logging as diffusers_logging
    import huggingface_hub.utils
    import transformers.utils.logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_progress_bar()
        library.disable_default_handler()
        library.enable_propagation()
    huggingface_hub.utils.disable_progress_bars()
    _quietened = True
