/*
 * Kefu console: the conversation list. Filters live in the page URL (shareable), pages are fetched with the
 * server's opaque cursor (GET /api/conversations?...&cursor=), "Load older" appends the next page. While no older
 * page was loaded the first page stays live: it is reloaded when the inbox pulse says the queue changed (the
 * window's "kefu:inbox" event, within about 0.3 s) and every POLL_MS for the conversations that never queue.
 */
(function () {
  "use strict";
  var K = window.KefuOps;
  var I = window.KefuInbox;
  var el = K.el;
  var actionStatus = document.getElementById("list-action-status");
  var POLL_MS = 5000;
  var pages = 0;
  var form = document.getElementById("filters");
  var rows = document.getElementById("list-rows");
  var status = document.getElementById("list-status");
  var more = document.getElementById("list-more");
  var nextCursor = null;
  var FIELDS = ["q", "language", "intent", "handoff", "tag", "since", "until"];
  var CHECKS = { "f-low": "low_confidence", "f-fallback": "fallback", "f-safety": "safety", "f-flagged": "flagged",
    "f-unreviewed": "reviewed" };

  function fromUrl() {
    var params = new URLSearchParams(window.location.search);
    FIELDS.forEach(function (name) { form.elements[name].value = params.get(name) || ""; });
    Object.keys(CHECKS).forEach(function (id) {
      var box = document.getElementById(id);
      box.checked = params.get(CHECKS[id]) === box.value;
    });
  }

  function query() {
    var params = new URLSearchParams();
    var view = I.currentView();
    if (view !== "all") params.set("view", view);
    FIELDS.forEach(function (name) {
      var value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    });
    Object.keys(CHECKS).forEach(function (id) {
      var box = document.getElementById(id);
      if (box.checked) params.set(CHECKS[id], box.value);
    });
    return params;
  }

  function signals(c) {
    var cell = el("td");
    if (c.handoff_status === "waiting") cell.appendChild(K.badge(K.t("badge.waiting"), "warn"));
    else if (c.handoff_status === "agent") {
      cell.appendChild(K.badge(K.node("badge.with", { agent: c.agent ? K.raw(c.agent) : K.t("role.agent") }), "warn"));
    }
    if (c.fallbacks) cell.appendChild(K.badge(K.tn("badge.fallbacks", c.fallbacks), "bad"));
    if (c.safety_flags) cell.appendChild(K.badge(K.t("badge.safety", { n: K.number(c.safety_flags) }), "bad"));
    if (c.flagged) cell.appendChild(K.badge(K.t("badge.flagged"), "bad"));
    if (c.reviewed) cell.appendChild(K.badge(K.t("badge.reviewed"), "ok"));
    if (c.resolved_at) cell.appendChild(K.badge(K.t("badge.resolved"), "ok"));  // the workspace: open ones show none
    if (c.rating) cell.appendChild(K.badge(K.t("badge.rated", { score: c.rating }), c.rating >= 4 ? "ok" : "warn"));
    return cell;
  }

  function row(c) {
    var tr = el("tr");
    tr.setAttribute("data-id", c.id);
    if (c.unread) tr.className = "ops-row-unread";
    tr.appendChild(I.customerCell(c));
    tr.appendChild(I.assigneeCell(c, actionStatus, function () { load(false, true); }));
    var updated = el("td", null, K.when(c.updated_at, true));
    updated.title = c.updated_at;
    tr.appendChild(updated);
    tr.appendChild(el("td", null, K.raw(c.language)));
    tr.appendChild(el("td", null, K.number(c.turns)));
    tr.appendChild(el("td", null, c.last_intent ? K.raw(c.last_intent) : "–"));
    var conf = el("td", typeof c.min_confidence === "number" && c.min_confidence < 0.5 ? "ops-low" : null,
      K.pct(c.min_confidence));
    tr.appendChild(conf);
    tr.appendChild(signals(c));
    var tags = el("td");
    (c.tags || []).forEach(function (t) { tags.appendChild(K.badge(K.raw(t), "tag")); });
    tr.appendChild(tags);
    return tr;
  }

  var seq = 0;
  function load(append, quiet) {
    var params = query();
    params.set("limit", "50");
    if (append && nextCursor) params.set("cursor", nextCursor);
    if (!quiet) K.setStatus(status, K.t("common.loading"));
    var mine = ++seq;
    K.api("GET", "/api/conversations?" + params.toString()).then(function (page) {
      if (mine !== seq || (quiet && I.busy(rows))) return;
      pages = append ? pages + 1 : 1;
      if (!append) rows.textContent = "";
      page.items.forEach(function (c) { rows.appendChild(row(c)); });
      nextCursor = page.next_cursor;
      more.hidden = !nextCursor;
      var shown = rows.children.length;
      K.setStatus(status, shown ? K.tn(nextCursor ? "list.countMore" : "list.count", shown) : K.t("list.empty"));
    }, function (e) {
      K.setStatus(status, K.t("list.failed", { error: K.errorText(e) }), true);
    });
  }

  function loadIntents() {
    return K.api("GET", "/api/meta").then(function (meta) {
      var select = form.elements.intent;
      meta.intents.forEach(function (name) {
        var option = el("option", null, name);
        option.value = name;
        option.setAttribute("data-raw", "");  // an intent's name
        select.appendChild(option);
      });
    }, function () { /* the filter still works without the list */ });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var params = query();
    window.history.replaceState(null, "", "/console" + (params.toString() ? "?" + params.toString() : ""));
    load(false);
  });
  document.getElementById("f-clear").addEventListener("click", function () {
    form.reset();
    var view = I.currentView();  // the tab stays
    window.history.replaceState(null, "", "/console" + (view !== "all" ? "?view=" + view : ""));
    load(false);
  });
  more.addEventListener("click", function () { load(true); });

  K.onReady(function () {
    I.tabs(document.getElementById("list-tabs"), function () { load(false); });
    loadIntents().then(function () {
      fromUrl();
      load(false);
      var live = function () { if (pages <= 1) load(false, true); };
      window.addEventListener("kefu:inbox", live);
      window.setInterval(live, POLL_MS);
    });
  });
})();
