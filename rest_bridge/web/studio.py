"""The signed-in pages that show and make work: ``/projects`` and ``/playground``.

Both are clients of the public API and have no routes of their own besides the pages:
their scripts call ``/api/v1`` (``GET /api/v1/projects``, ``GET /api/v1/models``, and
``POST /api/v1/{images,videos,3d}``) with the session cookie and the session's CSRF token
in ``X-CSRF-Token``, which ``rest_bridge.callers.keys.authenticate`` takes as the
account's credential: the same points, hourly limit, brake, errors and 429 as a key. A
generation's answer is the API's event stream, read with ``fetch`` (an ``EventSource``
cannot POST).

The kinds come from ``genserve.vocabulary.PROJECT_TYPES`` and the bridge's kind units
(``rest_bridge.generation.kinds``): the playground's kind options, the route each posts
to (``/api/v1/{project type}``) and whether it takes a prompt, an input image and live
previews are read from the unit's request model; a model's values (its durations,
resolutions) from ``GET /api/v1/models``. Results and gallery cards are drawn from each
file's ``content_type`` (image, video, or a GLB for the viewer), not from the kind.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from genserve.vocabulary import PROJECT_TYPES, ProjectType
from rest_bridge.callers.keys import StateDep
from rest_bridge.callers.sessions import CSRF_HEADER
from rest_bridge.generation.kinds import KINDS
from rest_bridge.web import pages
from rest_bridge.web.routes import SignedIn, _nonce, _signed_in

router = APIRouter(tags=["web"], include_in_schema=False)

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
    return pages.menu(signed.account.email or "", signed.csrf)


def _page(
    title: str, body: str, signed: SignedIn, settings: dict[str, Any], *scripts: str
) -> HTMLResponse:
    """The page, its script given the session's CSRF token and ``settings`` as ``PAGE``."""
    nonce = _nonce()
    plural = {kind: project_type for project_type, kind in PROJECT_TYPES.items()}
    values = {"csrf": signed.csrf, "csrfHeader": CSRF_HEADER, "plural": plural, **settings}
    # json.dumps escapes no "</script>": "<" is written as \u003c so a value cannot close it.
    data = json.dumps(values).replace("<", "\\u003c")
    script = f'<script nonce="{nonce}">var PAGE = {data};{_API}{"".join(scripts)}</script>'
    content = pages.layout(
        title, _STYLE.replace("$nonce", nonce) + body, nonce, _nav(signed), script
    )
    return HTMLResponse(content, headers=_headers(nonce))


_STYLE = """<style nonce="$nonce">
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); gap: 1rem; }
  .card { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: .6rem; }
  .card img, .card video, .card canvas { width: 100%; border-radius: 4px; background: #eef0f4; }
  .card p { margin: .4rem 0 0; font-size: .9rem; }
  .card { cursor: pointer; }
  dialog { max-width: min(90vw, 64rem); border: 1px solid #dde1e8; border-radius: 8px; }
  dialog img, dialog video, dialog canvas { max-width: 100%; max-height: 70vh; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
  dt { font-weight: 600; } dd { margin: 0; }
  #params label { display: inline-block; min-width: 10rem; }
  #recent { display: flex; gap: .5rem; overflow-x: auto; }
  #recent img, #recent video { height: 96px; border-radius: 4px; }
  .output { max-width: 100%; }
  #mask-canvas { border: 1px dashed #b9c0cc; max-width: 100%; touch-action: none; }
  .filters a { margin-right: .8rem; } .filters a.on { font-weight: 700; }
  progress { width: 100%; max-width: 24rem; }
  textarea { width: 100%; max-width: 36rem; font: inherit; }
  #preview { width: 256px; image-rendering: pixelated; }
</style>"""


