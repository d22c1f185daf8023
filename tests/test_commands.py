"""Every flag of every operator command is honoured; a bad value stops it in one line.

The servers are started through ``genserve`` as an operator would, with the
environment set to conflicting (or unusable) values wherever a flag has an
environment counterpart: a flag that were ignored would show.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlmodel import Session, select

from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from storage.accounts import account_by_email
from storage.db import make_engine
from storage.models import ApiKey
from storage.passwords import verify_password
from tests.conftest import KEY_SECRET, InferenceProc
from tests.utils.lanes import needs
from tests.utils.procs import ROOT, Proc, free_port

RELIEF_ONLY = '[models.flag-relief]\nkind = "3d"\nsource = "builtin:relief"\n'


def genserve(
    *args: str, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "genserve.cli", *args],
        input=stdin,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def refused(done: subprocess.CompletedProcess[str], says: str) -> None:
    """Non-zero, one line on standard error naming the problem, no traceback."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture()
def taken_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.fixture()
def db_env(tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ops.db'}",
        "GENSERVE_DATA_DIR": str(tmp_path),
        "GENSERVE_KEY_SECRET": KEY_SECRET,
    }


@pytest.mark.server
def test_inference_honours_every_flag_over_the_environment(tmp_path: Path, logs: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text(RELIEF_ONLY)
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    port, metrics_port = free_port(), free_port()
    env = {  # each would stop or mislead the server if its flag were dropped
        "GENSERVE_INFERENCE_HOST": "nowhere.invalid",
        "GENSERVE_INFERENCE_PORT": str(free_port()),
        "GENSERVE_MODELS_FILE": str(tmp_path / "missing.toml"),
        "GENSERVE_INFERENCE_CACHE_DIR": str(not_a_folder),
        "GENSERVE_INFERENCE_METRICS_PORT": str(free_port()),
    }
    args = [
        *("--host", "127.0.0.1", "--port", str(port), "--models-file", str(models)),
        *("--cache-dir", str(tmp_path / "cache"), "--metrics-port", str(metrics_port)),
    ]
    proc = Proc(
        [sys.executable, "-m", "genserve.cli", "inference", *args],
        env,
        logs / f"inference-flags-{port}.log",
    )
    try:
        proc.wait_until(lambda: serving(port), timeout=180)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            listed = pb_grpc.InferenceServiceStub(channel).ListModels(pb.ListModelsRequest())
        assert [m.name for m in listed.models] == ["flag-relief"]  # --models-file
        assert answers(f"http://127.0.0.1:{metrics_port}/metrics")  # --metrics-port
        assert not serving(int(env["GENSERVE_INFERENCE_PORT"]))
    finally:
        assert proc.stop() == 0


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--models-file", "{tmp}/missing.toml"], {}, "cannot read the models file"),
        (["--models-file", "{tmp}/broken.toml"], {}, "is not TOML"),
        (["--models-file", "{tmp}/sound.toml"], {}, "kind: Input should be"),
        (["--port", "70000"], {}, "70000 is not a port"),
        (["--port", "fifty"], {}, "'fifty' is not a port number"),
        (["--metrics-port", "0"], {}, "0 is not a port (1 to 65535)"),
        (["--cache-dir", "{tmp}/broken.toml"], {}, "is a file"),
        (["--verbose"], {}, "unrecognized arguments: --verbose"),
        (["--port", "{taken}"], {}, "cannot listen on 127.0.0.1:{taken}"),
        ([], {"GENSERVE_INFERENCE_PORT": "{taken}"}, "cannot listen on 127.0.0.1:{taken}"),
        ([], {"GENSERVE_INFERENCE_QUEUE_SIZE": "0"}, "queue_size"),
        ([], {"GENSERVE_LOG_LEVEL": "LOUD"}, "GENSERVE_LOG_LEVEL must be one of"),
    ],
)
def test_inference_refuses_unusable_values(
    tmp_path: Path, taken_port: int, args: list[str], env: dict[str, str], says: str
) -> None:
    (tmp_path / "broken.toml").write_text("[models.x\n")
    (tmp_path / "sound.toml").write_text('[models.x]\nkind = "sound"\nsource = "builtin:relief"\n')

    def fill(text: str) -> str:
        return text.format(tmp=tmp_path, taken=taken_port)

    done = genserve(
        "inference",
        *(fill(a) for a in args),
        env={"GENSERVE_INFERENCE_PORT": str(free_port()), **{k: fill(v) for k, v in env.items()}},
    )
    refused(done, fill(says))


