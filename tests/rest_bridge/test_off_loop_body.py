"""Large generation bodies are parsed and checked off the event loop (``OffLoopJson``).

The bridge's generation routes use this route class; here it serves a model whose
validator notes the thread it runs in, in process, so the thread can be seen.
"""

from __future__ import annotations

import threading

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, field_validator

from rest_bridge.routes.generate import OFF_LOOP_BYTES, OffLoopJson

SEEN: list[str] = []


class Body(BaseModel):
    data: str

    @field_validator("data")
    @classmethod
    def _note(cls, value: str) -> str:
        SEEN.append(threading.current_thread().name)
        if not value.isalnum():
            raise ValueError("letters and digits only")
        return value


def _client() -> TestClient:
    router = APIRouter(route_class=OffLoopJson)

    @router.post("/echo")
    async def echo(body: Body) -> dict[str, int]:
        return {"length": len(body.data)}

    app = FastAPI()
    app.include_router(router)
    return TestClient(app)


def test_a_large_body_is_validated_in_a_worker_thread_and_a_small_one_on_the_loop() -> None:
    client = _client()
    SEEN.clear()
    small = client.post("/echo", json={"data": "a" * 100})
    assert small.status_code == 200 and small.json() == {"length": 100}
    loop_thread = SEEN[-1]
    SEEN.clear()
    big = client.post("/echo", json={"data": "a" * (OFF_LOOP_BYTES + 10)})
    assert big.status_code == 200 and big.json() == {"length": OFF_LOOP_BYTES + 10}
    assert SEEN == [SEEN[0]] and SEEN[0] != loop_thread  # once, in another thread


def test_a_large_invalid_body_is_the_same_422_as_a_small_one() -> None:
    client = _client()
    small = client.post("/echo", json={"data": "a-" * 10})
    big = client.post("/echo", json={"data": "a-" * OFF_LOOP_BYTES})
    assert small.status_code == big.status_code == 422
    assert [e["loc"] for e in small.json()["detail"]] == [e["loc"] for e in big.json()["detail"]]
    broken = client.post(
        "/echo", content=b"{" * (OFF_LOOP_BYTES + 1), headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422  # not JSON: FastAPI's own answer, as for a small body
