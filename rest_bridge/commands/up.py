"""``genserve up``: the inference server and the bridge on the embedded defaults, one command.

Both servers run as subprocesses (``python -m inference_server.server``,
``python -m rest_bridge``): the bridge never imports the inference server.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genserve._internal.cmdline import Subparsers


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(nothing logged)"


def _wait_ready(
    local: str, procs: dict[str, subprocess.Popen[bytes]], logs: Path, timeout: float
) -> None:
    """Until the bridge's ``/readyz`` is 200: its database and an inference server answer."""
    import httpx  # here, not at the top: `genserve --help` loads this module

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                log = logs / f"{name}.log"
                raise SystemExit(
                    f"genserve up: the {name} server exited during start-up "
                    f"(status {proc.returncode}): {_last_line(log)} (log: {log})"
                )
        try:
            if httpx.get(f"{local}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"genserve up: not ready after {timeout:.0f}s; see the logs in {logs}")


class RequestLines:
    """The bridge's access lines, one short line each on this terminal, as they come."""

    def __init__(self, log: Path, as_json: bool = False) -> None:
        self.log = log
        self.as_json = as_json
        self.offset = log.stat().st_size if log.exists() else 0

    def new(self) -> list[str]:
        import json

        try:
            with self.log.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return []
        end = chunk.rfind(b"\n") + 1  # whole lines only; the rest next time
        self.offset += end
        shown = []
        for raw in chunk[:end].decode(errors="replace").splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("logger") == "rest_bridge.access":
                if self.as_json:
                    shown.append(json.dumps(line, ensure_ascii=False, default=str))
                    continue
                when = str(line.get("time", ""))[11:19]
                shown.append(f"  {when} {line.get('message', '')}".rstrip())
        return shown


def _local_url(host: str, port: int) -> str:
    """Where this machine reaches the bridge (a wildcard address is reached on loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _prepare_preset(name: str, models_file: Path) -> None:
    """The preset's weights in the Hugging Face cache (a progress bar while they download)
    and a models file serving it; one line and the exit status when they cannot be had."""
    done = subprocess.run(  # its own process: the bridge's side never imports the server's
        [
            *(sys.executable, "-m", "inference_server.presets", "pull", name),
            *("--models-file", str(models_file)),
        ],
    )
    if done.returncode != 0:
        raise SystemExit(done.returncode)


def _models(local: str, key: str) -> list[dict[str, object]]:
    """The models the bridge serves (``GET /api/v1/models``), for ``--json``: name and kind."""
    import httpx

    try:
        answer = httpx.get(
            f"{local}/api/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10
        ).json()
    except (httpx.HTTPError, ValueError):
        return []
    data = answer.get("data") if isinstance(answer, dict) else None
    if isinstance(data, dict):
        data = data.get("models")
    if not isinstance(data, list):
        return []
    return [
        {"name": m.get("name"), "kind": m.get("kind"), "default": m.get("default")}
        for m in data
        if isinstance(m, dict)
    ]


def up(
    host: str,
    port: int,
    grpc_port: int,
    email: str,
    preset: str | None = None,
    as_json: bool = False,
) -> int:
    from genserve._internal.cmdline import listen_problem
    from genserve._internal.paths import data_dir

    ports = (
        ((host, port), "--port", "PORT"),
        (("127.0.0.1", grpc_port), "--grpc-port", "GRPC_PORT"),
    )
    for address, option, variable in ports:
        problem = listen_problem(*address)
        if problem is not None:
            raise SystemExit(
                f"genserve up: {problem}; choose another port with {option} "
                f"(make up {variable}=...)"
            )
    data = data_dir()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    served: dict[str, str] = {}
    if preset is not None:
        models_file = data / "presets" / f"{preset}.toml"
        _prepare_preset(preset, models_file)
        served["GENSERVE_MODELS_FILE"] = str(models_file)
    local = _local_url(host, port)
    base = os.environ.get("GENSERVE_PUBLIC_BASE_URL", local)
    env = {
        **os.environ,
        "GENSERVE_INFERENCE_PORT": str(grpc_port),
        "GENSERVE_INFERENCE_TARGETS": f"127.0.0.1:{grpc_port}",
        "GENSERVE_PUBLIC_BASE_URL": base,
        "GENSERVE_DATA_DIR": str(data),
        **served,
    }
    servers = {
        "inference": subprocess.Popen(
            [sys.executable, "-m", "inference_server.server"],
            env=env,
            stdout=(logs / "inference.log").open("ab"),
            stderr=subprocess.STDOUT,
        ),
        "bridge": subprocess.Popen(
            [sys.executable, "-m", "rest_bridge", "--host", host, "--port", str(port)],
            env=env,
            stdout=(logs / "bridge.log").open("ab"),
            stderr=subprocess.STDOUT,
        ),
    }
    procs = list(servers.values())

    def stop(*_: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(35)
            except subprocess.TimeoutExpired:
                proc.kill()

    def on_sigterm(*_: object) -> None:
        stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    requests = RequestLines(logs / "bridge.log", as_json)
    try:
        print(
            f"starting genserve (logs in {logs}) ...",
            file=sys.stderr if as_json else sys.stdout,
            flush=True,
        )
        _wait_ready(local, servers, logs, timeout=600)
        from rest_bridge.commands.database import open_database
        from rest_bridge.commands.login_link import link_url
        from rest_bridge.commands.operator import KEY_FILE, operator_way_in

        engine, secret, settings = open_database()
        way_in = operator_way_in(engine, secret, settings, email)
        engine.dispose()
        key, link = way_in.key, link_url(base.rstrip("/"), way_in.login_token)
        kept = data / KEY_FILE
        said = "new, kept in" if way_in.new_key else "kept in"
        if as_json:
            from genserve._internal.cmdline import print_json

            started = {
                "base_url": base,
                "api_key": key,
                "new_key": way_in.new_key,
                "key_file": str(kept),
                "email": email,
                "login_url": link,
                "login_minutes": 15,
                "docs": f"{base}/docs",
                "port": port,
                "grpc_port": grpc_port,
                "data_dir": str(data),
                "logs": str(logs),
                "models": _models(local, key),
            }
            print_json(started, line=True)
        else:
            _say_started(base, key, said, kept, email, link, logs)
        while all(p.poll() is None for p in procs):
            for line in requests.new():
                print(line, flush=True)
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


def _say_started(
    base: str, key: str, said: str, kept: Path, email: str, link: str, logs: Path
) -> None:
    """The human lines once up: where, the key, the log-in link, a request to try."""
    print(
        f"\ngenserve is up.\n  Base URL: {base}\n  API key:  {key}  ({said} {kept})\n"
        f"  Web log-in for {email} (one use, 15 minutes): {link}\n"
        f"  Models:   GET {base}/api/v1/models    API docs: {base}/docs\n",
        flush=True,
    )
    print(
        f'Try it:\n  curl -X POST "{base}/api/v1/images" \\\n'
        f'    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\\n'
        '    -d \'{"prompt": "A majestic eagle soaring over mountains at sunset", '
        '"aspect_ratio": "16:9", "output_format": "webp"}\'\n\n'
        f"Requests, a line each (full logs in {logs}):\nCtrl-C stops both servers.",
        flush=True,
    )


def cmd_up(args: argparse.Namespace) -> int:
    return up(args.host, args.port, args.grpc_port, args.email, args.preset, args.json)


def register(subparsers: Subparsers) -> None:
    from genserve._internal.cmdline import port_number
    from rest_bridge.commands.database import email_address

    port = partial(port_number, allow_zero=False)
    command = subparsers.add_parser(
        "up", help="start the inference server and the bridge, print a key"
    )
    command.add_argument("--host", default="127.0.0.1", help="the bridge's address")
    command.add_argument("--port", type=port, default=8000, help="the bridge's HTTP port")
    command.add_argument(
        "--grpc-port", type=port, default=50051, help="the inference server's port (loopback)"
    )
    command.add_argument(
        "--email",
        type=email_address,
        default="operator@localhost",
        help="the account the printed key belongs to (created if new)",
    )
    command.add_argument(
        "--preset",
        metavar="NAME",
        help="serve a real-size model instead of the built-in one of its kind, downloading "
        "its weights on first start (genserve models presets lists them)",
    )
    command.add_argument(
        "--json",
        action="store_true",
        help="JSON lines on standard output: the start-up information once ready, then one "
        "per request",
    )
    command.set_defaults(func=cmd_up)
