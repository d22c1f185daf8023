"""The front page and the docs/ pages: their links lead somewhere, the commands they show
parse as written, and every setting they name exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from genserve.cli import build_parser
from tests.utils.procs import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")
FENCE = re.compile(r"```sh\n(.*?)```", re.S)


def _commands(page: Path) -> list[str]:
    shown = []
    for block in FENCE.findall(page.read_text()):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if "[" in line or "|" in line:  # a synopsis (`[--plan free|pro]`), not a command
                continue
            for prefix in (".venv/bin/genserve ", "genserve "):
                if line.startswith(prefix):
                    shown.append(line[len(prefix) :])
    return shown


def test_the_readme_is_a_front_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 80
    first_screen = "\n".join(readme.splitlines()[:40])
    assert "random weights" in first_screen and "noise" in first_screen
    assert "make up MODEL=sdxl-turbo" in first_screen
    for page in ("api", "sdk", "cli", "models", "configuration", "operating", "deployment"):
        assert f"(docs/{page}.md)" in readme
    assert "(docs/security.md)" in readme


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_to_a_file(page: Path) -> None:
    for target, _ in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (page.parent / target).exists(), f"{page.name}: {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_genserve_command_shown_parses(page: Path) -> None:
    parser = build_parser()
    for command in _commands(page):
        args = shlex.split(command)
        try:
            parser.parse_args(args)
        except SystemExit as exc:  # --version and --help exit 0 after printing
            if exc.code == 0:
                continue
            pytest.fail(f"{page.name}: `genserve {command}` does not parse ({exc})")


def test_pages_show_commands() -> None:
    assert len(_commands(ROOT / "docs" / "cli.md")) >= 5
    assert "models pull sdxl-turbo" in _commands(ROOT / "docs" / "models.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_setting_named_exists(page: Path) -> None:
    settings = (ROOT / "docs" / "settings.md").read_text()
    known = set(re.findall(r"`(GENSERVE_[A-Z0-9_]+)`", settings))
    for name in set(re.findall(r"\b(GENSERVE_[A-Z0-9_]+)\b", page.read_text())):
        if name.endswith("_") or name in {"GENSERVE_BASE_URL", "GENSERVE_API_KEY"}:
            continue  # a prefix; the client's own variables (docs/sdk.md)
        if name in {"GENSERVE_CONFIG", "GENSERVE_TEST_MODEL_CACHE", "GENSERVE_TEST_LANE"}:
            continue
        assert name in known, f"{page.name} names {name}, which is no setting"
