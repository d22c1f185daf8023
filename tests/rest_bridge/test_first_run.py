"""First run: the account of the key ``genserve up`` prints can log in to the web pages.

``genserve accounts login-link EMAIL`` (which ``up`` runs) prints a one-time link; and
``genserve up`` on another host and port prints URLs that reach what it serves.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from storage.accounts import create_account
from storage.login_links import create_login_link
from tests.conftest import KEY_SECRET, Bridge
from tests.rest_bridge.test_accounts_cli import genserve
from tests.utils.lanes import needs
from tests.utils.procs import ROOT, free_port
from tests.utils.web import new_email

LINK = re.compile(r"(http://\S+/login/link\?token=[A-Za-z0-9_-]+)")


def _db_url(bridge: Bridge) -> str:
    return bridge.engine.url.render_as_string(hide_password=False)


def _sign_in(link: str) -> httpx.Response:
    return httpx.get(link, follow_redirects=False, timeout=30)


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_a_login_link_signs_in_once(bridge: Bridge) -> None:
    db, data = _db_url(bridge), bridge.data_dir
    made = genserve(db, data, "keys", "create", "--email", (email := new_email()))
    assert made.returncode == 0, made.stderr
    printed = genserve(
        db, data, "accounts", "login-link", email, GENSERVE_PUBLIC_BASE_URL=bridge.base
    )
    assert printed.returncode == 0, printed.stderr
    link = printed.stdout.strip()
    assert LINK.fullmatch(link) and link.startswith(bridge.base + "/login/link?token="), link

    first = _sign_in(link)
    assert first.status_code == 303
    assert first.headers["location"] == "/projects"
    cookie = first.cookies.get("gs_session")
    assert cookie
    with httpx.Client(base_url=bridge.base, cookies={"gs_session": cookie}) as browser:
        page = browser.get("/settings/api-keys")
    assert page.status_code == 200
    assert email in page.text and "make-up" not in page.text  # keys named "default" here

    again = _sign_in(link)  # one use only
    assert again.status_code == 400 and "gs_session" not in again.cookies
    assert "expired or was already used" in again.text

    forged = link.split("token=")[0] + "token=" + "A" * 43
    assert _sign_in(forged).status_code == 400
    token = link.split("token=")[1]
    with httpx.Client(base_url=bridge.base, cookies={"gs_session": token}) as browser:
        assert browser.get("/settings/api-keys").headers.get("location") == "/login"


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_an_expired_link_is_refused(bridge: Bridge) -> None:
    with Session(bridge.engine, expire_on_commit=False) as s:
        account = create_account(s, email=new_email(), plan="free", points=0)
        assert account.id is not None
        token = create_login_link(
            s, account_id=account.id, secret=KEY_SECRET.encode(), lifetime=timedelta(seconds=-1)
        )
    assert _sign_in(f"{bridge.base}/login/link?token={token}").status_code == 400


def test_login_link_needs_a_known_account(tmp_path: Path) -> None:
    done = genserve(
        f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, "accounts", "login-link", "x@y"
    )
    assert done.returncode == 1 and "no account with the email x@y" in done.stderr


@pytest.mark.server
def test_up_on_another_host_and_port_prints_working_urls(model_cache: Path, tmp_path: Path) -> None:
    """``genserve up --host 0.0.0.0 --port P``: links on 127.0.0.1:P, none on 0.0.0.0 or :8000."""
    port, grpc_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GENSERVE_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        GENSERVE_DATA_DIR=str(tmp_path / "data"),
        GENSERVE_INFERENCE_CACHE_DIR=str(model_cache),
        GENSERVE_INFERENCE_GRACE_SECONDS="5",
    )
    command = [sys.executable, "-m", "genserve.cli", "up", "--host", "0.0.0.0"]
    command += ["--port", str(port), "--grpc-port", str(grpc_port)]
    proc = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            out.append(line)
            if "Ctrl-C stops" in line or time.monotonic() > deadline:
                break
        text = "".join(out)
        assert "genserve is up" in text, text
        base = f"http://127.0.0.1:{port}"
        assert f"Base URL: {base}" in text
        assert "0.0.0.0" not in text and ":8000" not in text
        key = re.search(r"API key:\s+(gsk_\S+)", text)
        assert key is not None, text
        account = httpx.get(
            f"{base}/api/v1/account", headers={"Authorization": f"Bearer {key.group(1)}"}
        )
        assert account.status_code == 200 and account.json()["data"]["email"] == (
            "operator@localhost"
        )
        link = LINK.search(text)
        assert link is not None and link.group(1).startswith(base + "/login/link?token="), text
        signed_in = _sign_in(link.group(1))
        assert signed_in.status_code == 303 and signed_in.cookies.get("gs_session")
        assert f"GET {base}/api/v1/models" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _make_dry_run(target: str, tmp_path: Path) -> str:
    done = subprocess.run(
        ["make", "-n", "-B", target, f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_up_installs_only_what_running_needs(tmp_path: Path) -> None:
    up = _make_dry_run("up", tmp_path)
    assert "-e ./clients" in up and "-e ." in up and "genserve up" in up
    assert "[dev]" not in up and "npm" not in up
    test = _make_dry_run("test", tmp_path)
    assert "-e '.[dev]'" in test and "npm ci" in test and "pytest" in test


def test_make_up_passes_ports_host_and_model(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *("make", "-n", "up", f"VENV={tmp_path / 'venv'}"),
            *("PORT=9000", "GRPC_PORT=50052", "HOST=0.0.0.0", "MODEL=sdxl-turbo"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "genserve up --host 0.0.0.0 --port 9000 --grpc-port 50052 --preset sdxl-turbo" in (
        done.stdout
    )
    plain = _make_dry_run("up", tmp_path)
    assert "genserve up --host 127.0.0.1 --port 8000 --grpc-port 50051\n" in plain


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GENSERVE_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(extra)
    return env


def _start_up(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[str], str, int]:
    """``genserve up`` on free ports from ``cwd``, read until its banner; (process, text, port)."""
    needs("server", "genserve up")
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "genserve.cli", "up", "--port", str(port)]
    command += ["--grpc-port", str(grpc_port)]
    proc = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        out.append(line)
        if "Ctrl-C stops" in line or time.monotonic() > deadline:
            break
    return proc, "".join(out), port


def _next_line(proc: subprocess.Popen[str], holding: str, timeout: float = 30) -> str:
    """The first line ``up`` prints from now on that holds ``holding`` ('' if none in time)."""
    import select

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1)
        if ready:
            line = proc.stdout.readline()
            if holding in line:
                return line
    return ""


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.server
def test_restarts_keep_one_working_key_and_one_data_directory(
    model_cache: Path, tmp_path: Path
) -> None:
    """Ten live keys from earlier starts: ``up`` still starts, prints a key that works, keeps
    it (0600) and prints it again on the next start; the data directory is the per-user one
    (``XDG_DATA_HOME``), which an operator command run from another folder finds."""
    from sqlmodel import create_engine

    from storage.accounts import create_api_key, list_api_keys, operator_account
    from storage.db import migrate

    xdg = tmp_path / "xdg"
    data = xdg / "genserve"
    data.mkdir(parents=True)
    engine = create_engine(f"sqlite:///{data / 'genserve.db'}")
    migrate(engine)
    with Session(engine, expire_on_commit=False) as s:  # an account of an older genserve
        old = create_account(s, email="operator@localhost", plan="free", points=100)
        assert old.id is not None
        for _ in range(10):
            create_api_key(s, account_id=old.id, secret=KEY_SECRET.encode(), name="make-up")
    env = _clean_env(
        XDG_DATA_HOME=str(xdg),
        GENSERVE_KEY_SECRET=KEY_SECRET,
        GENSERVE_INFERENCE_CACHE_DIR=str(model_cache),
        GENSERVE_INFERENCE_GRACE_SECONDS="5",
        GENSERVE_OPERATOR_POINTS="500000",
    )
    elsewhere = tmp_path / "some" / "other" / "folder"
    elsewhere.mkdir(parents=True)
    keys: list[str] = []
    for start in range(2):
        proc, text, port = _start_up(env, cwd=elsewhere if start else ROOT)
        try:
            assert "genserve is up" in text, text
            found = re.search(r"API key:\s+(gsk_\S+)", text)
            assert found is not None, text
            keys.append(found.group(1))
            me = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/account",
                headers={"Authorization": f"Bearer {found.group(1)}"},
            )
            assert me.status_code == 200, me.text
            assert me.json()["data"]["email"] == "operator@localhost"
            assert me.json()["data"]["plan"] == "enterprise"
            assert "GET /api/v1/account 200" in _next_line(proc, "/api/v1/account")
            link = LINK.search(text)
            assert link is not None, text
            assert _sign_in(link.group(1)).status_code == 303
        finally:
            _stop(proc)
    assert keys[0] == keys[1]  # kept, not made again
    kept = data / "operator.key"
    assert kept.read_text().strip() == keys[0]
    assert kept.stat().st_mode & 0o777 == 0o600
    with Session(engine) as s:
        live = [k for k in list_api_keys(s, old.id) if k.revoked_at is None]
        assert len(live) == 10  # one old key made room for the kept one; restarts add none
        account = operator_account(s, email="operator@localhost", points=0)
        assert (account.plan, account.points) == ("enterprise", 500000)
    engine.dispose()
    listed = subprocess.run(  # from another folder, no GENSERVE_DATA_DIR: the same database
        [sys.executable, "-m", "genserve.cli", "accounts", "list"],
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert "operator@localhost" in listed.stdout and "enterprise" in listed.stdout
    assert not (elsewhere / "data").exists()


def test_operator_commands_find_one_data_directory_from_any_folder(tmp_path: Path) -> None:
    """No ``GENSERVE_DATA_DIR``: the per-user folder, wherever the command runs."""
    env = _clean_env(XDG_DATA_HOME=str(tmp_path / "xdg"), GENSERVE_KEY_SECRET=KEY_SECRET)
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()

    def run(cwd: Path, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "genserve.cli", *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run(here, "keys", "create", "--email", "ops@example.test")
    assert "ops@example.test" in run(there, "accounts", "list")
    assert (tmp_path / "xdg" / "genserve" / "genserve.db").is_file()
    assert not (here / "data").exists() and not (there / "data").exists()
    env["GENSERVE_DATA_DIR"] = "chosen"  # relative: to the folder it is set in
    run(here, "keys", "create", "--email", "chosen@example.test")
    assert (here / "chosen" / "genserve.db").is_file()


def test_operator_commands_answer_in_json(tmp_path: Path) -> None:
    import json

    env = _clean_env(GENSERVE_DATA_DIR=str(tmp_path / "data"), GENSERVE_KEY_SECRET=KEY_SECRET)

    def run(*args: str) -> object:
        done = subprocess.run(
            [sys.executable, "-m", "genserve.cli", *args, "--json"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    made = run("keys", "create", "--email", "ops@example.test", "--name", "ci")
    assert isinstance(made, dict) and made["key"].startswith("gsk_") and made["name"] == "ci"
    keys = run("keys", "list", "--email", "ops@example.test")
    assert isinstance(keys, list) and keys[0]["name"] == "ci" and keys[0]["revoked_at"] is None
    accounts = run("accounts", "list")
    assert isinstance(accounts, list) and accounts[0]["email"] == "ops@example.test"
    link = run("accounts", "login-link", "ops@example.test")
    assert isinstance(link, dict) and "/login/link?token=" in link["url"]
    presets = run("models", "presets")
    assert isinstance(presets, list) and presets[0]["name"] == "sdxl-turbo"
