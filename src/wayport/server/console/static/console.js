// Wayport console: small, hand-written, no dependencies. Data comes from /console/api/…
// (authenticated by the HttpOnly cookie); everything is written with textContent, never as HTML.
"use strict";

const page = document.body.dataset.page;
const arg = document.body.dataset.arg || "";

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

async function api(path) {
  const response = await fetch("/console/api/" + path, { credentials: "same-origin" });
  if (response.status === 401) {
    location.href = "/console/login";
    throw new Error("signed out");
  }
  const body = await response.json();
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function when(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString();
}

function every(ms, fn) {
  const tick = () => fn().catch((e) => console.warn(e)).finally(() => setTimeout(tick, ms));
  tick();
}

// ------------------------------------------------------------------ dashboard

function chart(svg, values, labels) {
  const width = 320, height = 110, pad = 18;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const max = Math.max(1e-9, ...values.filter((v) => v != null));
  const step = (width - pad) / Math.max(1, values.length - 1);
  const points = values
    .map((v, i) => `${(pad + i * step).toFixed(1)},${(height - pad - ((v || 0) / max) * (height - 2 * pad)).toFixed(1)}`)
    .join(" ");
  const ns = "http://www.w3.org/2000/svg";
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points);
  const top = document.createElementNS(ns, "text");
  top.setAttribute("x", "0");
  top.setAttribute("y", "10");
  top.textContent = String(+max.toPrecision(3));
  const first = document.createElementNS(ns, "text");
  first.setAttribute("x", String(pad));
  first.setAttribute("y", String(height - 2));
  first.textContent = labels[0] || "";
  const last = document.createElementNS(ns, "text");
  last.setAttribute("x", String(width - 48));
  last.setAttribute("y", String(height - 2));
  last.textContent = labels[labels.length - 1] || "";
  svg.replaceChildren(line, top, first, last);
  svg.dataset.total = String(values.reduce((a, v) => a + (v || 0), 0));
}

async function dashboard() {
  const [overview, recent] = await Promise.all([api("overview?minutes=60"), api("requests?limit=25")]);
  const s = overview.summary;
  const cards = [
    ["requests", s.requests], ["errors", s.errors], ["p95 ms", s.p95_ms ?? "–"],
    ["tokens in", s.tokens_in], ["tokens out", s.tokens_out], ["cost $", s.cost],
    ["task completion", s.completion_rate == null ? "–" : (100 * s.completion_rate).toFixed(1) + " %"],
    ["escalations", s.escalations],
  ];
  document.getElementById("totals").replaceChildren(
    ...cards.map(([k, v]) => el("div", { className: "card" }, el("div", { className: "v" }, v), el("div", { className: "k" }, k))),
  );
  const labels = overview.points.map((p) => when(p.t).slice(0, 5));
  for (const svg of document.querySelectorAll("svg.chart")) {
    const key = svg.dataset.series;
    const values = overview.points.map((p) => (key === "tokens" ? p.tokens_in + p.tokens_out : p[key]));
    chart(svg, values, labels);
  }
  fill(document.querySelector("#requests tbody"), recent.data.map((r) => {
    const trace = r.trace_id ? el("a", { href: "/console/traces/" + r.trace_id }, r.trace_id.slice(0, 8)) : "–";
    return el("tr", { className: "request" },
      el("td", {}, when(r.t)), el("td", {}, r.method + " " + r.route), el("td", {}, r.model || ""),
      el("td", { className: r.status >= 500 ? "bad" : "ok" }, r.status), el("td", {}, r.duration_ms),
      el("td", { className: "tokens-in" }, r.tokens_in), el("td", { className: "tokens-out" }, r.tokens_out),
      el("td", {}, trace));
  }));
}

// ------------------------------------------------------------------ chat

