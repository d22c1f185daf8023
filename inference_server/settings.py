"""The inference server's settings, read once at start-up from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
