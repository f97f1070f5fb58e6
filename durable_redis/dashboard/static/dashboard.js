// durable-redis dashboard: live refresh by short polling, timeline bars, confirmations,
// the instance's progress stream (EventSource).
// No framework, no build step. The server renders everything; this only swaps #live.
(function () {
  "use strict";
  function drawBars(root) {
    root.querySelectorAll(".bar").forEach(function (bar) {
      bar.style.marginLeft = bar.dataset.left + "%";
      bar.style.width = (parseFloat(bar.dataset.width) > 0 ? bar.dataset.width : "0.6") + "%";
    });
  }
  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.dataset.confirm)) { ev.preventDefault(); }
      });
    });
  }
  // The instance page's progress stream: server-sent events, appended as text (never HTML).
  function followStream() {
    var panel = document.getElementById("stream-panel");
    if (!panel || !window.EventSource) { return; }
    var list = document.getElementById("stream-items");
    var note = document.getElementById("stream-state");
    var source = new EventSource(panel.dataset.streamUrl);
    source.addEventListener("open", function () { note.textContent = "following"; });
    source.addEventListener("item", function (ev) {
      var li = document.createElement("li");
      var offset = document.createElement("code");
      offset.textContent = ev.lastEventId;
      li.appendChild(offset);
      li.appendChild(document.createTextNode(" " + ev.data));
      list.appendChild(li);
      while (list.children.length > 500) { list.removeChild(list.firstChild); }
      panel.dataset.items = String(list.children.length);
    });
    source.addEventListener("end", function (ev) {
      source.close();
      panel.dataset.ended = JSON.parse(ev.data).status;
      note.textContent = list.children.length ? "ended (" + panel.dataset.ended + ")"
        : "empty (the instance has ended: " + panel.dataset.ended + ")";
    });
    source.addEventListener("error", function () {
      if (!panel.dataset.ended) { note.textContent = "reconnecting"; }
    });
  }
  var live = null, state = null, busy = false, failures = 0;
  function refresh() {
    if (busy || document.visibilityState !== "visible") { return; }
    busy = true;
    var url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    url.searchParams.delete("msg");
    fetch(url.toString(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        drawBars(live);
        failures = 0;
        state.textContent = "live · " + new Date().toLocaleTimeString();
        state.className = "live-state ok";
        document.body.dataset.refreshed = String(Date.now());
      })
      .catch(function (err) {
        failures += 1;
        state.textContent = "offline (" + err.message + ")";
        state.className = "live-state bad";
      })
      .finally(function () { busy = false; });
  }
  document.addEventListener("DOMContentLoaded", function () {
    live = document.getElementById("live");
    state = document.getElementById("live-state");
    drawBars(document);
    confirmations();
    followStream();
    var every = parseInt(document.body.dataset.pollMs || "2000", 10);
    if (live && every > 0) { window.setInterval(refresh, every); }
  });
})();
