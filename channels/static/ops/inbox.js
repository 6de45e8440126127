/*
 * Kefu console: the inbox pieces the queue and the conversation list share (window.KefuInbox): the view tabs
 * (mine / unassigned / all, kept in ?view=), the customer cell (name, unread dot, last message preview), the
 * waiting time, the assignee cell with Claim and Assign, and the new-arrival alert (a browser Notification when
 * permitted, and a short Web Audio beep: no asset files). Every string is inserted with textContent.
 */
(function () {
  "use strict";
  var K = window.KefuOps;
  var el = K.el;
  var VIEWS = [["mine", "inbox.mine"], ["unassigned", "inbox.unassigned"], ["all", "inbox.all"]];  // [view, message id]
  var PREVIEW = 80;
  var assignees = null;  // a promise of the usernames a conversation can be assigned to
  var audio = null;

  function currentView() {
    var view = new URLSearchParams(window.location.search).get("view");
    return VIEWS.some(function (v) { return v[0] === view; }) ? view : "all";
  }

  // The tabs: a tablist of buttons; choosing one rewrites ?view= (shareable) and calls onChange(view).
  function tabs(container, onChange) {
    container.textContent = "";
    container.setAttribute("role", "tablist");
    container.setAttribute("aria-label", K.t("inbox.viewLabel"));
    VIEWS.forEach(function (v) {
      var b = el("button", "ops-tab", K.t(v[1]));
      b.type = "button";
      b.setAttribute("role", "tab");
      b.setAttribute("data-view", v[0]);
      b.setAttribute("aria-selected", String(currentView() === v[0]));
      b.addEventListener("click", function () {
        var params = new URLSearchParams(window.location.search);
        if (v[0] === "all") params.delete("view"); else params.set("view", v[0]);
        var qs = params.toString();
        window.history.replaceState(null, "", window.location.pathname + (qs ? "?" + qs : ""));
        Array.prototype.forEach.call(container.children, function (t) {
          t.setAttribute("aria-selected", String(t === b));
        });
        onChange(v[0]);
      });
      container.appendChild(b);
    });
  }

  function truncate(text, n) {
    text = String(text || "").replace(/\s+/g, " ").trim();
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }

  function customerCell(c) {
    var td = el("td", "ops-customer");
    // The server names a customer without a name "Visitor " + the id's first characters: said in our language.
    var visitor = c.customer === "Visitor " + String(c.id).slice(0, 6);
    var name = el("a", "ops-customer-name", visitor ? K.node("inbox.visitor", { id: K.raw(String(c.id).slice(0, 6)) })
      : K.raw(c.customer || c.id));
    name.href = "/console/c/" + encodeURIComponent(c.id);
    name.title = c.id;
    if (c.unread) {
      var dot = el("span", "ops-unread", K.t("inbox.new"));
      dot.title = K.t("inbox.newTitle");
      td.appendChild(dot);
    }
    td.appendChild(name);
    if (c.preview) {
      var preview = el("div", "ops-preview");
      if (c.preview_by !== "customer") preview.textContent = K.t(c.preview_by === "agent" ? "inbox.byAgent" : "inbox.byBot");
      preview.appendChild(K.raw(truncate(c.preview, PREVIEW)));
      td.appendChild(preview);
    }
    return td;
  }

  function waitText(seconds) {
    if (typeof seconds !== "number") return "–";
    if (seconds < 60) return K.t("wait.s", { n: K.number(seconds) });
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return K.t("wait.min", { n: K.number(minutes) });
    return K.t("wait.hmin", { h: K.number(Math.floor(minutes / 60)), m: K.number(minutes % 60) });
  }

  function loadAssignees() {
    if (!assignees) {
      assignees = K.api("GET", "/api/assignees").then(function (data) { return data.items; },
        function () { assignees = null; return []; });
    }
    return assignees;
  }

  // Assignee name (or "unassigned"), and for agents: Claim (unassigned, nobody else holds it) and an Assign menu.
  function assigneeCell(c, statusNode, reload) {
    var td = el("td", "ops-assignee");
    td.appendChild(el("span", "ops-assignee-name", c.assignee ? K.raw(c.assignee) : K.t("inbox.nobody")));
    if (!K.can("agent")) return td;
    var me = K.user() && K.user().username;
    var heldByOther = c.handoff_status === "agent" && c.agent && c.agent !== me;
    function post(url, body, done) {
      return K.api("POST", "/api/conversations/" + encodeURIComponent(c.id) + url, body).then(function () {
        K.setStatus(statusNode, done);
        reload();
      }, function (e) {
        K.setStatus(statusNode, e.status === 409 ? K.t("inbox.taken")
          : K.t("inbox.notChanged", { error: K.errorText(e) }), true);
        reload();
      });
    }
    if (!c.assignee && !heldByOther) {
      var claim = el("button", "ops-primary", K.t("inbox.claim"));
      claim.type = "button";
      claim.setAttribute("aria-label", K.t("inbox.claimLabel", { id: c.id }));
      claim.addEventListener("click", function () {
        claim.disabled = true;
        post("/claim", {}, K.t("inbox.claimed"));
      });
      td.appendChild(claim);
    }
    if (!heldByOther) {
      var select = el("select", "ops-assign");
      select.setAttribute("aria-label", K.t("inbox.assignLabel", { id: c.id }));
      var first = el("option", null, K.t("inbox.assignTo"));
      first.value = "";
      select.appendChild(first);
      loadAssignees().then(function (names) {
        names.forEach(function (n) {
          if (n === c.assignee) return;
          var o = el("option", null, n);
          o.value = n;
          o.setAttribute("data-raw", "");  // a username
          select.appendChild(o);
        });
      });
      select.addEventListener("change", function () {
        if (!select.value) return;
        select.disabled = true;
        post("/assign", { username: select.value }, K.node("inbox.assigned", { name: K.raw(select.value) }));
      });
      td.appendChild(select);
    }
    return td;
  }

  // ------------------------------------------------------------------------------------------- alerts
  var known = null;  // ids of waiting conversations already seen (null before the first load: no alert then)

  function beep() {
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return;
      audio = audio || new Ctx();
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.type = "sine";
      osc.frequency.value = 880;
      gain.gain.value = 0.08;
      osc.connect(gain);
      gain.connect(audio.destination);
      osc.start();
      osc.stop(audio.currentTime + 0.18);
    } catch (e) { /* no sound: the row still appears */ }
  }

  function notify(fresh) {
    api.alerts += 1;
    beep();
    if (!("Notification" in window) || window.Notification.permission !== "granted") return;
    try {
      var first = fresh[0];
      new window.Notification(K.t("inbox.notifyTitle"), {
        body: fresh.length > 1 ? K.t("inbox.notifyMany", { n: K.number(fresh.length) })
          : (first.customer || K.t("inbox.notifyVisitor")),
        tag: "kefu-queue"
      });
    } catch (e) { /* some browsers allow notifications from service workers only */ }
  }

  // Call with every poll's rows: a waiting conversation not seen before (after the first load) alerts.
  function watch(items) {
    var waiting = items.filter(function (c) { return c.handoff_status === "waiting"; });
    if (known !== null) {
      var fresh = waiting.filter(function (c) { return !known[c.id]; });
      if (fresh.length) notify(fresh);
    }
    known = known || {};
    waiting.forEach(function (c) { known[c.id] = true; });
  }

  // A button that asks for notification permission (browsers want a click for that, and for sound).
  function alertsButton(button) {
    if (!button) return;
    var Ctx = window.AudioContext || window.webkitAudioContext;
    function label() {
      var granted = "Notification" in window && window.Notification.permission === "granted";
      button.textContent = K.t(granted ? "inbox.alertsOn" : "inbox.alertsEnable");
    }
    label();
    button.addEventListener("click", function () {
      if (Ctx && !audio) { try { audio = new Ctx(); } catch (e) { audio = null; } }
      if ("Notification" in window && window.Notification.permission === "default") {
        window.Notification.requestPermission().then(label, label);
      }
      label();
    });
  }

  // True while the user is working in the table (a menu open, a button focused): polling then skips a
  // re-render that would throw their choice away.
  function busy(container) {
    return container.contains(document.activeElement) && document.activeElement !== document.body;
  }

  var api = {
    alerts: 0, currentView: currentView, tabs: tabs, customerCell: customerCell, waitText: waitText,
    assigneeCell: assigneeCell, watch: watch, alertsButton: alertsButton, busy: busy
  };
  window.KefuInbox = api;
})();