def test_bridge_honours_host_and_port(tmp_path: Path, logs: Path, inference: InferenceProc) -> None:
    port = free_port()
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'genserve.db'}",
        "GENSERVE_DATA_DIR": str(tmp_path),
        "GENSERVE_INFERENCE_TARGETS": inference.target,
    }
    proc = Proc(
        [
            sys.executable,
            "-m",
            "genserve.cli",
            "bridge",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env,
        logs / f"bridge-flags-{port}.log",
    )
    try:
        proc.wait_until(lambda: answers(f"http://127.0.0.1:{port}/readyz"), timeout=120)
    finally:
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert proc.stop() in (0, -signal.SIGTERM)
    assert "Finished server process" in proc.log_path.read_text()


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--port", "0"], {}, "0 is not a port (1 to 65535)"),
        (["--port", "{taken}"], {}, "cannot listen on 127.0.0.1:{taken}"),
        (["--host", "nowhere.invalid"], {}, "cannot listen on nowhere.invalid"),
        ([], {"GENSERVE_KEY_SECRET": "short"}, "GENSERVE_KEY_SECRET must be at least 32"),
        ([], {"GENSERVE_LOG_FORMAT": "xml"}, "GENSERVE_LOG_FORMAT must be one of json, text"),
        (
            [],
            {"REDIS_URL": "redis://:hunter2@127.0.0.1:{closed}/0"},
            "REDIS_URL redis://:***@127.0.0.1:{closed}/0 cannot be reached",
        ),
        ([], {"REDIS_URL": "http://127.0.0.1/"}, "REDIS_URL http://127.0.0.1/ is not a Redis URL"),
    ],
)
def test_bridge_refuses_unusable_values(
    db_env: dict[str, str], taken_port: int, args: list[str], env: dict[str, str], says: str
) -> None:
    closed = free_port()  # nothing listens there

    def fill(text: str) -> str:
        return text.format(taken=taken_port, closed=closed)

    extra = {k: fill(v) for k, v in env.items()}
    done = genserve("bridge", *(fill(a) for a in args), env={**db_env, **extra})
    refused(done, fill(says))
    assert "hunter2" not in done.stderr


@pytest.mark.server
def test_up_honours_every_flag(tmp_path: Path, model_cache: Path) -> None:
    port, grpc_port = free_port(), free_port()
    email = "Ops-Flags@Example.Test"
    env = {
        **os.environ,
        "GENSERVE_DATA_DIR": str(tmp_path),
        "GENSERVE_INFERENCE_CACHE_DIR": str(model_cache),
    }
    env.pop("DATABASE_URL", None)
    env.pop("GENSERVE_PUBLIC_BASE_URL", None)
    args = ["--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port)]
    up = subprocess.Popen(
        [sys.executable, "-m", "genserve.cli", "up", *args, "--email", email],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        printed = ""
        deadline = time.monotonic() + 300
        assert up.stdout is not None
        while "API key:" not in printed and time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            printed += line
        found = re.search(r"API key:\s+(gsk_\w+)", printed)
        assert found, printed
        key = found[1]
        base = f"http://127.0.0.1:{port}"  # --host, --port
        assert base in printed
        assert answers(f"{base}/readyz")
        assert serving(grpc_port)  # --grpc-port
        me = httpx.get(f"{base}/api/v1/account", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200, me.text
        assert me.json()["data"]["email"] == email.lower()  # --email
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
    assert not answers(f"http://127.0.0.1:{port}/healthz") and not serving(grpc_port)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "http"], "'http' is not a port number"),
        (
            ["--grpc-port", "{taken}"],
            "cannot listen on 127.0.0.1:{taken}: Address already in use; choose another port "
            "with --grpc-port (make up GRPC_PORT=...)",
        ),
        (["--port", "{taken}"], "cannot listen on 127.0.0.1:{taken}"),
        (["--port", "{taken}"], "choose another port with --port (make up PORT=...)"),
        (["--email", "operator"], "'operator' is not an email address"),
    ],
)
def test_up_refuses_unusable_values(
    db_env: dict[str, str], taken_port: int, args: list[str], says: str
) -> None:
    done = genserve("up", *(a.format(taken=taken_port) for a in args), env=db_env)
    refused(done, says.format(taken=taken_port))