@router.get("/projects")
async def projects_page(
    request: Request,
    state: StateDep,
    type: ProjectType = "all",
    page: int = Query(1, ge=1, le=1_000_000),
) -> Response:
    """The gallery's frame; its script fills it from ``GET /api/v1/projects``."""
    signed = await _signed_in(request, state)
    if signed is None:
        return RedirectResponse("/login", status_code=303)
    filters = " ".join(
        f'<a href="/projects?type={t}" class="{"on" if t == type else ""}">{t}</a>'
        for t in ("all", *PROJECT_TYPES)
    )
    body = f"""<section>
<h1>Projects</h1>
<p class="filters">{filters}</p>
<p class="muted" id="count">Loading…</p>
<div class="grid" id="grid"></div>
<p id="empty" class="muted" hidden>Nothing yet: try the <a href="/playground">playground</a>.</p>
<p id="paging"></p>
</section>
<dialog id="view">
<div id="view-media"></div>
<p id="view-prompt"></p>
<dl id="view-params"></dl>
<p><a id="view-download" download>Download</a> &nbsp;
<a id="view-reuse">Use these settings</a> &nbsp;
<button type="button" class="danger" id="view-delete">Delete</button> &nbsp;
<button type="button" class="secondary" id="view-close">Close</button></p>
</dialog>"""
    settings = {"type": type, "page": page, "pageSize": PAGE_SIZE}
    return _page("Projects", body, signed, settings, _GLB_VIEWER, _GALLERY)


def _kind_forms() -> list[dict[str, Any]]:
    """Each kind the playground offers: its route and what its request model takes."""
    forms = []
    for project_type, kind in PROJECT_TYPES.items():
        unit = KINDS.get(kind)
        if unit is None:
            continue
        fields = unit.body.model_fields
        forms.append(
            {
                "value": project_type,
                "kind": kind,
                "path": f"/api/v1/{project_type}",
                "prompt": "prompt" in fields,
                "image": "image_base64" in fields,
                "preview": "preview" in fields,
            }
        )
    return forms


def _label(form: dict[str, Any]) -> str:
    return form["kind"] + (" from an image" if form["image"] and not form["prompt"] else "")


@router.get("/playground")
async def playground_page(request: Request, state: StateDep) -> Response:
    signed = await _signed_in(request, state)
    if signed is None:
        return RedirectResponse("/login", status_code=303)
    forms = _kind_forms()
    options = "".join(
        f'<option value="{escape(f["value"])}">{escape(_label(f))}</option>' for f in forms
    )
    body = f"""<section>
<h1>Playground</h1>
<form id="make">
<label for="kind">Kind</label>
<select id="kind" name="kind">{options}</select>
<label for="model">Model</label>
<select id="model" name="model"></select>
<p id="prompt-field"><label for="prompt">Prompt</label>
<textarea id="prompt" name="prompt" rows="3" maxlength="4000"></textarea></p>
<p id="image-field" hidden><label for="image">Image (PNG, JPEG or WebP)</label>
<input id="image" name="image" type="file" accept="image/png,image/jpeg,image/webp"></p>
<p id="mask-field" hidden><label for="mask">Mask (white: repaint; or paint it below)</label>
<input id="mask" name="mask" type="file" accept="image/png,image/jpeg,image/webp"><br>
<canvas id="mask-canvas" width="256" height="256"></canvas></p>
<div id="params"></div>
<p><button type="submit" id="go">Generate</button></p>
</form>
<div id="run" hidden>
<p id="status" class="muted"></p>
<progress id="bar" max="1" value="0"></progress>
<p><img id="preview" alt="live preview" hidden></p>
</div>
<div id="result"></div>
<p id="points" class="muted">Points left: {signed.account.points}</p>
</section>
<section><h2>Recent</h2><div id="recent"></div></section>"""
    return _page("Playground", body, signed, {"kinds": forms}, _GLB_VIEWER, _PLAYGROUND)


