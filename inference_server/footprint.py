"""A model's footprint before it loads, from its weight files: what room to make first.

``residency.footprint_bytes`` measures a loaded pipeline; loading next to
resident models and then making room lets the device hold more than its budget
for a while, and a load that does not fit at all fails halfway. So the room is
made for an estimate first: the tensors in the safetensors files of the
components the pipeline loads (those ``model_index.json`` names), read from
their headers (nothing loaded), each floating-point tensor counted at the dtype
the model loads in, whatever dtype the file stores. A quantized denoiser's
matrices count one byte an element. Older ``.bin`` files count at their size.
The source is the model's folder (a built-in model's too) or its snapshot in the
Hugging Face cache; a model not yet downloaded has no estimate (``None``), and
its first load is measured only after it, as before.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from inference_server.model_config import ModelSpec

log = logging.getLogger(__name__)

FILE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip
FLOATS = {"F64", "F32", "F16", "BF16"}
"""Stored dtypes that ``from_pretrained`` casts to the model's dtype."""
LOAD_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
DENOISERS = ("unet", "transformer")
HEADER_LIMIT = 100 * 1024 * 1024


def local_folder(spec: ModelSpec, cache_dir: Path) -> Path | None:
    """Where the model's files are on this host, without downloading anything."""
    from inference_server.loader import WEIGHTLESS, builtin_name, resolve_source

    builtin = builtin_name(spec)
    if builtin in WEIGHTLESS:
        return None
    if builtin is not None:
        return Path(resolve_source(spec, cache_dir))  # builds a built-in model once
    folder = Path(spec.source).expanduser()
    if folder.is_dir():
        return folder
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec.source, local_files_only=True))
    except Exception:  # not in the cache (or not a repository id): no estimate
        return None


def components(folder: Path) -> list[str]:
    """The components ``from_pretrained`` loads: the entries of ``model_index.json``."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return []
    return [
        name
        for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and value and value[0] is not None
    ]


def weight_files(folder: Path) -> list[Path]:
    """The component's weights: its safetensors files (every shard, no variant), else ``.bin``."""
    for suffix in (".safetensors", ".bin"):
        # "x.safetensors" or "x-00001-of-00002.safetensors"; a variant is "x.fp16.safetensors"
        found = [p for p in folder.glob(f"*{suffix}") if p.name.count(".") == 1]
        if found:
            return sorted(found)
    return []


def safetensors_bytes(path: Path, load_bytes: int, quantized: bool) -> int:
    with path.open("rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        if not 0 < size <= HEADER_LIMIT:
            raise ValueError(f"{path}: not a safetensors file")
        header = json.loads(fh.read(size))
    total = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        count = math.prod(tensor["shape"])
        dtype = tensor["dtype"]
        if dtype in FLOATS:
            each = 1 if quantized and len(tensor["shape"]) >= 2 else load_bytes
        else:
            each = FILE_BYTES.get(dtype, 4)
        total += count * each
    return total


def estimate_bytes(spec: ModelSpec, cache_dir: Path) -> int | None:
    """The bytes the model's weights will take once loaded; None where it cannot be told."""
    folder = local_folder(spec, cache_dir)
    if folder is None:
        return None
    load_bytes = LOAD_BYTES.get(spec.dtype, 4)
    total = 0
    try:
        for component in components(folder):
            quantized = spec.quantize != "none" and component in DENOISERS
            for path in weight_files(folder / component):
                if path.suffix == ".safetensors":
                    total += safetensors_bytes(path, load_bytes, quantized)
                else:
                    total += path.stat().st_size
    except (OSError, ValueError) as exc:
        log.warning("%s: no footprint estimate from %s: %s", spec.name, folder, exc)
        return None
    return total or None
