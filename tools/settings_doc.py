"""The settings reference, generated from the settings classes: ``docs/settings.md``.

``python -m tools.settings_doc`` writes it; ``--check`` exits 1 when the
committed file differs from what the classes say (``tests/test_settings_doc.py``
runs the same check). Every variable, its default and its description come from
the pydantic fields of ``BridgeSettings`` and the inference server's
``ServerSettings``: a field without a ``description`` is an error, so a new
setting cannot go undocumented.
"""

from __future__ import annotations

import argparse
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "settings.md"

HEADER = """\
# Settings

Every process reads its settings once, at start-up, from environment variables.
This file is generated from the settings classes by `python -m tools.settings_doc`
(a test fails when it is stale): edit the classes' field descriptions, not this file.
"""


STALE_HINT = "python -m tools.settings_doc"


class Undocumented(Exception):
    pass


def variables(cls: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    """The environment variables that set the field, in the order they are read."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    if isinstance(alias, str):
        return [alias]
    prefix = str(cls.model_config.get("env_prefix", ""))
    return [(prefix + name).upper()]


def setting_variables(*classes: type[BaseSettings]) -> set[str]:
    """Every environment variable a setting of ``classes`` (default: both processes') is read
    from, aliases too (``DATABASE_URL``, ``GENSERVE_GRPC_TLS_CA``...): what deployment files
    may set."""
    if not classes:
        from inference_server.settings import ServerSettings
        from rest_bridge.settings import BridgeSettings

        classes = (BridgeSettings, ServerSettings)
    return {
        variable
        for cls in classes
        for name, field in cls.model_fields.items()
        for variable in variables(cls, name, field)
    }


def show_default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "computed at start-up"
    value: Any = field.default
    if value is PydanticUndefined:
        return "required"
    if value is None or isinstance(value, SecretStr):
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    return str(value)


def allowed_values(field: FieldInfo) -> list[str]:
    annotation = field.annotation
    if get_origin(annotation) is Literal:
        return [str(v) for v in get_args(annotation)]
    return []


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def table(cls: type[BaseSettings]) -> str:
    rows = ["| variable | default | description |", "| --- | --- | --- |"]
    for name, field in cls.model_fields.items():
        if not field.description:
            raise Undocumented(f"{cls.__name__}.{name} has no description")
        names = ", ".join(f"`{v}`" for v in variables(cls, name, field))
        default = show_default(field)
        description = field.description
        allowed = allowed_values(field)
        if allowed:
            description += " One of: " + ", ".join(f"`{v}`" for v in allowed) + "."
        rows.append(f"| {names} | `{_cell(default)}` | {_cell(description)} |")
    return "\n".join(rows)


def render() -> str:
    from inference_server.settings import ServerSettings
    from rest_bridge.settings import BridgeSettings

    sections = [
        HEADER,
        "## REST bridge\n\nRead by `genserve bridge` (`python -m rest_bridge`), `genserve up` "
        "and the operator commands (`genserve accounts`, `genserve keys`).\n",
        table(BridgeSettings),
        "",
        "## Inference server\n\nRead by `genserve inference` (`python -m inference_server.server`)"
        ". The gRPC TLS variables are shared with the bridge.\n",
        table(ServerSettings),
    ]
    return "\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python -m tools.settings_doc", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
