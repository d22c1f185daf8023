"""The signed-in pages that show and make work: ``/projects`` and ``/playground``.

The playground has a session, not a key, so it posts to ``/web/api/...``: the same
generation machinery as the API (``respond``), for a caller built from the session's
account and its newest key (points, limits and the key's hourly count as the API's),
with the session's CSRF token in a header. Its answer is the API's event stream, read
with ``fetch`` (an ``EventSource`` cannot POST).
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select

from genserve.vocabulary import PROJECT_TYPES, ProjectType
from rest_bridge.callers.keys import Caller, StateDep, limiter_unavailable
from rest_bridge.callers.limits import RateLimiterUnavailable
from rest_bridge.callers.sessions import same_origin, tokens_match
from rest_bridge.edge.errors import ApiError
from rest_bridge.generation.base import GenerationBody, GenerationKind
from rest_bridge.generation.image import IMAGE, ImageRequest
from rest_bridge.generation.respond import respond
from rest_bridge.generation.three_d import THREE_D, MeshRequest
from rest_bridge.generation.video import VIDEO, VideoRequest
from rest_bridge.routes.projects import project_view
from rest_bridge.state import BridgeState
from rest_bridge.web import pages
from rest_bridge.web.routes import SignedIn, _nonce, _signed_in
from storage import generations
from storage.accounts import PLANS
from storage.models import ApiKey, Asset, Generation

router = APIRouter(tags=["web"], include_in_schema=False)

CSRF_HEADER = "x-csrf-token"
PAGE_SIZE = 12


def _headers(nonce: str) -> dict[str, str]:
    """The pages' policy: own media and data-URL previews, fetches to this origin only."""
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "img-src 'self' data: blob:; media-src 'self'; connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def _nav(signed: SignedIn) -> str:
    hidden = f'<input type="hidden" name="csrf" value="{escape(signed.csrf)}">'
    return (
        '<a href="/projects">Projects</a> &nbsp; <a href="/playground">Playground</a> &nbsp; '
        '<a href="/settings/api-keys">API keys</a> &nbsp; '
        f"{escape(signed.account.email or '')} &nbsp; "
        f'<form class="inline" method="post" action="/logout">{hidden}'
        '<button type="submit" id="logout">Log out</button></form>'
    )


def _page(title: str, body: str, nonce: str, signed: SignedIn, script: str) -> HTMLResponse:
    content = pages.layout(
        title, _STYLE.replace("$nonce", nonce) + body, nonce, _nav(signed), script
    )
    return HTMLResponse(content, headers=_headers(nonce))


_STYLE = """<style nonce="$nonce">
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); gap: 1rem; }
  .card { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: .6rem; }
  .card img, .card video, .card canvas { width: 100%; border-radius: 4px; background: #eef0f4; }
  .card p { margin: .4rem 0 0; font-size: .9rem; }
  .filters a { margin-right: .8rem; } .filters a.on { font-weight: 700; }
  progress { width: 100%; max-width: 24rem; }
  textarea { width: 100%; max-width: 36rem; font: inherit; }
  #preview { width: 128px; image-rendering: pixelated; }
</style>"""


def _media(project: dict[str, Any]) -> str:
    url = escape(project["url"] or "")
    if not project["url"]:
        return ""
    if project["type"] == "video":
        poster = escape(project["thumbnail"] or "")
        return (
            f'<video controls muted loop preload="metadata" poster="{poster}" src="{url}"></video>'
        )
    if project["type"] == "3d":
        return f'<canvas class="glb" width="320" height="240" data-src="{url}"></canvas>'
    return f'<img src="{url}" alt="{escape(project["prompt"] or "")}">'


_EMPTY = (
    '<p class="muted" id="empty">Nothing yet: try the <a href="/playground">playground</a>.</p>'
)