def test_accounts_and_keys_honour_every_flag(db_env: dict[str, str], tmp_path: Path) -> None:
    def run(*args: str, stdin: str = "") -> str:
        done = genserve(*args, stdin=stdin, env=db_env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    engine = make_engine(db_env["DATABASE_URL"])
    run(
        *("accounts", "create", "--email", "Flags@Example.Test", "--plan", "pro"),
        *("--points", "7", "--password-stdin"),
        stdin="a long enough password\n",
    )
    key = run(
        *("keys", "create", "--email", "new@example.test", "--name", "ci-runner"),
        *("--plan", "enterprise"),
    ).strip()
    assert "ci-runner" in run("keys", "list", "--email", "new@example.test")  # --email
    assert "flags@example.test" in run("accounts", "list")
    run("accounts", "set-plan", "flags@example.test", "enterprise")
    run("accounts", "grant", "flags@example.test", "3")
    with Session(engine) as session:
        flags = account_by_email(session, "flags@example.test")  # --email, normalised
        assert flags is not None
        assert (flags.plan, flags.points) == ("enterprise", 10)  # --plan pro, then set-plan
        assert verify_password(flags.password_hash, "a long enough password")
        new = account_by_email(session, "new@example.test")
        assert new is not None and new.plan == "enterprise"  # keys create --plan
        made = session.exec(select(ApiKey).where(ApiKey.account_id == new.id)).one()
        assert made.name == "ci-runner" and key.endswith(made.last_four)  # --name
    assert f"revoked key {made.id}" in run("keys", "revoke", str(made.id))  # by id
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["accounts", "create", "--email", "a@b.test", "--plan", "gold"], {}, "invalid choice"),
        (["accounts", "create", "--email", "a@b.test", "--points", "-1"], {}, "must not be neg"),
        (["accounts", "create", "--email", "not an email"], {}, "is not an email address"),
        (["accounts", "grant", "a@b.test", "0"], {}, "must be a positive whole number"),
        (["accounts", "set-plan", "a@b.test", "gold"], {}, "invalid choice"),
        (["accounts"], {}, "required: accounts_command"),
        (["keys", "create", "--email", ""], {}, "'' is not an email address"),
        (["keys", "create", "--plan", "gold"], {}, "invalid choice"),
        (["keys", "list"], {}, "required: --email"),
        (["keys", "revoke", "not-a-key"], {}, "give a key id"),
        (
            ["accounts", "list"],
            {"DATABASE_URL": "postgresql+psycopg://ops:secret@127.0.0.1:1/none"},
            "cannot open the database postgresql+psycopg://ops:***@127.0.0.1:1/none",
        ),
        (["keys", "list", "--email", "a@b.test"], {"GENSERVE_KEY_SECRET": "short"}, "at least 32"),
    ],
)
def test_accounts_and_keys_refuse_unusable_values(
    db_env: dict[str, str], args: list[str], env: dict[str, str], says: str
) -> None:
    done = genserve(*args, env={**db_env, **env})
    refused(done, says)
    assert "secret" not in done.stderr


def test_operator_commands_print_one_json_document(db_env: dict[str, str]) -> None:
    """``--json`` on accounts create, set-plan, grant and keys revoke: one JSON document on
    standard output; a refusal stays one line on standard error."""
    import json

    def run(*args: str, stdin: str = "") -> Any:
        done = genserve(*args, "--json", stdin=stdin, env=db_env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    made = run("accounts", "create", "--email", "Json@Example.Test", "--points", "5")
    assert made == {
        "id": made["id"],
        "email": "json@example.test",
        "plan": "free",
        "points": 5,
        "password": False,
    }
    moved = run("accounts", "set-plan", "json@example.test", "pro")
    assert moved["plan"] == "pro" and moved["requests_per_hour"] > 0
    granted = run("accounts", "grant", "json@example.test", "3")
    assert (granted["granted"], granted["points"]) == (3, 8)
    key = run("keys", "create", "--email", "json@example.test", "--name", "ci")
    revoked = run("keys", "revoke", str(key["id"]))
    assert revoked["id"] == key["id"] and revoked["name"] == "ci"
    again = genserve("keys", "revoke", str(key["id"]), "--json", env=db_env)
    refused(again, "was already revoked")
    assert again.stdout == ""


def _first_stdout_line(args: list[str], env: dict[str, str], log: Path) -> tuple[Any, str]:
    """Starts ``genserve ARGS --json``; its first line on standard output, parsed, and the
    rest of standard output once it has stopped (SIGTERM), logs going to ``log``."""
    needs("server", f"genserve {args[0]}")
    import json

    with log.open("wb") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "genserve.cli", *args, "--json"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=ROOT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first, log.read_text()[-2000:]
            return json.loads(first), first
        finally:
            proc.send_signal(signal.SIGTERM)
            rest, _ = proc.communicate(timeout=60)
            assert rest == "", rest  # nothing but the one JSON line


@pytest.mark.server
def test_inference_and_bridge_json_say_where_once_started(tmp_path: Path, logs: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text(RELIEF_ONLY)
    port = free_port()
    started, _ = _first_stdout_line(
        ["inference", "--port", str(port), "--models-file", str(models)],
        {"GENSERVE_INFERENCE_CACHE_DIR": str(tmp_path / "cache")},
        logs / f"inference-json-{port}.log",
    )
    assert started["port"] == port and started["host"]
    assert started["models"] == [{"name": "flag-relief", "kind": "3d"}]
    assert started["models_file"] == str(models)

    bridge_port = free_port()
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'genserve.db'}",
        "GENSERVE_DATA_DIR": str(tmp_path),
        "GENSERVE_INFERENCE_TARGETS": f"127.0.0.1:{port}",
        "GENSERVE_PUBLIC_BASE_URL": "https://gen.example.test",
    }
    said, _ = _first_stdout_line(
        ["bridge", "--port", str(bridge_port)], env, logs / f"bridge-json-{bridge_port}.log"
    )
    assert said["listening"] == f"http://127.0.0.1:{bridge_port}" and said["port"] == bridge_port
    assert said["base_url"] == "https://gen.example.test"
    assert said["data_dir"] == str(tmp_path) and said["inference_targets"] == [f"127.0.0.1:{port}"]
