"""A local Hugging Face Hub for tests: what moto is to S3, for ``snapshot_download``.

Two loopback HTTP servers in threads: the Hub (``HF_ENDPOINT``) and its CDN. The Hub
answers the requests ``huggingface_hub`` makes to fetch a repository, read from its
source (``file_download.py``, ``_snapshot_download.py``, ``hf_api.py``):

- ``GET /api/models/{repo}[/revision/{rev}]``: the model info (``sha``, ``siblings``);
- ``GET /api/models/{repo}/tree/{rev}?recursive=...``: every file, with ``oid``, ``size``
  and ``lfs`` for weights;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: a small file itself (``ETag`` its git blob
  id, ``Content-Length``, ``X-Repo-Commit``); a weight file (``*.safetensors``, ``*.bin``)
  a ``302`` to the CDN, another origin, carrying ``X-Linked-Etag`` (its SHA-256),
  ``X-Linked-Size`` and ``X-Repo-Commit``, as the real Hub answers;
- a gated repository: its info, but ``401`` with ``X-Error-Code: GatedRepo`` on its files;
  a missing one: ``401`` with ``X-Error-Code: RepoNotFound`` everywhere.

The CDN serves a blob by its SHA-256 (``Range: bytes=N-`` too, for a resumed download).
No Xet headers are sent, so clients with ``hf_xet`` installed download over plain HTTP.
Every request is recorded (``Hub.requests``) for tests to check what was asked.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

WEIGHTS = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".gguf")
LFS_POINTER_SIZE = 134


@dataclass(frozen=True)
class HubFile:
    path: str
    data: bytes

    @property
    def lfs(self) -> bool:
        return self.path.endswith(WEIGHTS)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_id(self) -> str:
        """The git blob id (of the LFS pointer for a weight file), as the Hub's ETag."""
        content = self.data
        if self.lfs:
            content = (
                f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
                f"size {len(self.data)}\n"
            ).encode()
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    gated: bool = False

    @property
    def sha(self) -> str:
        """The commit: a hash of every file's path and blob id."""
        listing = "\n".join(f"{p} {f.blob_id}" for p, f in sorted(self.files.items()))
        return hashlib.sha1(listing.encode()).hexdigest()


def repo_from_folder(repo_id: str, folder: Path, gated: bool = False) -> HubRepo:
    files = {
        p.relative_to(folder).as_posix(): HubFile(p.relative_to(folder).as_posix(), p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    return HubRepo(repo_id, files, gated)


@dataclass
class Hub:
    """The two servers, their repositories and the requests they were sent."""

    repos: dict[str, HubRepo] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    endpoint: str = ""
    cdn: str = ""
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)

    def add(self, repo: HubRepo) -> None:
        self.repos[repo.repo_id] = repo

    def blob(self, sha256: str) -> bytes | None:
        for repo in self.repos.values():
            for item in repo.files.values():
                if item.sha256 == sha256:
                    return item.data
        return None

    def start(self) -> None:
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, role))
            server.daemon_threads = True
            url = f"http://127.0.0.1:{server.server_address[1]}"
            if role == "hub":
                self.endpoint = url
            else:
                self.cdn = url
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def env(self, home: Path) -> dict[str, str]:
        """The variables a process needs to use this Hub, with its cache in ``home``."""
        return {
            "HF_ENDPOINT": self.endpoint,
            "HF_HOME": str(home),
            "HF_HUB_OFFLINE": "",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }

    def asked(self, method: str, pattern: str) -> list[str]:
        """The paths of the requests of ``method`` matching ``pattern`` (a regular expression)."""
        return [p for m, p in list(self.requests) if m == method and re.search(pattern, p)]


API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<under>.+))?$")
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
CDN = re.compile(r"^/blobs/(?P<sha>[0-9a-f]{64})$")


