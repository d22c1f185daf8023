"""The gRPC link secured: TLS, mutual TLS and the service token, on real processes.

Two inference servers share one throw-away CA: one serves TLS and wants the token
(reflection left at its default, off); the other wants client certificates too and
serves reflection because it is asked to. A real bridge with the CA, a client
certificate and the token lists the models and generates through the second.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import ValidationError

from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from inference_server.settings import ServerSettings
from rest_bridge.settings import BridgeSettings
from storage.db import make_engine, migrate
from tests.conftest import Bridge, InferenceProc, bridge_env
from tests.utils.procs import Proc, free_port, start_bridge, start_inference
from tests.utils.tls import Pki, make_pki

pytestmark = pytest.mark.server  # starts real servers (not in make test-fast)

TOKEN = "svc-" + secrets.token_urlsafe(24)
AUTH = (("authorization", f"Bearer {TOKEN}"),)
SERVICE = "genserve.inference.v1.InferenceService"

MODELS = """
[models.nano-banana]
kind = "image"
source = "builtin:tiny-sdxl"
default = true
width = 64
height = 64
steps = 2
"""


@dataclass
class Servers:
    pki: Pki
    tls: InferenceProc  # TLS, token, reflection at its default
    mtls: InferenceProc  # mutual TLS, token, reflection asked for
    folder: Path


@pytest.fixture(scope="module")
def servers(
    model_cache: Path, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    folder = tmp_path_factory.mktemp("link")
    pki = make_pki(folder / "pki")
    models = folder / "models.toml"
    models.write_text(MODELS)
    tls_env = {
        "GENSERVE_GRPC_TLS_CERT": str(pki.server_cert),
        "GENSERVE_GRPC_TLS_KEY": str(pki.server_key),
        "GENSERVE_INFERENCE_TOKEN": TOKEN,
    }
    started = []
    try:
        proc, port, metrics = start_inference(
            model_cache, logs, models, extra_env=tls_env,
            credentials=grpc.ssl_channel_credentials(root_certificates=pki.read("ca")),
        )  # fmt: skip
        started.append(InferenceProc(proc, port, metrics))
        proc, port, metrics = start_inference(
            model_cache, logs, models,
            extra_env={
                **tls_env,
                "GENSERVE_GRPC_TLS_CA": str(pki.ca),
                "GENSERVE_INFERENCE_REFLECTION": "true",
            },
            credentials=_client_credentials(pki),
        )  # fmt: skip
        started.append(InferenceProc(proc, port, metrics))
        yield Servers(pki, started[0], started[1], folder)
    finally:
        for server in started:
            server.proc.stop()


def _client_credentials(pki: Pki, who: str | None = "client") -> grpc.ChannelCredentials:
    if who is None:
        return grpc.ssl_channel_credentials(root_certificates=pki.read("ca"))
    return grpc.ssl_channel_credentials(
        root_certificates=pki.read("ca"),
        private_key=pki.read(f"{who}_key"),
        certificate_chain=pki.read(f"{who}_cert"),
    )


def _code(call: object) -> grpc.StatusCode:
    assert isinstance(call, grpc.RpcError)
    code: grpc.StatusCode = call.code()  # type: ignore[attr-defined]
    return code


def _list_models(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> list[str]:
    reply = pb_grpc.InferenceServiceStub(channel).ListModels(
        pb.ListModelsRequest(), metadata=metadata, timeout=10
    )
    return [m.name for m in reply.models]


def _reflected(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> set[str]:
    replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
        metadata=metadata,
        timeout=10,
    )
    return {s.name for r in replies for s in r.list_services_response.service}


def _tls_channel(servers: Servers) -> grpc.Channel:
    return grpc.secure_channel(servers.tls.target, _client_credentials(servers.pki, None))


def _mtls_channel(servers: Servers, who: str | None = "client") -> grpc.Channel:
    return grpc.secure_channel(servers.mtls.target, _client_credentials(servers.pki, who))


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)],
    ids=["none", "wrong", "not-bearer"],
)
def test_a_call_without_the_token_is_unauthenticated(
    servers: Servers, metadata: tuple[tuple[str, str], ...]
) -> None:
    with _tls_channel(servers) as ch:
        with pytest.raises(grpc.RpcError) as unary:
            _list_models(ch, metadata)
        assert _code(unary.value) == grpc.StatusCode.UNAUTHENTICATED
        stream = pb_grpc.InferenceServiceStub(ch).GenerateImage(
            pb.GenerateImageRequest(prompt="a"), metadata=metadata, timeout=10
        )
        with pytest.raises(grpc.RpcError) as streaming:
            list(stream)
        assert _code(streaming.value) == grpc.StatusCode.UNAUTHENTICATED


def test_with_the_token_list_models_works(servers: Servers) -> None:
    with _tls_channel(servers) as ch:
        assert _list_models(ch, AUTH) == ["nano-banana"]


def test_health_needs_no_token(servers: Servers) -> None:
    with _tls_channel(servers) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=10
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_watch_wants_the_token(servers: Servers) -> None:
    request = health_pb2.HealthCheckRequest(service=SERVICE)
    with _tls_channel(servers) as ch:
        first = next(iter(health_pb2_grpc.HealthStub(ch).Watch(request, metadata=AUTH, timeout=10)))
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            list(health_pb2_grpc.HealthStub(ch).Watch(request, timeout=10))
    assert _code(err.value) == grpc.StatusCode.UNAUTHENTICATED


def test_reflection_is_off_by_default(servers: Servers) -> None:
    with _tls_channel(servers) as ch, pytest.raises(grpc.RpcError) as err:
        _reflected(ch, AUTH)
    assert _code(err.value) == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_when_asked_and_it_too_wants_the_token(servers: Servers) -> None:
    with _mtls_channel(servers) as ch:
        names = _reflected(ch, AUTH)
        assert {SERVICE, "grpc.health.v1.Health"} <= names
        with pytest.raises(grpc.RpcError) as err:
            _reflected(ch)
        assert _code(err.value) == grpc.StatusCode.UNAUTHENTICATED


def test_a_plaintext_client_cannot_talk_to_a_tls_server(servers: Servers) -> None:
    with grpc.insecure_channel(servers.tls.target) as ch, pytest.raises(grpc.RpcError) as err:
        _list_models(ch, AUTH)
    assert _code(err.value) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("who", [None, "stranger"], ids=["no-certificate", "other-ca"])
def test_mutual_tls_refuses_a_client_without_a_good_certificate(
    servers: Servers, who: str | None
) -> None:
    with _mtls_channel(servers, who) as ch, pytest.raises(grpc.RpcError) as err:
        _list_models(ch, AUTH)
    assert _code(err.value) == grpc.StatusCode.UNAVAILABLE
    with _mtls_channel(servers) as ch:
        assert _list_models(ch, AUTH) == ["nano-banana"]


def test_a_bridge_with_ca_client_certificate_and_token_lists_and_generates(
    servers: Servers, logs: Path
) -> None:
    folder = servers.folder / "bridge"
    db_url = f"sqlite:///{folder / 'genserve.db'}"
    env = bridge_env(
        folder,
        db_url,
        servers.mtls.target,
        GENSERVE_GRPC_TLS_CA=str(servers.pki.ca),
        GENSERVE_GRPC_TLS_CERT=str(servers.pki.client_cert),
        GENSERVE_GRPC_TLS_KEY=str(servers.pki.client_key),
        GENSERVE_INFERENCE_TOKEN=TOKEN,
    )
    proc, base = start_bridge(env, logs)
    engine = make_engine(db_url)
    try:
        migrate(engine)
        bridge = Bridge(base, engine, folder, proc)
        before = servers.mtls.rpc_count()
        with bridge.client(bridge.new_key(points=100)) as c:
            r = c.get("/api/v1/models")
            assert r.status_code == 200, r.text
            assert "nano-banana" in {m["name"] for m in r.json()["data"]["models"]}
            r = c.post("/api/v1/images", json={"prompt": "a"})
            assert r.status_code == 200, r.text
            image = r.json()["data"]["images"][0]
            assert httpx.get(image["url"]).status_code == 200
        assert servers.mtls.rpc_count() == before + 1
    finally:
        proc.stop()
        engine.dispose()


def _exits_at_start_up(args: list[str], env: dict[str, str], log: Path) -> str:
    proc = Proc(args, env, log)
    try:
        code = proc.popen.wait(timeout=120)
    finally:
        proc.stop()
    assert code != 0
    return proc.log()


def test_an_unreadable_tls_file_stops_the_inference_server_at_start_up(
    tmp_path: Path, logs: Path
) -> None:
    missing = tmp_path / "missing.pem"
    out = _exits_at_start_up(
        [sys.executable, "-m", "inference_server.server", "--port", str(free_port())],
        {"GENSERVE_GRPC_TLS_CERT": str(missing), "GENSERVE_GRPC_TLS_KEY": str(missing)},
        logs / f"bad-inference-{tmp_path.name}.log",
    )
    assert f"GENSERVE_GRPC_TLS_CERT: cannot read {missing}" in out


def test_a_file_that_is_no_certificate_stops_the_bridge_at_start_up(
    tmp_path: Path, logs: Path
) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello\n")
    env = bridge_env(
        tmp_path,
        f"sqlite:///{tmp_path / 'genserve.db'}",
        f"127.0.0.1:{free_port()}",
        GENSERVE_GRPC_TLS_CA=str(not_pem),
    )
    out = _exits_at_start_up(
        [sys.executable, "-m", "rest_bridge", "--port", str(free_port())],
        env,
        logs / f"bad-bridge-{tmp_path.name}.log",
    )
    assert f"GENSERVE_GRPC_TLS_CA: {not_pem} holds no PEM certificate" in out


def test_settings_refuse_tls_that_cannot_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki(tmp_path)
    for name in ("GENSERVE_GRPC_TLS_CERT", "GENSERVE_GRPC_TLS_KEY", "GENSERVE_GRPC_TLS_CA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GENSERVE_GRPC_TLS_CA", str(pki.ca))
    with pytest.raises(ValidationError, match="needs TLS"):
        ServerSettings()  # a CA alone on the server: client certificates without TLS
    assert BridgeSettings().grpc_tls_ca == pki.ca  # a CA alone on the bridge: TLS
    monkeypatch.delenv("GENSERVE_GRPC_TLS_CA")
    monkeypatch.setenv("GENSERVE_GRPC_TLS_CERT", str(pki.client_cert))
    monkeypatch.setenv("GENSERVE_GRPC_TLS_KEY", str(pki.client_key))
    with pytest.raises(ValidationError, match="would talk plaintext"):
        BridgeSettings()  # a client certificate without a CA
    monkeypatch.delenv("GENSERVE_GRPC_TLS_KEY")
    with pytest.raises(ValidationError, match="must be set together"):
        ServerSettings()
    monkeypatch.setenv("GENSERVE_GRPC_TLS_KEY", str(pki.client_cert))  # a certificate, no key
    with pytest.raises(ValidationError, match="holds no PEM private key"):
        ServerSettings()
