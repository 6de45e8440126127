/*
 * Kefu ops console, shared by every page: the signed-in user, the CSRF token, the JSON API, DOM helpers, the header.
 * Every string that came from a customer, the bot or a colleague is inserted with textContent, never innerHTML.
 * State-changing calls send the session's CSRF token in X-CSRF-Token (the server also checks the Origin).
 * Interface text comes from window.KefuI18n (i18n.js, loaded first); the language switch in the header stores the
 * choice with the account (POST /api/me/locale) and reloads the page in that language.
 * The header's "Profile" menu (built here, on every page) sets what customers see of the signed-in staff member: a
 * display name (POST /api/me/profile) and a picture (POST /api/me/avatar, JSON with the file as base64; the server
 * checks the bytes: PNG, JPEG or WebP of at most 256 KB; DELETE /api/me/avatar removes it). The preview is
 * GET /api/me/avatar; the customer's widget loads the same picture from the chat server (/avatars/<sha256>).
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
    if (who) profileMenu(who);
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

  // ---------------------------------------------------------------------------------------------- profile
  var AVATAR_TYPES = ["image/png", "image/jpeg", "image/webp"];
  var MAX_AVATAR_BYTES = 256 * 1024;  // the server's limit (it checks again)

  function initials(name) {
    var words = String(name).split(/[\s_.\-]+/).filter(Boolean);
    return words.slice(0, 2).map(function (w) { return Array.from(w)[0]; }).join("").toUpperCase() || "?";
  }

  // A <details> menu before the username: the display name form, the picture (preview, file control, remove).
  function profileMenu(who) {
    var menu = el("details", "ops-profile");
    menu.id = "ops-profile";
    var summary = el("summary", null, I.t("profile.open"));
    menu.appendChild(summary);
    var panel = el("div", "ops-profile-panel");
    panel.appendChild(el("h2", null, I.t("profile.title")));

    var form = el("form", "ops-profile-name");
    form.id = "ops-profile-form";
    var label = el("label", "ops-field", I.t("profile.name"));
    label.setAttribute("for", "ops-display-name");
    var input = el("input");
    input.id = "ops-display-name";
    input.type = "text";
    input.maxLength = 64;
    input.autocomplete = "off";
    input.setAttribute("data-raw", "");
    input.placeholder = me.username;
    input.value = (me.profile && me.profile.display_name) || "";
    var save = el("button", "ops-primary", I.t("profile.saveName"));
    save.type = "submit";
    form.appendChild(label);
    form.appendChild(input);
    form.appendChild(el("p", "ops-hint", I.t("profile.nameHint")));
    form.appendChild(save);
    panel.appendChild(form);

    var pictureBox = el("div", "ops-profile-picture");
    var preview = el("span", "ops-profile-preview");
    preview.id = "ops-avatar-preview";
    preview.setAttribute("aria-hidden", "true");
    var fileLabel = el("label", "ops-field", I.t("profile.picture"));
    fileLabel.setAttribute("for", "ops-avatar-file");
    var file = el("input");
    file.id = "ops-avatar-file";
    file.type = "file";
    file.accept = AVATAR_TYPES.join(",");
    var remove = el("button", "ops-danger", I.t("profile.removePicture"));
    remove.type = "button";
    remove.id = "ops-avatar-remove";
    pictureBox.appendChild(preview);
    pictureBox.appendChild(fileLabel);
    pictureBox.appendChild(file);
    pictureBox.appendChild(remove);
    panel.appendChild(pictureBox);
    var status = el("p", "ops-status");
    status.id = "ops-profile-status";
    status.setAttribute("role", "status");
    panel.appendChild(status);
    menu.appendChild(panel);
    who.parentNode.insertBefore(menu, who);

    function show(profile) {
      me.profile = profile;
      input.value = profile.display_name || "";
      preview.textContent = "";
      remove.hidden = !profile.avatar;
      if (profile.avatar) {
        var img = el("img");
        img.alt = "";
        img.width = 40;
        img.height = 40;
        img.src = "/api/me/avatar?v=" + encodeURIComponent(profile.avatar);  // a new picture is a new URL
        preview.appendChild(img);
      } else {
        var letters = el("span", "ops-profile-initials", initials(profile.display_name || me.username));
        letters.setAttribute("data-raw", "");
        preview.appendChild(letters);
      }
    }
    show(me.profile || { display_name: null, avatar: null });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      save.disabled = true;
      api("POST", "/api/me/profile", { display_name: input.value.trim() || null }).then(function (data) {
        save.disabled = false;
        show(data.profile);
        setStatus(status, I.t("profile.nameSaved"));
      }, function (e) {
        save.disabled = false;
        setStatus(status, I.t("profile.nameFailed", { error: errorText(e) }), true);
      });
    });

    function pictureFailed(text) {
      file.disabled = false;
      file.value = "";
      setStatus(status, I.t("profile.pictureFailed", { error: text }), true);
    }

    file.addEventListener("change", function () {
      var chosen = file.files && file.files[0];
      if (!chosen) return;
      if (AVATAR_TYPES.indexOf(chosen.type) < 0) return pictureFailed(I.t("profile.pictureType"));
      if (chosen.size > MAX_AVATAR_BYTES) return pictureFailed(I.t("profile.pictureTooLarge"));
      file.disabled = true;
      setStatus(status, I.t("common.working"));
      var reader = new FileReader();
      reader.onerror = function () { pictureFailed(I.t("error.unexpected")); };
      reader.onload = function () {
        var data = String(reader.result).replace(/^data:[^,]*,/, "");  // the base64 after the data: URL's header
        api("POST", "/api/me/avatar", { content_type: chosen.type, data: data }).then(function (answer) {
          file.disabled = false;
          file.value = "";
          show(answer.profile);
          setStatus(status, I.t("profile.pictureSaved"));
        }, function (e) {
          pictureFailed(e && e.code === "unsupported_type" ? I.t("profile.pictureType") : errorText(e));
        });
      };
      reader.readAsDataURL(chosen);
    });

    remove.addEventListener("click", function () {
      remove.disabled = true;
      api("DELETE", "/api/me/avatar").then(function (data) {
        remove.disabled = false;
        show(data.profile);
        setStatus(status, I.t("profile.pictureRemoved"));
      }, function (e) {
        remove.disabled = false;
        setStatus(status, I.t("profile.pictureFailed", { error: errorText(e) }), true);
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
      me.profile = data.profile || { display_name: null, avatar: null };
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
