"""Presets: the real-size model families of ``examples/models/``, served in one command.

``genserve up --preset sdxl-turbo`` (``make up MODEL=sdxl-turbo``) serves the family's
checkpoint under the document's public name of its kind (``nano-banana`` for images,
``vidu-q2`` for videos, ...) as that kind's default, beside the built-in models of the
other kinds. The weights go to the usual Hugging Face cache (``HF_HOME``; ``HF_TOKEN``
for gated repositories), downloaded with a progress bar on the first start or ahead of
time with ``genserve models pull NAME``. Where they cannot be fetched (offline, no
token, gated, unknown), one line says which preset, which repository and what to do.

``python -m inference_server.presets list | pull NAME [--models-file PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "models"


@dataclass(frozen=True)
class Preset:
    name: str
    kind: str
    served_as: str
    weights_gb: float
    gpu_gb: int
    about: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("sdxl-turbo", "image", "nano-banana", 7, 12, "SDXL distilled: 512 px in 1 step"),
        Preset("sdxl", "image", "nano-banana", 7, 12, "Stable Diffusion XL 1.0, 1024 px"),
        Preset("sd3.5-medium", "image", "nano-banana", 16, 24, "Stable Diffusion 3.5 Medium"),
        Preset("flux-schnell", "image", "nano-banana", 34, 40, "FLUX.1 [schnell], 1-4 steps"),
        Preset(
            "flux-kontext-dev",
            "image",
            "nano-banana",
            34,
            40,
            "FLUX.1 Kontext [dev]: edits (gated)",
        ),
        Preset("ltx-video", "video", "vidu-q2", 14, 24, "LTX-Video 0.9, 2B"),
        Preset("wan2.1-t2v-1.3b", "video", "vidu-q2", 14, 24, "Wan 2.1 text to video, 1.3B"),
        Preset(
            "wan2.1-i2v-14b-480p",
            "video",
            "vidu-q2",
            46,
            80,
            "Wan 2.1 image to video, 14B 480p: a first frame in every request",
        ),
        Preset("ltx-2", "video", "ltx-2", 68, 80, "LTX-2 19B with sound (fp8 on 80 GB)"),
        Preset("shap-e", "3d", "shap-e", 2, 8, "Shap-E image to 3D"),
    )
}
"""Name -> preset: the examples/models/<name>.toml file, the public name it is served
under, its weights and the GPU memory it needs (about, in GB, float16/bfloat16)."""


class PresetProblem(Exception):
    """A preset that cannot be served: the one line to say."""


def preset_named(name: str) -> Preset:
    preset = PRESETS.get(name)
    if preset is None:
        raise PresetProblem(f"no preset {name!r}; presets: {', '.join(PRESETS)}")
    return preset


def preset_entry(preset: Preset) -> dict[str, Any]:
    """The family's table from its example file."""
    import tomllib

    path = EXAMPLES / f"{preset.name}.toml"
    try:
        with path.open("rb") as fh:
            models = tomllib.load(fh)["models"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise PresetProblem(f"preset {preset.name}: cannot read {path}: {exc}") from None
    entry: dict[str, Any] = next(iter(models.values()))
    return entry


def preset_models(preset: Preset) -> dict[str, dict[str, Any]]:
    """The built-in models with the preset in place of its kind's default, under the
    document's public name, as that kind's default."""
    from inference_server.model_config import EMBEDDED_MODELS

    table: dict[str, dict[str, Any]] = {}
    for name, entry in EMBEDDED_MODELS.items():
        if name == preset.served_as:
            continue
        entry = dict(entry)
        if entry.get("kind") == preset.kind:
            entry["default"] = False
        table[name] = entry
    table[preset.served_as] = {**preset_entry(preset), "default": True}
    return table


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (an adapter of a model's loras)
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def models_toml(table: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, entry in table.items():
        lines.append(f"[models.{json.dumps(name)}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in entry.items()]
        lines.append("")
    return "\n".join(lines)


def repositories(preset: Preset) -> list[str]:
    entry = preset_entry(preset)
    repos = [str(entry["source"])]
    if entry.get("preview_decoder"):
        repos.append(str(entry["preview_decoder"]))
    return repos


def _what_to_do(preset: Preset, repo: str, exc: BaseException) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    where = f"preset {preset.name}: cannot fetch {repo} from the Hugging Face Hub"
    if constants.ENDPOINT != "https://huggingface.co":  # a mirror (HF_ENDPOINT)
        where += f" at {constants.ENDPOINT} (HF_ENDPOINT)"
    if isinstance(exc, GatedRepoError):
        return (
            f"{where}: the repository is gated; accept its terms at "
            f"{constants.ENDPOINT}/{repo} and set HF_TOKEN to a token of that account"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return f"{where}: no such repository, or it is private (set HF_TOKEN)"
    if isinstance(exc, OfflineModeIsEnabled) or os.environ.get("HF_HUB_OFFLINE", "") in (
        "1",
        "true",
        "True",
        "yes",
    ):
        return (
            f"{where}: offline (HF_HUB_OFFLINE) and not in the cache ({cache_home()}); "
            f"run `genserve models pull {preset.name}` where the Hub can be reached "
            "(the same HF_HOME), or unset HF_HUB_OFFLINE"
        )
    if isinstance(exc, LocalEntryNotFoundError) or "connect" in type(exc).__name__.lower():
        reason = "the Hub cannot be reached (no network?)"
    else:
        lines = str(exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
    return (
        f"{where}: {reason}; connect to the internet (or a mirror in HF_ENDPOINT) and run "
        f"`genserve models pull {preset.name}`, or start without --preset for the built-in "
        "models"
    )


def cache_home() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _reachable(repo: str) -> None:
    """Raises what the Hub says when ``repo`` cannot be downloaded, before any download.

    A gated repository's information is public; only its files answer that they are
    gated (``GatedRepoError``), so one file's metadata is asked for too.
    """
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url

    info = HfApi().model_info(repo, timeout=15)
    if info.gated and info.siblings:
        get_hf_file_metadata(hf_hub_url(repo, info.siblings[0].rfilename), timeout=15)


def _fetch(preset: Preset, repo: str, main: bool) -> None:
    """The files ``from_pretrained`` reads for ``repo``: the cache's copy when complete,
    else a download with progress bars."""
    from huggingface_hub import snapshot_download

    try:  # nothing of it in the cache: straight to the Hub, without loading diffusers first
        snapshot_download(repo, local_files_only=True, allow_patterns=["*.json"])
        cached = True
    except Exception:
        cached = False
    if not cached:
        try:
            _reachable(repo)  # offline, gated, unknown: said in seconds
        except Exception as exc:
            raise PresetProblem(_what_to_do(preset, repo, exc)) from None
    from huggingface_hub.utils import enable_progress_bars

    from inference_server.quiet import quiet_libraries

    quiet_libraries()
    enable_progress_bars()
    entry = preset_entry(preset)
    if main:
        from inference_server.loader import pipeline_class
        from inference_server.model_config import ModelSpec

        spec = ModelSpec.model_validate({"name": preset.served_as, **entry})
        cls = pipeline_class(spec)

        def fetch(local: bool) -> None:
            cls.download(repo, local_files_only=local)
    else:

        def fetch(local: bool) -> None:
            snapshot_download(repo, local_files_only=local)

    if cached:
        try:
            fetch(True)
            return
        except Exception:  # not all in the cache: from the Hub
            pass
    try:
        _reachable(repo)
        print(f"genserve: downloading {repo} into {cache_home()} ...", file=sys.stderr, flush=True)
        fetch(False)
    except Exception as exc:
        raise PresetProblem(_what_to_do(preset, repo, exc)) from None


def pull(name: str) -> Preset:
    """Every repository of the preset in the Hugging Face cache; PresetProblem if not."""
    preset = preset_named(name)
    for index, repo in enumerate(repositories(preset)):
        _fetch(preset, repo, main=index == 0)
    return preset


def list_presets(as_json: bool = False) -> str:
    if as_json:
        return json.dumps(
            [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "served_as": p.served_as,
                    "repository": preset_entry(p)["source"],
                    "weights_gb": p.weights_gb,
                    "gpu_memory_gb": p.gpu_gb,
                    "about": p.about,
                }
                for p in PRESETS.values()
            ],
            indent=2,
        )
    rows = [f"{'preset':<16} {'kind':<6} {'served as':<12} {'weights':>8} {'GPU':>6}  about"]
    for p in PRESETS.values():
        rows.append(
            f"{p.name:<16} {p.kind:<6} {p.served_as:<12} {p.weights_gb:>6g} GB "
            f"{p.gpu_gb:>3} GB  {p.about}"
        )
    rows.append("serve one: genserve up --preset NAME (make up MODEL=NAME); fetch ahead: ")
    rows[-1] += "genserve models pull NAME"
    return "\n".join(rows)


def cmd_presets(args: argparse.Namespace) -> int:
    print(list_presets(as_json=getattr(args, "json", False)))
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    try:
        preset = pull(args.name)
        if args.models_file is not None:
            path = Path(args.models_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(models_toml(preset_models(preset)))
    except PresetProblem as exc:
        print(f"genserve: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("genserve: download stopped; it resumes where it stopped", file=sys.stderr)
        return 130
    if args.models_file is None:
        print(f"{preset.name}: in the Hugging Face cache ({cache_home()})")
    return 0


def add_commands(models: argparse.ArgumentParser) -> None:
    """``presets`` and ``pull`` under ``genserve models``."""
    commands = models.add_subparsers(dest="models_command", metavar="{presets,pull}")
    presets = commands.add_parser("presets", help="real-size models served in one command")
    presets.add_argument("--json", action="store_true", help="as JSON")
    presets.set_defaults(func=cmd_presets)
    fetch = commands.add_parser("pull", help="download a preset's weights ahead of time")
    fetch.add_argument("name", help="a preset (genserve models presets)")
    fetch.add_argument("--models-file", help=argparse.SUPPRESS)
    fetch.set_defaults(func=cmd_pull)


def main(argv: list[str] | None = None) -> int:
    from genserve._internal.cmdline import Parser

    parser = Parser(prog="python -m inference_server.presets")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_presets)
    fetch = commands.add_parser("pull")
    fetch.add_argument("name")
    fetch.add_argument("--models-file")
    fetch.set_defaults(func=cmd_pull)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
