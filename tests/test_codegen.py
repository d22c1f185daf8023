"""The committed stubs and the synchronous client are what codegen writes, and the stubs
import against the pinned runtime."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

from genserve import codegen
from tests.utils.procs import ROOT


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    generated = codegen.generate(tmp_path)
    assert generated
    for path in generated:
        rel = path.relative_to(tmp_path)
        committed = codegen.OUT_ROOT / rel
        assert committed.exists(), f"{rel} is missing: run python -m genserve.codegen"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{rel} is stale: run python -m genserve.codegen"
        )


def test_every_stub_imports() -> None:
    for name in ("inference_pb2", "inference_pb2_grpc"):
        module = importlib.import_module(f"genserve.inference.v1.{name}")
        assert module is not None
    from genserve.inference.v1 import inference_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["InferenceService"]
    assert {m.name for m in service.methods} >= {"GenerateImage", "ListModels"}


def test_check_passes_on_the_tree() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "genserve.codegen", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    client = (ROOT / "clients" / "genserve" / "client.py").read_text()
    assert client.startswith(codegen.HEADER)


def _copy_checkout(tmp_path: Path) -> Path:
    """proto/, clients/ and the ruff configuration: what codegen reads."""
    root = tmp_path / "checkout"
    root.mkdir()
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(ROOT / "proto", root / "proto")
    ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    shutil.copytree(ROOT / "clients", root / "clients", ignore=ignore)
    return root


def test_check_fails_while_the_client_is_stale(tmp_path: Path) -> None:
    root = _copy_checkout(tmp_path)
    assert codegen.main(["--check", "--root", str(root)]) == 0
    source = root / "clients" / "genserve" / "async_client.py"
    anchor = "    async def aclose(self) -> None:\n"
    text = source.read_text()
    assert anchor in text
    added = (
        "    async def ping(self) -> bool:\n"
        '        """Whether the bridge answers (``await client.ping()``)."""\n'
        '        await self._request(Call("GET", "/health"))\n'
        "        return True\n\n"
    )
    source.write_text(text.replace(anchor, added + anchor, 1))
    assert codegen.main(["--check", "--root", str(root)]) == 1

    assert codegen.main(["--root", str(root)]) == 0
    assert codegen.main(["--check", "--root", str(root)]) == 0
    client = (root / "clients" / "genserve" / "client.py").read_text()
    assert "    def ping(self) -> bool:\n" in client
    assert '        self._request(Call("GET", "/health"))\n' in client
    assert "(``client.ping()``)" in client


def test_check_fails_while_a_stub_is_stale(tmp_path: Path) -> None:
    root = _copy_checkout(tmp_path)
    stub = root / "clients" / "genserve" / "inference" / "v1" / "inference_pb2.pyi"
    stub.write_text(stub.read_text() + "\n# edited by hand\n")
    assert codegen.main(["--check", "--root", str(root)]) == 1


def test_the_rewrite_table() -> None:
    source = (
        "import asyncio  # codegen: async-only\n"
        "# codegen: async-only begin\n"
        "# only in the source\n"
        "# codegen: async-only end\n"
        "async def f(x: AsyncClient) -> AsyncIterator[int]:\n"
        '    """``async for`` over ``AsyncJob``; ``await x.aclose()``."""\n'
        "    async with x as y:\n"
        "        async for line in y.aiter_lines():\n"
        "            yield line\n"
        "    await asyncio.sleep(1)\n"
        "    await x.aclose()\n"
        '    return cast("AsyncGenerationStream[R]", asynchronous)\n'
    )
    assert codegen.unasync(source) == (
        "def f(x: Client) -> Iterator[int]:\n"
        '    """``for`` over ``Job``; ``x.close()``."""\n'
        "    with x as y:\n"
        "        for line in y.iter_lines():\n"
        "            yield line\n"
        "    time.sleep(1)\n"
        "    x.close()\n"
        '    return cast("GenerationStream[R]", asynchronous)\n'
    )