@router.get("/projects")
async def projects_page(
    request: Request,
    state: StateDep,
    type: ProjectType = "all",
    page: int = Query(1, ge=1, le=1_000_000),
) -> Response:
    signed = await _signed_in(request, state)
    if signed is None:
        return RedirectResponse("/login", status_code=303)
    account_id = signed.account.id
    assert account_id is not None

    def load(session: Session) -> tuple[list[Generation], int, dict[str, list[Asset]]]:
        rows, total = generations.list_projects(
            session,
            account_id=account_id,
            kind=PROJECT_TYPES.get(type),
            page=page,
            limit=PAGE_SIZE,
            descending=True,
        )
        return rows, total, generations.assets_of(session, [g.id for g in rows])

    rows, total, assets = await state.db(load)
    projects = [project_view(state, g, assets.get(g.id, [])) for g in rows]
    pages_count = math.ceil(total / PAGE_SIZE) if total else 0
    filters = " ".join(
        f'<a href="/projects?type={t}" class="{"on" if t == type else ""}">{t}</a>'
        for t in ("all", *PROJECT_TYPES)
    )
    cards = "".join(
        f'<div class="card project" data-type="{escape(p["type"])}">{_media(p)}'
        f"<p>{escape(p['prompt'] or '')}</p>"
        f'<p class="muted">{escape(p["type"])} · {escape(p["created_at"] or "")}</p></div>'
        for p in projects
    )
    paging = []
    if page > 1:
        paging.append(f'<a id="newer" href="/projects?type={type}&amp;page={page - 1}">Newer</a>')
    if page < pages_count:
        paging.append(f'<a id="older" href="/projects?type={type}&amp;page={page + 1}">Older</a>')
    plural = "s" if total != 1 else ""
    body = f"""<section>
<h1>Projects</h1>
<p class="filters">{filters}</p>
<p class="muted" id="count">{total} project{plural} · page {page} of {max(pages_count, 1)}</p>
<div class="grid">{cards or _EMPTY}</div>
<p>{" ".join(paging)}</p>
</section>"""
    nonce = _nonce()
    script = f'<script nonce="{nonce}">{_GLB_VIEWER}</script>'
    return _page("Projects", body, nonce, signed, script)


@router.get("/playground")
async def playground_page(request: Request, state: StateDep) -> Response:
    signed = await _signed_in(request, state)
    if signed is None:
        return RedirectResponse("/login", status_code=303)
    body = f"""<section>
<h1>Playground</h1>
<form id="make">
<label for="kind">Kind</label>
<select id="kind" name="kind"><option value="images">Image</option>
<option value="videos">Video</option><option value="3d">3D model from an image</option></select>
<p id="prompt-field"><label for="prompt">Prompt</label>
<textarea id="prompt" name="prompt" rows="3" maxlength="4000"></textarea></p>
<p id="image-field" hidden><label for="image">Image (PNG, JPEG or WebP)</label>
<input id="image" name="image" type="file" accept="image/png,image/jpeg,image/webp"></p>
<p><button type="submit" id="go">Generate</button></p>
</form>
<div id="run" hidden>
<p id="status" class="muted"></p>
<progress id="bar" max="1" value="0"></progress>
<p><img id="preview" alt="live preview" hidden></p>
</div>
<div id="result"></div>
<p id="points" class="muted">Points left: {signed.account.points}</p>
</section>"""
    nonce = _nonce()
    script = f'<script nonce="{nonce}">var CSRF = {json.dumps(signed.csrf)};{_PLAYGROUND}</script>'
    return _page("Playground", body, nonce, signed, script)


async def _session_caller(request: Request, state: BridgeState) -> Caller:
    """The session's account as a caller, through its newest key (counted as the API counts)."""
    signed = await _signed_in(request, state)
    if signed is None:
        raise ApiError(401, "invalid_api_key", "Log in first.")
    if not same_origin(request, state.settings) or not tokens_match(
        signed.csrf, request.headers.get(CSRF_HEADER)
    ):
        raise ApiError(403, "forbidden", "This request did not come from a genserve page.")
    account = signed.account
    assert account.id is not None

    def newest_key(session: Session) -> ApiKey | None:
        query = (
            select(ApiKey)
            .where(ApiKey.account_id == account.id, col(ApiKey.revoked_at).is_(None))
            .order_by(col(ApiKey.id).desc())
        )
        return session.exec(query).first()

    key = await state.db(newest_key)
    if key is None or key.id is None:
        raise ApiError(401, "invalid_api_key", "Create an API key in Settings → API Keys first.")
    try:
        window = await state.ratelimits.hit_key(key.id, PLANS.get(account.plan, PLANS["free"]))
    except RateLimiterUnavailable as exc:
        raise limiter_unavailable(state) from exc
    if not window.allowed:
        retry = window.retry_after()
        raise ApiError(
            429,
            "rate_limited",
            f"Your key has used its {window.limit} requests for this hour; retry in {retry} s.",
            headers={"Retry-After": str(retry)},
        )
    return Caller(account_id=account.id, key_id=key.id, plan=account.plan)


async def _generate(
    request: Request, state: BridgeState, unit: GenerationKind[Any], body: GenerationBody
) -> Response:
    caller = await _session_caller(request, state)
    return await respond(request, state, caller, unit, body)


@router.post("/web/api/images")
async def web_images(body: ImageRequest, request: Request, state: StateDep) -> Response:
    return await _generate(request, state, IMAGE, body)


@router.post("/web/api/videos")
async def web_videos(body: VideoRequest, request: Request, state: StateDep) -> Response:
    return await _generate(request, state, VIDEO, body)


