/*
 * Kefu console: canned replies, on the admins' page (the server enforces the role too). Admins create, edit and
 * delete the team's saved answers per language; agents insert them from a conversation (conversation.js).
 * Titles and texts are inserted with textContent like every other string.
 */
(function () {
  "use strict";
  var K = window.KefuOps;
  var el = K.el;
  var rows = document.getElementById("canned-rows");
  var status = document.getElementById("canned-status");
  var form = document.getElementById("canned-form");
  var formTitle = document.getElementById("canned-form-title");
  var formStatus = document.getElementById("canned-form-status");
  var language = document.getElementById("canned-language");
  var title = document.getElementById("canned-title-input");
  var text = document.getElementById("canned-text");
  var cancel = document.getElementById("canned-cancel");
  var editing = null; // the id of the reply being edited, or null for a new one

  function edit(reply) {
    editing = reply ? reply.id : null;
    formTitle.textContent = "";
    formTitle.appendChild(reply ? K.node("canned.editing", { title: K.raw(reply.title) })
      : document.createTextNode(K.t("canned.new")));
    if (reply) {
      language.value = reply.language;
      title.value = reply.title;
      text.value = reply.text;
      title.focus();
    } else {
      form.reset();
    }
    cancel.hidden = !reply;
    K.setStatus(formStatus, "");
  }

  function row(reply) {
    var tr = el("tr");
    tr.setAttribute("data-id", reply.id);
    tr.appendChild(el("td", null, K.raw(reply.language)));
    tr.appendChild(el("td", null, K.raw(reply.title)));
    tr.appendChild(el("td", "ops-canned-text", K.raw(reply.text)));
    var actions = el("td");
    var editBtn = el("button", null, K.t("canned.edit"));
    editBtn.type = "button";
    editBtn.setAttribute("aria-label", K.t("canned.editLabel", { title: reply.title, language: reply.language }));
    editBtn.addEventListener("click", function () { edit(reply); });
    var del = el("button", "ops-danger", K.t("canned.delete"));
    del.type = "button";
    del.setAttribute("aria-label", K.t("canned.deleteLabel", { title: reply.title, language: reply.language }));
    del.addEventListener("click", function () {
      K.api("POST", "/api/canned/delete", { id: reply.id }).then(function () {
        K.setStatus(status, K.node("canned.deleted", { title: K.raw(reply.title) }));
        if (editing === reply.id) edit(null);
        load();
      }, function (e) { K.setStatus(status, K.t("canned.notDeleted", { error: K.errorText(e) }), true); });
    });
    actions.appendChild(editBtn);
    actions.appendChild(del);
    tr.appendChild(actions);
    return tr;
  }

  function load() {
    return K.api("GET", "/api/canned").then(function (data) {
      if (!language.options.length) {
        data.languages.forEach(function (code) {
          var option = el("option", null, code);
          option.value = code;
          option.setAttribute("data-raw", "");  // a language code of the bot
          language.appendChild(option);
        });
      }
      rows.textContent = "";
      data.items.forEach(function (r) { rows.appendChild(row(r)); });
      if (!data.items.length) K.setStatus(status, K.t("canned.none"));
    }, function (e) { K.setStatus(status, K.t("canned.loadFailed", { error: K.errorText(e) }), true); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var body = { language: language.value, title: title.value.trim(), text: text.value.trim() };
    var url = "/api/canned";
    if (editing !== null) {
      url = "/api/canned/update";
      body.id = editing;
    }
    K.api("POST", url, body).then(function (data) {
      K.setStatus(status, K.node("canned.saved", { title: K.raw(data.reply.title) }));
      edit(null);
      load();
    }, function (e) { K.setStatus(formStatus, K.t("canned.notSaved", { error: K.errorText(e) }), true); });
  });
  cancel.addEventListener("click", function () { edit(null); });

  K.onReady(function () { if (K.can("admin")) load(); });
})();
