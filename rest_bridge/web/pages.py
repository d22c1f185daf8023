"""HTML of the pages: ``string.Template`` with every value escaped on the way in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from string import Template

from storage.models import aware

_LAYOUT = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title · genserve</title>
<style nonce="$nonce">
  body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
  header { background: #1d2330; color: #fff; padding: .8rem 1.5rem; display: flex;
           justify-content: space-between; align-items: center; }
  header a, header button { color: #fff; }
  main { max-width: 60rem; margin: 2rem auto; padding: 0 1.5rem; }
  section { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 1.2rem 1.5rem;
            margin-bottom: 1.5rem; }
  label { display: block; margin: .6rem 0 .2rem; font-weight: 600; }
  input[type=email], input[type=password], input[type=text] { width: 100%; max-width: 24rem;
            padding: .45rem; border: 1px solid #b9c0cc; border-radius: 4px; font: inherit; }
  button { font: inherit; padding: .4rem .9rem; border-radius: 4px; border: 1px solid #1d2330;
           background: #1d2330; color: #fff; cursor: pointer; }
  button.secondary { background: #fff; color: #1d2330; }
  button.danger { background: #fff; color: #b3261e; border-color: #b3261e; }
  header button { background: transparent; border-color: #fff; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .45rem .5rem; border-bottom: 1px solid #e6e9ef; }
  code { font-family: ui-monospace, monospace; }
  .error { color: #b3261e; font-weight: 600; }
  .notice { background: #fff8e1; border: 1px solid #f0c36d; border-radius: 6px; padding: 1rem; }
  .new-key { font-size: 1.05rem; background: #fff; padding: .3rem .5rem; border-radius: 4px;
             border: 1px solid #dde1e8; word-break: break-all; }
  .facts { display: flex; gap: 2.5rem; flex-wrap: wrap; }
  .facts div strong { display: block; font-size: 1.4rem; }
  .muted { color: #5b6475; }
  form.inline { display: inline; margin: 0; }
</style>
</head>
<body>
<header><strong>genserve</strong><span>$nav</span></header>
<main>
$body
</main>
$script
</body>
</html>
""")

_COPY_SCRIPT = Template("""<script nonce="$nonce">
(function () {
  var button = document.getElementById("copy-key");
  if (!button) { return; }
  button.addEventListener("click", function () {
    var key = document.getElementById("new-key").textContent;
    function copied() { button.textContent = "Copied"; }
    function fallback() {
      var range = document.createRange();
      range.selectNodeContents(document.getElementById("new-key"));
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (document.execCommand("copy")) { copied(); }
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(key).then(copied, fallback);
    } else {
      fallback();
    }
  });
})();
</script>""")


def menu(email: str, csrf: str) -> str:
    """The one menu of every signed-in page: Projects, Playground, API keys, who, log out."""
    hidden = f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
    return (
        '<nav id="menu"><a href="/projects">Projects</a> &nbsp; '
        '<a href="/playground">Playground</a> &nbsp; '
        '<a href="/settings/api-keys">API keys</a> &nbsp; '
        f"{escape(email)} &nbsp; "
        f'<form class="inline" method="post" action="/logout">{hidden}'
        '<button type="submit" id="logout">Log out</button></form></nav>'
    )


def layout(title: str, body: str, nonce: str, nav: str = "", script: str = "") -> str:
    return _LAYOUT.substitute(title=escape(title), body=body, nonce=nonce, nav=nav, script=script)


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>' if message else ""


def credentials_page(
    *,
    mode: str,
    csrf: str,
    nonce: str,
    email: str = "",
    error: str | None = None,
    signup_open: bool = True,
) -> str:
    """The sign-up or the log-in form (``mode`` is ``signup`` or ``login``)."""
    signup = mode == "signup"
    title = "Create your account" if signup else "Log in"
    other = (
        '<p class="muted">Already have an account? <a href="/login">Log in</a>.</p>'
        if signup
        else '<p class="muted">New here? <a href="/signup">Create an account</a>.</p>'
        if signup_open
        else ""
    )
    autocomplete = "new-password" if signup else "current-password"
    hint = '<p class="muted">At least 8 characters.</p>' if signup else ""
    body = f"""<section>
<h1>{title}</h1>
{_error(error)}
<form method="post" action="/{mode}">
<input type="hidden" name="csrf" value="{escape(csrf)}">
<label for="email">Email</label>
<input id="email" name="email" type="email" required maxlength="320" autocomplete="email"
 value="{escape(email)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" required minlength="8" maxlength="1024"
 autocomplete="{autocomplete}">
{hint}
<p><button type="submit" id="submit">{"Sign up" if signup else "Log in"}</button></p>
</form>
{other}
</section>"""
    return layout(title, body, nonce)


