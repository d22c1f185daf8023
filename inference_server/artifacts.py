"""Encoded outputs and their transport as chunks of at most 1 MiB."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from genserve.inference.v1 import inference_pb2 as pb

CHUNK_BYTES = 1024 * 1024


@dataclass
class Artifact:
    data: bytes
    content_type: str
    file_name: str
    index: int = 0
    role: int = pb.ARTIFACT_ROLE_PRIMARY
    width: int = 0
    height: int = 0
    duration_seconds: float = 0.0
    frame_count: int = 0
    frame_rate: float = 0.0


def to_chunks(artifact: Artifact, chunk_bytes: int = CHUNK_BYTES) -> Iterator[pb.ArtifactChunk]:
    """The file as chunks; every chunk repeats the metadata, so any one is self-describing."""
    total = len(artifact.data)
    view = memoryview(artifact.data)
    for offset in range(0, max(total, 1), chunk_bytes):
        yield pb.ArtifactChunk(
            index=artifact.index,
            role=artifact.role,  # type: ignore[arg-type]
            content_type=artifact.content_type,
            file_name=artifact.file_name,
            width=artifact.width,
            height=artifact.height,
            total_size=total,
            offset=offset,
            data=bytes(view[offset : offset + chunk_bytes]),
            duration_seconds=artifact.duration_seconds,
            frame_count=artifact.frame_count,
            frame_rate=artifact.frame_rate,
        )
