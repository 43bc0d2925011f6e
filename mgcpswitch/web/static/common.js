// What the admin's pages share: the API client, the data the server
// embedded in the page, messages and time formatting.  Plain JavaScript.
"use strict";

window.mgcpswitch = (function () {
  const $ = (selector) => document.querySelector(selector);

  async function api(method, path, body) {
    const options = { method: method, headers: { "Accept": "application/json" } };
    if (method === "POST" || method === "PATCH") {
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

  // The JSON the server rendered into <script type="application/json" id=...>.
  function embedded(id) {
    return JSON.parse(document.getElementById(id).textContent);
  }

  function say(text, kind) {
    const message = $("#message");
    message.textContent = text;
    message.dataset.kind = kind || "ok";
    message.hidden = false;
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

  function events() {
    return new EventSource(location.origin + "/api/events");
  }

  return { $: $, api: api, embedded: embedded, say: say, clockTime: clockTime, duration: duration,
           events: events, quote: encodeURIComponent };
})();