@router.post("/web/api/3d")
async def web_3d(body: MeshRequest, request: Request, state: StateDep) -> Response:
    return await _generate(request, state, THREE_D, body)


_PLAYGROUND = r"""
(function () {
  var form = document.getElementById("make");
  function $(id) { return document.getElementById(id); }
  function show(name, data) {
    if (name === "queued") {
      $("status").textContent = data.position > 0
        ? "In the queue: " + data.position + " ahead" : "In the queue: next";
    } else if (name === "progress") {
      $("status").textContent = data.stage + " " + data.step + " / " + data.total;
      if (data.stage === "denoising" && data.total) {
        $("bar").max = data.total; $("bar").value = data.step;
      }
    } else if (name === "preview") {
      $("preview").src = data.data_url; $("preview").hidden = false;
    } else if (name === "completed") {
      $("status").textContent = "Done";
      $("bar").value = $("bar").max;
      $("result").innerHTML = "";
      (data.images || []).forEach(function (f) {
        var img = document.createElement("img");
        img.src = f.url; img.className = "output"; $("result").appendChild(img);
      });
      if (data.video) {
        var video = document.createElement("video");
        video.src = data.video.url; video.className = "output"; video.controls = true;
        $("result").appendChild(video);
      }
      if (data.model) {
        var link = document.createElement("a");
        link.href = data.model.url; link.textContent = data.model.file_name;
        var shot = document.createElement("img");
        shot.src = data.model.preview_image; shot.className = "output";
        $("result").appendChild(shot); $("result").appendChild(link);
      }
      if (data.remaining_points !== undefined) {
        $("points").textContent = "Points left: " + data.remaining_points;
      }
    } else if (name === "failed" || name === "error") {
      $("status").textContent = "Failed: " + (data.error || data.message || "unknown error");
      $("status").className = "error";
    }
  }
  function parse(block) {
    var name = "message", lines = [];
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) { name = line.slice(6).trim(); }
      else if (line.indexOf("data:") === 0) { lines.push(line.slice(5).trim()); }
    });
    if (lines.length) { show(name, JSON.parse(lines.join("\n"))); }
  }
  $("kind").addEventListener("change", function () {
    var mesh = $("kind").value === "3d";
    $("prompt-field").hidden = mesh; $("image-field").hidden = !mesh;
  });
  function readImage() {
    return new Promise(function (resolve, reject) {
      var file = $("image").files[0];
      if (!file) { reject(new Error("Choose an image first.")); return; }
      var reader = new FileReader();
      reader.onload = function () { resolve(reader.result); };
      reader.onerror = function () { reject(reader.error); };
      reader.readAsDataURL(file);
    });
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var kind = $("kind").value;
    if (kind === "3d") {
      readImage().then(function (dataUrl) { send(kind, {image_base64: dataUrl}); })
        .catch(function (err) { show("failed", {message: String(err.message || err)}); });
      return;
    }
    var body = {prompt: $("prompt").value, preview: 1};
    if (kind === "videos") { body.duration = 1; body.resolution = "360p"; }
    send(kind, body);
  });
  function send(kind, body) {
    $("run").hidden = false; $("preview").hidden = true; $("result").innerHTML = "";
    $("status").className = "muted"; $("status").textContent = "Sending";
    $("bar").value = 0;
    fetch("/web/api/" + kind, {
      method: "POST",
      headers: {"Content-Type": "application/json", "Accept": "text/event-stream",
                "X-CSRF-Token": CSRF},
      body: JSON.stringify(body),
      credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) {
        return response.json().then(function (e) { show("failed", e.error || e); });
      }
      var reader = response.body.getReader(), decoder = new TextDecoder(), buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) { return; }
          buffer += decoder.decode(chunk.value, {stream: true});
          var parts = buffer.split("\n\n");
          buffer = parts.pop();
          parts.forEach(parse);
          return pump();
        });
      }
      return pump();
    }).catch(function (err) { show("failed", {message: String(err)}); });
  }
})();
"""

