/* Kefu console: staff accounts (admins only; the server enforces it too). */
(function () {
  "use strict";
  var K = window.KefuOps;
  var el = K.el;
  var rows = document.getElementById("users-rows");
  var status = document.getElementById("users-status");
  var form = document.getElementById("user-form");
  var formStatus = document.getElementById("user-form-status");
  var ROLES = ["viewer", "agent", "admin"];

  function update(username, body) {
    K.api("POST", "/api/users/" + encodeURIComponent(username), body).then(function () {
      K.setStatus(status, K.node("users.saved", { name: K.raw(username) }));
      load();
    }, function (e) {
      K.setStatus(status, K.t("users.notSaved", { error: K.errorText(e) }), true);
      load();
    });
  }

  function row(u) {
    var tr = el("tr");
    tr.setAttribute("data-username", u.username);
    tr.appendChild(el("td", null, K.raw(u.username)));
    var roleCell = el("td");
    var select = el("select");
    select.setAttribute("aria-label", K.t("users.roleOf", { name: u.username }));
    ROLES.forEach(function (r) {
      var option = el("option", null, K.t("role." + r));
      option.value = r;
      if (r === u.role) option.selected = true;
      select.appendChild(option);
    });
    var self = u.username === K.user().username;
    select.disabled = self;
    select.addEventListener("change", function () { update(u.username, { role: select.value }); });
    roleCell.appendChild(select);
    tr.appendChild(roleCell);
    tr.appendChild(el("td", null, K.t(u.disabled ? "users.disabled" : "users.active")));
    tr.appendChild(el("td", null, K.when(u.created_at, true)));
    var actions = el("td");
    if (!self) {
      var b = el("button", u.disabled ? null : "ops-danger", K.t(u.disabled ? "users.enable" : "users.disable"));
      b.type = "button";
      b.setAttribute("aria-label", K.t(u.disabled ? "users.enableLabel" : "users.disableLabel", { name: u.username }));
      b.addEventListener("click", function () { update(u.username, { disabled: !u.disabled }); });
      actions.appendChild(b);
    }
    tr.appendChild(actions);
    return tr;
  }

  function load() {
    K.api("GET", "/api/users").then(function (data) {
      rows.textContent = "";
      data.items.forEach(function (u) { rows.appendChild(row(u)); });
    }, function (e) {
      K.setStatus(status, K.t("users.loadFailed", { error: K.errorText(e) }), true);
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var body = {
      username: document.getElementById("user-name").value.trim(),
      password: document.getElementById("user-password").value,
      role: document.getElementById("user-role").value
    };
    K.api("POST", "/api/users", body).then(function () {
      form.reset();
      K.setStatus(formStatus, K.node("users.added", { name: K.raw(body.username) }));
      load();
    }, function (e) {
      K.setStatus(formStatus, K.t("users.notAdded", { error: K.errorText(e) }), true);
    });
  });

  K.onReady(load);
})();
