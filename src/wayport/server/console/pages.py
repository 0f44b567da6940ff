"""The console's HTML: one layout, a page body each. The server renders the frame and what it
knows without I/O (the signed-in tenant and role, the model list); the page's script fills in
the data from ``/console/api/…`` with ``textContent`` only, so nothing a user or a model wrote
is ever parsed as HTML."""

from __future__ import annotations

from html import escape

from wayport.core.identity import Principal

CHARTS = (
    ("requests", "Requests / min"),
    ("errors", "Errors / min"),
    ("p95_ms", "p95 latency (ms)"),
    ("tokens", "Tokens / min"),
    ("cost", "Cost / min ($)"),
)
NAV = (
    ("dashboard", "/console", "Dashboard"),
    ("chat", "/console/chat", "Chat"),
    ("agents", "/console/agents", "Agents"),
    ("releases", "/console/releases", "Releases"),
    ("sessions", "/console/sessions", "Sessions"),
    ("usage", "/console/usage", "Usage"),
    ("audit", "/console/audit", "Audit log"),
    ("workflows", "/console/workflows", "Workflows"),  # workflows: server/console_workflows.py
)

_BODIES = {
    "dashboard": """
<section class="cards" id="totals"></section>
<section class="charts">{charts}
</section>
<h2>Recent requests</h2>
<table id="requests"><thead><tr><th>time</th><th>route</th><th>model</th><th>status</th>
<th>ms</th><th>tokens in</th><th>tokens out</th><th>trace</th></tr></thead><tbody></tbody></table>
""",
    "chat": """
<form id="chat-form" autocomplete="off">
  <label>Model or agent <select id="chat-model" name="model">{models}</select></label>
  <div id="chat-log" aria-live="polite"></div>
  <textarea id="chat-input" name="message" rows="3" placeholder="Say something…"
   required></textarea>
  <button type="submit" id="chat-send">Send</button>
  <span id="chat-status"></span>
</form>
""",
    "agents": """
<table id="agents"><thead><tr><th>agent</th><th>model</th><th>version</th><th>versions seen</th>
<th>tools</th></tr></thead><tbody></tbody></table>
""",
    "releases": """
<p class="hint">Each agent's live version and every version this server has run. Rollouts
(canary, blue-green, A/B) appear here with their progress as they happen; this page updates
by itself.</p>
<div id="releases"></div>
""",
    "sessions": """
<form id="sessions-filter" method="get" action="/console/sessions">
  <label>Agent <select id="sessions-agent" name="agent"><option value="">all agents</option>
  {agents}</select></label>
  <button type="submit">Show</button>
</form>
<table id="sessions"><thead><tr><th>session</th><th>agent</th><th>messages</th><th>updated</th>
</tr></thead><tbody></tbody></table>
<nav class="pager"><a id="sessions-newest" href="/console/sessions" hidden>← newest</a>
<a id="sessions-older" href="/console/sessions" hidden>older →</a></nav>
<section id="transcript"></section>
""",
    "trace": """
<p><a href="/console">← dashboard</a></p>
<div id="trace"></div>
""",
    "usage": """
<p><label>Group by <select id="usage-group"><option>key</option><option>agent</option>
<option>model</option><option>user</option></select></label></p>
<table id="usage"><thead><tr><th>group</th><th>requests</th><th>runs</th><th>tokens in</th>
<th>tokens out</th><th>cost ($)</th></tr></thead><tbody></tbody></table>
""",
    "workflows": "{html}",  # workflows: rendered by server/console_workflows.py
    "audit": """
<table id="audit"><thead><tr><th>#</th><th>time</th><th>actor</th><th>action</th><th>target</th>
<th>details</th></tr></thead><tbody></tbody></table>
""",
}


def page(
    name: str,
    principal: Principal,
    *,
    models: list[str],
    agents: list[str],
    arg: str = "",
    html: str = "",
) -> bytes:
    """The whole HTML document of the page ``name``; ``html``: the (escaped) body of a page
    rendered on the server."""
    links = "".join(
        f'<a href="{href}"{" class=current" if key == name else ""}>{label}</a>'
        for key, href, label in NAV
    )
    options = "".join(
        f'<option value="{escape(m)}">{escape(m)}</option>'
        for m in [*(f"agent/{a}" for a in agents), *models]
    )
    agent_options = "".join(f'<option value="{escape(a)}">{escape(a)}</option>' for a in agents)
    charts = "".join(
        f'<figure><figcaption>{label}</figcaption><svg class="chart" data-series="{key}"></svg>'
        "</figure>"
        for key, label in CHARTS
    )
    body = _BODIES[name].replace("{models}", options).replace("{charts}", charts)
    body = body.replace("{agents}", agent_options)
    body = body.replace("{html}", html)  # last: nothing in it is read as a placeholder
    title = dict((k, label) for k, _, label in NAV).get(name, "Trace")
    who = f"{principal.tenant} · {principal.role.label}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Wayport console</title>
<link rel="stylesheet" href="/console/static/console.css">
<link rel="icon" href="data:,">
<script src="/console/static/console.js" defer></script>
</head>
<body data-page="{escape(name)}" data-arg="{escape(arg)}">
<header><strong>Wayport</strong><nav>{links}</nav>
<span class="who">{escape(who)}</span>
<form method="post" action="/console/logout"><button type="submit">Sign out</button></form>
</header>
<main><h1>{escape(title)}</h1>{body}</main>
</body></html>""".encode()


def login_page(*, error: str | None = None, auth_enabled: bool = True) -> bytes:
    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    hint = (
        "Sign in with an API key."
        if auth_enabled
        else "This server has no API key configured (loopback only): any word signs you in."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Wayport console</title>
<link rel="stylesheet" href="/console/static/console.css">
<link rel="icon" href="data:,">
</head>
<body data-page="login"><main class="login"><h1>Wayport console</h1>
<p>{hint}</p>{message}
<form method="post" action="/console/login">
<label>API key <input type="password" name="key" id="key" autocomplete="current-password"
required></label>
<button type="submit" id="sign-in">Sign in</button>
</form></main></body></html>""".encode()
