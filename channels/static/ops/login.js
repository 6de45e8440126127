/* Kefu console: the login form. POST /api/login sets the HttpOnly session cookie; then go where the user was. */
(function () {
  "use strict";
  var K = window.KefuOps;
  var form = document.getElementById("login-form");
  var status = document.getElementById("login-status");
  var submit = document.getElementById("login-submit");

  function nextUrl() {
    var next = new URLSearchParams(window.location.search).get("next") || "";
    // Only our own console pages: never an absolute or protocol-relative URL (no open redirect).
    return /^\/console(\/|$|\?)/.test(next) && next.indexOf("//") === -1 && next.indexOf("\\") === -1 ? next : "/console";
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var username = document.getElementById("login-username").value.trim();
    var password = document.getElementById("login-password").value;
    if (!username || !password) {
      K.setStatus(status, K.t("login.missing"), true);
      return;
    }
    submit.disabled = true;
    K.setStatus(status, K.t("login.progress"));
    K.api("POST", "/api/login", { username: username, password: password }).then(function () {
      window.location.assign(nextUrl());
    }, function (e) {
      submit.disabled = false;
      document.getElementById("login-password").value = "";
      var text = e.status === 429 ? K.t("login.throttled")
        : e.status === 401 ? K.t("login.wrong") : K.t("login.failed", { error: K.errorText(e) });
      K.setStatus(status, text, true);
      document.getElementById("login-password").focus();
    });
  });
  document.getElementById("login-username").focus();
})();
