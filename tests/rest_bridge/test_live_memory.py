"""What a bridge keeps in memory per generation is bounded: previews and finished jobs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from genserve.inference.v1 import inference_pb2 as pb
from rest_bridge.generation import live
from rest_bridge.generation.live import LiveGeneration, LiveGenerations


def _preview(step: int, total: int) -> pb.Progress:
    return pb.Progress(
        stage=pb.STAGE_DENOISING,
        step=step,
        total_steps=total,
        preview=pb.Preview(jpeg=b"\xff\xd8" + bytes(4000), width=64, height=64),
    )


def _previews(job: LiveGeneration) -> list[Any]:
    return [e for e in job.events if e.name == "preview"]


async def test_a_200_step_job_keeps_one_preview_and_none_once_finished() -> None:
    """``"preview": 1`` on 200 steps kept 200 JPEGs for ten minutes; now the latest only."""
    jobs = LiveGenerations(state=None)  # type: ignore[arg-type]
    job = LiveGeneration(generation_id="g", account_id=1, request_id="req_test")
    jobs.jobs["g"] = job
    for step in range(1, 201):
        await job.on_progress(_preview(step, 200))
        assert len(_previews(job)) == 1
    assert _previews(job)[0].data["step"] == 200
    job._drop_preview()  # what the end of the job does
    assert _previews(job) == []


async def test_a_follower_sees_the_latest_preview_and_ids_stay_in_order() -> None:
    job = LiveGeneration(generation_id="g", account_id=1, request_id="req_test")
    for step in range(1, 6):
        await job.on_progress(_preview(step, 5))
    await job.emit("completed", {})
    job.finished = True
    seen = [e async for e in job.follow(0, 1.0) if e is not None]
    assert [(e.name, e.id) for e in seen] == [("preview", 5), ("completed", 6)]


async def test_finished_jobs_are_capped_least_recent_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finished jobs cost memory in every bridge for ten minutes: a count cap bounds them."""
    monkeypatch.setattr(live, "RETAIN_FINISHED_MAX", 3)
    jobs = LiveGenerations(state=None)  # type: ignore[arg-type]
    for n in range(10):
        gid = f"g{n}"
        jobs.jobs[gid] = LiveGeneration(generation_id=gid, account_id=1, request_id="r")
        jobs._retire(gid)
    assert sorted(jobs.jobs) == ["g7", "g8", "g9"]
    jobs._forget("g8")  # its ten minutes are up
    assert sorted(jobs.jobs) == ["g7", "g9"]
    await asyncio.sleep(0)
