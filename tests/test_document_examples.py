"""The published document's Python, JavaScript and cURL examples, run against a live bridge.

The sources in ``tests/examples/`` are the document's, line for line (checked here
against the document itself); each run replaces only the host and the key.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import Bridge
from tests.utils.procs import ROOT

EXAMPLES = ROOT / "tests" / "examples"
DOCUMENT = Path(
    os.environ.get(
        "GENSERVE_API_DOCS",
        # The published document beside the checkout, else the copy kept with the tests.
        next(
            (p for p in (ROOT.parent / "shared" / "seed" / "api-docs.txt",) if p.exists()),
            ROOT / "tests" / "examples" / "api-docs.txt",
        ),
    )
)
HOST = "https://yourdomain.com"
KEYS = ("your_api_key_here", "YOUR_API_KEY")
SOURCES = ["generate_image.py", "generate_image.js", "generate_image.sh"]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("name", SOURCES)
def test_the_example_is_the_documents(name: str) -> None:
    """Line for line as the document prints it (which lost the indentation)."""
    if not DOCUMENT.exists():
        pytest.skip(f"the published document is not at {DOCUMENT} (set GENSERVE_API_DOCS)")
    document = _lines(DOCUMENT.read_text())
    ours = _lines((EXAMPLES / name).read_text())
    start = document.index(ours[0])
    shown = document[start : start + len(ours)]
    # The document runs the last line into the next heading ("generateImage();cURL").
    assert shown[:-1] == ours[:-1]
    assert shown[-1].startswith(ours[-1])


def _prepared(name: str, tmp_path: Path, base: str, key: str) -> Path:
    text = (EXAMPLES / name).read_text().replace(HOST, base)
    for placeholder in KEYS:
        text = text.replace(placeholder, key)
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT)


def _check_image(url: str, bridge: Bridge, content_type: str) -> None:
    assert url.startswith(bridge.base + "/files/"), url
    got = httpx.get(url, timeout=30)
    assert got.status_code == 200
    assert got.headers["content-type"] == content_type
    width, height = Image.open(io.BytesIO(got.content)).size
    assert abs(width / height - 16 / 9) < 0.05, (width, height)


def _points(bridge: Bridge, key: str) -> int:
    with bridge.client(key) as http:
        value: int = http.get("/api/v1/account").json()["data"]["points"]
    return value


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_python_requests_example(bridge: Bridge, tmp_path: Path) -> None:
    key = bridge.new_key(points=100)
    done = _run(sys.executable, str(_prepared("generate_image.py", tmp_path, bridge.base, key)))
    assert done.returncode == 0, done.stderr
    found = re.fullmatch(r"Image generated: (\S+)\n", done.stdout)
    assert found is not None, done.stdout
    _check_image(found.group(1), bridge, "image/png")  # output_format defaults to png
    assert _points(bridge, key) == 96

    refused = _run(sys.executable, str(_prepared("generate_image.py", tmp_path, bridge.base, "x")))
    assert refused.returncode == 0, refused.stderr
    assert refused.stdout.startswith("Error: ") and "API key" in refused.stdout


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_javascript_fetch_example(bridge: Bridge, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is missing: apt-get install -y nodejs")
    key = bridge.new_key(points=100)
    done = _run(node, str(_prepared("generate_image.js", tmp_path, bridge.base, key)))
    assert done.returncode == 0, done.stderr
    found = re.fullmatch(r"Image URL: (\S+)\n", done.stdout)
    assert found is not None, done.stdout
    _check_image(found.group(1), bridge, "image/png")
    assert _points(bridge, key) == 96

    refused = _run(node, str(_prepared("generate_image.js", tmp_path, bridge.base, "x")))
    assert refused.returncode == 0 and refused.stdout == ""
    assert refused.stderr.startswith("Error: ") and "API key" in refused.stderr


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_curl_example(bridge: Bridge, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is missing: apt-get install -y curl")
    key = bridge.new_key(points=100)
    done = _run("bash", str(_prepared("generate_image.sh", tmp_path, bridge.base, key)))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["success"] is True
    data = answer["data"]
    assert set(data) >= {
        "images", "generation_id", "generation_time", "remaining_points", "request_id"
    }  # fmt: skip
    assert re.fullmatch(r"[0-9a-f]{24}", data["generation_id"])
    assert data["remaining_points"] == 96
    image = data["images"][0]
    assert image["content_type"] == "image/webp" and image["aspect_ratio"] == "16:9"
    assert image["file_name"].endswith(".webp")
    _check_image(image["url"], bridge, "image/webp")
