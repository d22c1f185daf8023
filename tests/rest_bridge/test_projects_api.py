"""GET /api/v1/projects: shapes, pagination, filters, ordering, isolation."""

from __future__ import annotations

import pytest

from tests.conftest import Bridge


@pytest.fixture(scope="module")
def three_projects(bridge: Bridge) -> tuple[str, list[str]]:
    key = bridge.new_key(points=100)
    ids = []
    with bridge.client(key) as c:
        for i, ratio in enumerate(["1:1", "16:9", "3:4"]):
            r = c.post(
                "/api/v1/images",
                json={"prompt": f"picture {i}", "aspect_ratio": ratio, "output_format": "webp"},
            )
            assert r.status_code == 200, r.text
            ids.append(r.json()["data"]["generation_id"])
    return key, ids


def test_project_shape(bridge: Bridge, three_projects: tuple[str, list[str]]) -> None:
    key, ids = three_projects
    with bridge.client(key) as c:
        r = c.get("/api/v1/projects")
    assert r.status_code == 200
    data = r.json()["data"]
    assert [p["id"] for p in data["projects"]] == list(reversed(ids))
    p = data["projects"][0]
    assert p["type"] == "image"
    assert p["prompt"] == "picture 2"
    assert p["created_at"].endswith("Z")
    assert p["url"].startswith(bridge.base)
    assert p["thumbnail"].startswith(bridge.base) and p["thumbnail"] != p["url"]
    assert p["metadata"]["aspect_ratio"] == "3:4"
    w, h = (int(x) for x in p["metadata"]["dimensions"].split("x"))
    assert w < h
    assert p["metadata"]["file_size"] > 0
    assert data["pagination"] == {"page": 1, "limit": 20, "total": 3, "pages": 1, "has_more": False}


def test_pagination_and_order(bridge: Bridge, three_projects: tuple[str, list[str]]) -> None:
    key, ids = three_projects
    with bridge.client(key) as c:
        first = c.get("/api/v1/projects", params={"limit": 2, "page": 1, "order": "asc"}).json()[
            "data"
        ]
        second = c.get("/api/v1/projects", params={"limit": 2, "page": 2, "order": "asc"}).json()[
            "data"
        ]
        beyond = c.get("/api/v1/projects", params={"limit": 2, "page": 9}).json()["data"]
    assert [p["id"] for p in first["projects"]] == ids[:2]
    assert first["pagination"] == {"page": 1, "limit": 2, "total": 3, "pages": 2, "has_more": True}
    assert [p["id"] for p in second["projects"]] == ids[2:]
    assert second["pagination"]["has_more"] is False
    assert beyond["projects"] == []


