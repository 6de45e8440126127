/*
 * Kefu console: one conversation. Events are grouped by turn: what the customer wrote, the safety verdict, the NLU
 * parse (intent, confidence, entities), the policy's action with its score and the allowed set, the reply with its
 * safety verdict and the latency of each stage. Agents review (reviewed / flag / tags), correct a parse (it becomes
 * a training example), take the conversation over, reply to the customer and hand it back.
 * New events are polled every 1.5 s (GET /api/conversations/<id>/events?after=<last seq>).
 * Typing (in memory on the server, never stored): while an agent holds the conversation, GET .../typing is polled
 * every 1.5 s and shows "Customer is typing…"; the agent's own typing is POSTed (at most once every 2 s while
 * typing, false on send, blur or 5 s idle) and shown in the customer's widget with the agent's name.
 * Attachments: "attachment" events show the file (a thumbnail for images, a download link for PDFs) from
 * GET /api/attachments/<file id>; the agent holding the conversation sends one with the file control of the reply
 * form (POST .../attachments, JSON with the file as base64; the server checks the bytes, the type and the size).
 */
(function () {
  "use strict";
  var K = window.KefuOps;
  var el = K.el;
  var cid = decodeURIComponent(window.location.pathname.replace(/^\/console\/c\//, "").replace(/\/$/, ""));
  var base = "/api/conversations/" + encodeURIComponent(cid);

  var turnsList = document.getElementById("conv-turns");
  var status = document.getElementById("conv-status");
  var actionStatus = document.getElementById("conv-action-status");
  var facts = document.getElementById("conv-facts");
  var reviewedBtn = document.getElementById("conv-reviewed");
  var flagBtn = document.getElementById("conv-flag");
  var takeoverBtn = document.getElementById("conv-takeover");
  var handbackBtn = document.getElementById("conv-handback");
  var agentNote = document.getElementById("conv-agent-note");
  var replyForm = document.getElementById("conv-reply");
  var replyText = document.getElementById("conv-reply-text");
  var tagForm = document.getElementById("conv-tag-form");
  var noteForm = document.getElementById("conv-note-form");
  var noteText = document.getElementById("conv-note-text");
  var cannedSelect = document.getElementById("conv-canned");
  var cannedStatus = document.getElementById("conv-canned-status");
  var customerTyping = el("p", "ops-typing", K.t("conv.customerTyping"));
  var R = K.raw;  // a value from the data (intent, action, username, slot...) inside interface text
  customerTyping.id = "conv-customer-typing";
  customerTyping.setAttribute("role", "status");
  customerTyping.hidden = true;
  turnsList.insertAdjacentElement("afterend", customerTyping);

  var conversation = null;
  var events = [];
  var lastSeq = 0;
  var meta = { intents: [], entities: [] };
  var cards = {}; // turn number -> <li>
  var openForms = {}; // turn number -> true while a correction form is open (do not re-render under the user)
  var stale = {}; // turn number -> true when new events arrived while its form was open

  K.onReady(function () {  // in the account's language, known once /api/me answered
    var title = document.getElementById("conv-title");
    title.removeAttribute("data-i18n");
    title.textContent = "";
    title.appendChild(K.node("conv.titleId", { id: R(cid) }));
    document.title = K.t("title.conversationId", { id: cid });
  });
  var exportLink = document.getElementById("conv-export");
  exportLink.href = base + "/scenario.yml";
  exportLink.setAttribute("download", "conversation_" + cid.replace(/[^A-Za-z0-9_.-]/g, "_") + ".yml");

  // --------------------------------------------------------------------------------------------- rendering
  function detail(dl, label, value, cls) {
    dl.appendChild(el("dt", null, label));
    var dd = el("dd", cls || null);
    if (value instanceof Node) dd.appendChild(value);
    else dd.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
    dl.appendChild(dd);
    return dd;
  }

  function message(role, label, text) {
    var box = el("div", "ops-msg ops-msg-" + role);
    box.appendChild(el("span", "ops-who-label", label));
    var body = el("span", "ops-msg-text", text);
    body.setAttribute("data-raw", "");  // what the customer, the bot or a colleague wrote
    box.appendChild(body);
    return box;
  }

  // ----------------------------------------------------------------------------------------- attachments
  var ATTACH_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"];
  var ATTACH_MAX_BYTES = 5 * 1024 * 1024;  // the server's default limit; it checks again

  function attachmentMessage(d) {
    var agent = d.direction === "agent";
    var box = el("div", "ops-msg ops-msg-" + (agent ? "agent" : "user") + " ops-msg-file");
    box.appendChild(el("span", "ops-who-label", agent ? K.node("conv.agent", { agent: R(d.agent || "") })
      : K.t("conv.customer")));
    var url = "/api/attachments/" + encodeURIComponent(String(d.id || ""));
    var link = el("a", "ops-file");
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    var name = el("span", "ops-file-name", String(d.filename || ""));
    name.setAttribute("data-raw", "");  // the file's name, as the sender chose it (sanitised)
    if (String(d.content_type || "").indexOf("image/") === 0) {
      link.setAttribute("aria-label", K.t("conv.attachmentImage", { name: String(d.filename || "") }));
      var img = el("img", "ops-thumb");
      img.src = url;
      img.alt = String(d.filename || "");
      img.style.display = "block";  // CSSOM (allowed by the CSP's style-src 'self'): ops.css has no thumbnail rule
      img.style.maxWidth = "240px";
      img.style.maxHeight = "180px";
      link.appendChild(img);
    } else {
      link.setAttribute("download", String(d.filename || "attachment"));
      link.setAttribute("aria-label", K.t("conv.attachmentDownload", { name: String(d.filename || "") }));
    }
    link.appendChild(name);
    box.appendChild(link);
    box.appendChild(el("span", "ops-file-size", K.t("conv.fileSize", { kb: K.number(Math.max(1, Math.round((d.size || 0) / 1024))) })));
    return box;
  }

  function byType(list, type) {
    return list.filter(function (e) { return e.type === type; });
  }

  function entitiesText(ents) {
    return (ents || []).map(function (x) { return x.entity + " = " + x.value; }).join(", ");
  }

  function renderTurn(turn, list) {
    var li = cards[turn] || el("li", "ops-turn");
    li.textContent = "";
    li.setAttribute("data-turn", turn);
    var head = el("div", "ops-turn-head");
    head.appendChild(el("span", null, turn ? K.t("conv.turn", { n: K.number(turn) }) : K.t("conv.beforeFirst")));
    head.appendChild(el("span", null, list.length ? K.when(list[0].timestamp) : ""));
    li.appendChild(head);

    var user = byType(list, "user_message")[0];
    var parse = byType(list, "nlu_parse")[0];
    var action = byType(list, "action")[0];
    var bot = byType(list, "bot_message")[0];
    var safetyIn = byType(list, "safety_input")[0];
    var safetyOut = byType(list, "safety_output")[0];

    list.forEach(function (e) {
      var d = e.data || {};
      if (e.type === "user_message") {
        var m = message("user", K.t("conv.customer"), d.text);
        m.setAttribute("data-seq", e.seq);
        li.appendChild(m);
        var dl = el("dl", "ops-detail");
        if (safetyIn) {
          var sd = safetyIn.data || {};
          var verdict = el("span", null, K.t(sd.blocked ? "conv.blocked" : "conv.passed"));
          if (sd.redactions && sd.redactions.length) {
            verdict.appendChild(K.node("conv.redactions", { n: K.number(sd.redactions.length),
              kinds: R(sd.redactions.map(function (r) { return r.kind; }).join(", ")) }));
          }
          if (sd.flags && sd.flags.length) verdict.appendChild(K.node("conv.flags", { flags: R(sd.flags.join(", ")) }));
          detail(dl, K.t("conv.inputSafety"), verdict, sd.blocked || (sd.flags && sd.flags.length) ? "ops-low" : null);
        }
        if (parse) {
          var pd = parse.data || {};
          var intent = el("span", "ops-intent", pd.intent);
          intent.setAttribute("data-raw", "");
          var wrap = el("span");
          wrap.appendChild(intent);
          wrap.appendChild(document.createTextNode(" "));
          wrap.appendChild(el("span", pd.confidence < 0.5 ? "ops-confidence ops-low" : "ops-confidence", K.pct(pd.confidence)));
          detail(dl, K.t("conv.intent"), wrap).className = "ops-parse";
          detail(dl, K.t("conv.entities"), R(entitiesText(pd.entities) || "–"), "ops-entities");
          var ranking = (pd.ranking || []).slice(0, 3).map(function (r) { return r[0] + " " + K.pct(r[1]); }).join(" · ");
          if (ranking) detail(dl, K.t("conv.ranking"), R(ranking));
        }
        if (action) {
          var ad = action.data || {};
          var two = { minimumFractionDigits: 2, maximumFractionDigits: 2 };
          var act = el("span", null, R(ad.name));
          if (typeof ad.score === "number") act.appendChild(K.node("conv.score", { score: K.number(ad.score, two) }));
          if (ad.policy) {
            act.appendChild(document.createTextNode(" · "));
            act.appendChild(R(ad.policy));
          }
          if (ad.failed) act.appendChild(K.node("conv.failedAction", { error: R(ad.error || "") }));
          detail(dl, K.t("conv.action"), act, "ops-action");
          detail(dl, K.t("conv.allowed"), R((ad.allowed || []).join(", ") || "–"), "ops-allowed");
          detail(dl, K.t("conv.state"), R((ad.state_before || "?") + " → " + (ad.state_after || "?")));
          if (ad.knowledge) {  // knowledge first: the entry that answered, whatever the intent said
            var known = el("span", null, R(ad.knowledge.entry));
            known.appendChild(K.node("conv.score", { score: K.number(Number(ad.knowledge.score), two) }));
            detail(dl, K.t("conv.knowledge"), known, "ops-knowledge");
          }
          // the learned policy asked what the NLU's second intent needs (the runner-up reading)
          if (ad.read_as) detail(dl, K.t("conv.readAs"), R(ad.read_as), "ops-read-as");
        }
        if (dl.children.length) li.appendChild(dl);
        if (parse && K.can("agent")) li.appendChild(correctButton(turn, e, parse));
      } else if (e.type === "bot_message") {
        li.appendChild(message("bot", K.t("conv.bot"), d.text));
        var bl = el("dl", "ops-detail");
        if (safetyOut) {
          var od = safetyOut.data || {};
          detail(bl, K.t("conv.replySafety"), K.t(od.toxic ? "conv.toxic" : "conv.ok") +
            K.t("conv.toxicScore", { score: K.number(od.score), threshold: K.number(od.threshold) }) +
            (od.replaced ? K.t("conv.replaced") : ""), od.toxic ? "ops-low" : null);
        }
        if (d.sources && d.sources.length) detail(bl, K.t("conv.writtenBy"), R(d.sources.join(", ")));
        if (d.latency_ms) {
          var stages = el("span");
          Object.keys(d.latency_ms).forEach(function (k, i) {
            if (i) stages.appendChild(document.createTextNode(" · "));
            stages.appendChild(R(k));
            stages.appendChild(document.createTextNode(" " + K.t("conv.ms", { n: K.number(d.latency_ms[k]) })));
          });
          detail(bl, K.t("conv.latency"), stages, "ops-latency");
        }
        if (bl.children.length) li.appendChild(bl);
      } else if (e.type === "agent_message") {
        li.appendChild(message("agent", K.node("conv.agent", { agent: R(d.agent || "") }), d.text));
      } else if (e.type === "attachment") {  // a file the customer or an agent sent (its bytes: GET /api/attachments/<id>)
        li.appendChild(attachmentMessage(d));
      } else if (e.type === "note") {  // staff only: the customer never receives a note
        li.appendChild(message("note", K.node("conv.noteBy", { agent: R(d.agent || "?") }), d.text));
      } else if (e.type === "slot_set") {
        li.appendChild(el("div", "ops-system", K.node("conv.slot", { slot: R(d.slot), value: R(JSON.stringify(d.value)) })));
      } else if (e.type === "handoff") {
        li.appendChild(el("div", "ops-system", K.node("conv.handoff", { reason: R(d.reason || "?") })));
      } else if (e.type === "handoff_end") {
        var why = { offline: "conv.whyOffline", timeout: "conv.whyTimeout", customer: "conv.whyCustomer" };
        var reason = why[d.reason] ? K.t(why[d.reason]) : R(d.reason || "?");
        li.appendChild(el("div", "ops-system", d.wanted ? K.node("conv.handoffWanted", { wanted: R(d.wanted), why: reason })
          : K.node("conv.waitEnded", { why: reason })));
      } else if (e.type === "takeover") {
        li.appendChild(el("div", "ops-system", K.node("conv.tookOver", { agent: d.agent ? R(d.agent) : K.t("conv.anAgent") })));
      } else if (e.type === "handback") {
        li.appendChild(el("div", "ops-system", K.node("conv.handedBack", { agent: d.agent ? R(d.agent) : K.t("conv.theAgent") })));
      } else if (e.type === "resolved") {  // the workspace: resolution and the customer's rating
        li.appendChild(el("div", "ops-system ops-resolved", K.node("conv.resolvedBy",
          { agent: d.agent ? R(d.agent) : K.t("conv.anAgent") })));
      } else if (e.type === "reopened") {
        li.appendChild(el("div", "ops-system", d.reason === "customer" ? K.t("conv.customerReopened")
          : K.node("conv.reopenedBy", { agent: d.agent ? R(d.agent) : K.t("conv.anAgent") })));
      } else if (e.type === "rating") {
        li.appendChild(el("div", "ops-system ops-rating", d.comment
          ? K.node("conv.ratedComment", { score: d.score, comment: R(d.comment) }) : K.t("conv.rated", { score: d.score })));
      } else if (e.type === "review") {
        var parts = [];
        if (d.reviewed !== undefined && d.reviewed !== null) {
          parts.push(K.t(d.reviewed ? "conv.reviewMarked" : "conv.reviewUnmarked"));
        }
        if (d.flagged !== undefined && d.flagged !== null) parts.push(K.t(d.flagged ? "conv.reviewFlagged" : "conv.reviewUnflagged"));
        if (d.tags_added && d.tags_added.length) parts.push(K.node("conv.reviewTagged", { tags: R(d.tags_added.join(", ")) }));
        if (d.tags_removed && d.tags_removed.length) {
          parts.push(K.node("conv.reviewUntagged", { tags: R(d.tags_removed.join(", ")) }));
        }
        var what = el("span");
        parts.forEach(function (part, i) {
          if (i) what.appendChild(document.createTextNode(", "));
          what.appendChild(part instanceof Node ? part : document.createTextNode(part));
        });
        if (!parts.length) what.textContent = K.t("conv.reviewed");
        li.appendChild(el("div", "ops-system", K.node("conv.reviewBy", { by: R(d.by || "?"), what: what })));
      } else if (e.type === "correction") {
        li.appendChild(el("div", "ops-system ops-correction", K.node(
          d.entities && d.entities.length ? "conv.correctedEntities" : "conv.corrected",
          { by: R(d.by || "?"), seq: d.seq, intent: R(d.intent), entities: R(entitiesText(d.entities)) })));
      }
    });
    return li;
  }

  // ------------------------------------------------------------------------------------------- corrections
  function correctButton(turn, userEvent, parse) {
    var box = el("div");
    var btn = el("button", "ops-correct-open", K.t("conv.correct"));
    btn.type = "button";
    btn.addEventListener("click", function () {
      btn.hidden = true;
      openForms[turn] = true;
      box.appendChild(correctForm(turn, userEvent, parse, function () {
        delete openForms[turn];
        if (stale[turn]) {
          delete stale[turn];
          render();
        } else {
          btn.hidden = false;
        }
      }));
    });
    box.appendChild(btn);
    return box;
  }

  function correctForm(turn, userEvent, parse, done) {
    var text = (userEvent.data || {}).text || "";
    var form = el("form", "ops-correct");
    form.setAttribute("aria-label", K.t("conv.correctLabel", { n: turn }));
    var id = "fix-" + userEvent.seq;
    var label = el("label", null, K.t("conv.correctIntent"));
    label.setAttribute("for", id + "-intent");
    var select = el("select", "ops-correct-intent");
    select.id = id + "-intent";
    meta.intents.forEach(function (name) {
      var option = el("option", null, name);
      option.value = name;
      if (name === (parse.data || {}).intent) option.selected = true;
      select.appendChild(option);
    });
    label.appendChild(select);
    form.appendChild(label);
    var rowsBox = el("div");
    form.appendChild(el("span", "ops-status", K.t("conv.correctEntities")));
    form.appendChild(rowsBox);

    function entityRow(entity, value) {
      var row = el("div", "ops-entity-row");
      var n = rowsBox.children.length + 1;
      var sel = el("select", "ops-entity-name");
      sel.setAttribute("aria-label", K.t("conv.entityName", { n: n }));
      sel.setAttribute("data-raw", "");  // entity names
      meta.entities.forEach(function (name) {
        var option = el("option", null, name);
        option.value = name;
        if (name === entity) option.selected = true;
        sel.appendChild(option);
      });
      var input = el("input", "ops-entity-value");
      input.setAttribute("aria-label", K.t("conv.entityValue", { n: n }));
      input.value = value || "";
      var remove = el("button", null, K.t("common.remove"));
      remove.type = "button";
      remove.setAttribute("aria-label", K.t("conv.removeEntity", { n: n }));
      remove.addEventListener("click", function () { row.remove(); });
      row.appendChild(sel);
      row.appendChild(input);
      row.appendChild(remove);
      rowsBox.appendChild(row);
    }
    ((parse.data || {}).entities || []).forEach(function (x) { entityRow(x.entity, x.value); });
    var add = el("button", null, K.t("conv.addEntity"));
    add.type = "button";
    add.addEventListener("click", function () { entityRow(meta.entities[0], ""); });
    var save = el("button", "ops-primary", K.t("conv.saveExample"));
    save.type = "submit";
    var cancel = el("button", null, K.t("common.cancel"));
    cancel.type = "button";
    var msg = el("p", "ops-status");
    msg.setAttribute("role", "status");
    var buttons = el("div", "ops-actions");
    buttons.appendChild(add);
    buttons.appendChild(save);
    buttons.appendChild(cancel);
    form.appendChild(buttons);
    form.appendChild(msg);
    cancel.addEventListener("click", function () {
      form.remove();
      done();
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var entities = [];
      var problem = null;
      Array.prototype.forEach.call(rowsBox.children, function (row) {
        var value = row.querySelector(".ops-entity-value").value;
        if (!value) return;
        var start = text.indexOf(value);
        if (start < 0) problem = K.node("conv.notInMessage", { value: R(value) });
        else entities.push({ entity: row.querySelector(".ops-entity-name").value, value: value, start: start, end: start + value.length });
      });
      if (problem) {
        K.setStatus(msg, problem, true);
        return;
      }
      save.disabled = true;
      K.api("POST", base + "/correct", { seq: userEvent.seq, intent: select.value, entities: entities }).then(function () {
        form.remove();
        K.setStatus(actionStatus, K.t("conv.correctionSaved"));
        done();
        poll();
      }, function (e) {
        save.disabled = false;
        K.setStatus(msg, K.t("conv.notSaved", { error: K.errorText(e) }), true);
      });
    });
    return form;
  }

  // --------------------------------------------------------------------------------------------- side panel
  function renderFacts() {
    var c = conversation;
    facts.textContent = "";
    detail(facts, K.t("conv.factLanguage"), R(c.language));
    detail(facts, K.t("conv.factState"), R(c.state));
    detail(facts, K.t("conv.factTurns"), K.number(c.turns));
    detail(facts, K.t("conv.factStarted"), K.when(c.created_at));
    detail(facts, K.t("conv.factLast"), K.when(c.updated_at));
    detail(facts, K.t("conv.factLowest"), K.pct(c.min_confidence));
    detail(facts, K.t("conv.factFallbacks"), K.number(c.fallbacks));
    detail(facts, K.t("conv.factSafety"), K.number(c.safety_flags));
    detail(facts, K.t("conv.factHandoff"), c.handoff_status === "agent" ? K.node("conv.handoffWith", { agent: R(c.agent) })
      : K.t(c.handoff_status === "waiting" ? "conv.handoffWaiting" : "common.no"), "ops-handoff");
    detail(facts, K.t("conv.factReviewed"), K.t(c.reviewed ? "common.yes" : "common.no"), "ops-reviewed");
    detail(facts, K.t("conv.factFlagged"), K.t(c.flagged ? "common.yes" : "common.no"), "ops-flagged");
    var tags = el("span", "ops-tags");
    (c.tags || []).forEach(function (t) {
      var b = K.badge(R(t), "tag");
      if (K.can("agent")) {
        var x = el("button", "ops-untag", "×");
        x.type = "button";
        x.setAttribute("aria-label", K.t("conv.removeTag", { tag: t }));
        x.addEventListener("click", function () { review({ remove_tags: [t] }); });
        b.appendChild(x);
      }
      tags.appendChild(b);
    });
    detail(facts, K.t("conv.factTags"), (c.tags || []).length ? tags : "–");

    var agent = K.can("agent");
    var mine = c.handoff_status === "agent" && c.agent === K.user().username;
    reviewedBtn.textContent = K.t(c.reviewed ? "conv.unmarkReviewed" : "conv.markReviewed");
    flagBtn.textContent = K.t(c.flagged ? "conv.unflag" : "conv.flag");
    reviewedBtn.hidden = flagBtn.hidden = tagForm.hidden = !agent;
    takeoverBtn.hidden = !agent || mine;
    takeoverBtn.disabled = c.handoff_status === "agent";
    handbackBtn.hidden = !agent || !mine;
    replyForm.hidden = !mine;
    noteForm.hidden = !agent;
    agentNote.textContent = "";
    agentNote.appendChild(mine ? document.createTextNode(K.t("conv.noteMine"))
      : c.handoff_status === "agent" ? K.node("conv.noteOther", { agent: R(c.agent) })
        : document.createTextNode(K.t(c.handoff_status === "waiting" ? "conv.noteWaiting"
          : agent ? "conv.noteBotAgent" : "conv.noteBot")));
    renderResolution(c, agent);
  }

  // The workspace's resolution: status, rating, Resolve / Reopen (agent and admin).
  var resolveBtn = document.getElementById("conv-resolve");
  var reopenBtn = document.getElementById("conv-reopen");
  function renderResolution(c, agent) {
    detail(facts, K.t("conv.factStatus"), c.resolved_at ? K.node("conv.statusResolved", { agent: R(c.resolved_by || "?") })
      : K.t("conv.statusOpen"), "ops-resolution");
    detail(facts, K.t("conv.factRating"), c.rating ? K.t("conv.ratingValue", { score: c.rating }) : "–", "ops-rating-fact");
    resolveBtn.hidden = !agent || !!c.resolved_at;
    resolveBtn.disabled = c.handoff_status === "agent" && c.agent !== K.user().username;
    reopenBtn.hidden = !agent || !c.resolved_at;
    document.getElementById("conv-resolution").textContent = c.resolved_at
      ? K.t(c.rating ? "conv.resolvedAt" : "conv.resolvedAtUnrated", { when: K.when(c.resolved_at), score: c.rating })
      : K.t("conv.open");
  }
  resolveBtn.addEventListener("click", function () {
    act(K.api("POST", base + "/resolve"), K.t("conv.resolvedDone"));
  });
  reopenBtn.addEventListener("click", function () {
    act(K.api("POST", base + "/reopen"), K.t("conv.reopenedDone"));
  });

  function render() {
    var groups = {};
    var order = [];
    var turnOfSeq = {};
    events.forEach(function (e) { turnOfSeq[e.seq] = e.turn; });
    events.forEach(function (e) {
      // A correction is shown with the message it corrects, not in the turn during which it was made.
      var turn = e.type === "correction" && turnOfSeq[(e.data || {}).seq] !== undefined ? turnOfSeq[e.data.seq] : e.turn;
      if (!groups[turn]) {
        groups[turn] = [];
        order.push(turn);
      }
      groups[turn].push(e);
    });
    order.sort(function (a, b) { return a - b; });
    order.forEach(function (turn) {
      if (openForms[turn]) {
        stale[turn] = true;
        return;
      }
      var li = renderTurn(turn, groups[turn]);
      if (!cards[turn]) {
        cards[turn] = li;
        turnsList.appendChild(li);
      }
    });
    K.setStatus(status, events.length ? "" : K.t("conv.noMessages"));
  }

  // ------------------------------------------------------------------------------------------------ network
  function load() {
    K.setStatus(status, K.t("common.loading"));
    return K.api("GET", base).then(function (data) {
      conversation = data.conversation;
      events = data.events;
      lastSeq = data.last_seq;
      renderFacts();
      render();
    }, function (e) {
      K.setStatus(status, e.status === 404 ? K.t("conv.notFound") : K.t("conv.loadFailed", { error: K.errorText(e) }), true);
      throw e;
    });
  }

  var polling = false;
  function poll() {
    if (polling || !conversation) return;
    polling = true;
    K.api("GET", base + "/events?after=" + lastSeq).then(function (data) {
      polling = false;
      var changed = JSON.stringify(data.conversation) !== JSON.stringify(conversation);
      conversation = data.conversation;
      if (changed) renderFacts();
      if (data.events.length) {
        events = events.concat(data.events);
        lastSeq = data.last_seq;
        render();
      }
    }, function () { polling = false; });
  }

  // ------------------------------------------------------------------------------------------------ typing
  var typingPolling = false;
  function pollTyping() {  // only while an agent holds it: nobody answers the customer live otherwise
    if (typingPolling || !conversation || conversation.handoff_status !== "agent") {
      customerTyping.hidden = true;
      return;
    }
    typingPolling = true;
    K.api("GET", base + "/typing").then(function (data) {
      typingPolling = false;
      customerTyping.hidden = !data.customer;
    }, function () {
      typingPolling = false;
      customerTyping.hidden = true;
    });
  }

  var TYPING_EVERY_MS = 2000, TYPING_IDLE_MS = 5000;
  var agentTypingAt = 0, agentTyping = false, agentIdle = null;
  function sendAgentTyping(state) {
    K.api("POST", base + "/typing", { state: state }).then(null, function () { /* cosmetic: never in the way */ });
  }
  function agentStopped() {
    window.clearTimeout(agentIdle);
    agentIdle = null;
    if (agentTyping) sendAgentTyping(false);
    agentTyping = false;
    agentTypingAt = 0;
  }
  function onAgentInput() {
    var mine = conversation && conversation.handoff_status === "agent" && conversation.agent === K.user().username;
    if (!mine || !replyText.value.trim()) {
      agentStopped();
      return;
    }
    var now = Date.now();
    if (now - agentTypingAt >= TYPING_EVERY_MS) {
      agentTyping = true;
      agentTypingAt = now;
      sendAgentTyping(true);
    }
    window.clearTimeout(agentIdle);
    agentIdle = window.setTimeout(agentStopped, TYPING_IDLE_MS);
  }
  replyText.addEventListener("input", onAgentInput);
  replyText.addEventListener("blur", agentStopped);

  function act(promise, done) {
    K.setStatus(actionStatus, K.t("common.working"));
    return promise.then(function (data) {
      if (data.conversation) {
        conversation = data.conversation;
        renderFacts();
      }
      K.setStatus(actionStatus, done);
      poll();
    }, function (e) {
      K.setStatus(actionStatus, e.status === 409 ? K.t("conv.firstThere", { error: K.errorText(e) })
        : K.t("conv.failed", { error: K.errorText(e) }), true);
      poll();
    });
  }

  function review(body) {
    return act(K.api("POST", base + "/review", body), K.t("common.saved"));
  }

  reviewedBtn.addEventListener("click", function () { review({ reviewed: !conversation.reviewed }); });
  flagBtn.addEventListener("click", function () { review({ flagged: !conversation.flagged }); });
  tagForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var input = document.getElementById("conv-tag");
    var tag = input.value.trim();
    if (!tag) return;
    review({ add_tags: [tag] }).then(function () { input.value = ""; });
  });
  takeoverBtn.addEventListener("click", function () {
    act(K.api("POST", base + "/takeover"), K.t("conv.tookOverDone")).then(function () { replyText.focus(); });
  });
  handbackBtn.addEventListener("click", function () {
    act(K.api("POST", base + "/handback"), K.t("conv.handedBackDone"));
  });
  replyForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = replyText.value.trim();
    if (!text) return;
    agentStopped();
    var send = document.getElementById("conv-reply-send");
    send.disabled = true;
    var id = "agent-" + (window.crypto && window.crypto.randomUUID ? window.crypto.randomUUID() : String(Date.now()));
    K.api("POST", base + "/message", { text: text, message_id: id }).then(function () {
      send.disabled = false;
      replyText.value = "";
      K.setStatus(actionStatus, K.t("conv.sent"));
      poll();
    }, function (e) {
      send.disabled = false;
      K.setStatus(actionStatus, K.t("conv.notSent", { error: K.errorText(e) }), true);
    });
  });
  replyText.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      replyForm.requestSubmit();
    }
  });

  // ----------------------------------------------------------------------------- sending a file (agents)
  var attachBox = el("div", "ops-attach");
  var attachLabel = el("label", null, K.t("conv.attachLabel"));
  attachLabel.setAttribute("for", "conv-attach");
  var attachInput = el("input");
  attachInput.type = "file";
  attachInput.id = "conv-attach";
  attachInput.accept = ATTACH_TYPES.join(",");
  attachBox.appendChild(attachLabel);
  attachBox.appendChild(attachInput);
  replyForm.insertBefore(attachBox, document.getElementById("conv-reply-send"));
  K.onReady(function () { attachLabel.textContent = K.t("conv.attachLabel"); });  // in the account's language

  function sendFile(file) {
    if (ATTACH_TYPES.indexOf(file.type) < 0) {
      K.setStatus(actionStatus, K.t("conv.fileType"), true);
      return;
    }
    if (file.size > ATTACH_MAX_BYTES) {
      K.setStatus(actionStatus, K.t("conv.fileTooLarge"), true);
      return;
    }
    attachInput.disabled = true;
    K.setStatus(actionStatus, K.t("conv.fileSending"));
    var reader = new FileReader();
    reader.onerror = function () {
      attachInput.disabled = false;
      K.setStatus(actionStatus, K.t("conv.fileNotSent", { error: K.t("error.unexpected") }), true);
    };
    reader.onload = function () {
      var data = String(reader.result).replace(/^data:[^,]*,/, "");  // the base64 after the data: URL's header
      var id = "agent-file-" + (window.crypto && window.crypto.randomUUID ? window.crypto.randomUUID() : String(Date.now()));
      K.api("POST", base + "/attachments", { filename: file.name, content_type: file.type, data: data, message_id: id })
        .then(function () {
          attachInput.disabled = false;
          attachInput.value = "";
          K.setStatus(actionStatus, K.t("conv.fileSent"));
          poll();
        }, function (e) {
          attachInput.disabled = false;
          attachInput.value = "";
          K.setStatus(actionStatus, K.t("conv.fileNotSent", { error: K.errorText(e) }), true);
        });
    };
    reader.readAsDataURL(file);
  }
  attachInput.addEventListener("change", function () {
    if (attachInput.files && attachInput.files[0]) sendFile(attachInput.files[0]);
  });

  // ------------------------------------------------------------------------- notes and canned replies
  noteForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = noteText.value.trim();
    if (!text) return;
    var add = document.getElementById("conv-note-add");
    add.disabled = true;
    K.api("POST", base + "/note", { text: text }).then(function () {
      add.disabled = false;
      noteText.value = "";
      K.setStatus(actionStatus, K.t("conv.noteAdded"));
      poll();
    }, function (e) {
      add.disabled = false;
      K.setStatus(actionStatus, K.t("conv.noteNotAdded", { error: K.errorText(e) }), true);
    });
  });

  function loadCanned() {  // the replies of this conversation's language
    return K.api("GET", base + "/canned").then(function (data) {
      while (cannedSelect.options.length > 1) cannedSelect.remove(1);
      data.items.forEach(function (r) {
        var option = el("option", null, r.title);
        option.value = String(r.id);
        option.setAttribute("data-raw", "");  // a canned reply's title
        cannedSelect.appendChild(option);
      });
      K.setStatus(cannedStatus, data.items.length ? "" : K.node("conv.noCanned", { language: R(data.language) }));
    }, function (e) { K.setStatus(cannedStatus, K.t("conv.cannedFailed", { error: K.errorText(e) }), true); });
  }

  document.getElementById("conv-canned-insert").addEventListener("click", function () {
    if (!cannedSelect.value) return;
    K.api("GET", base + "/canned/render?reply=" + encodeURIComponent(cannedSelect.value)).then(function (data) {
      var start = replyText.selectionStart, end = replyText.selectionEnd, old = replyText.value;
      replyText.value = old.slice(0, start) + data.text + old.slice(end);  // at the cursor, replacing a selection
      replyText.focus();
      K.setStatus(cannedStatus, data.missing.length ? K.node("conv.fillIn", { slots:
        R(data.missing.map(function (n) { return "{" + n + "}"; }).join(", ")) }) : "", data.missing.length > 0);
    }, function (e) { K.setStatus(cannedStatus, K.t("conv.insertFailed", { error: K.errorText(e) }), true); });
  });

  K.onReady(function () {
    K.api("GET", "/api/meta").then(function (m) { meta = m; }, function () { /* corrections need it only */ })
      .then(load)
      .then(function () { if (K.can("agent")) loadCanned(); })
      .then(function () {
        window.setInterval(poll, 1500);
        window.setInterval(pollTyping, 1500);
      }, function () { /* shown by load */ });
  });
})();