def _handler(hub: Hub, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            hub.requests.append((self.command, f"{role}:{path}"))
            if role == "cdn":
                found = CDN.match(path)
                data = hub.blob(found["sha"]) if found else None
                if data is None:
                    return self._send(404, b"", body)
                return self._send_bytes(data, {}, body)
            if m := TREE.match(path):
                return self._tree(m["repo"], m["rev"], m["under"], body)
            if m := API.match(path):
                return self._info(m["repo"], m["rev"], body)
            if m := RESOLVE.match(path):
                return self._resolve(m["repo"], m["rev"], m["path"], body)
            self._send(404, b"Not Found", body)

        def _repo(self, repo_id: str, rev: str | None, body: bool) -> HubRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(401, "RepoNotFound", "Repository not found", body)
                return None
            if rev not in (None, "main", repo.sha):
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", body)
                return None
            return repo

        def _info(self, repo_id: str, rev: str | None, body: bool) -> None:
            repo = self._repo(repo_id, rev, body)
            if repo is None:
                return
            info = {
                "_id": repo.sha[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": repo.sha,
                "private": False,
                "gated": "manual" if repo.gated else False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": ["diffusers"],
                "library_name": "diffusers",
                "lastModified": "2026-01-01T00:00:00.000Z",
                "createdAt": "2026-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
            }
            self._send_json(info, body)

        def _tree(self, repo_id: str, rev: str, under: str | None, body: bool) -> None:
            repo = self._repo(repo_id, unquote(rev), body)
            if repo is None:
                return
            recursive = parse_qs(urlsplit(self.path).query).get("recursive", ["false"])[0]
            prefix = f"{under.rstrip('/')}/" if under else ""
            entries: list[dict[str, object]] = []
            folders: set[str] = set()
            for path, item in sorted(repo.files.items()):
                if not path.startswith(prefix):
                    continue
                rest = path[len(prefix) :]
                if "/" in rest and recursive.lower() != "true":
                    folders.add(prefix + rest.split("/", 1)[0])
                    continue
                parts = path.split("/")[:-1]
                folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
                entry: dict[str, object] = {
                    "type": "file",
                    "path": path,
                    "size": len(item.data),
                    "oid": item.blob_id,
                }
                if item.lfs:
                    entry["lfs"] = {
                        "oid": item.sha256,
                        "size": len(item.data),
                        "pointerSize": LFS_POINTER_SIZE,
                    }
                entries.append(entry)
            listed = [
                {"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest()}
                for f in sorted(folders)
                if f.startswith(prefix)
            ]
            self._send_json(listed + entries, body)

        def _resolve(self, repo_id: str, rev: str, path: str, body: bool) -> None:
            repo = self._repo(repo_id, rev, body)
            if repo is None:
                return
            if repo.gated:
                message = f"Access to model {repo_id} is restricted. You must have access to it."
                return self._error(401, "GatedRepo", message, body)
            item = repo.files.get(path)
            if item is None:
                return self._error(404, "EntryNotFound", f"{path} does not exist", body)
            common = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
            if item.lfs:
                self.send_response(302)
                for name, value in {
                    **common,
                    "Location": f"{hub.cdn}/blobs/{item.sha256}",
                    "X-Linked-Etag": f'"{item.sha256}"',
                    "X-Linked-Size": str(len(item.data)),
                    "ETag": f'"{item.blob_id}"',
                    "Content-Length": "0",
                }.items():
                    self.send_header(name, value)
                self.end_headers()
                return
            self._send_bytes(item.data, {**common, "ETag": f'"{item.blob_id}"'}, body)

        def _send_bytes(self, data: bytes, headers: dict[str, str], body: bool) -> None:
            start = 0
            wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if wanted and int(wanted[1]) < len(data):
                start = int(wanted[1])
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if body:
                self.wfile.write(data[start:])

        def _send_json(self, value: object, body: bool) -> None:
            data = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _error(self, status: int, code: str, message: str, body: bool) -> None:
            data = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _send(self, status: int, data: bytes, body: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler
