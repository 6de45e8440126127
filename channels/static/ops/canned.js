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
    formTitle.textContent = reply ? "Edit “" + reply.title + "”" : "New canned reply";
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
    tr.appendChild(el("td", null, reply.language));
    tr.appendChild(el("td", null, reply.title));
    tr.appendChild(el("td", "ops-canned-text", reply.text));
    var actions = el("td");
    var editBtn = el("button", null, "Edit");
    editBtn.type = "button";
    editBtn.setAttribute("aria-label", "Edit " + reply.title + " (" + reply.language + ")");
    editBtn.addEventListener("click", function () { edit(reply); });
    var del = el("button", "ops-danger", "Delete");
    del.type = "button";
    del.setAttribute("aria-label", "Delete " + reply.title + " (" + reply.language + ")");
    del.addEventListener("click", function () {
      K.api("POST", "/api/canned/delete", { id: reply.id }).then(function () {
        K.setStatus(status, "Deleted " + reply.title + ".");
        if (editing === reply.id) edit(null);
        load();
      }, function (e) { K.setStatus(status, "Not deleted (" + e.message + ")", true); });
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
          language.appendChild(option);
        });
      }
      rows.textContent = "";
      data.items.forEach(function (r) { rows.appendChild(row(r)); });
      if (!data.items.length) K.setStatus(status, "No canned replies yet.");
    }, function (e) { K.setStatus(status, "Could not load the canned replies (" + e.message + ")", true); });
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
      K.setStatus(status, "Saved " + data.reply.title + ".");
      edit(null);
      load();
    }, function (e) { K.setStatus(formStatus, "Not saved (" + e.message + ")", true); });
  });
  cancel.addEventListener("click", function () { edit(null); });

  K.onReady(function () { if (K.can("admin")) load(); });
})();