function chat() {
  const form = document.getElementById("chat-form");
  const log = document.getElementById("chat-log");
  const input = document.getElementById("chat-input");
  const status = document.getElementById("chat-status");
  const history = [];
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    history.push({ role: "user", content: text });
    log.append(el("div", { className: "msg user" }, text));
    const bubble = el("div", { className: "msg assistant" });
    const content = el("span", { className: "content" });
    bubble.append(content);
    log.append(bubble);
    status.textContent = "streaming…";
    document.getElementById("chat-send").disabled = true;
    try {
      const response = await fetch("/console/api/chat", {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-wayport-console": "1" },
        body: JSON.stringify({
          model: document.getElementById("chat-model").value, messages: history, stream: true,
          stream_options: { include_usage: true }, max_tokens: 256,
        }),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error((body.error && body.error.message) || response.statusText);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "", usage = null;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (!frame.startsWith("data: ")) continue;
          const data = frame.slice(6);
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          if (delta && delta.content) content.textContent += delta.content;
          if (chunk.usage) usage = chunk.usage;
        }
      }
      history.push({ role: "assistant", content: content.textContent });
      bubble.dataset.done = "1";
      if (usage) {
        bubble.append(el("span", { className: "meta" }, `${usage.prompt_tokens} in · ${usage.completion_tokens} out`));
      }
      status.textContent = "";
    } catch (error) {
      bubble.append(el("span", { className: "meta error" }, String(error.message || error)));
      bubble.dataset.done = "error";
      status.textContent = "";
    } finally {
      document.getElementById("chat-send").disabled = false;
    }
  });
}

// ------------------------------------------------------------------ agents, releases

async function agents() {
  const body = await api("agents");
  fill(document.querySelector("#agents tbody"), body.data.map((a) => el("tr", {},
    el("td", {}, a.name), el("td", {}, a.model), el("td", {}, el("code", {}, a.version)),
    el("td", {}, a.versions.join(", ")), el("td", {}, a.tools.join(", ") || "–"))));
}

async function releases() {
  const body = await api("releases");
  const rollouts = body.rollouts || [];
  document.getElementById("releases").replaceChildren(...body.data.map((a) => {
    const mine = rollouts.filter((r) => r.agent === a.name);
    return el("div", { className: "release", id: "release-" + a.name },
      el("h2", {}, a.name),
      el("p", {}, "live version ", el("code", { className: "live" }, a.version), " · model " + a.model),
      el("p", { className: "versions" }, "versions seen: ", a.versions.map((v) => v.slice(0, 12)).join(", ")),
      mine.length ? el("ul", { className: "rollouts" }, ...mine.map((r) => el("li", {},
        `${r.kind} ${r.phase}: ${(r.candidate || "").slice(0, 12)} answers ${r.weight} %` +
        (r.mirror ? `, mirrors ${r.mirror} %` : "") + ` (step ${r.step + 1})` + (r.reason ? ` · ${r.reason}` : ""))))
        : el("p", { className: "hint" }, "no rollout in progress"));
  }));
}

// ------------------------------------------------------------------ sessions

// Newest first, a page at a time: ?agent= filters, ?before= (the API's "next" cursor) pages on.
async function sessions() {
  const shown = new URLSearchParams(location.search);
  const agent = shown.get("agent") || "";
  const query = new URLSearchParams({ limit: "50" });
  if (agent) query.set("agent", agent);
  if (shown.get("before")) query.set("before", shown.get("before"));
  const select = document.getElementById("sessions-agent");
  if (agent && ![...select.options].some((o) => o.value === agent)) select.append(el("option", { value: agent }, agent));
  select.value = agent;
  const body = await api("sessions?" + query);
  const tbody = document.querySelector("#sessions tbody");
  fill(tbody, body.data.map((s) => {
    const row = el("tr", { className: "clickable" }, el("td", {}, el("code", {}, s.id)), el("td", {}, s.agent),
      el("td", {}, s.messages), el("td", {}, new Date(s.updated_at * 1000).toLocaleString()));
    row.addEventListener("click", () => transcript(s.id));
    return row;
  }));
  if (!body.data.length) fill(tbody, [el("tr", {}, el("td", { colSpan: 4, className: "hint" }, "No sessions here."))]);
  const base = agent ? "?" + new URLSearchParams({ agent }) : "";
  const newest = document.getElementById("sessions-newest");
  newest.href = "/console/sessions" + base;
  newest.hidden = !shown.get("before");
  const older = document.getElementById("sessions-older");
  older.hidden = !body.next;
  if (body.next) older.href = "/console/sessions?" + new URLSearchParams({ ...(agent ? { agent } : {}), before: body.next });
  if (arg) await transcript(arg);
}

