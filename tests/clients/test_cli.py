"""The ``genserve`` client subcommands, run as a user runs them, against the session's bridge."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.clients.test_sdk_live import subject_png
from tests.conftest import Bridge
from tests.utils.procs import ROOT

SQLITE = pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
WITHOUT_RICH = (
    "import sys; sys.modules['rich'] = None; "
    "from genserve.cli import main; sys.exit(main(sys.argv[1:]))"
)


def genserve(
    home: Path, *args: str, stdin: str = "", without_rich: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m genserve.cli ARGS`` with a config folder of its own and only ``env`` set."""
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_") and k != "HOME"
    }
    entry = ["-c", WITHOUT_RICH] if without_rich else ["-m", "genserve.cli"]
    return subprocess.run(
        [sys.executable, *entry, *args],
        input=stdin,
        env={**base_env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "xdg"), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr


@SQLITE
def test_generation_commands_save_their_files(bridge: Bridge, tmp_path: Path) -> None:
    env = {"GENSERVE_BASE_URL": bridge.base, "GENSERVE_API_KEY": bridge.new_key(points=100)}
    out = tmp_path / "images"
    made = genserve(
        tmp_path, "image", "a fox", "-n", "2", "--format", "webp", "-o", str(out), **env
    )
    assert made.returncode == 0, made.stderr
    paths = [Path(line) for line in made.stdout.splitlines()]
    assert len(paths) == 2 and all(p.parent == out and p.suffix == ".webp" for p in paths)
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "WEBP"
    # Standard error is not a terminal here: plain progress lines, then the summary.
    assert "image: queued" in made.stderr and "image: done" in made.stderr
    assert "denoising" in made.stderr
    assert "92 points left" in made.stderr

    # Without rich installed the command works the same, with plain lines.
    video = genserve(
        tmp_path,
        "video",
        "waves",
        "--resolution",
        "360p",
        "--duration",
        "1",
        "-o",
        str(tmp_path / "videos"),
        without_rich=True,
        **env,
    )
    assert video.returncode == 0, video.stderr
    [clip] = [Path(line) for line in video.stdout.splitlines()]
    assert clip.suffix == ".mp4" and clip.stat().st_size > 0
    assert "video: done" in video.stderr

    png = subject_png(tmp_path / "object.png")
    mesh = genserve(tmp_path, "3d", str(png), "--no-progress", "-o", str(tmp_path / "3d"), **env)
    assert mesh.returncode == 0, mesh.stderr
    glb, preview = [Path(line) for line in mesh.stdout.splitlines()]
    assert glb.read_bytes()[:4] == b"glTF"
    with Image.open(preview) as picture:  # the rendered preview beside the GLB
        assert picture.format in ("JPEG", "PNG", "WEBP")
    assert "3d:" not in mesh.stderr  # --no-progress

    listed = genserve(tmp_path, "projects", "--type", "images", **env)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert rows[0].split()[:5] == ["id", "type", "created", "model", "prompt"]
    assert len(rows) == 2 and "a fox" in rows[1] and "nano-banana" in rows[1]
    assert "page 1 of 1 (1 projects)" in listed.stderr
    every = genserve(tmp_path, "projects", "--all", **env)
    assert every.returncode == 0 and len(every.stdout.splitlines()) == 4

    account = genserve(tmp_path, "account", **env)
    assert account.returncode == 0, account.stderr
    assert "plan:     free" in account.stdout and "points:   71" in account.stdout


@SQLITE
def test_errors_print_the_code_without_a_traceback(bridge: Bridge, tmp_path: Path) -> None:
    poor = genserve(
        tmp_path,
        "image",
        "a fox",
        "-o",
        str(tmp_path),
        GENSERVE_BASE_URL=bridge.base,
        GENSERVE_API_KEY=bridge.new_key(points=0),
    )
    assert poor.returncode == 1
    assert poor.stderr.startswith("genserve: insufficient_points: ")
    assert "(request_id req_" in poor.stderr
    assert poor.stdout == "" and not list(tmp_path.glob("*.png"))
    no_traceback(poor)

    bad_key = genserve(
        tmp_path, "models", GENSERVE_BASE_URL=bridge.base, GENSERVE_API_KEY="gsk_wrong"
    )
    assert bad_key.returncode == 1
    assert bad_key.stderr.startswith("genserve: invalid_api_key: ")
    assert "genserve login" in bad_key.stderr
    no_traceback(bad_key)

    nowhere = genserve(tmp_path, "models", "--base-url", "http://127.0.0.1:9", "--retries", "0")
    assert nowhere.returncode == 1
    assert nowhere.stderr.startswith("genserve: connection_error: cannot reach http://127.0.0.1:9")
    no_traceback(nowhere)

    missing = genserve(tmp_path, "3d", str(tmp_path / "nope.png"), GENSERVE_API_KEY="k")
    assert missing.returncode == 1 and "no such file" in missing.stderr
    no_traceback(missing)

    usage = genserve(tmp_path, "image", "x", "--aspect-ratio", "7:3")
    assert usage.returncode == 2 and "7:3" in usage.stderr
    no_traceback(usage)


@SQLITE
def test_login_saves_the_key_for_later_commands(bridge: Bridge, tmp_path: Path) -> None:
    key = bridge.new_key(points=100)
    wrong = genserve(tmp_path, "login", "--base-url", bridge.base, stdin="gsk_wrong\n")
    assert wrong.returncode == 1 and "invalid_api_key" in wrong.stderr
    config = tmp_path / "xdg" / "genserve" / "config.json"
    assert not config.exists()

    # Base URL and key, one line each, as a script would pipe them.
    logged = genserve(tmp_path, "login", stdin=f"{bridge.base}\n{key}\n")
    assert logged.returncode == 0, logged.stderr
    assert key not in logged.stdout + logged.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text()) == {"base_url": bridge.base, "api_key": key}

    listed = genserve(tmp_path, "models")  # no GENSERVE_* in the environment
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["name", "kind", "default", "price", "accepts"]
    assert any(
        line.split()[:3] == ["nano-banana", "image", "yes"] for line in listed.stdout.splitlines()
    )

    out = genserve(tmp_path, "logout")
    assert out.returncode == 0 and not config.exists()
    after = genserve(tmp_path, "models", "--base-url", bridge.base)
    assert after.returncode == 1 and after.stderr.startswith("genserve: invalid_api_key")


