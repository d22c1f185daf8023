"""The REST bridge's settings: one object, read at start-up, never at import."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Literal

from limits import parse_many
from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from genserve._internal.logs import LogFormat, LogLevel, format_named, level_named
from genserve._internal.pem import check_pem_files
from genserve.vocabulary import MAX_INPUT_BYTES
from rest_bridge.outbound.address_policy import AddressPolicy, is_loopback


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GENSERVE_", extra="ignore", use_attribute_docstrings=True
    )

    environment: Literal["development", "production"] = "development"
    """`production` refuses to start without `GENSERVE_KEY_SECRET`; `development` creates one
    under the data folder.
    """
    data_dir: Path = Path("data")
    """Folder of the SQLite database, the local output files (`blobs/`), the generated key secret
    and `genserve up`'s logs.
    """
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "GENSERVE_DATABASE_URL")
    )
    """SQLAlchemy URL of the database, e.g. `postgresql://user@host/db` (needed for more than one
    bridge); unset: SQLite at `<data_dir>/genserve.db`.
    """
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", "GENSERVE_REDIS_URL")
    )
    """Redis for shared hourly rate limits, live job events, cancels and one-time key reveals;
    needed for more than one bridge. Unset: kept in this process.
    """
    # Output files: ``s3://bucket/prefix`` for an S3-compatible bucket (endpoint and
    # credentials from the standard AWS_* variables), else the folder ``data_dir/blobs``.
    blob_url: str | None = None
    """Where output files go: `s3://bucket/prefix` for an S3-compatible bucket (endpoint and
    credentials from the standard `AWS_*` variables); unset: the folder `<data_dir>/blobs`.
    Files are always served by the bridge.
    """
    inference_targets: str = "127.0.0.1:50051"
    """Comma-separated inference servers (`host:port`, `[v6]:port`, `dns:///name:port`), one gRPC
    channel each.
    """
    public_base_url: str = "http://127.0.0.1:8000"
    """Base of every absolute URL the bridge answers with (output files, status URLs, log-in
    links); `genserve up` derives it from `--host`/`--port` (127.0.0.1 for 0.0.0.0) unless
    set.
    """
    key_secret: str | None = None
    """HMAC secret for API keys, CSRF tokens and log-in links, at least 32 characters (required
    in production); unset: generated once into `<data_dir>/secret.key`.
    """
    image_timeout_s: float = 300.0
    """Deadline of one image generation, in seconds (504 `generation_timeout` past it, refunded)."""
    video_timeout_s: float = 1800.0
    """Deadline of one video generation, in seconds."""
    mesh_timeout_s: float = 600.0
    """Deadline of one image-to-3D generation, in seconds."""
    price_image: int = 4
    """Points per image (`num_images` images cost that many times this)."""
    price_video: int = 10
    """Points for a 4-second 720p video; other durations scale it linearly, other resolutions by
    a factor each (both listed by `GET /api/v1/models`).
    """
    price_3d: int = 20
    """Points per 3D model."""
    sse_heartbeat_s: float = 15.0
    """Seconds between keep-alive comments on a quiet Server-Sent Events stream (keeps proxies
    from closing it).
    """
    # How often each inference target's health is checked; a target that comes (back)
    # is asked for its models with ListModels.
    catalogue_refresh_s: float = 5.0
    """How often each inference target's health is checked, in seconds; a target that comes
    (back) is asked for its models with `ListModels`.
    """
    maintenance_interval_s: float = Field(60.0, gt=0)
    """Seconds between full housekeeping sweeps: generations without a lease (written before
    leases) still live past their deadline plus a minute refunded, expired idempotency records
    purged.
    """
    job_lease_s: float = Field(30.0, gt=0)
    """A running generation's lease, in seconds: its bridge renews it every third of this, and
    every bridge looks that often for leases run out (their bridge died) to fail and refund
    those generations, send their webhooks and release their idempotency keys.
    """
    webhook_timeout_s: float = 10.0
    """Seconds to wait for a webhook receiver's answer."""
    webhook_max_attempts: int = 6
    """Deliveries tried per webhook before it is given up."""
    webhook_backoff_s: float = 2.0
    """First wait between webhook attempts, in seconds; doubled after each failure."""
    signup_points: int = 100
    """Points a new account starts with (web sign-up, `genserve accounts create`, `genserve keys
    create`).
    """
    retry_after_s: int = 10
    """The `Retry-After` seconds sent with 503 answers (no inference server, rate-limit store
    down).
    """
    fetch_allow_loopback: bool = False
    """Fetch policy: let `image_url` and webhooks reach loopback addresses (127.0.0.0/8, ::1).
    Off: public addresses only.
    """
    fetch_allow_private: bool = False
    """Fetch policy: let `image_url` and webhooks reach private and link-local addresses (10/8,
    172.16/12, 192.168/16, fc00::/7...). Off: public addresses only.
    """
    max_upload_bytes: int = MAX_INPUT_BYTES
    """Largest input image (`image_base64` decoded, or fetched from `image_url`), in bytes."""
    # Failed authentications (bad API keys, wrong passwords) allowed per client address.
    auth_failure_limits: str = "20/minute;100/hour"
    """Failed authentications (bad API keys, wrong passwords) allowed per client address, as
    `limits` strings (`N/minute;M/hour`); past them the address is braked (429).
    """
    # Web sign-ups (each an argon2 hash and a grant of points) and log-ins per client address.
    signup_limits: str = "5/hour"
    """Web sign-ups allowed per client address (each an argon2 hash and a grant of points)."""
    login_limits: str = "10/minute"
    """Web log-in attempts allowed per client address."""
    signup: Literal["open", "closed"] | None = None
    """`open`: anyone may sign up on the web page; `closed`: accounts come from the operator
    (`genserve accounts create`). Unset: open when the bridge listens on a loopback address,
    closed on any other (the start-up line says which).
    """
    metrics_token: SecretStr | None = None
    """Bearer token `GET /metrics` asks for (`Authorization: Bearer <token>`). Unset: `/metrics`
    is open when the bridge listens on a loopback address and refused (403) on any other.
    """
    trusted_proxies: str = ""
    """Comma-separated addresses or networks of the reverse proxies whose `X-Forwarded-For` and
    `X-Forwarded-Proto` the bridge believes (uvicorn's `forwarded_allow_ips`), e.g.
    `172.16.0.0/12`; `*` believes any peer. Unset: none, every client is the address it
    connects from.
    """
    # Live (unrevoked) API keys per account: the hourly request limit is per key.
    max_keys_per_account: int = Field(10, ge=1)
    """Live (unrevoked) API keys an account may hold; the hourly request limit is per key."""
    # Prefix of the rate-limit counters in Redis (several deployments may share one Redis).
    ratelimit_prefix: str = "genserve"
    """Prefix of this deployment's keys in Redis (several deployments may share one Redis)."""
    session_days: int = 14
    """Lifetime of a web session (the settings pages), in days."""
    # The gRPC link to the inference servers: TLS (verified against this CA) when
    # GENSERVE_GRPC_TLS_CA is set, with a client certificate (mutual TLS) when
    # GENSERVE_GRPC_TLS_CERT and GENSERVE_GRPC_TLS_KEY are set too; the service token
    # GENSERVE_INFERENCE_TOKEN goes on every call as ``authorization: Bearer``.
    grpc_tls_cert: Path | None = None
    """PEM client certificate chain for mutual TLS to the inference servers (with
    `GENSERVE_GRPC_TLS_KEY` and `GENSERVE_GRPC_TLS_CA`).
    """
    grpc_tls_key: Path | None = None
    """PEM private key of `GENSERVE_GRPC_TLS_CERT`."""
    grpc_tls_ca: Path | None = None
    """PEM CA: when set, the bridge connects to the inference servers over TLS and verifies them
    with it; unset: plaintext (loopback).
    """
    inference_token: SecretStr | None = None
    """Service token sent on every gRPC call as `authorization: Bearer <token>`; the inference
    servers must have the same one.
    """
    _exposed: bool = PrivateAttr(False)
    log_format: LogFormat = "json"
    """Log lines: `json`, one object per line (time, level, logger, message, request id and the
    line's fields), or `text` for a person at a terminal. Shared by both servers.
    """
    log_level: LogLevel = "INFO"
    """Lowest level logged: `DEBUG` (health probes' access lines too), `INFO`, `WARNING`,
    `ERROR` or `CRITICAL`. Shared by both servers.
    """

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> str:
        return format_named(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> str:
        return level_named(value)

    @model_validator(mode="after")
    def _production_secrets(self) -> BridgeSettings:
        if self.environment == "production" and not self.key_secret:
            raise ValueError("GENSERVE_KEY_SECRET must be set in production")
        if self.key_secret is not None and len(self.key_secret) < 32:
            raise ValueError("GENSERVE_KEY_SECRET must be at least 32 characters")
        return self

    @field_validator(
        "grpc_tls_cert",
        "grpc_tls_key",
        "grpc_tls_ca",
        "inference_token",
        "metrics_token",
        "signup",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _tls_files(self) -> BridgeSettings:
        check_tls_files(self.grpc_tls_cert, self.grpc_tls_key, self.grpc_tls_ca)
        return self

    def listening_on(self, host: str) -> BridgeSettings:
        """Notes where the bridge listens: the defaults of a public address are stricter."""
        self._exposed = not is_loopback(host)
        return self

    @property
    def signup_open(self) -> bool:
        return self.signup == "open" if self.signup else not self._exposed

    @property
    def metrics_token_value(self) -> str | None:
        return self.metrics_token.get_secret_value() if self.metrics_token else None

    @property
    def metrics_open(self) -> bool:
        """``/metrics`` without a token: only on loopback, and only when none is set."""
        return self.metrics_token is None and not self._exposed

    def exposure(self) -> str:
        """What the start-up line says about sign-up and ``/metrics``."""
        chosen = "" if self.signup else " (GENSERVE_SIGNUP unset)"
        signup = f"sign-up {'open' if self.signup_open else 'closed'}{chosen}"
        if self.metrics_token is not None:
            metrics = "/metrics needs GENSERVE_METRICS_TOKEN"
        elif self.metrics_open:
            metrics = "/metrics open (loopback)"
        else:
            metrics = "/metrics refused until GENSERVE_METRICS_TOKEN is set"
        return f"{signup}, {metrics}"

    @property
    def forwarded_allow_ips(self) -> list[str]:
        """The proxies uvicorn believes ``X-Forwarded-*`` from; empty: none."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def inference_token_value(self) -> str | None:
        return self.inference_token.get_secret_value() if self.inference_token else None

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        for proxy in (p.strip() for p in value.split(",")):
            if proxy and proxy != "*":
                try:
                    ipaddress.ip_network(proxy, strict=False)
                except ValueError:
                    raise ValueError(f"{proxy!r} is not an address or a network") from None
        return value

    @field_validator("auth_failure_limits", "signup_limits", "login_limits")
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


def check_tls_files(cert: Path | None, key: Path | None, ca: Path | None) -> None:
    """Refuses, at start-up, a TLS setting that cannot work on the bridge."""
    check_pem_files(cert, key, ca)
    if cert is not None and ca is None:
        raise ValueError(
            "GENSERVE_GRPC_TLS_CERT and GENSERVE_GRPC_TLS_KEY are the bridge's client certificate "
            "for TLS, which needs GENSERVE_GRPC_TLS_CA (the CA of the inference servers' "
            "certificates); without it the bridge would talk plaintext"
        )
