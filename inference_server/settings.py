"""The inference server's settings, read once at start-up from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from genserve._internal.logs import LogFormat, LogLevel, format_named, level_named
from genserve._internal.paths import data_dir
from genserve._internal.pem import check_pem_files


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GENSERVE_INFERENCE_", extra="ignore", use_attribute_docstrings=True
    )

    host: str = "127.0.0.1"
    """Address the gRPC server listens on."""
    port: int = Field(50051, ge=0, le=65535)
    """gRPC port."""
    metrics_port: int | None = Field(None, ge=1, le=65535)
    """Port of the Prometheus `/metrics` endpoint; unset: off."""
    models_file: Path | None = Field(
        None,
        validation_alias=AliasChoices("GENSERVE_MODELS_FILE", "GENSERVE_INFERENCE_MODELS_FILE"),
    )
    """TOML file of `[models.<public-name>]` tables binding public names to checkpoints; unset:
    the embedded small models, built locally (no download).
    """
    cache_dir: Path = Field(default_factory=lambda: data_dir() / "models")
    """Where the built-in models are built, and cached between starts; unset: `models/` in the
    data directory (`GENSERVE_DATA_DIR`, by default `~/.local/share/genserve`). Checkpoints named
    by repository id go to the Hugging Face cache (`HF_HOME`).
    """
    compile_cache_dir: Path | None = None
    """Where `torch.compile` keeps compiled kernels and autotuning results between starts
    (models with `compile = true`), so a restart reads them back instead of compiling again;
    unset: `compile` inside the cache folder.
    """
    queue_size: int = Field(32, ge=1)
    """Work waiting per device beyond the running one; past it, new work is refused
    (`RESOURCE_EXHAUSTED`).
    """
    plan_priorities: dict[str, int] = Field(
        default_factory=lambda: {"enterprise": 2, "pro": 1, "free": 0}
    )
    """Queue order by plan, as JSON (`{"enterprise": 2, "pro": 1, "free": 0}`): work of a higher
    priority runs first; within one priority, accounts take turns. The bridge names each
    request's account and plan in its metadata.
    """
    default_plan: str = "free"
    """The plan of a request that names none, or one not in `plan_priorities` (an internal gRPC
    caller).
    """
    cpu_threads: int | Literal["auto"] = "auto"
    """Torch's CPU threads (intra-op) in the server; `auto`: `OMP_NUM_THREADS` where set, else
    half the cores on a CPU server (the rest for the bridge and the encoders) and at most 4
    (a quarter of the cores) on a GPU server, so they do not compete with the encoders.
    OpenMP's threads wait passively (`OMP_WAIT_POLICY=PASSIVE`, `GOMP_SPINCOUNT=0`,
    `KMP_BLOCKTIME=0`) unless the environment sets any of those: spinning teams slow by an
    order of magnitude beside other busy processes.
    """
    encode_workers: int = Field(2, ge=1)
    """Threads encoding outputs (PNG, WebP, MP4, GLB) beside the device thread."""
    grace_seconds: float = Field(30.0, ge=0)
    """On SIGTERM: seconds running work may take to finish before it is cancelled."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest gRPC message, in bytes, either way (input images, output chunks)."""
    # The gRPC link (read by the bridge too): TLS with cert+key, mutual TLS with the CA as well.
    grpc_tls_cert: Path | None = Field(None, validation_alias="GENSERVE_GRPC_TLS_CERT")
    """PEM certificate chain the server serves TLS with (with `GENSERVE_GRPC_TLS_KEY`); it must
    name the host the bridges dial. Shared with the bridge, where it is the client
    certificate.
    """
    grpc_tls_key: Path | None = Field(None, validation_alias="GENSERVE_GRPC_TLS_KEY")
    """PEM private key of `GENSERVE_GRPC_TLS_CERT`."""
    grpc_tls_ca: Path | None = Field(None, validation_alias="GENSERVE_GRPC_TLS_CA")
    """PEM CA: when set, the server requires client certificates it signed (mutual TLS)."""
    # GENSERVE_INFERENCE_TOKEN: every call but the health Check must carry it as a Bearer token.
    token: SecretStr | None = None
    """Service token: every call but the health `Check` must carry `authorization: Bearer <token>`
    (else `UNAUTHENTICATED`).
    """
    # GENSERVE_INFERENCE_REFLECTION: serve gRPC server reflection (off unless asked).
    reflection: bool = False
    """Serve gRPC server reflection (behind the token when one is set)."""
    log_format: LogFormat = Field("json", validation_alias="GENSERVE_LOG_FORMAT")
    """Log lines: `json`, one object per line (time, level, logger, message, request id and the
    line's fields), or `text` for a person at a terminal. Shared by both servers.
    """
    log_level: LogLevel = Field("INFO", validation_alias="GENSERVE_LOG_LEVEL")
    """Lowest level logged: `DEBUG` (health probes' access lines too), `INFO`, `WARNING`,
    `ERROR` or `CRITICAL`. Shared by both servers.
    """

    @model_validator(mode="after")
    def _default_plan_known(self) -> ServerSettings:
        if self.default_plan not in self.plan_priorities:
            known = ", ".join(sorted(self.plan_priorities)) or "none"
            raise ValueError(
                f"GENSERVE_INFERENCE_DEFAULT_PLAN={self.default_plan!r} is not in the plan "
                f"priorities ({known})"
            )
        return self

    @field_validator("cpu_threads")
    @classmethod
    def _cpu_threads(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("GENSERVE_INFERENCE_CPU_THREADS must be at least 1, or auto")
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> str:
        return format_named(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> str:
        return level_named(value)

    @classmethod
    def with_overrides(cls, **values: object) -> ServerSettings:
        """The environment's settings with ``values`` (by field name) taking precedence.

        A field read from a variable of another name (``models_file`` from
        ``GENSERVE_MODELS_FILE``) is validated under that name only, so a value
        passed by field name would be dropped without a word; this passes it by it.
        """
        named: dict[str, Any] = {}
        for name, value in values.items():
            alias = cls.model_fields[name].validation_alias
            if isinstance(alias, AliasChoices):
                named[str(alias.choices[0])] = value
            else:
                named[alias if isinstance(alias, str) else name] = value
        return cls(**named)

    @field_validator("grpc_tls_cert", "grpc_tls_key", "grpc_tls_ca", "token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _tls_files(self) -> ServerSettings:
        check_tls_files(self.grpc_tls_cert, self.grpc_tls_key, self.grpc_tls_ca)
        return self


def check_tls_files(cert: Path | None, key: Path | None, ca: Path | None) -> None:
    """Refuses, at start-up, a TLS setting that cannot work on the server."""
    check_pem_files(cert, key, ca)
    if ca is not None and cert is None:
        raise ValueError(
            "GENSERVE_GRPC_TLS_CA asks for client certificates, which needs TLS: "
            "set GENSERVE_GRPC_TLS_CERT and GENSERVE_GRPC_TLS_KEY too"
        )
