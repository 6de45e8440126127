/*
 * Kefu console: the handoff queue (waiting customers first, longest waiting first; then those with an agent), in
 * the inbox's views (mine / unassigned / all). Reloads GET /api/handoff?view= when the inbox pulse says the queue
 * changed (the window's "kefu:inbox" event, within about 0.3 s: window.KefuInbox), so a newly queued customer appears
 * without a reload, with a notification and a beep; and every POLL_MS besides, for what the pulse does not watch
 * (the waiting times, a conversation's language and last intent).
 */
(function () {
  "use strict";
  var K = window.KefuOps;
  var I = window.KefuInbox;
  var el = K.el;
  var rows = document.getElementById("queue-rows");
  var status = document.getElementById("queue-status");
  var actionStatus = document.getElementById("queue-action-status");
  var POLL_MS = 10000;
  var seq = 0;  // a response older than the latest request is dropped (a view change while a poll is in flight)

  function takeOver(id, button) {
    button.disabled = true;
    K.api("POST", "/api/conversations/" + encodeURIComponent(id) + "/takeover").then(function () {
      window.location.assign("/console/c/" + encodeURIComponent(id));
    }, function (e) {
      button.disabled = false;
      K.setStatus(actionStatus, e.status === 409 ? K.t("queue.takenFirst")
        : K.t("queue.takeOverFailed", { error: K.errorText(e) }), true);
      load();
    });
  }

  function row(c) {
    var tr = el("tr");
    tr.setAttribute("data-id", c.id);
    if (c.unread) tr.className = "ops-row-unread";
    tr.appendChild(I.customerCell(c));
    var st = el("td");
    st.appendChild(c.handoff_status === "waiting" ? K.badge(K.t("queue.waiting"), "warn")
      : K.badge(K.node("badge.with", { agent: c.agent ? K.raw(c.agent) : K.t("role.agent") }), "ok"));
    tr.appendChild(st);
    var wait = el("td", "ops-waiting", c.handoff_status === "waiting" ? I.waitText(c.waiting_seconds) : "–");
    wait.title = c.handoff_at || "";
    tr.appendChild(wait);
    tr.appendChild(el("td", null, K.raw(c.language)));
    tr.appendChild(el("td", null, c.last_intent ? K.raw(c.last_intent) : "–"));
    tr.appendChild(I.assigneeCell(c, actionStatus, load));
    var actions = el("td");
    if (K.can("agent") && c.handoff_status === "waiting" && (!c.assignee || c.assignee === K.user().username)) {
      var b = el("button", null, K.t("queue.takeOver"));
      b.type = "button";
      b.setAttribute("aria-label", K.t("queue.takeOverLabel", { id: c.id }));
      b.addEventListener("click", function () { takeOver(c.id, b); });
      actions.appendChild(b);
    }
    tr.appendChild(actions);
    return tr;
  }

  function load() {
    var mine = ++seq;
    var view = I.currentView();
    K.api("GET", "/api/handoff" + (view === "all" ? "" : "?view=" + view)).then(function (data) {
      if (mine !== seq) return;
      if (view !== "mine") I.watch(data.items);  // alerts: new arrivals (unassigned by definition)
      if (I.busy(rows)) return;
      rows.textContent = "";
      data.items.forEach(function (c) { rows.appendChild(row(c)); });
      var waiting = data.items.filter(function (c) { return c.handoff_status === "waiting"; }).length;
      K.setStatus(status, data.items.length ? K.t("queue.summary", { waiting: K.number(waiting),
        agent: K.number(data.items.length - waiting) }) : K.t("queue.empty"));
    }, function (e) {
      if (mine === seq) K.setStatus(status, K.t("queue.failed", { error: K.errorText(e) }), true);
    });
  }

  K.onReady(function () {
    I.tabs(document.getElementById("queue-tabs"), function () { load(); });
    I.alertsButton(document.getElementById("queue-alerts"));
    load();
    window.addEventListener("kefu:inbox", function () { load(); });
    window.setInterval(load, POLL_MS);
  });
})();
