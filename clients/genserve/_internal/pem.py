"""PEM files named by settings (the gRPC link's TLS), checked the same way on both sides."""

from __future__ import annotations

from pathlib import Path

_MARKERS = {"certificate": "-----BEGIN CERTIFICATE-----", "private key": "PRIVATE KEY-----"}


def read_pem(path: Path, variable: str, kind: str) -> bytes:
    """The PEM file a setting names; a clear ``ValueError`` when it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from exc
    if _MARKERS[kind].encode() not in data:
        raise ValueError(f"{variable}: {path} holds no PEM {kind}")
    return data


def check_pem_files(cert: Path | None, key: Path | None, ca: Path | None) -> None:
    """Certificate and key come together, and every file named is a readable PEM."""
    if (cert is None) != (key is None):
        raise ValueError("GENSERVE_GRPC_TLS_CERT and GENSERVE_GRPC_TLS_KEY must be set together")
    if cert is not None and key is not None:
        read_pem(cert, "GENSERVE_GRPC_TLS_CERT", "certificate")
        read_pem(key, "GENSERVE_GRPC_TLS_KEY", "private key")
    if ca is not None:
        read_pem(ca, "GENSERVE_GRPC_TLS_CA", "certificate")
