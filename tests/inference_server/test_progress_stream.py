"""Progress reaches the client as it happens: decoding when it starts, encoding step by step."""

from __future__ import annotations

import time

import grpc
import pytest

from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from tests.conftest import InferenceProc


@pytest.fixture()
def stub(inference: InferenceProc) -> pb_grpc.InferenceServiceStub:
    return pb_grpc.InferenceServiceStub(grpc.insecure_channel(inference.target))


def test_encoding_progress_is_sent_while_encoding(stub: pb_grpc.InferenceServiceStub) -> None:
    """A 720p clip takes a couple of seconds to encode: its first encoding event must
    reach the client long before the encoder's last one is made, not in one burst after.

    ``elapsed_seconds`` is the server's clock from its receipt of the request; the
    client's clock starts just before, so received times are never early.
    """
    request = pb.GenerateVideoRequest(
        prompt="a red cube", resolution="720p", aspect_ratio="1:1", duration_seconds=4, seed=3
    )
    started = time.monotonic()
    encoding: list[tuple[float, float]] = []  # (made, by the server's clock; received)
    for event in stub.GenerateVideo(request):
        if event.WhichOneof("event") == "progress" and event.progress.stage == pb.STAGE_ENCODING:
            encoding.append((event.progress.elapsed_seconds, time.monotonic() - started))
    assert len(encoding) > 2
    assert encoding[-1][0] - encoding[0][0] > 0.3, "the clip encoded too fast to tell"
    # Sent as made, they arrive spread over the encoding; sent after it, in one burst.
    assert encoding[-1][1] - encoding[0][1] > 0.15, encoding


def test_image_decoding_is_reported_when_it_starts(stub: pb_grpc.InferenceServiceStub) -> None:
    events = list(
        stub.GenerateImage(pb.GenerateImageRequest(prompt="a red cube", num_images=1, seed=5))
    )
    progress = [e.progress for e in events if e.WhichOneof("event") == "progress"]
    stages = [(p.stage, p.step, p.total_steps) for p in progress if p.stage != pb.STAGE_QUEUED]
    assert stages == [
        (pb.STAGE_DENOISING, 1, 4),
        (pb.STAGE_DENOISING, 2, 4),
        (pb.STAGE_DENOISING, 3, 4),
        (pb.STAGE_DENOISING, 4, 4),
        (pb.STAGE_DECODING, 0, 1),
        (pb.STAGE_DECODING, 1, 1),
        (pb.STAGE_ENCODING, 1, 1),
    ]
    queued = [p for p in progress if p.stage == pb.STAGE_QUEUED]
    assert queued[-1].queue_position == 0  # the last queue event: it left the queue
