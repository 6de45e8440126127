/*
 * Kefu console: the inbox pieces the queue and the conversation list share (window.KefuInbox): the view tabs
 * (mine / unassigned / all, kept in ?view=), the customer cell (name, unread dot, last message preview), the
 * waiting time, the assignee cell with Claim and Assign, and the new-arrival alert (a browser Notification when
 * permitted, and a short Web Audio beep: no asset files). Every string is inserted with textContent.
 *
 * Loaded by every console page, it also runs the team's live side there:
 * - the header's status selector (#ops-presence: online / away / offline, GET/POST /api/me/status, remembered with
 *   the account); only "online" agents count as staffed for the bot and receive auto-assigned conversations;
 * - the inbox pulse: GET /api/inbox/pulse?since=<token> every PULSE_MS. The answer is cheap (one shared read per
 *   worker, see channels/ops/desk.py) and lists the waiting conversations only when the queue changed. A
 *   conversation newly assigned to me, or newly waiting unassigned, alerts at once: an in-page notice (#ops-notice,
 *   role=alert, with a link to it), the browser Notification and the beep. Pages may listen to the window's
 *   "kefu:inbox" event (fired when the queue changed) to reload their tables sooner than their own polling.
 *   Each request of the pulse also tells the server the console is open (presence: unseen for 90 s = offline).
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

  // The colleagues a conversation can go to, each with their status now (read once per page).
  function loadAssignees() {
    if (!assignees) {
      assignees = K.api("GET", "/api/assignees").then(function (data) {
        return data.items.map(function (n) { return { name: n, status: (data.presence || {})[n] || "online" }; });
      }, function () { assignees = null; return []; });
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
      loadAssignees().then(function (people) {
        people.forEach(function (p) {
          if (p.name === c.assignee) return;
          // A username (data), and for a colleague not online their status (interface text) after it.
          var o = el("option", null, p.status === "online" ? p.name
            : p.name + " (" + K.t(p.status === "away" ? "presence.away" : "presence.offline") + ")");
          o.value = p.name;
          o.setAttribute("data-raw", "");
          o.setAttribute("data-status", p.status);
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
  // Waiting conversations already seen: id -> assignee ("" when unassigned). null before the first pulse: what waits
  // when a page opens does not alert.
  var known = null;
  var PULSE_MS = 300;  // with the server's 0.15 s shared read: a queued customer shows within ~0.5 s at worst
  var PULSE_RETRY_MS = 2000;  // after a failed pulse (the server restarting, the network gone)
  var pulseToken = null;

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

  // The customer's name as the inbox writes it (a nameless visitor in our language), as a data node.
  function customerNode(c) {
    var short = String(c.id).slice(0, 6);
    if (!c.customer || c.customer === "Visitor " + short) return K.node("inbox.visitor", { id: K.raw(short) });
    return K.raw(c.customer);
  }

  // The in-page notice: always shown (no permission needed), replaced by the next one, closed by its button.
  function notice(fresh, mine) {
    var box = document.getElementById("ops-notice");
    if (!box) {
      box = el("div", "ops-notice");
      box.id = "ops-notice";
      box.setAttribute("role", "alert");
      document.body.appendChild(box);
    }
    var first = fresh[0];
    box.textContent = "";
    box.setAttribute("data-id", first.id);
    box.setAttribute("data-kind", mine ? "mine" : "waiting");
    var text = el("span", "ops-notice-text");
    if (fresh.length > 1) {
      text.textContent = K.t(mine ? "inbox.noticeMineMany" : "inbox.noticeMany", { n: K.number(fresh.length) });
    } else {
      text.appendChild(K.node(mine ? "inbox.noticeMine" : "inbox.noticeWaiting", { name: customerNode(first) }));
    }
    box.appendChild(text);
    var open = el("a", null, K.t("inbox.noticeOpen"));
    open.href = fresh.length > 1 ? "/console/queue" + (mine ? "?view=mine" : "") : "/console/c/" + encodeURIComponent(first.id);
    box.appendChild(open);
    var close = el("button", null, K.t("inbox.noticeDismiss"));
    close.type = "button";
    close.addEventListener("click", function () { box.hidden = true; });
    box.appendChild(close);
    box.hidden = false;
  }

  function notify(fresh, mine) {
    api.alerts += 1;
    notice(fresh, mine);
    beep();
    if (!("Notification" in window) || window.Notification.permission !== "granted") return;
    try {
      var first = fresh[0];
      new window.Notification(K.t(mine ? "inbox.notifyMineTitle" : "inbox.notifyTitle"), {
        body: fresh.length > 1 ? K.t("inbox.notifyMany", { n: K.number(fresh.length) })
          : (first.customer || K.t("inbox.notifyVisitor")),
        tag: "kefu-queue"
      });
    } catch (e) { /* some browsers allow notifications from service workers only */ }
  }

  // The pulse's waiting conversations [{id, customer, assignee}] (the whole queue, as routed) against what was seen:
  // one assigned to me that was not mine before alerts me; one newly waiting with nobody assigned (auto-assignment
  // off, or nobody online) alerts everyone; one assigned to a colleague, nobody. What left the queue is forgotten
  // (queued again, it alerts again).
  function arrivals(waiting) {
    var me = K.user() && K.user().username;
    if (known !== null) {
      var mine = [], fresh = [];
      waiting.forEach(function (c) {
        var before = known[c.id];
        if (me && c.assignee === me && before !== me) mine.push(c);
        else if (!c.assignee && before === undefined) fresh.push(c);
      });
      if (mine.length) notify(mine, true);
      else if (fresh.length) notify(fresh, false);
    }
    known = {};
    waiting.forEach(function (c) { known[c.id] = c.assignee || ""; });
  }

  // Pages call this with their own poll's rows. The alerts come from the pulse alone: a page's poll may catch a
  // conversation in the moment between its queueing and its auto-assignment, and alert everyone for a customer
  // that is about to be one colleague's. Kept so that the pages calling it need no change.
  function watch(items) { return items; }

  // ------------------------------------------------------------------------------------------- the pulse
  // A plain fetch, not K.api: a pulse that finds the session gone (401) stops quietly instead of sending the page to
  // the login form under the user's hands, and logging out aborts the one in flight first (its answer is moot).
  var pulseStopped = false;
  var pulseAbort = null;

  function stopPulse() {
    pulseStopped = true;
    if (pulseAbort) pulseAbort.abort();
  }

  function pulse() {
    if (pulseStopped) return;
    var url = "/api/inbox/pulse" + (pulseToken ? "?since=" + encodeURIComponent(pulseToken) : "");
    pulseAbort = window.AbortController ? new window.AbortController() : null;
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store",
                 signal: pulseAbort ? pulseAbort.signal : undefined }).then(function (res) {
      if (res.status === 401) { pulseStopped = true; return null; }
      if (!res.ok) throw new Error(String(res.status));
      return res.json();
    }).then(function (data) {
      if (!data || pulseStopped) return;
      pulseToken = data.token;
      if (data.changed) {
        arrivals(data.waiting || []);
        try { window.dispatchEvent(new CustomEvent("kefu:inbox")); } catch (e) { /* very old browsers */ }
      }
      window.setTimeout(pulse, PULSE_MS);
    }).catch(function () {
      if (!pulseStopped) window.setTimeout(pulse, PULSE_RETRY_MS);
    });
  }

  // ------------------------------------------------------------------------------------------- status
  // The header's selector: the status the agent chose (the server remembers it with the account).
  function statusSelector() {
    var box = document.getElementById("ops-presence-box");
    var select = document.getElementById("ops-presence");
    if (!box || !select || !K.can("agent")) return;
    var shown = null;
    function show(status) {
      shown = status;
      select.value = status;
      select.setAttribute("data-status", status);
    }
    box.hidden = false;
    K.api("GET", "/api/me/status").then(function (data) { show(data.status); }, function () { /* stays as is */ });
    select.addEventListener("change", function () {
      var wanted = select.value;
      select.disabled = true;
      K.api("POST", "/api/me/status", { status: wanted }).then(function (data) {
        select.disabled = false;
        show(data.status);
      }, function (e) {
        select.disabled = false;
        if (shown) show(shown);
        var status = document.getElementById("ops-page-status");
        if (status) K.setStatus(status, K.t("presence.failed", { error: K.errorText(e) }), true);
      });
    });
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

  // Logging out (the header's button) or leaving the page ends the pulse before anything else happens.
  document.addEventListener("click", function (e) {
    if (e.target && e.target.closest && e.target.closest("#ops-logout")) stopPulse();
  }, true);
  window.addEventListener("pagehide", stopPulse);
  window.addEventListener("pageshow", function (e) {  // back from the browser's page cache: live again
    if (e.persisted && pulseStopped) { pulseStopped = false; pulse(); }
  });

  K.onReady(function () {
    statusSelector();
    pulse();
  });
})();
