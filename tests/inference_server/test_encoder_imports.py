"""Encoders do not import models: checked on the source, so a new such import fails here.

Every module under ``inference_server/encoders/`` is parsed with ``ast``, and so,
transitively, is every ``inference_server`` module it imports; none may import
torch, diffusers, a pipeline or a plan, at the top or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENCODERS = sorted((ROOT / "inference_server" / "encoders").glob("*.py"))
FORBIDDEN = ("torch", "diffusers", "inference_server.pipelines", "inference_server.plans")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_of(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` names in an import, wherever the statement stands.

    ``from a import b`` names both ``a`` and ``a.b``, as ``b`` may be a module.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                origin = f"{base}.{node.module}" if node.module else base
            else:
                origin = node.module or ""
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return names


def forbidden(name: str) -> bool:
    return any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN)


def forbidden_chains(path: Path) -> list[str]:
    """``a -> b -> torch`` for every way the module at ``path`` reaches a forbidden import."""
    found: list[str] = []
    seen: set[str] = set()
    stack = [(path, [module_name(path)])]
    while stack:
        current, chain = stack.pop()
        for name in sorted(imports(current.read_text(), chain[-1], current.name == "__init__.py")):
            if forbidden(name):
                found.append(" -> ".join([*chain, name]))
            elif name.startswith("inference_server.") and name not in seen:
                seen.add(name)
                nested = source_of(name)
                if nested is not None:
                    stack.append((nested, [*chain, name]))
    return found


def test_there_are_encoders_to_check() -> None:
    assert {path.stem for path in ENCODERS} >= {"images", "mesh", "video"}


@pytest.mark.parametrize("path", ENCODERS, ids=lambda path: path.stem)
def test_encoder_imports_no_model(path: Path) -> None:
    assert forbidden_chains(path) == []


@pytest.mark.parametrize(
    "statement",
    [
        "import torch",
        "import diffusers.pipelines",
        "from diffusers import DiffusionPipeline",
        "from inference_server.pipelines.relief import build_relief_mesh",
        "from inference_server import plans",
        "from ..pipelines import mesh",
        "def later():\n    import torch.nn",
    ],
)
def test_the_check_sees_a_model_import(statement: str) -> None:
    names = imports(statement, "inference_server.encoders.mesh")
    assert any(forbidden(name) for name in names)


def test_the_check_follows_inference_server_modules() -> None:
    """A module that reaches torch only through another inference_server module is caught."""
    chains = forbidden_chains(ROOT / "inference_server" / "plans" / "image.py")
    assert any(chain.endswith("-> torch") for chain in chains)