def test_type_filter(bridge: Bridge, three_projects: tuple[str, list[str]]) -> None:
    key, _ = three_projects
    with bridge.client(key) as c:
        images = c.get("/api/v1/projects", params={"type": "images"}).json()["data"]
        videos = c.get("/api/v1/projects", params={"type": "videos"}).json()["data"]
    assert images["pagination"]["total"] == 3
    assert videos["projects"] == [] and videos["pagination"]["total"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 101},
        {"limit": 0},
        {"page": 0},
        {"page": "two"},
        {"type": "audio"},
        {"order": "sideways"},
        {"sort": "size"},
    ],
)
def test_bad_query_values_are_400(bridge: Bridge, params: dict[str, object]) -> None:
    key = bridge.new_key()
    with bridge.client(key) as c:
        r = c.get("/api/v1/projects", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request"
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_another_account_sees_nothing(
    bridge: Bridge, three_projects: tuple[str, list[str]]
) -> None:
    other = bridge.new_key()
    with bridge.client(other) as c:
        r = c.get("/api/v1/projects")
    assert r.json()["data"]["projects"] == []


def test_q_finds_projects_by_prompt_text(
    bridge: Bridge, three_projects: tuple[str, list[str]]
) -> None:
    key, ids = three_projects
    with bridge.client(key) as c:
        found = c.get("/api/v1/projects", params={"q": "PICTURE 1"}).json()["data"]
        every = c.get("/api/v1/projects", params={"q": "picture"}).json()["data"]
        literal = c.get("/api/v1/projects", params={"q": "pict%"}).json()["data"]
        long = c.get("/api/v1/projects", params={"q": "x" * 201})
    assert [p["id"] for p in found["projects"]] == [ids[1]]
    assert found["pagination"]["total"] == 1
    assert every["pagination"]["total"] == 3
    assert literal["projects"] == []  # % is a character, not a wildcard
    assert long.status_code == 400 and long.json()["code"] == "invalid_request"


def test_delete_removes_a_project_and_its_files(bridge: Bridge) -> None:
    key, other = bridge.new_key(points=100), bridge.new_key()
    with bridge.client(key) as c:
        made = c.post("/api/v1/images", json={"prompt": "to be deleted", "num_images": 2})
        assert made.status_code == 200, made.text
        gid = made.json()["data"]["generation_id"]
        listed = c.get("/api/v1/projects", params={"q": "to be deleted"}).json()["data"]
        files = [o["url"] for o in listed["projects"][0]["outputs"]]
        files.append(listed["projects"][0]["thumbnail"])
        assert all(c.get(url).status_code == 200 for url in files)
        on_disk = sorted(p for p in (bridge.data_dir / "blobs").rglob("*") if p.is_file())
        with bridge.client(other) as intruder:
            refused = intruder.delete(f"/api/v1/projects/{gid}")
        assert refused.status_code == 404 and refused.json()["code"] == "not_found"
        gone = c.delete(f"/api/v1/projects/{gid}")
        assert gone.status_code == 200, gone.text
        assert gone.json()["data"] == {"id": gid, "deleted": True}
        assert all(c.get(url).status_code == 404 for url in files)
        assert c.get(f"/api/v1/generations/{gid}").status_code == 404
        assert (
            c.get("/api/v1/projects", params={"q": "to be deleted"}).json()["data"]["projects"]
            == []
        )
        again = c.delete(f"/api/v1/projects/{gid}")
        assert again.status_code == 404 and again.json()["code"] == "not_found"
        assert c.delete("/api/v1/projects/not-an-id").status_code == 404
    left = sorted(p for p in (bridge.data_dir / "blobs").rglob("*") if p.is_file())
    assert len(on_disk) - len(left) == 4  # two images and their two previews


def test_a_video_project_has_a_full_size_poster_deleted_with_it(bridge: Bridge) -> None:
    """The poster is a frame of the clip itself at the clip's size (its middle frame, the
    one the inference server picked), decodable, and goes with the project."""
    import io

    import av
    import numpy as np
    from PIL import Image

    key = bridge.new_key(points=100)
    with bridge.client(key) as c:
        made = c.post(
            "/api/v1/videos",
            json={"prompt": "a tide coming in", "duration": 2, "resolution": "360p"},
        )
        assert made.status_code == 200, made.text
        gid = made.json()["data"]["video"]["generation_id"]
        project = c.get("/api/v1/projects", params={"type": "videos"}).json()["data"]["projects"][0]
        assert project["id"] == gid and project["poster"]
        video = project["outputs"][0]
        clip = c.get(video["url"])
        poster = c.get(project["poster"])
        assert poster.status_code == 200 and poster.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(poster.content)) as image:
            image.load()
            assert image.size == (video["width"], video["height"]) == (640, 360)
            shown = np.asarray(image.convert("RGB"), dtype=np.float32)
        with av.open(io.BytesIO(clip.content)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        differences = [float(np.abs(shown - frame).mean()) for frame in frames]
        # Both copies are lossy (JPEG, H.264): the poster is nearest the middle frame.
        assert min(range(len(frames)), key=differences.__getitem__) == len(frames) // 2
        assert differences[len(frames) // 2] < 12, differences

        images = c.get("/api/v1/projects", params={"type": "images"}).json()["data"]["projects"]
        assert all(p["poster"] is None for p in images)
        on_disk = sum(1 for p in (bridge.data_dir / "blobs").rglob("*") if p.is_file())
        assert c.delete(f"/api/v1/projects/{gid}").status_code == 200
        assert c.get(project["poster"]).status_code == 404
    left = sum(1 for p in (bridge.data_dir / "blobs").rglob("*") if p.is_file())
    assert on_disk - left == 2  # the clip and its poster
