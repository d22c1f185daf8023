"""The inference server's settings, read once at start-up from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference_server.security import check_tls_files


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENSERVE_INFERENCE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int | None = None
    models_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("GENSERVE_MODELS_FILE", "GENSERVE_INFERENCE_MODELS_FILE"),
    )
    cache_dir: Path = Path("data/models")
    queue_size: int = 32
    encode_workers: int = 2
    grace_seconds: float = 30.0
    max_message_bytes: int = 64 * 1024 * 1024
    # The gRPC link (read by the bridge too): TLS with cert+key, mutual TLS with the CA as well.
    grpc_tls_cert: Path | None = Field(None, validation_alias="GENSERVE_GRPC_TLS_CERT")
    grpc_tls_key: Path | None = Field(None, validation_alias="GENSERVE_GRPC_TLS_KEY")
    grpc_tls_ca: Path | None = Field(None, validation_alias="GENSERVE_GRPC_TLS_CA")
    # GENSERVE_INFERENCE_TOKEN: every call but health checks must carry it as a Bearer token.
    token: SecretStr | None = None
    # GENSERVE_INFERENCE_REFLECTION: serve gRPC server reflection (off unless asked).
    reflection: bool = False

    @field_validator("grpc_tls_cert", "grpc_tls_key", "grpc_tls_ca", "token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _tls_files(self) -> ServerSettings:
        check_tls_files(self.grpc_tls_cert, self.grpc_tls_key, self.grpc_tls_ca)
        return self
