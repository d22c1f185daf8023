"""Operator commands (`genserve accounts`, `genserve keys`) against a serving bridge's database.

They live in `rest_bridge.commands` and join the client's `genserve` command through the
`genserve.commands` entry-point group, so these runs go through `genserve.cli` as an operator's do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from storage import points
from storage.accounts import account_by_email
from tests.conftest import KEY_SECRET, Bridge
from tests.utils.procs import ROOT
from tests.utils.web import WebUser, new_email


def genserve(
    db_url: str, data_dir: Path, *args: str, stdin: str = "", **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": db_url,
        "GENSERVE_DATA_DIR": str(data_dir),
        "GENSERVE_KEY_SECRET": KEY_SECRET,
        # a worktree's code first, as in the test process itself
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, "-m", "genserve.cli", *args],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _db_url(bridge: Bridge) -> str:
    return bridge.engine.url.render_as_string(hide_password=False)


@pytest.mark.parametrize("bridge", ["sqlite"], indirect=True)
def test_an_operator_runs_an_account_from_creation_to_revocation(bridge: Bridge) -> None:
    db, data = _db_url(bridge), bridge.data_dir
    email = new_email()
    password = "operator set this one"

    def run(*args: str, stdin: str = "") -> str:
        done = genserve(db, data, *args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "plan=free points=100" in run(
        "accounts", "create", "--email", email.upper(), "--password-stdin", stdin=password + "\n"
    )
    key = run("keys", "create", "--email", email, "--name", "ops").strip()
    models = genserve(db, data, "models", GENSERVE_BASE_URL=bridge.base, GENSERVE_API_KEY=key)
    assert models.returncode == 0, models.stderr
    header, *rows = [line.split() for line in models.stdout.splitlines()]
    assert header == ["name", "kind", "default", "price", "accepts"] and any(
        row[2] == "yes" for row in rows
    )
    api = httpx.Client(base_url=bridge.base, headers={"Authorization": f"Bearer {key}"})
    with api:
        r = api.get("/api/v1/account")
        assert r.status_code == 200
        assert (r.json()["data"]["points"], r.headers["x-ratelimit-limit"]) == (100, "100")

        assert "500 requests/hour" in run("accounts", "set-plan", email, "pro")
        assert "balance 125" in run("accounts", "grant", email, "25")
        r = api.get("/api/v1/account")
        assert (r.json()["data"]["plan"], r.json()["data"]["points"]) == ("pro", 125)
        assert r.headers["x-ratelimit-limit"] == "500"

        listed = [line for line in run("accounts", "list").splitlines() if email in line]
        assert len(listed) == 1 and listed[0].split()[2:5] == ["pro", "125", "1"]
        keys = run("keys", "list", "--email", email)
        assert f"{key[:8]}…{key[-4:]}" in keys and "active" in keys
        assert key not in keys

        assert "revoked key" in run("keys", "revoke", key)
        assert api.get("/api/v1/account").status_code == 401

    with WebUser(bridge.base) as user:
        user.email, user.password = email, password
        assert user.login().status_code == 303
        page = user.keys_page().text
        assert '<strong id="plan">Pro</strong>' in page
        assert '<strong id="points">125</strong>' in page
    with Session(bridge.engine) as s:
        account = account_by_email(s, email)
        assert account is not None and account.id is not None
        assert points.ledger_sum(s, account.id) == points.balance(s, account.id) == 125


def test_operator_mistakes_are_refused_plainly(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ops.db'}"
    email = new_email()
    created = genserve(db, tmp_path, "accounts", "create", "--email", email, "--points", "5")
    assert created.returncode == 0, created.stderr
    again = genserve(db, tmp_path, "accounts", "create", "--email", email)
    assert again.returncode == 1 and "already exists" in again.stderr
    weak = genserve(
        db, tmp_path, "accounts", "create", "--email", new_email(), "--password-stdin", stdin="abc"
    )
    assert weak.returncode == 1 and "at least 8" in weak.stderr
    nobody = genserve(db, tmp_path, "accounts", "grant", "nobody@example.test", "5")
    assert nobody.returncode == 1 and "no account" in nobody.stderr
    unknown_key = genserve(db, tmp_path, "keys", "revoke", "424242")
    assert unknown_key.returncode == 1 and "no such key" in unknown_key.stderr
    key = genserve(db, tmp_path, "keys", "create", "--email", email).stdout.strip()
    assert genserve(db, tmp_path, "keys", "revoke", key).returncode == 0
    twice = genserve(db, tmp_path, "keys", "revoke", key)
    assert twice.returncode == 1 and "already revoked" in twice.stderr
    for output in (created.stdout, created.stderr, twice.stdout, twice.stderr):
        assert "Traceback" not in output


def test_one_genserve_command_carries_the_operator_subcommands(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ops.db'}"
    helped = genserve(db, tmp_path, "--help")
    assert helped.returncode == 0 and helped.stderr == "", helped.stderr
    for name in ("models", "up", "inference", "bridge", "accounts", "keys"):
        assert f"    {name}" in helped.stdout, name
    passed = genserve(db, tmp_path, "bridge", "--help")  # the bridge's own flags, untouched
    assert passed.returncode == 0 and "--port" in passed.stdout, passed.stderr
