"""The REST bridge's settings: one object, read at start-up, never at import."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from limits import parse_many
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from genserve.vocabulary import MAX_INPUT_BYTES
from rest_bridge.address_policy import AddressPolicy
from rest_bridge.link_security import check_tls_files


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENSERVE_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("data")
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "GENSERVE_DATABASE_URL")
    )
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", "GENSERVE_REDIS_URL")
    )
    # Output files: ``s3://bucket/prefix`` for an S3-compatible bucket (endpoint and
    # credentials from the standard AWS_* variables), else the folder ``data_dir/blobs``.
    blob_url: str | None = None
    inference_targets: str = "127.0.0.1:50051"
    public_base_url: str = "http://127.0.0.1:8000"
    key_secret: str | None = None
    image_timeout_s: float = 300.0
    video_timeout_s: float = 1800.0
    mesh_timeout_s: float = 600.0
    price_image: int = 4
    price_video: int = 10
    price_3d: int = 20
    sse_heartbeat_s: float = 15.0
    # How often each inference target's health is checked; a target that comes (back)
    # is asked for its models with ListModels.
    catalogue_refresh_s: float = 5.0
    maintenance_interval_s: float = 60.0
    webhook_timeout_s: float = 10.0
    webhook_max_attempts: int = 6
    webhook_backoff_s: float = 2.0
    signup_points: int = 100
    retry_after_s: int = 10
    fetch_allow_loopback: bool = False
    fetch_allow_private: bool = False
    max_upload_bytes: int = MAX_INPUT_BYTES
    # Failed authentications (bad API keys, wrong passwords) allowed per client address.
    auth_failure_limits: str = "20/minute;100/hour"
    # Prefix of the rate-limit counters in Redis (several deployments may share one Redis).
    ratelimit_prefix: str = "genserve"
    session_days: int = 14
    # The gRPC link to the inference servers: TLS (verified against this CA) when
    # GENSERVE_GRPC_TLS_CA is set, with a client certificate (mutual TLS) when
    # GENSERVE_GRPC_TLS_CERT and GENSERVE_GRPC_TLS_KEY are set too; the service token
    # GENSERVE_INFERENCE_TOKEN goes on every call as ``authorization: Bearer``.
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    grpc_tls_ca: Path | None = None
    inference_token: SecretStr | None = None

    @model_validator(mode="after")
    def _production_secrets(self) -> BridgeSettings:
        if self.environment == "production" and not self.key_secret:
            raise ValueError("GENSERVE_KEY_SECRET must be set in production")
        if self.key_secret is not None and len(self.key_secret) < 32:
            raise ValueError("GENSERVE_KEY_SECRET must be at least 32 characters")
        return self

    @field_validator(
        "grpc_tls_cert", "grpc_tls_key", "grpc_tls_ca", "inference_token", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _tls_files(self) -> BridgeSettings:
        check_tls_files(self.grpc_tls_cert, self.grpc_tls_key, self.grpc_tls_ca)
        return self

    @property
    def inference_token_value(self) -> str | None:
        return self.inference_token.get_secret_value() if self.inference_token else None

    @field_validator("auth_failure_limits")
    @classmethod
    def _limits_parse(cls, value: str) -> str:
        parse_many(value)
        return value

    def fetch_policy(self) -> AddressPolicy:
        """Where the bridge may fetch from (input images, webhooks): public addresses by default."""
        return AddressPolicy(
            allow_loopback=self.fetch_allow_loopback, allow_private=self.fetch_allow_private
        )

    @property
    def secure_cookies(self) -> bool:
        """Cookies are marked Secure whenever the public URL is HTTPS."""
        return self.public_base_url.startswith("https://")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'genserve.db'}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def base_url(self) -> str:
        return self.public_base_url.rstrip("/")

    def secret_bytes(self) -> bytes:
        """The key-hashing secret: configured, or one created once under ``data_dir``."""
        if self.key_secret:
            return self.key_secret.encode()
        path = self.data_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path.read_text().strip().encode()
