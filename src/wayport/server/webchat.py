"""The web chat page: one small HTML document with its script inline, no build step.

The page makes a random client id (kept in the browser's local storage, so a reload keeps the
conversation), posts each message with its own id (a retried post is stored once), and reads
replies from the event stream with ``fetch`` (which, unlike ``EventSource``, can send the API
key). Text is inserted as text, never as HTML.
"""

from __future__ import annotations

import html

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:0;display:flex;flex-direction:column;height:100vh}
header{padding:.6em 1em;background:#223;color:#fff}
#log{flex:1;overflow:auto;padding:1em}
.m{max-width:75%;margin:.3em 0;padding:.5em .8em;border-radius:.8em;white-space:pre-wrap}
.me{margin-left:auto;background:#dbe8ff}.bot{background:#eee}
#typing{color:#888;padding:0 1em;height:1.2em}
form{display:flex;gap:.5em;padding:.6em}input{flex:1;padding:.5em}
</style></head><body>
<header>__TITLE__</header>
<div id="log" aria-live="polite"></div><div id="typing"></div>
<form id="f"><input id="t" autocomplete="off" placeholder="Message" aria-label="Message">
<button>Send</button></form>
<script>
const base = "__BASE__";
let client = localStorage.getItem("wayport-client-" + base);
if (!client) {
  client = Array.from(crypto.getRandomValues(new Uint8Array(16)),
    b => b.toString(16).padStart(2, "0")).join("");
  localStorage.setItem("wayport-client-" + base, client);
}
let key = sessionStorage.getItem("wayport-key");
const log = document.getElementById("log"), typing = document.getElementById("typing");
function headers() {
  const h = {"content-type": "application/json"};
  if (key) h["authorization"] = "Bearer " + key;
  return h;
}
function show(text, who, id) {
  let el = id && document.querySelector('[data-id="' + CSS.escape(id) + '"]');
  if (!el) {
    el = document.createElement("div");
    el.className = "m " + who;
    if (id) el.dataset.id = id;
    log.appendChild(el);
  }
  el.textContent = text;
  log.scrollTop = log.scrollHeight;
}
function askKey(status) {
  if (status !== 401) return false;
  key = prompt("API key");
  if (key) sessionStorage.setItem("wayport-key", key);
  return !!key;
}
async function listen() {
  for (;;) {
    try {
      const r = await fetch(base + "events?client=" + client, {headers: headers()});
      if (!r.ok) { if (!askKey(r.status)) await new Promise(s => setTimeout(s, 3000)); continue; }
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\\n\\n")) >= 0) {
          const line = buf.slice(0, cut); buf = buf.slice(cut + 2);
          if (!line.startsWith("data: ")) continue;
          const e = JSON.parse(line.slice(6));
          if (e.type === "typing") typing.textContent = "…";
          if (e.type === "message" || e.type === "edit") {
            typing.textContent = "";
            show(e.text, "bot", e.id);
          }
        }
      }
    } catch (err) { await new Promise(s => setTimeout(s, 3000)); }
  }
}
document.getElementById("f").addEventListener("submit", async ev => {
  ev.preventDefault();
  const input = document.getElementById("t"), text = input.value.trim();
  if (!text) return;
  input.value = "";
  show(text, "me");
  const body = JSON.stringify({client, text, id: crypto.randomUUID()});
  for (let i = 0; i < 3; i++) {
    const r = await fetch(base + "messages", {method: "POST", headers: headers(), body});
    if (r.ok || !askKey(r.status)) break;
  }
});
listen();
</script></body></html>
"""


def page(channel: str, title: str) -> bytes:
    """The page for the web chat channel ``channel``."""
    base = f"/channels/{channel}/"
    return (
        _PAGE.replace("__TITLE__", html.escape(title))
        .replace("__BASE__", html.escape(base, quote=True))
        .encode()
    )
