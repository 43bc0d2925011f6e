// mgcpswitch admin page: tables kept live from /api/events (server-sent
// events), with a full refresh every 15 s as a fallback, and buttons that
// call the JSON API.  Plain JavaScript, no framework, no build step.
"use strict";

(function () {
  const REFRESH_SECONDS = 15;

  const state = {
    gateways: new Map(),   // name -> gateway view
    endpoints: new Map(),  // name -> endpoint view
    calls: new Map(),      // call_id -> call view (without ladder)
    offset: 0,             // server clock minus ours, in seconds
    ladderCall: null,      // the call whose ladder is shown
  };

  const $ = (selector) => document.querySelector(selector);

  // -- talking to the API -------------------------------------------------

  async function api(method, path, body) {
    const options = { method: method, headers: { "Accept": "application/json" } };
    if (method === "POST") {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body || {});
    }
    // location.origin, not a relative URL: if the page was opened as
    // http://user:password@host/, fetch refuses URLs that carry credentials.
    const response = await fetch(location.origin + path, options);
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const reason = data && data.reason ? data.reason : response.status + " " + response.statusText;
      throw new Error(reason);
    }
    return data;
  }

  const quote = encodeURIComponent;

  function say(text, kind) {
    const message = $("#message");
    message.textContent = text;
    message.dataset.kind = kind || "ok";
    message.hidden = false;
  }

  // -- formatting ---------------------------------------------------------

  function serverNow() {
    return Date.now() / 1000 + state.offset;
  }

  function clockTime(seconds) {
    if (seconds === null || seconds === undefined) return "";
    return new Date(seconds * 1000).toLocaleTimeString();
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || seconds < 0) return "";
    seconds = Math.round(seconds);
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? h + ":" + two(m) + ":" + two(s) : m + ":" + two(s);
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "never";
    return duration(serverNow() - seconds) + " ago";
  }

  function callDuration(call) {
    const from = call.answered || call.started;
    const to = call.ended || serverNow();
    return duration(to - from);
  }

  // -- building tables ----------------------------------------------------

  // Keep one <tr> per key and change only the cells whose text changed,
  // so a row under the pointer is never replaced while it is clicked.
  function syncRows(table, items, keyOf, cellsOf, decorate) {
    const tbody = table.tBodies[0];
    const existing = new Map();
    for (const row of Array.from(tbody.rows)) existing.set(row.dataset.key, row);
    items.forEach((item, index) => {
      const key = keyOf(item);
      let row = existing.get(key);
      existing.delete(key);
      const cells = cellsOf(item);
      if (!row) {
        row = document.createElement("tr");
        row.dataset.key = key;
        cells.forEach(() => row.appendChild(document.createElement("td")));
      }
      cells.forEach((cell, i) => setCell(row.cells[i], cell));
      if (decorate) decorate(row, item);
      if (tbody.rows[index] !== row) tbody.insertBefore(row, tbody.rows[index] || null);
    });
    for (const row of existing.values()) row.remove();
  }

  // A cell is text, {text, cls, state}, or {button, action, title}.
  function setCell(td, cell) {
    if (cell === null || cell === undefined) cell = "";
    if (typeof cell !== "object") cell = { text: String(cell) };
    if (cell.button !== undefined) {
      let button = td.firstElementChild;
      if (!button || button.tagName !== "BUTTON") {
        td.textContent = "";
        button = document.createElement("button");
        button.type = "button";
        td.appendChild(button);
      }
      if (button.textContent !== cell.button) button.textContent = cell.button;
      button.dataset.action = cell.action;
      button.className = cell.cls || "";
      if (cell.title) button.title = cell.title;
      return;
    }
    if (td.textContent !== cell.text) td.textContent = cell.text;
    td.className = cell.cls || "";
    if (cell.state !== undefined) td.dataset.state = cell.state;
    if (cell.title !== undefined) td.title = cell.title;
  }

  function renderGateways() {
    const gateways = Array.from(state.gateways.values()).sort((a, b) => a.name.localeCompare(b.name));
    syncRows($("#gateways"), gateways, (g) => g.name, (g) => [
      g.name,
      { text: g.state, cls: "state", state: g.state },
      g.host ? g.host + ":" + g.port : "",
      { text: String(g.endpoints), cls: "number" },
      { text: String(g.active_calls), cls: "number" },
      g.last_rsip ? g.last_rsip + " (" + ago(g.last_rsip_at) + ")" : "",
      ago(g.last_seen),
      g.keepalive_interval + " s",
      Object.entries(g.counters || {}).map(([k, v]) => k + " " + v).join(", "),
      g.in_service
        ? { button: "Take out of service", action: "gateway-out" }
        : { button: "Back in service", action: "gateway-in" },
    ], (row, g) => {
      row.dataset.gateway = g.name;
      row.dataset.state = g.state;
    });
  }

  function renderEndpoints() {
    const endpoints = Array.from(state.endpoints.values()).sort((a, b) => a.name.localeCompare(b.name));
    syncRows($("#endpoints"), endpoints, (e) => e.name, (e) => [
      e.name,
      { text: e.state, cls: "state", state: e.state },
      e.hook,
      e.number || "",
      e.call_id || "",
      e.connections.map((c) => c.connection_id + " " + c.mode).join(", "),
      e.last_event || "",
      { button: "Audit", action: "audit" },
    ], (row, e) => {
      row.dataset.endpoint = e.name;
      row.dataset.state = e.state;
    });
    renderChoices();
  }

  // The originate selects: rebuilt only when the set of endpoints changes.
  function renderChoices() {
    const names = Array.from(state.endpoints.keys()).sort();
    for (const select of [$("#call-from"), $("#call-to")]) {
      const current = Array.from(select.options).map((o) => o.value);
      if (current.join("\n") === names.join("\n")) continue;
      const chosen = select.value;
      select.textContent = "";
      for (const name of names) {
        const option = document.createElement("option");
        option.value = name;
        const number = state.endpoints.get(name).number;
        option.textContent = number ? name + " (" + number + ")" : name;
        select.appendChild(option);
      }
      if (names.includes(chosen)) select.value = chosen;
    }
    const from = $("#call-from"), to = $("#call-to");
    if (from.value && from.value === to.value && names.length > 1) {
      to.value = names.find((n) => n !== from.value);
    }
  }

  function renderCalls() {
    const calls = Array.from(state.calls.values()).sort((a, b) => a.started - b.started);
    const active = calls.filter((c) => c.state !== "ended");
    const ended = calls.filter((c) => c.state === "ended").reverse();
    syncRows($("#calls"), active, (c) => c.call_id, (c) => [
      { button: c.call_id, action: "ladder", cls: "link", title: "show the MGCP ladder" },
      { text: c.state, cls: "state", state: c.state },
      c.caller,
      c.callee || "",
      c.dialled,
      clockTime(c.started),
      { text: callDuration(c), cls: "number duration" },
      c.codec || "",
      { button: "Hang up", action: "hangup" },
    ], (row, c) => {
      row.dataset.callId = c.call_id;
      row.dataset.state = c.state;
      row.classList.toggle("selected", c.call_id === state.ladderCall);
    });
    $("#calls-empty").hidden = active.length > 0;
    syncRows($("#recent-calls"), ended, (c) => c.call_id, (c) => [
      { button: c.call_id, action: "ladder", cls: "link", title: "show the MGCP ladder" },
      c.caller,
      c.callee || "",
      clockTime(c.started),
      { text: callDuration(c), cls: "number" },
      c.cause || "",
    ], (row, c) => {
      row.dataset.callId = c.call_id;
      row.dataset.state = c.state;
    });
  }

  function tickDurations() {
    for (const row of Array.from($("#calls").tBodies[0].rows)) {
      const call = state.calls.get(row.dataset.callId);
      const cell = row.querySelector("td.duration");
      if (call && cell) cell.textContent = callDuration(call);
    }
  }

  function renderStats(stats) {
    const counters = stats.transactions.counters || {};
    let sent = 0, received = 0;
    for (const [key, value] of Object.entries(counters)) {
      if (key.startsWith("commands_sent ")) sent += value;
      if (key.startsWith("commands_received ")) received += value;
    }
    $("#stats").textContent =
      "active calls " + stats.calls.active +
      " · endpoints " + stats.endpoints.registered + "/" + stats.endpoints.total +
      " · commands out " + sent + ", in " + received +
      " · retransmissions " + (counters.retransmissions || 0) +
      " · timeouts " + (counters.timeouts || 0);
  }

  // -- the ladder ---------------------------------------------------------

  async function showLadder(callId) {
    let call;
    try {
      call = await api("GET", "/api/calls/" + quote(callId));
    } catch (e) {
      say("cannot show call " + callId + ": " + e.message, "error");
      return;
    }
    state.ladderCall = callId;
    $("#ladder-section").hidden = false;
    $("#ladder-section").dataset.callId = callId;
    $("#ladder-title").textContent = "Call " + call.call_id;
    $("#ladder-summary").textContent =
      call.caller + " \u2192 " + (call.callee || "?") + " \u00b7 " + call.state +
      (call.cause ? " (" + call.cause + ")" : "") + (call.codec ? " \u00b7 " + call.codec : "");
    const tbody = $("#ladder").tBodies[0];
    tbody.textContent = "";
    for (const entry of call.ladder) {
      const row = document.createElement("tr");
      row.dataset.direction = entry.direction;
      const time = document.createElement("td");
      time.className = "number";
      time.textContent = "+" + (entry.time - call.started).toFixed(3) + " s";
      const agent = document.createElement("td");
      agent.textContent = "agent";
      const arrow = document.createElement("td");
      arrow.className = "arrow";
      arrow.textContent = entry.direction === "out" ? "\u2500\u2500\u2500\u2500\u25b6" : "\u25c0\u2500\u2500\u2500\u2500";
      const gateway = document.createElement("td");
      gateway.textContent = entry.gateway;
      const message = document.createElement("td");
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = entry.summary;
      const pre = document.createElement("pre");
      pre.textContent = entry.text;
      details.append(summary, pre);
      message.title = entry.text;
      message.appendChild(details);
      row.append(time, agent, arrow, gateway, message);
      tbody.appendChild(row);
    }
    renderCalls();
  }

  function hideLadder() {
    state.ladderCall = null;
    $("#ladder-section").hidden = true;
    renderCalls();
  }

  // -- actions ------------------------------------------------------------

  async function act(action, row) {
    try {
      if (action === "hangup") {
        const id = row.dataset.callId;
        await api("DELETE", "/api/calls/" + quote(id));
        say("call " + id + " hung up");
      } else if (action === "audit") {
        const name = row.dataset.endpoint;
        const view = await api("POST", "/api/endpoints/" + quote(name) + "/audit", {});
        state.endpoints.set(view.name, view);
        renderEndpoints();
        say(view.name + ": " + view.state + ", hook " + view.hook);
      } else if (action === "gateway-out" || action === "gateway-in") {
        const name = row.dataset.gateway;
        const inService = action === "gateway-in";
        const view = await api("POST", "/api/gateways/" + quote(name) + "/service", { in_service: inService });
        state.gateways.set(view.name, view);
        renderGateways();
        say(name + (inService ? " is back in service" : " is out of service"));
      } else if (action === "ladder") {
        await showLadder(row.dataset.callId);
      } else if (action === "ladder-close") {
        hideLadder();
      }
    } catch (e) {
      say(action + " failed: " + e.message, "error");
    }
  }

  async function originate(event) {
    event.preventDefault();
    const from = $("#call-from").value, to = $("#call-to").value;
    try {
      const answer = await api("POST", "/api/calls", { from: from, to: to });
      say("call " + answer.call_id + " started: " + from + " \u2192 " + to);
    } catch (e) {
      say("call failed: " + e.message, "error");
    }
  }

  // -- keeping up to date -------------------------------------------------

  async function refresh() {
    try {
      const [gateways, endpoints, calls, stats] = await Promise.all([
        api("GET", "/api/gateways"),
        api("GET", "/api/endpoints"),
        api("GET", "/api/calls"),
        api("GET", "/api/stats"),
      ]);
      state.offset = gateways.now - Date.now() / 1000;
      state.gateways = new Map(gateways.gateways.map((g) => [g.name, g]));
      state.endpoints = new Map(endpoints.endpoints.map((e) => [e.name, e]));
      state.calls = new Map(calls.calls.map((c) => [c.call_id, c]));
      renderGateways();
      renderEndpoints();
      renderCalls();
      renderStats(stats);
      document.body.dataset.loaded = "true";
    } catch (e) {
      say("cannot refresh: " + e.message, "error");
    }
  }

  function setStatus(text) {
    const status = $("#status");
    status.textContent = text;
    status.dataset.state = text;
  }

  function listen() {
    const source = new EventSource(location.origin + "/api/events");
    source.onopen = () => {
      setStatus("live");
      refresh();
    };
    source.onerror = () => setStatus("reconnecting");
    let countsTimer = null;
    const onCall = (message) => {
      const data = JSON.parse(message.data);
      state.calls.set(data.call.call_id, data.call);
      renderCalls();
      if (state.ladderCall === data.call.call_id) showLadder(data.call.call_id);
      // Call counts per gateway and in the header come with the full state:
      // refresh it soon after calls start or end (at most once a second).
      if (message.type !== "call-state-changed" && countsTimer === null) {
        countsTimer = setTimeout(() => { countsTimer = null; refresh(); }, 1000);
      }
    };
    for (const name of ["call-started", "call-state-changed", "call-ended"]) {
      source.addEventListener(name, onCall);
    }
    source.addEventListener("gateway-state-changed", (message) => {
      const data = JSON.parse(message.data);
      state.gateways.set(data.gateway.name, data.gateway);
      renderGateways();
    });
    source.addEventListener("endpoint-state-changed", (message) => {
      const data = JSON.parse(message.data);
      state.endpoints.set(data.endpoint.name, data.endpoint);
      renderEndpoints();
    });
    source.addEventListener("resync", refresh);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) {
      act(button.dataset.action, button.closest("tr") || button);
      return;
    }
    const row = event.target.closest("#calls tbody tr");
    if (row && !event.target.closest("details")) showLadder(row.dataset.callId);
  });

  document.addEventListener("DOMContentLoaded", () => {
    $("#originate").addEventListener("submit", originate);
    refresh();
    listen();
    setInterval(refresh, REFRESH_SECONDS * 1000);
    setInterval(tickDurations, 1000);
  });
})();
