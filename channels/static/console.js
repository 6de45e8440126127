/*
 * Kefu console, first page: the conversation list and one conversation's events.
 * Data: GET /api/conversations?limit=&offset= and GET /api/conversations/<id> (see channels/server.py).
 * All text is inserted with textContent, never innerHTML.
 * TODO(later issue): login and roles; until then the server must only listen on 127.0.0.1.
 */
(function () {
  "use strict";

  var PAGE = 50;
  var offset = 0;
  var selected = null;

  var rows = document.getElementById("con-rows");
  var listStatus = document.getElementById("con-list-status");
  var detailStatus = document.getElementById("con-detail-status");
  var detailTitle = document.getElementById("con-detail-title");
  var events = document.getElementById("con-events");
  var prev = document.getElementById("con-prev");
  var next = document.getElementById("con-next");
  var page = document.getElementById("con-page");

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(node, text, isError) {
    node.textContent = text;
    node.classList.toggle("con-error", !!isError);
  }

  function fetchJson(url) {
    return fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" }).then(function (res) {
      return res.json().then(function (body) {
        if (!res.ok) {
          var err = (body && body.error) || {};
          throw new Error((err.code || res.status) + ": " + (err.message || res.statusText));
        }
        return body;
      });
    });
  }

  function when(iso, short) {
    if (!iso) return "";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return short
      ? d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
      : d.toLocaleString();
  }

  // --------------------------------------------------------------------------------------------- the list
  function loadList() {
    setStatus(listStatus, "Loading…");
    fetchJson("/api/conversations?limit=" + PAGE + "&offset=" + offset)
      .then(function (list) {
        rows.textContent = "";
        list.forEach(function (c) { rows.appendChild(row(c)); });
        setStatus(listStatus, list.length ? "" : "No conversations yet.");
        page.textContent = list.length ? (offset + 1) + "–" + (offset + list.length) : "";
        prev.disabled = offset === 0;
        next.disabled = list.length < PAGE;
      })
      .catch(function (e) { setStatus(listStatus, "Could not load conversations (" + e.message + ")", true); });
  }

  function row(c) {
    var tr = el("tr");
    tr.tabIndex = 0;
    tr.setAttribute("data-id", c.id);
    if (c.id === selected) tr.classList.add("con-selected");
    var id = el("td", "con-id", c.id);
    id.title = c.id;
    tr.appendChild(id);
    tr.appendChild(el("td", null, c.language));
    tr.appendChild(el("td", null, c.turns));
    tr.appendChild(el("td", null, c.state));
    tr.appendChild(el("td", null, c.handed_off ? "yes" : "no"));
    var updated = el("td", null, when(c.updated_at, true));
    updated.title = c.updated_at;
    tr.appendChild(updated);
    tr.addEventListener("click", function () { select(c.id); });
    tr.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        select(c.id);
      }
    });
    return tr;
  }

  // ------------------------------------------------------------------------------------------- the events
  function select(id) {
    selected = id;
    Array.prototype.forEach.call(rows.children, function (tr) {
      tr.classList.toggle("con-selected", tr.getAttribute("data-id") === id);
    });
    detailTitle.textContent = "Events of " + id;
    setStatus(detailStatus, "Loading…");
    events.textContent = "";
    fetchJson("/api/conversations/" + encodeURIComponent(id))
      .then(function (list) {
        if (selected !== id) return;
        list.forEach(function (e) { events.appendChild(eventItem(e)); });
        setStatus(detailStatus, list.length ? list.length + " events" : "No events yet.");
      })
      .catch(function (e) { setStatus(detailStatus, "Could not load events (" + e.message + ")", true); });
  }

  function pct(x) {
    return typeof x === "number" ? (x * 100).toFixed(1) + "%" : "?";
  }

  function describe(e) {
    var d = e.data || {};
    switch (e.type) {
      case "user_message":
        return { text: d.text };
      case "bot_message":
        return { text: d.text, meta: [d.response, d.source].filter(Boolean).join(" · ") };
      case "agent_message":
        return { text: d.text, meta: d.agent ? "agent " + d.agent : "" };
      case "nlu_parse":
        var ents = (d.entities || []).map(function (x) { return x.entity + "=" + x.value; }).join(", ");
        return {
          meta: "intent " + d.intent + " (" + pct(d.confidence) + ")" + (d.language ? " · " + d.language : "") +
            (ents ? " · " + ents : "")
        };
      case "action":
        var allowed = Array.isArray(d.allowed) ? d.allowed.join(", ") : "";
        return {
          meta: d.name + (typeof d.score === "number" ? " (" + pct(d.score) + ")" : "") +
            (d.policy ? " · policy " + d.policy : "") +
            (d.state_before || d.state_after ? " · " + (d.state_before || "?") + " → " + (d.state_after || "?") : "") +
            (allowed ? " · allowed: " + allowed : "")
        };
      case "slot_set":
        return { meta: d.slot + " = " + JSON.stringify(d.value) };
      case "safety_input":
        return {
          meta: (d.blocked ? "BLOCKED" : "ok") + (d.redactions && d.redactions.length ? " · " +
            d.redactions.length + " redaction(s)" : ""),
          flags: d.flags || []
        };
      case "safety_output":
        return {
          meta: (d.toxic ? "TOXIC" : "ok") + " · score " + d.score + " / threshold " + d.threshold +
            (d.replaced ? " · replaced" : "")
        };
      case "handoff":
        return { meta: "reason: " + (d.reason || "?") };
      default:
        return { meta: JSON.stringify(d) };
    }
  }

  function eventItem(e) {
    var li = el("li", "con-event con-event-" + String(e.type).replace(/[^a-z_]/g, ""));
    li.appendChild(el("span", "con-type", e.type));
    li.appendChild(el("span", "con-meta", "#" + e.seq + " · turn " + e.turn + " · " + when(e.timestamp)));
    var info = describe(e);
    if (info.meta) li.appendChild(el("span", "con-text con-detail-meta", info.meta));
    (info.flags || []).forEach(function (f) { li.appendChild(el("span", "con-flag", f)); });
    if (info.text !== undefined && info.text !== null) li.appendChild(el("span", "con-text", info.text));
    return li;
  }

  // ---------------------------------------------------------------------------------------------- wiring
  document.getElementById("con-refresh").addEventListener("click", function () {
    loadList();
    if (selected) select(selected);
  });
  prev.addEventListener("click", function () {
    offset = Math.max(0, offset - PAGE);
    loadList();
  });
  next.addEventListener("click", function () {
    offset += PAGE;
    loadList();
  });
  loadList();
})();
