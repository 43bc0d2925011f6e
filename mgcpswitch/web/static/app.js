// mgcpswitch admin page: drawn from the state the server embedded in it
// (before the first paint: the script is render-blocking), then kept live
// from /api/events (server-sent events), with a full refresh every 15 s as
// a fallback; buttons call the JSON API; a small chart plots the stream's
// "stats" samples.  An agent of a cluster shows its role, epoch, the active
// agent and the lease's age (from each sample); a standby's buttons are
// disabled with the reason, its admin being read-only.  Each sample also
// carries the overload guard's state (a badge while it sheds new calls) and
// the trunks (their table).  Plain JavaScript, no framework, no build step.
"use strict";

(function () {
  const REFRESH_SECONDS = 15;
  const CHART_SAMPLES = 61;  // one a second: the last minute

  const { $, api, embedded, say, clockTime, duration, quote } = window.mgcpswitch;

  const state = {
    gateways: new Map(),   // name -> gateway view
    endpoints: new Map(),  // name -> endpoint view
    calls: new Map(),      // call_id -> call view (without ladder)
    trunks: [],            // trunk views, by name
    offset: 0,             // server clock minus ours, in seconds
    samples: [],           // the event stream's stats samples, oldest first
    cluster: null,         // this agent's place in its cluster, or null (a single agent)
  };

  // Why changes are refused here (a standby), or null.
  function readOnly() {
    return state.cluster ? state.cluster.read_only : null;
  }

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

  // A cell is text, {text, cls, state}, {button, action, title}, {buttons: [button...]}
  // or {link, href, title}.
  function setCell(td, cell) {
    if (cell === null || cell === undefined) cell = "";
    if (typeof cell !== "object") cell = { text: String(cell) };
    if (cell.buttons !== undefined) {
      if (td.children.length !== cell.buttons.length || td.querySelector(":scope > :not(span)")) {
        td.textContent = "";
        for (let i = 0; i < cell.buttons.length; i++) td.appendChild(document.createElement("span"));
      }
      cell.buttons.forEach((button, i) => setCell(td.children[i], button));
      return;
    }
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
      // Every button changes something: none works on a standby.
      const refused = readOnly();
      button.disabled = Boolean(refused);
      button.title = refused || cell.title || "";
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
      g.host ? (g.host.includes(":") ? "[" + g.host + "]" : g.host) + ":" + g.port : "",  // IPv6 bracketed
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

  // Trunks (SIP): the section shows only when some are configured.
  function renderTrunks(trunks) {
    state.trunks = trunks || [];
    $("#trunks-section").hidden = state.trunks.length === 0;
    const page = (id) => ({ link: id, href: "/calls/" + quote(id), title: "the call's flow" });
    syncRows($("#trunks"), state.trunks, (t) => t.name, (t) => [
      t.name,
      { text: t.state, cls: "state", state: t.state },
      { text: t.registration, cls: "state", state: t.registration },
      t.peer,
      { text: t.channels_in_use + " / " + t.max_channels, cls: "number",
        state: t.channels_in_use >= t.max_channels ? "full" : "free" },
      t.calls.length ? { buttons: t.calls.map(page) } : "",
      { text: t.answered_out + " / " + t.calls_out, cls: "number" },
      { text: t.answered_in + " / " + t.calls_in, cls: "number" },
      { text: String(t.refused_full), cls: "number" },
      { text: Object.entries(t.statuses).map(([k, v]) => k + " \u00d7" + v).join(", "), cls: "notes",
        title: Object.entries(t.messages).map(([k, v]) => k.replace("_", " ") + " " + v).join("\n") },
    ], (row, t) => {
      row.dataset.trunk = t.name;
      row.dataset.state = t.state;
    });
  }

  // The overload guard: a badge while it sheds new calls ("overload: shedding 60%"), or while
  // only its admission rate refuses them ("overload: at most 410 calls/s").
  function renderOverload(overload) {
    const badge = $("#overload");
    const shedding = Boolean(overload) && overload.state === "overloaded";
    badge.hidden = !shedding;
    badge.dataset.state = overload ? overload.state : "none";
    if (!overload) return;
    const share = Math.round((1 - overload.admitted_share) * 100);
    const rate = overload.admission_rate;
    const limited = rate !== undefined && rate !== null;
    badge.textContent = (share === 0 && limited) ? "overload: at most " + Math.round(rate) + " calls/s"
      : "overload: shedding " + share + "%";
    badge.title = "admitting " + Math.round(overload.admitted_share * 100) + "% of new calls" +
      (limited ? ", at most " + Math.round(rate) + " a second (" + overload.cpu_per_call_ms.toFixed(2) +
        " ms of CPU a call; " + overload.calls_refused_by_rate + " refused by that rate)" : "") +
      "; the reactor runs " + overload.lateness_ms.toFixed(1) + " ms late; " + overload.calls_shed +
      " calls shed since start, " + overload.episodes + " episode(s)";
  }

  // The calls on a line: "c1, c2 (held), c3 (waiting) · three-way".
  function lineCalls(e) {
    const calls = (e.calls && e.calls.length) ? e.calls : (e.call_id ? [e.call_id] : []);
    const marked = calls.map((id) =>
      id + ((e.held || []).includes(id) ? " (held)" : (e.waiting || []).includes(id) ? " (waiting)" : ""));
    return marked.join(", ") + (e.conference ? " \u00b7 three-way" : "");
  }

  // What differs from a plain line, in a few words; and every field, for the tooltip.
  function servicesText(s) {
    if (!s) return "";
    const parts = [];
    if (s.name) parts.push("\u201c" + s.name + "\u201d");
    if (s.dnd) parts.push("do not disturb");
    if (s.forward_always) parts.push("forward \u2192 " + s.forward_always);
    if (s.forward_busy) parts.push("busy \u2192 " + s.forward_busy);
    if (s.forward_no_answer) parts.push("no answer \u2192 " + s.forward_no_answer);
    if (s.message_waiting) parts.push("message waiting");
    if (s.private) parts.push("private");
    if (!s.call_waiting) parts.push("no call waiting");
    if (!s.three_way) parts.push("no three-way");
    if (!s.transfer) parts.push("no transfer");
    if (s.transfer_on_hangup) parts.push("transfer on hang-up");
    return parts.join(", ");
  }

  function servicesTitle(s) {
    if (!s) return "";
    return Object.entries(s).map(([k, v]) => k + ": " + (v === true ? "yes" : v === false ? "no" : v === null ? "-" : v))
      .join("\n");
  }

  function renderEndpoints() {
    const endpoints = Array.from(state.endpoints.values()).sort((a, b) => a.name.localeCompare(b.name));
    syncRows($("#endpoints"), endpoints, (e) => e.name, (e) => [
      e.name,
      { text: e.state, cls: "state", state: e.state },
      e.hook,
      e.number || "",
      { text: lineCalls(e), cls: "calls" },
      e.connections.map((c) => c.connection_id + " " + c.mode).join(", "),
      { text: servicesText(e.services), cls: "services", title: servicesTitle(e.services) },
      e.last_event || "",
      { buttons: [{ button: "Audit", action: "audit" }, { button: "Services\u2026", action: "services" }] },
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

  // What is special about a call: its parties on hold or waiting, a three-way join, a forward, a transfer.
  function callNotes(c) {
    const notes = [];
    for (const leg of c.legs || []) {
      const flags = [leg.held ? "held" : "", leg.waiting ? "waiting" : "", leg.conference ? "three-way" : ""]
        .filter(Boolean);
      if (flags.length) notes.push((leg.number || leg.endpoint) + " " + flags.join(", "));
    }
    if (c.forwarded_from) notes.push("forwarded from " + c.forwarded_from);
    if (c.transferred_by) notes.push("transferred by " + c.transferred_by);
    return notes.join("; ");
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
      { text: callNotes(c), cls: "notes" },
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
      " · timeouts " + (counters.timeouts || 0) +
      (stats.transactions.overload ? " · calls shed " + stats.transactions.overload.calls_shed : "");
  }

  // -- the cluster ----------------------------------------------------------

  // The agent's role, at a glance: a badge in the header; on a standby, a
  // banner, every button disabled with the reason, and the page tinted.
  function renderCluster(cluster) {
    const wasReadOnly = readOnly();
    state.cluster = cluster || null;
    const badge = $("#cluster"), banner = $("#read-only");
    document.body.dataset.role = cluster ? cluster.role : "single";
    badge.hidden = !cluster;
    if (cluster) {
      const lease = cluster.lease_age === null ? "" : " \u00b7 lease " + cluster.lease_age.toFixed(1) + " s";
      const epoch = cluster.epoch === null ? "" : " \u00b7 epoch " + cluster.epoch;
      const active = cluster.role === "active" ? "" : " \u00b7 active: " + (cluster.holder || "none known");
      badge.textContent = cluster.role.toUpperCase() + epoch + active + lease;
      badge.dataset.role = cluster.role;
      badge.title = cluster.name + (cluster.last_takeover ? ", epoch began " + clockTime(cluster.last_takeover) : "") +
        ", " + cluster.takeovers + " takeover(s) by this agent";
    }
    const refused = readOnly();
    banner.hidden = !refused;
    banner.textContent = refused ? refused + ". What this page shows is as fresh as the shared store." : "";
    for (const button of [$("#call-button"), $("#services-save")]) {
      button.disabled = Boolean(refused);
      button.title = refused || "";
    }
    if (refused !== wasReadOnly) {
      renderGateways();
      renderEndpoints();
      renderCalls();
    }
  }

  // -- the live chart -------------------------------------------------------

  // Each sample: {now, active_calls, calls, transactions}; calls and
  // transactions are running totals, plotted as rates between samples.
  function addSample(sample) {
    const samples = state.samples;
    if (samples.length && sample.now <= samples[samples.length - 1].now) return;
    renderCluster(sample.cluster);
    renderOverload(sample.overload);
    renderTrunks(sample.trunks);
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
      } else if (action === "services") {
        openServices(row.dataset.endpoint);
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

  // -- a line's services ----------------------------------------------------

  const FLAGS = ["dnd", "message_waiting", "call_waiting", "three_way", "transfer", "transfer_on_hangup", "private"];
  const TEXTS = ["forward_always", "forward_busy", "forward_no_answer", "name"];

  function openServices(name) {
    const view = state.endpoints.get(name);
    if (!view || !view.services) return;
    const form = $("#services-form");
    form.dataset.endpoint = name;
    $("#services-endpoint").textContent = name + (view.number ? " (" + view.number + ")" : "");
    for (const key of FLAGS) form.elements[key].checked = Boolean(view.services[key]);
    for (const key of TEXTS) form.elements[key].value = view.services[key] || "";
    const dialog = $("#services-dialog");
    dialog.returnValue = "";  // closed with Escape, it keeps the last value: not a "save"
    dialog.showModal();
  }

  // Saved on "Save": only the fields changed, as a PATCH; an empty text is none.
  async function saveServices() {
    const form = $("#services-form");
    const name = form.dataset.endpoint;
    const before = state.endpoints.get(name).services;
    const changes = {};
    for (const key of FLAGS) {
      if (form.elements[key].checked !== before[key]) changes[key] = form.elements[key].checked;
    }
    for (const key of TEXTS) {
      const value = form.elements[key].value.trim() || null;
      if (value !== before[key]) changes[key] = value;
    }
    if (!Object.keys(changes).length) return;
    try {
      const view = await api("PATCH", "/api/endpoints/" + quote(name) + "/services", changes);
      state.endpoints.set(view.name, view);
      renderEndpoints();
      say(name + ": " + (servicesText(view.services) || "plain line"));
    } catch (e) {
      say("services of " + name + " not changed: " + e.message, "error");
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
    renderCluster(snapshot.stats.cluster);
    renderOverload(snapshot.stats.transactions.overload);
    renderTrunks(snapshot.trunks);
    document.body.dataset.loaded = "true";
  }

  async function refresh() {
    try {
      const [gateways, endpoints, calls, trunks, stats] = await Promise.all([
        api("GET", "/api/gateways"),
        api("GET", "/api/endpoints"),
        api("GET", "/api/calls"),
        api("GET", "/api/trunks"),
        api("GET", "/api/stats"),
      ]);
      apply({ now: gateways.now, gateways: gateways.gateways, endpoints: endpoints.endpoints,
              calls: calls.calls, trunks: trunks.trunks, stats: stats });
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
    for (const name of ["call-started", "call-state-changed", "call-ended", "call-transferred", "call-forwarded"]) {
      source.addEventListener(name, onCall);
    }
    // Three-way calling joined two calls: their legs' flags changed.
    source.addEventListener("calls-joined", () => refresh());
    source.addEventListener("line-services-changed", (message) => {
      const data = JSON.parse(message.data);
      const view = state.endpoints.get(data.endpoint);
      if (!view) return;
      state.endpoints.set(data.endpoint, Object.assign({}, view, { services: data.services }));
      renderEndpoints();
    });
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
    $("#services-dialog").addEventListener("close", () => {
      if ($("#services-dialog").returnValue === "save") saveServices();
    });
    listen();
    setInterval(refresh, REFRESH_SECONDS * 1000);
    setInterval(tickDurations, 1000);
  });
})();