@dataclass
class KeyRow:
    id: int
    name: str
    prefix: str
    last_four: str
    created_at: datetime
    last_used_at: datetime | None
    used: int | None  # this hour's requests; None when the counter store is unreachable
    limit: int


def _when(value: datetime | None) -> str:
    if value is None:
        return '<span class="muted">Never</span>'
    at = aware(value)
    return f'<time datetime="{at.isoformat()}">{at.strftime("%Y-%m-%d %H:%M")} UTC</time>'


def keys_page(
    *,
    email: str,
    plan: str,
    points: int,
    hourly_limit: int,
    keys: list[KeyRow],
    csrf: str,
    nonce: str,
    webhook_secret: str = "",
    new_key: tuple[str, str] | None = None,
    error: str | None = None,
    max_keys: int | None = None,
) -> str:
    """Settings → API Keys; ``new_key`` (name, plaintext) is shown on this response only."""
    hidden = f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
    nav = menu(email, csrf)
    created = ""
    if new_key is not None:
        name, plaintext = new_key
        created = f"""<div class="notice" id="new-key-panel">
<p><strong>Your new key “{escape(name)}”.</strong> Copy it now: it won't be shown again.</p>
<p><code class="new-key" id="new-key">{escape(plaintext)}</code>
<button type="button" class="secondary" id="copy-key">Copy</button></p>
</div>"""
    rows = []
    for k in keys:
        usage = f"{k.used} / {k.limit}" if k.used is not None else "unavailable"
        rows.append(
            f"""<tr data-key-id="{k.id}">
<td class="key-name">{escape(k.name)}</td>
<td><code class="key-mask">{escape(k.prefix)}…{escape(k.last_four)}</code></td>
<td>{_when(k.created_at)}</td>
<td class="key-last-used">{_when(k.last_used_at)}</td>
<td class="key-usage">{usage}</td>
<td><form class="inline" method="post" action="/settings/api-keys/{k.id}/revoke">{hidden}
<button type="submit" class="danger revoke">Revoke</button></form></td>
</tr>"""
        )
    table = (
        """<table id="keys"><thead><tr><th>Name</th><th>Key</th><th>Created</th>
<th>Last used</th><th>This hour</th><th></th></tr></thead><tbody>"""
        + "".join(rows)
        + "</tbody></table>"
        if rows
        else '<p class="muted" id="no-keys">No API keys yet.</p>'
    )
    cap = (
        f' An account holds at most <span id="max-keys">{max_keys}</span> live keys.'
        if max_keys is not None
        else ""
    )
    body = f"""<h1>Settings</h1>
<section>
<h2>Account</h2>
<div class="facts">
<div>Plan<strong id="plan">{escape(plan.capitalize())}</strong></div>
<div>Points<strong id="points">{points}</strong></div>
<div>Requests per hour, per key<strong id="hourly-limit">{hourly_limit}</strong></div>
</div>
</section>
<section>
<h2>API Keys</h2>
<p class="muted">Send a key as <code>Authorization: Bearer &lt;key&gt;</code>.
Revoking a key ends it at once.{cap}</p>
{_error(error)}
{created}
<form method="post" action="/settings/api-keys">
{hidden}
<label for="key-name">Name <span class="muted">(optional)</span></label>
<input id="key-name" name="name" type="text" maxlength="100">
<p><button type="submit" id="create-key">Create New Key</button></p>
</form>
{table}
</section>
<section>
<h2>Webhooks</h2>
<p class="muted">Deliveries to a generation's <code>webhook_url</code> carry
<code>X-Genserve-Signature: t=&lt;unix&gt;,v1=&lt;hex&gt;</code>: HMAC-SHA256 of
<code>t.</code> followed by the body, under this secret.</p>
<p>Signing secret <code id="webhook-secret">{escape(webhook_secret)}</code></p>
</section>"""
    script = _COPY_SCRIPT.substitute(nonce=nonce) if new_key is not None else ""
    return layout("API Keys", body, nonce, nav=nav, script=script)


def message_page(*, title: str, message: str, nonce: str, link: tuple[str, str]) -> str:
    href, text = link
    body = f"""<section><h1>{escape(title)}</h1><p>{escape(message)}</p>
<p><a href="{escape(href)}">{escape(text)}</a></p></section>"""
    return layout(title, body, nonce)
