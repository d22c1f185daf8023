"""Generates the Python stubs and type stubs of ``proto/`` into ``clients/``.

Run ``python -m genserve.codegen`` after editing a ``.proto`` file;
``tests/test_codegen.py`` fails while the committed stubs are stale. It works from
a checkout (genserve-client installed editable, as ``make install`` does): the
paths below are the checkout's, found from this file's place in ``clients/genserve/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
OUT_ROOT = ROOT / "clients"


def proto_files() -> list[Path]:
    """Every ``.proto`` file of the contract, in a stable order."""
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_root: Path = OUT_ROOT) -> list[Path]:
    """Writes ``*_pb2.py``, ``*_pb2_grpc.py`` and their ``.pyi`` under ``out_root``."""
    if not PROTO_ROOT.is_dir():
        raise RuntimeError(
            f"no proto/ at {PROTO_ROOT}: generate from a checkout, with genserve-client "
            "installed editable (pip install -e ./clients)"
        )
    from grpc_tools import protoc  # build-time tool, imported only when generating

    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    include = Path(protoc.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    generated: list[Path] = []
    for name in files:
        stem = out_root / name[: -len(".proto")]
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            generated.append(stem.with_name(stem.name + suffix))
    return generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT_ROOT, help="output root folder")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