# What both pages share: ``api`` (a call to /api/v1 with the session's CSRF token) and
# ``media`` (an element for one output file, chosen by its content type).
_API = r"""
function api(path, options) {
  options = options || {};
  var headers = options.headers || {};
  headers[PAGE.csrfHeader] = PAGE.csrf;
  if (!headers["Accept"]) { headers["Accept"] = "application/json"; }
  options.headers = headers;
  options.credentials = "same-origin";
  return fetch(path, options);
}
function media(file, options) {
  options = options || {};
  var type = String(file.content_type || ""), el;
  if (type.indexOf("image/") === 0) {
    el = document.createElement("img"); el.src = file.url; el.alt = options.alt || "";
  } else if (type.indexOf("video/") === 0) {
    el = document.createElement("video"); el.src = file.url; el.controls = true;
    el.muted = true; el.loop = true; el.preload = "metadata";
    if (options.poster) { el.poster = options.poster; }
  } else if (type === "model/gltf-binary" && options.viewer) {
    el = document.createElement("canvas"); el.className = "glb";
    el.width = 320; el.height = 240; el.dataset.src = file.url;
  } else {
    el = document.createElement("a"); el.href = file.url;
    el.textContent = file.file_name || file.url;
  }
  if (options.className) { el.classList.add(options.className); }
  return el;
}
"""

_GALLERY = r"""
(function () {
  function $(id) { return document.getElementById(id); }
  var query = "type=" + encodeURIComponent(PAGE.type) + "&page=" + PAGE.page +
    "&limit=" + PAGE.pageSize;
  function link(id, page, text) {
    var a = document.createElement("a");
    a.id = id; a.textContent = text;
    a.href = "/projects?type=" + encodeURIComponent(PAGE.type) + "&page=" + page;
    $("paging").appendChild(a); $("paging").appendChild(document.createTextNode(" "));
  }
  function card(p) {
    var div = document.createElement("div");
    div.className = "card project"; div.dataset.type = p.type;
    var first = (p.outputs || [])[0];
    if (first) {
      var el = media(first, {poster: p.poster || p.thumbnail, alt: p.prompt || "", viewer: true});
      div.appendChild(el);
      if (el.tagName === "CANVAS") { window.loadGlb(el); }
    }
    var prompt = document.createElement("p"); prompt.textContent = p.prompt || "";
    var about = document.createElement("p"); about.className = "muted";
    about.textContent = p.type + " · " + (p.created_at || "");
    div.appendChild(prompt); div.appendChild(about);
    div.addEventListener("click", function () { openView(p, div); });
    return div;
  }
  var PLURAL = PAGE.plural;  // kind -> its route and project type (PROJECT_TYPES)
  function openView(p, div) {
    var first = (p.outputs || [])[0];
    $("view-media").innerHTML = "";
    if (first) {
      var el = media(first, {poster: p.poster || p.thumbnail, alt: p.prompt || "", viewer: true});
      if (el.tagName === "CANVAS") { el.width = 640; el.height = 480; }
      $("view-media").appendChild(el);
      if (el.tagName === "CANVAS") { window.loadGlb(el); }
      $("view-download").href = first.url;
      $("view-download").setAttribute("download", first.file_name || "");
    }
    $("view-prompt").textContent = p.prompt || "";
    var params = Object.assign({model: p.model}, p.metadata || {}, p.parameters || {});
    $("view-params").innerHTML = "";
    Object.keys(params).forEach(function (k) {
      var v = params[k];
      if (v === null || v === undefined || typeof v === "object") { return; }
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k; dd.textContent = String(v);
      $("view-params").appendChild(dt); $("view-params").appendChild(dd);
    });
    var reuse = new URLSearchParams({kind: PLURAL[p.type] || p.type, prompt: p.prompt || ""});
    var made = Object.assign({}, p.parameters || {}, {model: p.model});
    Object.keys(made).forEach(function (k) {  // unset stays unset; lists travel as JSON
      var v = made[k];
      if (v === null || v === undefined) { return; }
      reuse.set(k, typeof v === "object" ? JSON.stringify(v) : String(v));
    });
    $("view-reuse").href = "/playground?" + reuse.toString();
    $("view-delete").onclick = function () {
      api("/api/v1/projects/" + encodeURIComponent(p.id), {method: "DELETE"}).then(function (r) {
        if (r.ok) { div.remove(); $("view").close(); $("count").textContent = "Deleted."; }
        else { $("view-prompt").textContent = "Could not delete it."; }
      });
    };
    $("view").showModal();
  }
  $("view-close").addEventListener("click", function () { $("view").close(); });
  api("/api/v1/projects?" + query).then(function (r) {
    return r.json().then(function (body) { return {ok: r.ok, body: body}; });
  }).then(function (answer) {
    if (!answer.ok) {
      $("count").textContent = "Could not load the projects: " + answer.body.error;
      $("count").className = "error";
      return;
    }
    var data = answer.body.data, pages = data.pagination.pages, total = data.pagination.total;
    $("count").textContent = total + " project" + (total !== 1 ? "s" : "") + " · page " +
      data.pagination.page + " of " + Math.max(pages, 1);
    data.projects.forEach(function (p) { $("grid").appendChild(card(p)); });
    $("empty").hidden = data.projects.length > 0;
    if (PAGE.page > 1) { link("newer", PAGE.page - 1, "Newer"); }
    if (PAGE.page < pages) { link("older", PAGE.page + 1, "Older"); }
    document.body.dataset.loaded = "1";
  }).catch(function (err) { $("count").textContent = "Could not load the projects: " + err; });
})();
"""

