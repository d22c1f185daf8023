"""The server's CPU thread policy: how many threads, how they wait, and the operator's say.

The choice is checked as a function, then in real servers: the log line of what
the process set, and the device thread's own count once it has run a request.
Speed beside other busy processes is measured in ``bench/bench_contention.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from genserve.inference.v1 import inference_pb2 as pb
from genserve.inference.v1 import inference_pb2_grpc as pb_grpc
from inference_server.settings import ServerSettings
from inference_server.threads import PASSIVE, choose, set_wait_policy, wait_policy
from tests.utils.procs import start_inference


def test_passive_waiting_unless_the_operator_said_how() -> None:
    env: dict[str, str] = {}
    assert set_wait_policy(env) == "passive"
    assert env == PASSIVE and wait_policy(env) == "passive"
    for given in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}):
        env = dict(given)
        assert set_wait_policy(env).startswith("operator's")
        assert env == given  # kept whole: nothing added beside it


def test_the_thread_count_and_where_it_came_from() -> None:
    assert choose("auto", ["cpu"], {}, available=8) == (4, "auto: half the cores")
    assert choose("auto", ["cpu"], {}, available=1) == (1, "auto: half the cores")
    assert choose("auto", ["cpu", "cuda:0"], {}, available=32) == (4, "auto: GPU server")
    assert choose("auto", ["cuda:0"], {}, available=2) == (1, "auto: GPU server")
    assert choose("auto", ["cpu"], {"OMP_NUM_THREADS": "3"}, available=8) == (
        3,
        "OMP_NUM_THREADS",
    )
    assert choose(2, ["cpu"], {"OMP_NUM_THREADS": "3"}, available=8) == (
        2,
        "GENSERVE_INFERENCE_CPU_THREADS",
    )


def test_the_setting_reads_a_count_or_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENSERVE_INFERENCE_CPU_THREADS", "3")
    assert ServerSettings().cpu_threads == 3
    monkeypatch.setenv("GENSERVE_INFERENCE_CPU_THREADS", "auto")
    assert ServerSettings().cpu_threads == "auto"
    monkeypatch.setenv("GENSERVE_INFERENCE_CPU_THREADS", "0")
    with pytest.raises(ValueError, match="at least 1, or auto"):
        ServerSettings()


def _records(log: Path) -> list[dict[str, object]]:
    found = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


@pytest.mark.server
@pytest.mark.parametrize(
    ("env", "threads", "source", "wait"),
    [
        ({"GENSERVE_INFERENCE_CPU_THREADS": "1"}, 1, "GENSERVE_INFERENCE_CPU_THREADS", "passive"),
        (
            {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"},
            2,
            "OMP_NUM_THREADS",
            "operator's: OMP_WAIT_POLICY=ACTIVE",
        ),
    ],
)
def test_the_server_runs_with_the_chosen_threads_and_policy(
    model_cache: Path,
    logs: Path,
    tmp_path: Path,
    env: dict[str, str],
    threads: int,
    source: str,
    wait: str,
) -> None:
    models = tmp_path / "models.toml"
    models.write_text(
        '[models.small]\nkind = "image"\nsource = "builtin:tiny-sdxl"\nwidth = 64\n'
        "height = 64\nsteps = 1\nwarmup = false\n"
    )
    env = {"GENSERVE_INFERENCE_CPU_THREADS": "auto", **env}
    proc, port, _ = start_inference(model_cache, logs, models_file=models, extra_env=env)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = pb.GenerateImageRequest(model="small", prompt="a kite", num_images=1)
            events = list(pb_grpc.InferenceServiceStub(channel).GenerateImage(request, timeout=120))
            assert events[-1].WhichOneof("event") == "completion"
    finally:
        proc.stop()
    records = _records(proc.log_path)
    (chosen,) = [r for r in records if "intra_op_threads" in r]
    assert chosen["intra_op_threads"] == threads and chosen["threads_from"] == source
    assert chosen["wait_policy"] == wait and chosen["inter_op_threads"] == 1
    assert [r["device_threads"] for r in records if "device_threads" in r] == [threads]
    assert not [r for r in records if "it may spin" in str(r.get("message"))]
