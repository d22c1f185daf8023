"""A local S3 for tests: a moto server on a free loopback port, and the AWS_* variables for it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.utils.procs import Proc, free_port


@dataclass
class MotoS3:
    proc: Proc
    endpoint: str
    env: dict[str, str] = field(default_factory=dict)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.env["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object under ``prefix``, key to bytes."""
        client = self.client()
        found = {}
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"]
                found[item["Key"]] = body.read()
        return found


def moto_env(endpoint: str, home: Path) -> dict[str, str]:
    """Dummy credentials for the local endpoint; no profile or config file is read."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def start_moto(log_dir: Path) -> Iterator[MotoS3]:
    """Starts ``python -m moto.server`` on 127.0.0.1; yields once it answers; stops it after."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = Proc(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        {},
        log_dir / f"moto-{port}.log",
    )

    def up() -> bool:
        try:
            return httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        proc.wait_until(up, timeout=60)
        yield MotoS3(proc, endpoint, moto_env(endpoint, log_dir))
    finally:
        proc.stop()
