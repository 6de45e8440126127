/* Kefu console: the handoff queue (waiting customers first, oldest first; then those with an agent). Polls every 3 s. */
(function () {
  "use strict";
  var K = window.KefuOps;
  var el = K.el;
  var rows = document.getElementById("queue-rows");
  var status = document.getElementById("queue-status");

  function takeOver(id, button) {
    button.disabled = true;
    K.api("POST", "/api/conversations/" + encodeURIComponent(id) + "/takeover").then(function () {
      window.location.assign("/console/c/" + encodeURIComponent(id));
    }, function (e) {
      button.disabled = false;
      K.setStatus(status, e.status === 409 ? "Another agent took it first." : "Could not take over (" + e.message + ")", true);
      load();
    });
  }

  function row(c) {
    var tr = el("tr");
    tr.setAttribute("data-id", c.id);
    var id = el("td", "ops-id");
    id.appendChild(K.conversationLink(c.id));
    tr.appendChild(id);
    var st = el("td");
    st.appendChild(c.handoff_status === "waiting" ? K.badge("waiting", "warn") : K.badge("with " + (c.agent || "agent"), "ok"));
    tr.appendChild(st);
    tr.appendChild(el("td", null, K.when(c.updated_at, true)));
    tr.appendChild(el("td", null, c.language));
    tr.appendChild(el("td", null, c.last_intent || "–"));
    tr.appendChild(el("td", null, c.turns));
    var actions = el("td");
    if (K.can("agent") && c.handoff_status === "waiting") {
      var b = el("button", "ops-primary", "Take over");
      b.type = "button";
      b.setAttribute("aria-label", "Take over conversation " + c.id);
      b.addEventListener("click", function () { takeOver(c.id, b); });
      actions.appendChild(b);
    }
    tr.appendChild(actions);
    return tr;
  }

  function load() {
    K.api("GET", "/api/handoff").then(function (data) {
      rows.textContent = "";
      data.items.forEach(function (c) { rows.appendChild(row(c)); });
      var waiting = data.items.filter(function (c) { return c.handoff_status === "waiting"; }).length;
      K.setStatus(status, data.items.length ? waiting + " waiting, " + (data.items.length - waiting) + " with an agent"
        : "Nobody is waiting for an agent.");
    }, function (e) {
      K.setStatus(status, "Could not load the queue (" + e.message + ")", true);
    });
  }

  K.onReady(function () {
    load();
    window.setInterval(load, 3000);
  });
})();
