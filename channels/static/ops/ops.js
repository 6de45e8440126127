/*
 * Kefu ops console, shared by every page: the signed-in user, the CSRF token, the JSON API, DOM helpers, the header.
 * Every string that came from a customer, the bot or a colleague is inserted with textContent, never innerHTML.
 * State-changing calls send the session's CSRF token in X-CSRF-Token (the server also checks the Origin).
 */
(function () {
  "use strict";

  var csrf = null;
  var me = null;
  var RANK = { viewer: 0, agent: 1, admin: 2 };

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(node, text, isError) {
    node.textContent = text || "";
    node.classList.toggle("ops-error", !!isError);
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
        throw new ApiError(401, "unauthorized", "Your session ended; please log in again.");
      }
      return res.json().then(function (data) {
        if (!res.ok) {
          var err = (data && data.error) || {};
          throw new ApiError(res.status, err.code || String(res.status), err.message || res.statusText);
        }
        return data;
      }, function () {
        throw new ApiError(res.status, String(res.status), res.statusText || "Unexpected answer");
      });
    });
  }

  function can(role) {
    return !!me && RANK[me.role] >= RANK[role];
  }

  function when(iso, short) {
    if (!iso) return "";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return short
      ? d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
      : d.toLocaleString();
  }

  function pct(x) {
    return typeof x === "number" ? (x * 100).toFixed(1) + "%" : "–";
  }

  function badge(text, kind) {
    return el("span", "ops-badge" + (kind ? " ops-" + kind : ""), text);
  }

  function conversationLink(id) {
    var a = el("a", null, id);
    a.href = "/console/c/" + encodeURIComponent(id);
    return a;
  }

  // ------------------------------------------------------------------------------------------------ header
  function header() {
    var who = document.getElementById("ops-user");
    var role = document.getElementById("ops-role");
    if (who) who.textContent = me.username;
    if (role) role.textContent = me.role;
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
      header();
      ready = true;
      readyCallbacks.forEach(function (fn) { fn(me); });
    }, function (e) {
      var status = document.getElementById("ops-page-status");
      if (status) setStatus(status, "Could not load your session (" + e.message + ")", true);
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
    onReady: onReady,
    user: function () { return me; }
  };

  if (document.body.getAttribute("data-page") !== "login") start();
})();