@SQLITE
def test_batch_json_models_projects_and_completion(bridge: Bridge, tmp_path: Path) -> None:
    """``--from FILE`` (prompt lines and JSON lines), ``--json``, ``models`` with prices and
    accepted values, ``projects`` within 100 columns, ``--version``, ``completion``."""
    import json

    env = {"GENSERVE_BASE_URL": bridge.base, "GENSERVE_API_KEY": bridge.new_key(points=100)}
    batch = tmp_path / "prompts.txt"
    batch.write_text(
        "# a comment\na red kite over a very long beach at low tide, in the style of a "
        "faded postcard from the nineteen-sixties with a wide border\n\n"
        '{"prompt": "a blue boat", "aspect_ratio": "16:9", "output_format": "jpeg"}\n'
    )
    out = tmp_path / "batch"
    made = genserve(tmp_path, "image", "--from", str(batch), "-o", str(out), **env)
    assert made.returncode == 0, made.stderr
    paths = [Path(line) for line in made.stdout.splitlines()]
    assert [p.suffix for p in paths] == [".png", ".jpeg"]
    # one view for the batch: without a terminal, one line per finished item, no step lines
    per_item = [line for line in made.stderr.splitlines() if line.startswith("image ")]
    assert per_item == [f"image 1/2: done ({paths[0]})", f"image 2/2: done ({paths[1]})"]
    assert "2 prompts done; 92 points left" in made.stderr
    with Image.open(paths[1]) as boat:
        assert boat.width > boat.height  # its line's 16:9

    lines = genserve(tmp_path, "image", "--from", str(batch), "--json", "-o", str(out), **env)
    assert lines.returncode == 0, lines.stderr
    results = [json.loads(line) for line in lines.stdout.splitlines()]  # JSON lines
    assert [r["prompt"][:10] for r in results] == ["a red kite", "a blue boa"]
    assert all(Path(r["saved"][0]).is_file() for r in results)
    assert results[-1]["remaining_points"] == 84

    bad = tmp_path / "bad.txt"
    bad.write_text('{"prompt": 3}\n')
    refused = genserve(tmp_path, "image", "--from", str(bad), **env)
    assert refused.returncode == 1 and "bad.txt:1: a JSON line needs" in refused.stderr
    no_traceback(refused)

    as_json = genserve(tmp_path, "image", "a cat", "--json", "-o", str(out), **env)
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["kind"] == "image" and answer["remaining_points"] == 80
    assert len(answer["saved"]) == 1 and Path(answer["saved"][0]).is_file()

    models = genserve(tmp_path, "models", **env)
    assert models.returncode == 0, models.stderr
    banana = next(line for line in models.stdout.splitlines() if line.startswith("nano-banana"))
    assert "4 points per image" in banana and "aspect_ratios: 1:1," in banana
    video = next(line for line in models.stdout.splitlines() if line.startswith("vidu-q2"))
    assert "10 points for 4s 720p" in video and "resolutions: " in video
    listed = json.loads(genserve(tmp_path, "models", "--json", **env).stdout)
    assert {m["name"] for m in listed} >= {"nano-banana", "vidu-q2"}

    projects = genserve(tmp_path, "projects", **env)
    assert projects.returncode == 0, projects.stderr
    assert all(len(line) <= 100 for line in projects.stdout.splitlines()), projects.stdout
    assert "a red kite" in projects.stdout
    found = genserve(tmp_path, "projects", "-q", "BLUE BOAT", "--json", **env)
    assert [p["prompt"] for p in json.loads(found.stdout)] == ["a blue boat"] * 2  # two batches
    account = json.loads(genserve(tmp_path, "account", "--json", **env).stdout)
    assert account["points"] == 80

    version = genserve(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("genserve ")
    for shell in ("bash", "zsh", "fish"):
        script = genserve(tmp_path, "completion", shell)
        assert script.returncode == 0 and "genserve" in script.stdout
    import shutil

    for shell, marker in (("zsh", "bashcompinit"), ("fish", "complete -c genserve")):
        text = genserve(tmp_path, "completion", shell).stdout
        assert marker in text
        for command in ("image", "video", "3d", "projects", "models", "login", "completion"):
            assert command in text, (shell, command)
        binary = shutil.which(shell)
        if binary is not None:  # this machine has neither; checked where one is installed
            path = tmp_path / f"genserve.{shell}"
            path.write_text(text)
            checked = subprocess.run([binary, "-n", str(path)], capture_output=True, text=True)
            assert checked.returncode == 0, checked.stderr
    bash = genserve(tmp_path, "completion", "bash").stdout
    probe = subprocess.run(
        [
            "bash",
            "-c",
            bash + "\nCOMP_WORDS=(genserve image --fr); COMP_CWORD=2; _genserve; "
            'echo "${COMPREPLY[@]}"',
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.stdout.split() == ["--from"]


@SQLITE
def test_batch_on_a_terminal_draws_one_rich_view(bridge: Bridge, tmp_path: Path) -> None:
    """``--from FILE`` on a terminal (a pseudo-terminal): rich's live view, one bar for the
    batch and one for the current image, redrawn in place; every file saved."""
    from tests.utils.terminal import run_on_terminal

    key = bridge.new_key(points=100)
    batch = tmp_path / "prompts.txt"
    batch.write_text(
        'a lighthouse\n{"prompt": "a green field", "aspect_ratio": "16:9", "steps": 3}\na kite\n'
    )
    out = tmp_path / "batch"
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_") and k != "HOME"
    }
    env = {
        **base_env,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "GENSERVE_BASE_URL": bridge.base,
        "GENSERVE_API_KEY": key,
    }
    command = [sys.executable, "-m", "genserve.cli", "image", "--from", str(batch)]
    drawn = run_on_terminal([*command, "-o", str(out)], env, ROOT, timeout=120, columns=100)
    text = drawn.text
    assert drawn.returncode == 0, text
    assert "Traceback" not in text
    saved = sorted(out.iterdir(), key=lambda p: text.find(p.name))
    assert len(saved) == 3
    for path in saved:  # each path printed whole above the view, though wider than the terminal
        assert len(str(path)) > 100 and str(path) in text.splitlines(), text
    sizes = []
    for path in saved:
        with Image.open(path) as image:
            sizes.append(image.size)
    assert sizes[0] == sizes[2] and sizes[1][0] > sizes[1][1]  # the JSON line's 16:9
    assert "\x1b[" in drawn.raw  # drawn in place (cursor movements), not line after line
    assert "images done" in text and "3/3" in text  # the batch's bar, finished
    assert "image 3/3: done" in text  # the current image's bar, at the last item
    assert not any(line.startswith("image 1/3: done (") for line in text.splitlines())
    assert "3 prompts done; 88 points left" in text

    # `> FILE`: the view stays on the terminal, the JSON lines go to the file, whole.
    listed = tmp_path / "results.jsonl"
    again = run_on_terminal(
        [*command, "--json", "-o", str(tmp_path / "again")],
        env,
        ROOT,
        timeout=120,
        stdout=listed,
    )
    assert again.returncode == 0, again.text
    results = [json.loads(line) for line in listed.read_text().splitlines()]
    assert [r["prompt"] for r in results] == ["a lighthouse", "a green field", "a kite"]
    assert "images done" in again.text and '"prompt"' not in again.text