# A small GLB viewer (no library): the first primitive's positions, vertex colours and
# indices, drawn with WebGL and turned about the vertical axis.
_GLB_VIEWER = r"""
(function () {
  function view(canvas, buffer) {
    var dv = new DataView(buffer);
    if (dv.getUint32(0, true) !== 0x46546C67) { return; }
    var jsonLen = dv.getUint32(12, true);
    var gltf = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 20, jsonLen)));
    var binStart = 20 + jsonLen + 8;
    function access(i) {
      var a = gltf.accessors[i], v = gltf.bufferViews[a.bufferView];
      var off = binStart + (v.byteOffset || 0) + (a.byteOffset || 0);
      var n = a.count * ({SCALAR: 1, VEC3: 3, VEC4: 4}[a.type]);
      var T = {5126: Float32Array, 5125: Uint32Array, 5123: Uint16Array,
               5121: Uint8Array}[a.componentType];
      var out = new T(n);
      out.set(new T(buffer.slice(off, off + n * T.BYTES_PER_ELEMENT)));
      return {data: out, size: n / a.count, normalized: a.componentType !== 5126,
              min: a.min, max: a.max, type: a.componentType};
    }
    var prim = gltf.meshes[0].primitives[0];
    var pos = access(prim.attributes.POSITION);
    var col = prim.attributes.COLOR_0 !== undefined ? access(prim.attributes.COLOR_0) : null;
    var idx = prim.indices !== undefined ? access(prim.indices) : null;
    var gl = canvas.getContext("webgl");
    if (!gl) { return; }
    if (idx && idx.type === 5125) { gl.getExtension("OES_element_index_uint"); }
    var min = pos.min || [-1, -1, -1], max = pos.max || [1, 1, 1];
    var centre = [0, 1, 2].map(function (k) { return (min[k] + max[k]) / 2; });
    var scale = 1.6 / Math.max(max[0] - min[0], max[1] - min[1], max[2] - min[2], 1e-6);
    function shader(type, src) {
      var s = gl.createShader(type); gl.shaderSource(s, src); gl.compileShader(s); return s;
    }
    var prog = gl.createProgram();
    gl.attachShader(prog, shader(gl.VERTEX_SHADER,
      "attribute vec3 p; attribute vec4 c; uniform float a; uniform vec3 m; uniform float s;" +
      "uniform float r; varying vec4 v; void main() { vec3 q = (p - m) * s;" +
      "float x = q.x * cos(a) + q.z * sin(a); float z = -q.x * sin(a) + q.z * cos(a);" +
      "gl_Position = vec4(x / r, q.y, z * 0.5, 1.0); v = c; }"));
    gl.attachShader(prog, shader(gl.FRAGMENT_SHADER,
      "precision mediump float; varying vec4 v; void main() { gl_FragColor = vec4(v.rgb, 1.0); }"));
    gl.linkProgram(prog); gl.useProgram(prog);
    function attrib(name, acc, size, fallback) {
      var loc = gl.getAttribLocation(prog, name);
      if (!acc) { gl.disableVertexAttribArray(loc); gl.vertexAttrib4fv(loc, fallback); return; }
      var b = gl.createBuffer(); gl.bindBuffer(gl.ARRAY_BUFFER, b);
      gl.bufferData(gl.ARRAY_BUFFER, acc.data, gl.STATIC_DRAW);
      gl.enableVertexAttribArray(loc);
      var glType = {5126: gl.FLOAT, 5123: gl.UNSIGNED_SHORT, 5121: gl.UNSIGNED_BYTE}[acc.type];
      gl.vertexAttribPointer(loc, size, glType, acc.normalized, 0, 0);
    }
    attrib("p", pos, 3);
    attrib("c", col, col ? col.size : 4, [0.7, 0.72, 0.78, 1]);
    if (idx) {
      var ib = gl.createBuffer(); gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, ib);
      gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, idx.data, gl.STATIC_DRAW);
    }
    gl.uniform3fv(gl.getUniformLocation(prog, "m"), centre);
    gl.uniform1f(gl.getUniformLocation(prog, "s"), scale);
    gl.uniform1f(gl.getUniformLocation(prog, "r"), canvas.width / canvas.height);
    gl.enable(gl.DEPTH_TEST);
    var angle = gl.getUniformLocation(prog, "a");
    function frame(t) {
      gl.viewport(0, 0, canvas.width, canvas.height);
      gl.clearColor(0.93, 0.94, 0.96, 1); gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      gl.uniform1f(angle, t / 1000);
      if (idx) {
        gl.drawElements(gl.TRIANGLES, idx.data.length,
          idx.type === 5125 ? gl.UNSIGNED_INT
            : (idx.type === 5123 ? gl.UNSIGNED_SHORT : gl.UNSIGNED_BYTE), 0);
      } else { gl.drawArrays(gl.TRIANGLES, 0, pos.data.length / 3); }
      canvas.dataset.frames = String(Number(canvas.dataset.frames || 0) + 1);
      requestAnimationFrame(frame);
    }
    requestAnimationFrame(frame);
  }
  document.querySelectorAll("canvas.glb").forEach(function (canvas) {
    fetch(canvas.dataset.src, {credentials: "same-origin"})
      .then(function (r) { return r.arrayBuffer(); })
      .then(function (b) { view(canvas, b); canvas.dataset.loaded = "1"; })
      .catch(function () { canvas.dataset.loaded = "error"; });
  });
})();
"""
