// mgcpswitch admin page: drawn from the state the server embedded in it
// (before the first paint: the script is render-blocking), then kept live
// from /api/events (server-sent events), with a full refresh every 15 s as
// a fallback; buttons call the JSON API; a small chart plots the stream's
// "stats" samples.  Plain JavaScript, no framework, no build step.
"use strict";

(function () {
  const REFRESH_SECONDS = 15;
  const CHART_SAMPLES = 61;  // one a second: the last minute

  const { $, api, embedded, say, clockTime, duration, quote } = window.mgcpswitch;

  const state = {
    gateways: new Map(),   // name -> gateway view
    endpoints: new Map(),  // name -> endpoint view
    calls: new Map(),      // call_id -> call view (without ladder)
    offset: 0,             // server clock minus ours, in seconds
    samples: [],           // the event stream's stats samples, oldest first
  };

  // -- formatting ---------------------------------------------------------

  function serverNow() {
    return Date.now() / 1000 + state.offset;
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

  // A cell is text, {text, cls, state}, {button, action, title} or {link, href, title}.
  function setCell(td, cell) {
    if (cell === null || cell === undefined) cell = "";
    if (typeof cell !== "object") cell = { text: String(cell) };
    if (cell.link !== undefined) {
      let link = td.firstElementChild;
      if (!link || link.tagName !== "A") {
        td.textContent = "";
        link = document.createElement("a");
        td.appendChild(link);
      }
      if (link.textContent !== cell.link) link.textContent = cell.link;
      if (link.getAttribute("href") !== cell.href) link.setAttribute("href", cell.href);
      if (cell.title) link.title = cell.title;
      return;
    }
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
    const page = (c) => ({ link: c.call_id, href: "/calls/" + quote(c.call_id), title: "the call's MGCP flow" });
    syncRows($("#calls"), active, (c) => c.call_id, (c) => [
      page(c),
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
    });
    $("#calls-empty").hidden = active.length > 0;
    syncRows($("#recent-calls"), ended, (c) => c.call_id, (c) => [
      page(c),
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

  // -- the live chart -------------------------------------------------------

  // Each sample: {now, active_calls, calls, transactions}; calls and
  // transactions are running totals, plotted as rates between samples.
  function addSample(sample) {
    const samples = state.samples;
    if (samples.length && sample.now <= samples[samples.length - 1].now) return;
    samples.push(sample);
    if (samples.length > CHART_SAMPLES) samples.shift();
    renderChart();
  }

  function series() {
    const samples = state.samples;
    const rate = (key) => samples.slice(1).map((s, i) => (s[key] - samples[i][key]) / (s.now - samples[i].now));
    return {
      active: samples.map((s) => s.active_calls),
      calls: rate("calls"),
      transactions: rate("transactions"),
    };
  }

  function renderChart() {
    const values = series();
    for (const figure of document.querySelectorAll("figure.chart")) {
      const points = values[figure.dataset.series];
      const svg = figure.querySelector("svg");
      const [width, height] = svg.getAttribute("viewBox").split(" ").slice(2).map(Number);
      const top = Math.max(1, ...points);
      const step = width / (CHART_SAMPLES - 1);
      const start = width - step * (points.length - 1);
      figure.querySelector("polyline").setAttribute("points", points.map((v, i) =>
        (start + i * step).toFixed(1) + "," + (height - 2 - (height - 4) * v / top).toFixed(1)).join(" "));
      const last = points.length ? points[points.length - 1] : null;
      figure.querySelector(".value").textContent = last === null ? "\u2013"
        : figure.dataset.series === "active" ? String(last) : last.toFixed(1);
      figure.dataset.points = String(points.length);
      figure.title = "peak " + (figure.dataset.series === "active" ? top : top.toFixed(1)) + " over the last minute";
    }
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

  // A snapshot: the page's embedded state, or the API's answers, at one instant.
  function apply(snapshot) {
    state.offset = snapshot.now - Date.now() / 1000;
    state.gateways = new Map(snapshot.gateways.map((g) => [g.name, g]));
    state.endpoints = new Map(snapshot.endpoints.map((e) => [e.name, e]));
    state.calls = new Map(snapshot.calls.map((c) => [c.call_id, c]));
    renderGateways();
    renderEndpoints();
    renderCalls();
    renderStats(snapshot.stats);
    document.body.dataset.loaded = "true";
  }

  async function refresh() {
    try {
      const [gateways, endpoints, calls, stats] = await Promise.all([
        api("GET", "/api/gateways"),
        api("GET", "/api/endpoints"),
        api("GET", "/api/calls"),
        api("GET", "/api/stats"),
      ]);
      apply({ now: gateways.now, gateways: gateways.gateways, endpoints: endpoints.endpoints,
              calls: calls.calls, stats: stats });
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
    const source = window.mgcpswitch.events();
    source.onopen = () => {
      setStatus("live");
      refresh();  // what changed between the snapshot and the stream
    };
    source.onerror = () => setStatus("reconnecting");
    let countsTimer = null;
    const onCall = (message) => {
      const data = JSON.parse(message.data);
      state.calls.set(data.call.call_id, data.call);
      renderCalls();
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
    source.addEventListener("stats", (message) => addSample(JSON.parse(message.data)));
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) act(button.dataset.action, button.closest("tr") || button);
  });

  // Deferred and render-blocking: the document is parsed, nothing is painted yet.
  apply(embedded("initial-state"));
  renderChart();
  document.body.dataset.drawnAt = String(performance.now());

  document.addEventListener("DOMContentLoaded", () => {
    $("#originate").addEventListener("submit", originate);
    listen();
    setInterval(refresh, REFRESH_SECONDS * 1000);
    setInterval(tickDurations, 1000);
  });
})();