_PLAYGROUND = r"""
(function () {
  var form = document.getElementById("make");
  function $(id) { return document.getElementById(id); }
  function kindOf(value) {
    return PAGE.kinds.filter(function (k) { return k.value === value; })[0];
  }
  var models = api("/api/v1/models").then(function (r) {
    return r.ok ? r.json().then(function (b) { return b.data.models; }) : [];
  }).catch(function () { return []; });
  function fillModels() {
    var kind = kindOf($("kind").value);
    return models.then(function (list) {
      $("model").innerHTML = "";
      list.filter(function (m) { return m.kind === kind.kind; }).forEach(function (m) {
        var option = document.createElement("option");
        option.value = m.name; option.textContent = m.name; option.selected = m["default"];
        $("model").appendChild(option);
      });
      return list;
    });
  }
  function files(data) {
    var found = [];
    Object.keys(data).forEach(function (name) {
      [].concat(data[name]).forEach(function (v) {
        if (v && typeof v === "object" && v.url && v.content_type) { found.push(v); }
      });
    });
    return found;
  }
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
      $("preview").hidden = true;  // the full-size result replaces the live preview
      $("result").innerHTML = "";
      files(data).forEach(function (f) {
        if (f.preview_image) {
          $("result").appendChild(media({url: f.preview_image, content_type: "image/png"},
                                        {className: "output"}));
        }
        var shown = media(f, {className: "output", alt: $("prompt").value, viewer: true,
                              poster: f.thumbnail});
        if (shown.tagName === "CANVAS") { shown.width = 640; shown.height = 480; }
        $("result").appendChild(shown);
        if (shown.tagName === "CANVAS" && window.loadGlb) { window.loadGlb(shown); }
        var get = document.createElement("a");
        get.href = f.url; get.textContent = "Download " + (f.file_name || "");
        get.setAttribute("download", f.file_name || ""); get.className = "download";
        var line = document.createElement("p"); line.appendChild(get);
        $("result").appendChild(line);
      });
      recent();
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
  var spec = fetch("/openapi.json", {credentials: "same-origin"}).then(function (r) {
    return r.json();
  }).catch(function () { return null; });
  // Fields the page draws itself; every other property of the kind's request body is drawn
  // from its OpenAPI schema, with the values and bounds the chosen model advertises.
  var OWN = {prompt: 1, image_base64: 1, image_url: 1, preview: 1, model: 1, webhook_url: 1,
             mask: 1, mask_base64: 1, mask_url: 1};
  var asked = new URLSearchParams(window.location.search);
  function resolve(doc, s) {
    while (s && s.$ref) { s = doc.components.schemas[s.$ref.split("/").pop()]; }
    if (s && s.anyOf) {
      var real = s.anyOf.filter(function (x) { return x.type !== "null"; });
      if (real.length === 1) {
        return Object.assign({}, resolve(doc, real[0]), {"default": s["default"],
                                                          description: s.description});
      }
    }
    return s || {};
  }
  function bodyOf(doc, path) {
    var op = doc && doc.paths[path] && doc.paths[path].post;
    if (!op || !op.requestBody) { return null; }
    return resolve(doc, op.requestBody.content["application/json"].schema);
  }
  function advertised(model, name) {
    if (!model) { return null; }
    var v = model[name + "s"] !== undefined ? model[name + "s"] : model[name];
    if (v === undefined && name.slice(-1) === "y") { v = model[name.slice(0, -1) + "ies"]; }
    return v === undefined ? null : v;
  }
  function field(name, prop, model) {
    var wrap = document.createElement("p"), label = document.createElement("label");
    var offered = advertised(model, name);
    var scalars = Array.isArray(offered) && offered.every(function (v) {
      return v === null || typeof v !== "object";
    });
    var values = scalars ? offered : prop["enum"];
    var bounds = offered, input;
    label.htmlFor = "param-" + name; label.textContent = name.replace(/_/g, " ");
    if (prop.description) { label.title = prop.description; }
    if (values && values.length) {
      input = document.createElement("select");
      values.forEach(function (v) {
        var o = document.createElement("option"); o.value = String(v); o.textContent = String(v);
        o.selected = v === prop["default"]; input.appendChild(o);
      });
    } else if (prop.type === "boolean") {
      input = document.createElement("input"); input.type = "checkbox";
      input.checked = prop["default"] === true;
    } else if (prop.type === "integer" || prop.type === "number") {
      input = document.createElement("input"); input.type = "number";
      input.step = prop.type === "integer" ? "1" : "any";
      var min = bounds && bounds.min !== undefined ? bounds.min : prop.minimum;
      var max = bounds && bounds.max !== undefined ? bounds.max : prop.maximum;
      if (min !== undefined) { input.min = min; }
      if (max !== undefined) { input.max = max; }
      if (prop["default"] !== undefined && prop["default"] !== null) {
        input.value = prop["default"];
      }
    } else if (prop.type === "array") {
      input = document.createElement("input"); input.type = "text";
      input.placeholder = "JSON list"; input.dataset.json = "1";
      if (Array.isArray(offered) && offered.length && offered[0] && offered[0].name) {
        input.placeholder = JSON.stringify([{name: offered[0].name}]);  // e.g. an adapter
      }
    } else {
      input = document.createElement("input"); input.type = "text";
      if (prop.maxLength) { input.maxLength = prop.maxLength; }
      if (prop["default"]) { input.value = prop["default"]; }
    }
    input.id = "param-" + name; input.name = name; input.className = "param";
    input.dataset.kind = prop.type || "string";
    if (asked.has(name)) {
      if (input.type === "checkbox") { input.checked = asked.get(name) === "true"; }
      else { input.value = asked.get(name); }
    }
    wrap.appendChild(label); wrap.appendChild(input);
    if (name === "seed") {
      var dice = document.createElement("button");
      dice.type = "button"; dice.id = "dice"; dice.className = "secondary";
      dice.textContent = "\u{1F3B2}"; dice.title = "a random seed";
      dice.addEventListener("click", function () {
        input.value = String(Math.floor(Math.random() * 2147483647));
      });
      wrap.appendChild(document.createTextNode(" ")); wrap.appendChild(dice);
    }
    return wrap;
  }
  function drawParams() {
    var kind = kindOf($("kind").value);
    return Promise.all([spec, models]).then(function (got) {
      var body = bodyOf(got[0], kind.path), props = (body && body.properties) || {};
      var model = got[1].filter(function (m) { return m.name === $("model").value; })[0];
      $("params").innerHTML = "";
      Object.keys(props).forEach(function (name) {
        if (OWN[name]) { return; }
        $("params").appendChild(field(name, resolve(got[0], props[name]), model));
      });
      $("mask-field").hidden = !(props.mask || props.mask_base64);
      $("image-field").hidden = !(kind.image || props.image_base64);
      document.body.dataset.params = "1";
    });
  }
  function shape() {
    var kind = kindOf($("kind").value);
    $("prompt-field").hidden = !kind.prompt; $("image-field").hidden = !kind.image;
    return fillModels().then(drawParams);
  }
  $("kind").addEventListener("change", shape);
  $("model").addEventListener("change", drawParams);
  if (asked.has("kind") && kindOf(asked.get("kind"))) { $("kind").value = asked.get("kind"); }
  if (asked.has("prompt")) { $("prompt").value = asked.get("prompt"); }
  shape().then(function () {
    if (asked.has("model")) { $("model").value = asked.get("model"); return drawParams(); }
  });
  // The mask: a file, or painted with the brush over a blank (black: keep) canvas.
  (function () {
    var canvas = $("mask-canvas"), ctx = canvas.getContext("2d"), down = false;
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    function at(e) {
      var r = canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * canvas.width / r.width,
              (e.clientY - r.top) * canvas.height / r.height];
    }
    var last = null;
    canvas.addEventListener("pointerdown", function (e) { down = true; last = null; paint(e); });
    canvas.addEventListener("pointermove", function (e) { if (down) { paint(e); } });
    window.addEventListener("pointerup", function () { down = false; last = null; });
    function paint(e) {  // a round line from the last point: a quick stroke has no gaps
      var p = at(e);
      ctx.fillStyle = ctx.strokeStyle = "#fff"; ctx.lineWidth = 24; ctx.lineCap = "round";
      ctx.beginPath();
      if (last) { ctx.moveTo(last[0], last[1]); ctx.lineTo(p[0], p[1]); ctx.stroke(); }
      else { ctx.arc(p[0], p[1], 12, 0, 2 * Math.PI); ctx.fill(); }
      last = p; canvas.dataset.painted = "1";
    }
  })();
  function readMask() {
    var file = $("mask").files[0];
    if (file) {
      return new Promise(function (resolve) {
        var reader = new FileReader();
        reader.onload = function () { resolve(reader.result); };
        reader.readAsDataURL(file);
      });
    }
    return Promise.resolve($("mask-canvas").dataset.painted ? $("mask-canvas").toDataURL()
                                                           : null);
  }
  function paramValues(body) {
    Array.prototype.forEach.call(document.querySelectorAll("#params .param"), function (el) {
      if (el.type === "checkbox") { body[el.name] = el.checked; return; }
      if (el.value === "") { return; }
      if (el.dataset.json) { body[el.name] = JSON.parse(el.value); return; }
      var k = el.dataset.kind;
      body[el.name] = (k === "integer" || k === "number") ? Number(el.value) : el.value;
    });
  }
  function recent() {
    api("/api/v1/projects?limit=8").then(function (r) { return r.json(); }).then(function (b) {
      $("recent").innerHTML = "";
      (b.data.projects || []).forEach(function (p) {
        var a = document.createElement("a"); a.href = "/projects"; a.className = "recent";
        var thumb = p.thumbnail || p.url;
        if (thumb) {
          var img = document.createElement("img"); img.src = thumb; img.alt = p.prompt || "";
          a.appendChild(img);
        }
        $("recent").appendChild(a);
      });
    }).catch(function () {});
  }
  recent();
  function readImage(required) {
    return new Promise(function (resolve, reject) {
      var file = $("image").files[0];
      if (!file) {
        if (required) { reject(new Error("Choose an image first.")); } else { resolve(null); }
        return;
      }
      var reader = new FileReader();
      reader.onload = function () { resolve(reader.result); };
      reader.onerror = function () { reject(reader.error); };
      reader.readAsDataURL(file);
    });
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var kind = kindOf($("kind").value), body = {};
    var image = kind.image ? readImage(!kind.prompt) : Promise.resolve(null);
    var mask = $("mask-field").hidden ? Promise.resolve(null) : readMask();
    Promise.all([image, models, mask]).then(function (got) {
      if (got[0]) { body.image_base64 = got[0]; }
      if (got[2]) { body.mask_base64 = got[2]; }
      if (kind.prompt) { body.prompt = $("prompt").value; }
      if (kind.preview) { body.preview = 1; }
      if ($("model").value) { body.model = $("model").value; }
      paramValues(body);
      send(kind.path, body);
    }).catch(function (err) { show("failed", {message: String(err.message || err)}); });
  });
  function send(path, body) {
    $("run").hidden = false; $("preview").hidden = true; $("result").innerHTML = "";
    $("status").className = "muted"; $("status").textContent = "Sending";
    $("bar").value = 0;
    api(path, {
      method: "POST",
      headers: {"Content-Type": "application/json", "Accept": "text/event-stream"},
      body: JSON.stringify(body)
    }).then(function (response) {
      if (!response.ok) {
        return response.json().then(function (e) { show("failed", e); });
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
# indices, drawn with WebGL and turned about the vertical axis. ``loadGlb(canvas)`` fetches
# ``canvas.dataset.src`` and starts it.
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
      var n = a.count * ({SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4}[a.type]);
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
    var uv = prim.attributes.TEXCOORD_0 !== undefined ? access(prim.attributes.TEXCOORD_0) : null;
    var material = (gltf.materials || [])[prim.material] || {};
    var baseTex = (material.pbrMetallicRoughness || {}).baseColorTexture;
    var picture = null;
    if (uv && baseTex && gltf.textures && gltf.images) {
      var img = gltf.images[gltf.textures[baseTex.index].source];
      if (img && img.bufferView !== undefined) {
        var bv = gltf.bufferViews[img.bufferView], start = binStart + (bv.byteOffset || 0);
        picture = new Blob([buffer.slice(start, start + bv.byteLength)],
                           {type: img.mimeType || "image/png"});
      }
    }
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
    // Turned by a (about the vertical axis) and b (tilt); lit by one light from the
    // upper front, with each face's normal from screen-space derivatives (flat shading).
    gl.attachShader(prog, shader(gl.VERTEX_SHADER,
      "attribute vec3 p; attribute vec4 c; attribute vec2 t; uniform float a; uniform float b;" +
      "uniform vec3 m; uniform float s; uniform float r; varying vec4 v; varying vec3 w;" +
      "varying vec2 u; void main() { vec3 q = (p - m) * s; u = t;" +
      "float x = q.x * cos(a) + q.z * sin(a); float z = -q.x * sin(a) + q.z * cos(a);" +
      "float y = q.y * cos(b) - z * sin(b); z = q.y * sin(b) + z * cos(b);" +
      "w = vec3(x, y, z); gl_Position = vec4(x / r, y, z * 0.5, 1.0); v = c; }"));
    var lit = !!gl.getExtension("OES_standard_derivatives");
    canvas.dataset.lit = lit ? "1" : "0";
    gl.attachShader(prog, shader(gl.FRAGMENT_SHADER, lit
      ? "#extension GL_OES_standard_derivatives : enable\n" +
        "precision mediump float; varying vec4 v; varying vec3 w; varying vec2 u;" +
        "uniform sampler2D x; uniform float k; void main() {" +
        "vec3 base = k > 0.5 ? texture2D(x, u).rgb : v.rgb;" +
        "vec3 n = normalize(cross(dFdx(w), dFdy(w)));" +
        "float l = 0.3 + 0.7 * max(dot(n, normalize(vec3(0.4, 0.6, -0.7))), 0.0)" +
        " + 0.15 * abs(n.z); gl_FragColor = vec4(base * l, 1.0); }"
      : "precision mediump float; varying vec4 v; varying vec3 w; varying vec2 u;" +
        "uniform sampler2D x; uniform float k; void main() {" +
        "gl_FragColor = vec4(k > 0.5 ? texture2D(x, u).rgb : v.rgb, 1.0); }"));
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
    attrib("t", uv, 2, [0, 0, 0, 0]);
    var textured = gl.getUniformLocation(prog, "k");
    gl.uniform1f(textured, 0);
    if (picture && window.createImageBitmap) {
      createImageBitmap(picture).then(function (bitmap) {
        var tex = gl.createTexture();
        gl.bindTexture(gl.TEXTURE_2D, tex);
        gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
        gl.uniform1i(gl.getUniformLocation(prog, "x"), 0);
        gl.uniform1f(textured, 1);
        canvas.dataset.textured = "1";
      }).catch(function () { canvas.dataset.textured = "error"; });
    }
    if (idx) {
      var ib = gl.createBuffer(); gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, ib);
      gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, idx.data, gl.STATIC_DRAW);
    }
    gl.uniform3fv(gl.getUniformLocation(prog, "m"), centre);
    gl.uniform1f(gl.getUniformLocation(prog, "s"), scale);
    gl.uniform1f(gl.getUniformLocation(prog, "r"), canvas.width / canvas.height);
    gl.enable(gl.DEPTH_TEST);
    var angle = gl.getUniformLocation(prog, "a"), tilt = gl.getUniformLocation(prog, "b");
    // Mouse and touch turn it (pointer events); left alone it turns by itself.
    var yaw = 0, pitch = 0.3, drag = null, last = 0;
    canvas.style.touchAction = "none";
    canvas.addEventListener("pointerdown", function (e) {
      drag = [e.clientX, e.clientY]; moved = 0; canvas.setPointerCapture(e.pointerId);
      canvas.dataset.turned = "1";
    });
    var moved = 0;
    canvas.addEventListener("pointermove", function (e) {
      if (!drag) { return; }
      moved += Math.abs(e.clientX - drag[0]) + Math.abs(e.clientY - drag[1]);
      yaw += (e.clientX - drag[0]) / 100; pitch += (e.clientY - drag[1]) / 100;
      pitch = Math.max(-1.5, Math.min(1.5, pitch)); drag = [e.clientX, e.clientY];
    });
    canvas.addEventListener("pointerup", function () { drag = null; });
    canvas.addEventListener("pointercancel", function () { drag = null; });
    // a drag turns the model; only a click without one opens the card's view
    canvas.addEventListener("click", function (e) { if (moved > 4) { e.stopPropagation(); } });
    function frame(t) {
      gl.viewport(0, 0, canvas.width, canvas.height);
      gl.clearColor(0.93, 0.94, 0.96, 1); gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      if (!drag && !canvas.dataset.turned) { yaw += (t - (last || t)) / 1000; }
      last = t;
      gl.uniform1f(angle, yaw); gl.uniform1f(tilt, pitch);
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
  window.loadGlb = function (canvas) {
    fetch(canvas.dataset.src, {credentials: "same-origin"})
      .then(function (r) { return r.arrayBuffer(); })
      .then(function (b) { view(canvas, b); canvas.dataset.loaded = "1"; })
      .catch(function () { canvas.dataset.loaded = "error"; });
  };
})();
"""