async function transcript(id) {
  const s = await api("sessions/" + encodeURIComponent(id));
  const items = s.messages.map((m) => {
    const node = el("div", { className: "msg " + (m.role === "user" ? "user" : m.role === "tool" ? "tool" : "assistant") });
    if (m.content) node.append(typeof m.content === "string" ? m.content : JSON.stringify(m.content));
    for (const call of m.tool_calls || []) {
      node.append(el("span", { className: "meta" }, `→ ${call.function.name}(${call.function.arguments})`));
    }
    node.append(el("span", { className: "meta" }, `${m.role} #${m.seq}${m.run_id ? " · run " + m.run_id : ""}`));
    return node;
  });
  document.getElementById("transcript").replaceChildren(
    el("h2", {}, `Session ${s.id} · ${s.agent}`), el("div", { id: "chat-log" }, ...items));
}

// ------------------------------------------------------------------ traces

async function trace() {
  const body = await api("traces/" + encodeURIComponent(arg));
  const spans = body.spans;
  const start = Math.min(...spans.map((s) => s.start));
  const end = Math.max(...spans.map((s) => s.start + s.duration_ms / 1000));
  const total = Math.max(1e-6, end - start);
  const depth = {};
  for (const s of spans) depth[s.span_id] = s.parent_id in depth ? depth[s.parent_id] + 1 : 0;
  document.getElementById("trace").replaceChildren(el("h2", {}, "Trace " + body.trace_id), ...spans.map((s) => {
    const bar = el("div", { className: "span-bar" + (s.status === "error" ? " error" : "") });
    bar.style.marginLeft = (100 * (s.start - start) / total).toFixed(2) + "%";
    bar.style.width = Math.max(0.3, 100 * (s.duration_ms / 1000) / total).toFixed(2) + "%";
    const attrs = Object.entries(s.attributes).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join("  ");
    const name = el("span", { className: "span-name" }, s.name);
    name.style.paddingLeft = depth[s.span_id] + "em";
    return el("div", { className: "span-row" }, name, el("div", {}, bar), el("span", {}, s.duration_ms.toFixed(1) + " ms"),
      el("div", { className: "span-attrs" }, attrs));
  }));
}

// ------------------------------------------------------------------ usage, audit

async function usage() {
  const group = document.getElementById("usage-group");
  const load = async () => {
    const body = await api("usage?group_by=" + group.value);
    const tbody = document.querySelector("#usage tbody");
    if (!body.available) {
      fill(tbody, [el("tr", {}, el("td", { colSpan: 6, className: "hint" }, "The usage ledger is not available on this server yet."))]);
      return;
    }
    fill(tbody, body.data.map((t) => el("tr", {}, el("td", {}, t.group || "(none)"), el("td", {}, t.requests),
      el("td", {}, t.runs), el("td", {}, t.prompt_tokens), el("td", {}, t.completion_tokens), el("td", {}, t.cost.toFixed(4)))));
  };
  group.addEventListener("change", () => load());
  await load();
}

async function audit() {
  const body = await api("audit?limit=200");
  const tbody = document.querySelector("#audit tbody");
  if (!body.available) {
    fill(tbody, [el("tr", {}, el("td", { colSpan: 6, className: "hint" }, "The audit log is not available on this server yet."))]);
    return;
  }
  fill(tbody, body.data.map((e) => el("tr", {}, el("td", {}, e.seq), el("td", {}, when(e.at)), el("td", {}, e.actor),
    el("td", {}, e.action), el("td", {}, e.target || ""), el("td", {}, el("code", {}, JSON.stringify(e.details))))));
}

const pages = {
  dashboard: () => every(3000, dashboard),
  chat: () => chat(),
  agents: () => every(5000, agents),
  releases: () => every(1500, releases),
  sessions: () => sessions().catch((e) => console.warn(e)),
  trace: () => trace().catch((e) => console.warn(e)),
  usage: () => usage().catch((e) => console.warn(e)),
  audit: () => audit().catch((e) => console.warn(e)),
};
if (pages[page]) pages[page]();
