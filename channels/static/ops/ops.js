/*
 * Kefu ops console, shared by every page: the signed-in user, the CSRF token, the JSON API, DOM helpers, the header.
 * Every string that came from a customer, the bot or a colleague is inserted with textContent, never innerHTML.
 * State-changing calls send the session's CSRF token in X-CSRF-Token (the server also checks the Origin).
 * Interface text comes from window.KefuI18n (i18n.js, loaded first); the language switch in the header stores the
 * choice with the account (POST /api/me/locale) and reloads the page in that language.
 */
(function () {
  "use strict";

  var csrf = null;
  var me = null;
  var RANK = { viewer: 0, agent: 1, admin: 2 };
  var I = window.KefuI18n;

  // text: a string (textContent) or a Node (I.node / I.raw: interface text with data values in it).
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text instanceof Node) node.appendChild(text);
    else if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(node, text, isError) {
    node.textContent = "";
    if (text instanceof Node) node.appendChild(text);
    else node.textContent = text || "";
    node.classList.toggle("ops-error", !!isError);
  }

  // What to show for a failed call: the server's own (English) explanation, or its code's translation.
  function errorText(e) {
    if (I.locale() === "en" || !e) return e ? e.message : "";
    var id = "error." + e.code;
    var text = I.t(id);
    return text === id ? e.message : text;
  }

  function loginUrl() {
    return "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
  }

  function ApiError(status, code, message) {
    this.status = status;
    this.code = code;
    this.message = message;
  }
  ApiError.prototype.toString = function () { return this.message; };

  function api(method, url, body) {
    var opts = { method: method, headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" };
    if (method !== "GET") {
      opts.headers["Content-Type"] = "application/json";
      if (csrf) opts.headers["X-CSRF-Token"] = csrf;
      opts.body = JSON.stringify(body || {});
    }
    return fetch(url, opts).then(function (res) {
      if (res.status === 401 && url !== "/api/login") {
        window.location.assign(loginUrl());
        throw new ApiError(401, "unauthorized", I.t("error.sessionEnded"));
      }
      return res.json().then(function (data) {
        if (!res.ok) {
          var err = (data && data.error) || {};
          throw new ApiError(res.status, err.code || String(res.status), err.message || res.statusText);
        }
        return data;
      }, function () {
        throw new ApiError(res.status, String(res.status), res.statusText || I.t("error.unexpected"));
      });
    });
  }

  function can(role) {
    return !!me && RANK[me.role] >= RANK[role];
  }

  function when(iso, short) {
    return I.date(iso, short);  // Intl.DateTimeFormat in the console's language
  }

  function pct(x) {
    return I.pct(x);
  }

  function badge(text, kind) {
    return el("span", "ops-badge" + (kind ? " ops-" + kind : ""), text);
  }

  function conversationLink(id) {
    var a = el("a", null, id);
    a.setAttribute("data-raw", "");
    a.href = "/console/c/" + encodeURIComponent(id);
    return a;
  }

  // ------------------------------------------------------------------------------------------------ header
  function header() {
    var who = document.getElementById("ops-user");
    var role = document.getElementById("ops-role");
    if (who) {
      who.textContent = me.username;
      who.setAttribute("data-raw", "");
    }
    if (role) role.textContent = I.t("role." + me.role);
    localeSwitch();
    var users = document.getElementById("ops-nav-users");
    if (users) users.hidden = !can("admin");
    var logout = document.getElementById("ops-logout");
    if (logout) {
      logout.addEventListener("click", function () {
        api("POST", "/api/logout").then(function () { window.location.assign("/login"); },
          function () { window.location.assign("/login"); });
      });
    }
    document.body.setAttribute("data-role", me.role);
  }

  // The header's language switch: one button per language, each named in its own language.
  function localeSwitch() {
    var box = document.getElementById("ops-locale");
    if (!box) return;
    Array.prototype.forEach.call(box.querySelectorAll("button[data-locale]"), function (b) {
      var code = b.getAttribute("data-locale");
      b.setAttribute("aria-pressed", String(code === I.locale()));
      b.addEventListener("click", function () {
        if (code === I.locale()) return;
        api("POST", "/api/me/locale", { locale: code }).then(function () {
          window.location.reload();  // every page renders again in the chosen language
        }, function (e) {
          var status = document.getElementById("ops-page-status");
          if (status) setStatus(status, I.t("header.localeFailed", { error: errorText(e) }), true);
        });
      });
    });
  }

  var readyCallbacks = [];
  var ready = false;

  function onReady(fn) {
    if (ready) fn(me);
    else readyCallbacks.push(fn);
  }

  function start() {
    api("GET", "/api/me").then(function (data) {
      csrf = data.csrf_token;
      me = data.user;
      if (data.locale) I.setLocale(data.locale);  // else the browser's language (i18n.js)
      header();
      ready = true;
      readyCallbacks.forEach(function (fn) { fn(me); });
    }, function (e) {
      var status = document.getElementById("ops-page-status");
      if (status) setStatus(status, I.t("header.sessionFailed", { error: errorText(e) }), true);
    });
  }

  window.KefuOps = {
    el: el,
    api: api,
    can: can,
    when: when,
    pct: pct,
    badge: badge,
    conversationLink: conversationLink,
    setStatus: setStatus,
    errorText: errorText,
    t: I.t,
    tn: I.tn,
    node: I.node,
    raw: I.raw,
    number: I.number,
    onReady: onReady,
    user: function () { return me; }
  };

  if (document.body.getAttribute("data-page") !== "login") start();
})();
