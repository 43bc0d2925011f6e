// A call's page: its MGCP ladder as a sequence diagram (like Wireshark's
// VoIP flow graph), drawn in SVG from /api/calls/ID/flow: the endpoints
// and the call agent as columns, one arrow per message with its verb or
// code, transaction id and time; retransmissions dashed, piggybacked
// messages bracketed.  Above it, the call's parties (held, waiting, in a
// three-way call) and how it came about (forwarded, transferred, the calls
// it was joined with).  Drawn from the data embedded in the page before
// the first paint, then again whenever the event stream says the call
// changed.
"use strict";

(function () {
  const { $, api, embedded, say, clockTime, quote } = window.mgcpswitch;
  const SVG = "http://www.w3.org/2000/svg";
  const TIME_WIDTH = 96;     // the time column, left of the lifelines
  const COLUMN = 230;        // between lifelines
  const HEAD = 58;           // the column headers
  const ROW = 34;            // one message

  let current = null;        // the flow drawn
  let selected = null;       // the index of the message shown

  function element(name, attributes, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function summary(call) {
    return call.caller + " \u2192 " + (call.callee || "?") + " \u00b7 dialled " + (call.dialled || "-") +
      " \u00b7 " + call.state + (call.cause ? " (" + call.cause + ")" : "") +
      (call.codec ? " \u00b7 " + call.codec : "") + " \u00b7 started " + clockTime(call.started);
  }

  // Forwarded from, transferred by, related calls (as links to their pages).
  function facts(call) {
    const p = $("#call-facts");
    p.textContent = "";
    const add = (text) => {
      if (p.childNodes.length) p.appendChild(document.createTextNode(" \u00b7 "));
      const span = document.createElement("span");
      span.textContent = text;
      p.appendChild(span);
      return span;
    };
    if (call.forwarded_from) add("forwarded from " + call.forwarded_from).className = "forwarded";
    if (call.transferred_by) add("transferred by " + call.transferred_by).className = "transferred";
    if ((call.related || []).length) {
      const span = add("related: ");
      span.className = "related";
      call.related.forEach((id, i) => {
        if (i) span.appendChild(document.createTextNode(", "));
        const link = document.createElement("a");
        link.href = "/calls/" + quote(id);
        link.textContent = id;
        span.appendChild(link);
      });
    }
    p.hidden = !p.childNodes.length;
  }

  function legs(call) {
    const tbody = $("#legs").tBodies[0];
    tbody.textContent = "";
    for (const leg of call.legs || []) {
      const row = tbody.insertRow();
      row.dataset.endpoint = leg.endpoint;
      const flags = [leg.held ? "held" : "", leg.waiting ? "waiting" : "", leg.conference ? "three-way" : ""]
        .filter(Boolean);
      const cells = [leg.endpoint, leg.number || "", leg.originating ? "caller" : "called",
                     leg.connection_id || "", leg.mode || "", leg.state, flags.join(", ")];
      for (const text of cells) row.insertCell().textContent = text;
      row.cells[6].className = "party";
      row.dataset.party = flags.join(" ");
    }
    $("#legs-empty").hidden = (call.legs || []).length > 0;
  }

  function draw(flow) {
    current = flow;
    const call = flow.call;
    document.title = "mgcpswitch: call " + call.call_id;
    $("#call-id").textContent = call.call_id;
    $("#call-summary").textContent = summary(call);
    facts(call);
    legs(call);
    $("#pcap").setAttribute("href", "/api/calls/" + quote(call.call_id) + "/ladder.pcap");
    $("#flow-empty").hidden = flow.messages.length > 0;

    const svg = $("#flow");
    svg.textContent = "";
    const x = new Map(flow.columns.map((c, i) => [c.key, TIME_WIDTH + COLUMN * (i + 0.5)]));
    const width = TIME_WIDTH + COLUMN * flow.columns.length;
    const height = HEAD + ROW * (flow.messages.length + 0.5);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);

    const defs = element("defs");
    const marker = element("marker", { id: "head", viewBox: "0 0 10 10", refX: 10, refY: 5,
                                       markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" });
    marker.appendChild(element("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
    defs.appendChild(marker);
    svg.appendChild(defs);

    for (const column of flow.columns) {
      const g = element("g", { class: "column", "data-key": column.key });
      const cx = x.get(column.key);
      g.appendChild(element("rect", { x: cx - COLUMN / 2 + 8, y: 4, width: COLUMN - 16, height: HEAD - 14, rx: 4 }));
      g.appendChild(element("text", { x: cx, y: 24, class: "name" },
                            column.key === "agent" ? "call agent" : column.key));
      g.appendChild(element("text", { x: cx, y: 40, class: "address" }, column.address));
      g.appendChild(element("line", { x1: cx, y1: HEAD - 10, x2: cx, y2: height, class: "lifeline" }));
      svg.appendChild(g);
    }

    // Brackets first, under the arrows: the rows of each datagram holding several messages.
    const rows = new Map();
    flow.messages.forEach((m, row) => {
      if (!rows.has(m.datagram)) rows.set(m.datagram, []);
      rows.get(m.datagram).push(row);
    });
    for (const [datagram, members] of rows) {
      if (members.length < 2) continue;
      const top = HEAD + ROW * members[0] + 6, bottom = HEAD + ROW * (members[members.length - 1] + 1) - 4;
      const g = element("g", { class: "piggyback", "data-datagram": datagram });
      g.appendChild(element("path", { d: "M" + (TIME_WIDTH - 4) + "," + top + " h-6 V" + bottom + " h6" }));
      g.appendChild(element("title", {}, members.length + " messages piggybacked in one datagram"));
      svg.appendChild(g);
    }

    flow.messages.forEach((m, row) => {
      const y = HEAD + ROW * row + ROW * 0.75;
      const x1 = x.get(m.source), x2 = x.get(m.target);
      const classes = ["message", m.direction];
      if (m.retransmission) classes.push("retransmission");
      if (m.piggybacked) classes.push("piggybacked");
      if (m.index === selected) classes.push("selected");
      const g = element("g", {
        class: classes.join(" "), "data-index": m.index, "data-label": m.label, "data-source": m.source,
        "data-target": m.target, "data-transaction-id": m.transaction_id, tabindex: 0,
      });
      g.appendChild(element("rect", { x: Math.min(x1, x2), y: y - ROW + 6, width: Math.abs(x2 - x1),
                                      height: ROW - 2, class: "hit" }));
      g.appendChild(element("line", { x1: x1, y1: y, x2: x2, y2: y, "marker-end": "url(#head)", class: "arrow" }));
      const tags = (m.retransmission ? " \u21bb" : "") + (m.piggybacked ? " \u229e" : "");
      g.appendChild(element("text", { x: (x1 + x2) / 2, y: y - 6, class: "label" }, m.label + tags));
      g.appendChild(element("text", { x: TIME_WIDTH - 14, y: y + 4, class: "time" }, "+" + m.offset.toFixed(3) + " s"));
      const notes = [m.retransmission ? "retransmission" : "", m.piggybacked ? "piggybacked" : ""].filter(Boolean);
      g.appendChild(element("title", {}, (notes.length ? "(" + notes.join(", ") + ")\n" : "") + m.text));
      svg.appendChild(g);
    });
  }

  function show(index) {
    const m = current.messages.find((candidate) => candidate.index === index);
    if (!m) return;
    selected = index;
    for (const g of document.querySelectorAll("#flow g.message")) {
      g.classList.toggle("selected", Number(g.dataset.index) === index);
    }
    const notes = [m.retransmission ? "retransmission" : "", m.piggybacked ? "piggybacked" : ""].filter(Boolean);
    $("#text-title").textContent = (m.direction === "out" ? "call agent \u2192 " + m.target : m.source + " \u2192 call agent") +
      " at " + clockTime(m.time) + " (+" + m.offset.toFixed(3) + " s)" + (notes.length ? ", " + notes.join(", ") : "");
    $("#message-text").textContent = m.text;
  }

  async function reload() {
    try {
      draw(await api("GET", "/api/calls/" + quote(current.call.call_id) + "/flow"));
    } catch (e) {
      say("cannot refresh the call: " + e.message, "error");
    }
  }

  function listen() {
    const source = window.mgcpswitch.events();
    const status = $("#status");
    source.onopen = () => {
      status.textContent = status.dataset.state = "live";
      reload();
    };
    source.onerror = () => { status.textContent = status.dataset.state = "reconnecting"; };
    for (const name of ["call-started", "call-state-changed", "call-ended", "call-transferred", "call-forwarded"]) {
      source.addEventListener(name, (message) => {
        if (JSON.parse(message.data).call.call_id === current.call.call_id) reload();
      });
    }
    source.addEventListener("calls-joined", (message) => {
      if (JSON.parse(message.data).calls.includes(current.call.call_id)) reload();
    });
    source.addEventListener("resync", reload);
  }

  $("#flow").addEventListener("click", (event) => {
    const g = event.target.closest("g.message");
    if (g) show(Number(g.dataset.index));
  });
  $("#flow").addEventListener("keydown", (event) => {
    const g = event.target.closest("g.message");
    if (g && (event.key === "Enter" || event.key === " ")) show(Number(g.dataset.index));
  });

  // Deferred and render-blocking: drawn before the first paint.
  draw(embedded("initial-flow"));
  document.body.dataset.drawnAt = String(performance.now());
  document.addEventListener("DOMContentLoaded", listen);
})();
