/*
 * Kefu chat widget: vanilla JS, no framework, no build step.
 *
 * Embed with ONE tag on any page:
 *   <script src="https://chat.example.com/widget.js" data-server="https://chat.example.com" data-lang="zh" defer></script>
 * data-server: base URL of the Kefu server (default: where widget.js was loaded from); the socket is <base>/ws.
 * data-lang:   "en" or "zh" (default: from navigator.language).
 * data-user:   optional: the site's id of the logged-in customer (1-255 of [A-Za-z0-9_.:@+-], e.g. a hash); it
 *              becomes the sender of a new conversation, so `kefu conversations delete --user ID` can erase it.
 *
 * Wire protocol: see channels/protocol.py. All user, bot and agent text is inserted with textContent, never innerHTML.
 * Resuming: the session frame of a new conversation carries its secret; the widget keeps it in localStorage beside
 * the conversation id and sends both in hello (the id alone resumes nothing). When the server answers
 * resume_denied (a lost or stale secret), the widget forgets both and starts a new conversation.
 * Human agents: while one holds the conversation, their messages arrive as {"type": "message", "role": "agent"}
 * frames and {"type": "handoff", "status": "agent" | "bot"} says when they join or leave. An agent message's optional
 * "agent": {"name", "avatar", "picture"?} (older servers omit it) is shown above it: the initials in a CSS circle and
 * the name, as text; with a "picture" (only ever a path "/avatars/<64 hex>" of this server, resolved against its base
 * URL: anything else is ignored) the circle shows that image instead (alt "", the initials again if it fails to load).
 * {"type": "agent_typing", "state", "agent"} shows "<name> is typing…" until the agent's message, a false
 * state, or 6 s without a refresh.
 * Typing: while the customer types, the widget sends {"type": "typing", "state": true} at most once every 2 s, and
 * {"state": false} when the message is sent, the input loses focus or after 5 s without a key (nothing of the text).
 * Busy (admission control): {"type": "busy", "reply_to", "retry_after_ms"} means the message was not taken; the
 * widget says so once, holds it and every later message, and resends them in order (same ids) after
 * retry_after_ms plus up to 50% jitter (never sooner); after MAX_BUSY_RETRIES a message is marked not delivered,
 * with a Retry button.
 * Attachments: the paper clip picks a PNG, JPEG, GIF, WebP or PDF of at most 5 MB (checked here for a quick answer;
 * the server checks the bytes). The widget sends {"type": "upload", "upload_id", "filename", "content_type", "size"}
 * on its proven socket, waits for "upload_ready", then sends the file in binary frames of UPLOAD_CHUNK bytes;
 * "upload_ack" carries the stored attachment, "upload_error" a code shown in the customer's language. An attachment
 * ({"id", "filename", "content_type", "size", "image", "url"}: url relative to the server, with a download token
 * for this one file) is shown as a thumbnail for images and a download link for PDFs; an agent's file arrives as
 * {"type": "attachment", "role": "agent", "attachment", "agent"} and both come back in the history.
 */
(function () {
  "use strict";

  if (window.KefuWidget) return; // loaded twice: keep the first instance

  var script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  var scriptSrc = (script && script.src) || window.location.href;

  // ------------------------------------------------------------------------------------------- configuration
  function baseUrl() {
    var raw = (script && script.getAttribute("data-server")) || ".";
    var url;
    try {
      url = new URL(raw, scriptSrc);
    } catch (e) {
      url = new URL(".", scriptSrc);
    }
    if (url.pathname.slice(-1) !== "/") url.pathname += "/";
    url.search = "";
    url.hash = "";
    return url;
  }

  var BASE = baseUrl();
  var WS_URL = (function () {
    var u = new URL("ws", BASE);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    return u.toString();
  })();

  function pickLanguage() {
    var wanted = ((script && script.getAttribute("data-lang")) || navigator.language || "en").toLowerCase();
    return wanted.indexOf("zh") === 0 ? "zh" : "en";
  }

  var LANG = pickLanguage();
  var USER = (function () {
    var raw = script && script.getAttribute("data-user");
    return raw && /^[A-Za-z0-9_.:@+-]{1,255}$/.test(raw) ? raw : null;
  })();
  var MAX_CHARS = 2000;
  var MAX_BUSY_RETRIES = 5; // busy answers one message may get before the widget gives up on it (Retry button)
  var MAX_RETRY_AFTER_MS = 30000;
  var MAX_UPLOAD_BYTES = 5 * 1024 * 1024; // the server's default limit (it checks again, and says so if lower)
  var UPLOAD_CHUNK = 32 * 1024; // binary frames well under the server's 64 KiB frame limit
  var UPLOAD_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"];
  var STORAGE_KEY = "kefu:conversation:" + BASE.origin + BASE.pathname;
  var SECRET_KEY = "kefu:secret:" + BASE.origin + BASE.pathname;
  var OPEN_KEY = "kefu:open:" + BASE.origin + BASE.pathname;

  var STRINGS = {
    en: {
      title: "Customer service",
      open: "Open customer service chat",
      close: "Close chat",
      placeholder: "Type a message…",
      inputLabel: "Your message",
      send: "Send",
      typing: "The assistant is typing…",
      connecting: "Connecting…",
      online: "Online",
      offline: "Connection lost. Reconnecting…",
      welcome: "Hi! Ask us about an order, a return, shipping or payment.",
      handoff: "You are being connected to a human agent.",
      agent: "Agent",
      agentTyping: "{name} is typing…",
      agentJoined: "A human agent joined the chat.",
      agentLeft: "The agent left the chat; the assistant is back.",
      restarted: "Your previous conversation could not be restored here; this is a new one.",
      retry: "Retry",
      tooLong: "Your message is too long (2000 characters at most).",
      failed: "Not delivered.",
      busy: "Many customers are writing to us right now. Your message will be sent again in a moment.",
      busyFailed: "We are very busy right now and could not deliver your message. Please retry in a moment.",
      log: "Conversation",
      ratePrompt: "Was this helpful? Rate us",
      rateScore: "Rate {n} of 5",
      rateComment: "Anything to add? (optional)",
      rateSend: "Send rating",
      rateThanks: "Thank you for your feedback!",
      rateFailed: "Your rating could not be saved.",
      attach: "Attach an image or PDF",
      attachment: "Attachment",
      image: "Image {name}",
      download: "Download {name}",
      uploading: "Sending…",
      uploadErrors: {
        too_large: "This file is too large (5 MB at most).",
        empty: "This file is empty.",
        unsupported_type: "Only images (PNG, JPEG, GIF, WebP) and PDF files can be sent.",
        type_mismatch: "This file's content does not match its type.",
        malformed: "This file is damaged or incomplete.",
        active_content: "PDF files with scripts or embedded files cannot be sent.",
        no_conversation: "Please send us a message first, then attach the file.",
        busy: "Too many files are being sent right now. Please retry in a moment.",
        rate_limited: "You are sending files very fast. Please wait a moment.",
        timeout: "The file took too long to send. Please retry.",
        unavailable: "Files cannot be sent in this chat.",
        other: "Sorry, the file could not be sent."
      },
      errors: {
        busy: "We are still answering your previous messages. Please wait a moment and retry.",
        rate_limited: "You are sending messages very fast. Please wait a moment and retry.",
        timeout: "The assistant did not answer in time. Please retry.",
        store_unavailable: "The service is temporarily unavailable. Please retry in a moment.",
        too_large: "Your message is too long (2000 characters at most).",
        internal: "Sorry, something went wrong on our side. Please retry.",
        other: "Sorry, your message could not be processed."
      }
    },
    zh: {
      title: "在线客服",
      open: "打开在线客服对话",
      close: "关闭对话",
      placeholder: "请输入消息…",
      inputLabel: "您的消息",
      send: "发送",
      typing: "客服正在输入…",
      connecting: "正在连接…",
      online: "在线",
      offline: "连接已断开，正在重连…",
      welcome: "您好！订单查询、退货、配送、支付问题都可以问我。",
      handoff: "正在为您转接人工客服。",
      agent: "人工客服",
      agentTyping: "{name} 正在输入…",
      agentJoined: "人工客服已加入对话。",
      agentLeft: "人工客服已离开，智能助手继续为您服务。",
      restarted: "无法在此恢复之前的对话，已为您开始新的对话。",
      retry: "重试",
      tooLong: "消息太长了（最多2000个字符）。",
      failed: "发送失败。",
      busy: "当前咨询人数较多，您的消息将在片刻后自动重新发送。",
      busyFailed: "当前咨询人数过多，消息未能送达，请稍后重试。",
      log: "对话记录",
      ratePrompt: "本次服务对您有帮助吗？请评分",
      rateScore: "评 {n} 分（满分5分）",
      rateComment: "还有什么想说的吗？（选填）",
      rateSend: "提交评价",
      rateThanks: "感谢您的评价！",
      rateFailed: "评价未能保存。",
      attach: "发送图片或 PDF 文件",
      attachment: "附件",
      image: "图片 {name}",
      download: "下载 {name}",
      uploading: "正在发送…",
      uploadErrors: {
        too_large: "文件太大了（最大 5 MB）。",
        empty: "文件是空的。",
        unsupported_type: "只能发送图片（PNG、JPEG、GIF、WebP）和 PDF 文件。",
        type_mismatch: "文件内容与文件类型不符。",
        malformed: "文件已损坏或不完整。",
        active_content: "不能发送含有脚本或嵌入文件的 PDF。",
        no_conversation: "请先发送一条消息，再发送文件。",
        busy: "当前发送文件的人较多，请稍后重试。",
        rate_limited: "您发送文件太快了，请稍候。",
        timeout: "文件发送超时，请重试。",
        unavailable: "此对话不能发送文件。",
        other: "抱歉，文件未能发送。"
      },
      errors: {
        busy: "我们还在处理您之前的消息，请稍候再试。",
        rate_limited: "您发送消息太快了，请稍候再试。",
        timeout: "客服回复超时，请重试。",
        store_unavailable: "服务暂时不可用，请稍后重试。",
        too_large: "消息太长了（最多2000个字符）。",
        internal: "抱歉，系统出了点问题，请重试。",
        other: "抱歉，您的消息无法处理。"
      }
    }
  };
  var T = STRINGS[LANG];

  // ----------------------------------------------------------------------------------------------- storage
  function storageGet(store, key) {
    try {
      return window[store].getItem(key);
    } catch (e) {
      return null; // storage disabled (privacy mode, sandboxed iframe)
    }
  }

  function storageSet(store, key, value) {
    try {
      if (value === null) window[store].removeItem(key);
      else window[store].setItem(key, value);
    } catch (e) {
      /* ignore */
    }
  }

  function newMessageId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes); // insecure contexts (plain http on a LAN address) lack randomUUID
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  // ----------------------------------------------------------------------------------------------------- DOM
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    }
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // An inline SVG icon: one path, sized in px, its attributes given (no markup parsed, nothing fetched).
  function icon(size, pathAttributes) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", String(size));
    svg.setAttribute("height", String(size));
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(ns, "path");
    Object.keys(pathAttributes).forEach(function (name) { path.setAttribute(name, pathAttributes[name]); });
    svg.appendChild(path);
    return svg;
  }

  function chatIcon() {
    return icon(28, {
      fill: "currentColor",
      d: "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6.5a1.5 " +
        "1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z"
    });
  }

  function clipIcon() {
    return icon(20, {
      fill: "none", stroke: "currentColor", "stroke-width": "2", "stroke-linecap": "round",
      d: "M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6a1.7 1.7 0 0 1-2.4-2.4" +
        "l7.9-7.9"
    });
  }

  var css = el("link", { rel: "stylesheet", href: new URL("widget.css", BASE).toString() });
  document.head.appendChild(css);

  var root = el("div", { id: "kefu-root", "class": "kefu-root", lang: LANG === "zh" ? "zh-CN" : "en" });
  var launcher = el("button", {
    id: "kefu-launcher", "class": "kefu-launcher", type: "button",
    "aria-label": T.open, "aria-expanded": "false", "aria-controls": "kefu-panel"
  });
  launcher.appendChild(chatIcon());

  var panel = el("section", { id: "kefu-panel", "class": "kefu-panel", role: "dialog", "aria-labelledby": "kefu-title" });
  panel.hidden = true;
  var header = el("header", { "class": "kefu-header" });
  var titleBox = el("div", { "class": "kefu-titlebox" });
  titleBox.appendChild(el("h2", { id: "kefu-title", "class": "kefu-title" }, T.title));
  var status = el("span", { id: "kefu-status", "class": "kefu-status", role: "status" }, T.connecting);
  titleBox.appendChild(status);
  var closeBtn = el("button", { id: "kefu-close", "class": "kefu-close", type: "button", "aria-label": T.close }, "×");
  header.appendChild(titleBox);
  header.appendChild(closeBtn);

  var list = el("div", {
    id: "kefu-messages", "class": "kefu-messages", role: "log", "aria-live": "polite",
    "aria-relevant": "additions text", "aria-label": T.log, tabindex: "0"
  });
  list.appendChild(el("p", { "class": "kefu-note kefu-welcome" }, T.welcome));

  var typing = el("div", { id: "kefu-typing", "class": "kefu-typing" });
  typing.hidden = true;
  var dots = el("span", { "class": "kefu-dots", "aria-hidden": "true" });
  dots.appendChild(el("span"));
  dots.appendChild(el("span"));
  dots.appendChild(el("span"));
  typing.appendChild(dots);
  typing.appendChild(el("span", { "class": "kefu-sr" }, T.typing));

  // "<name> is typing…" while a human agent types in the console (agent_typing frames).
  var agentTyping = el("div", { id: "kefu-agent-typing", "class": "kefu-agent-typing", role: "status" });
  agentTyping.hidden = true;

  var form = el("form", { id: "kefu-form", "class": "kefu-form", novalidate: "" });
  var input = el("textarea", {
    id: "kefu-input", "class": "kefu-input", rows: "1", maxlength: String(MAX_CHARS),
    placeholder: T.placeholder, "aria-label": T.inputLabel, autocomplete: "off"
  });
  var sendBtn = el("button", { id: "kefu-send", "class": "kefu-send", type: "submit", "aria-label": T.send }, T.send);
  var attachBtn = el("button", {
    id: "kefu-attach", "class": "kefu-attach", type: "button", "aria-label": T.attach, title: T.attach
  });
  attachBtn.appendChild(clipIcon());
  var fileInput = el("input", {
    id: "kefu-file", "class": "kefu-sr", type: "file", accept: UPLOAD_TYPES.join(","), tabindex: "-1",
    "aria-hidden": "true"
  });
  form.appendChild(attachBtn);
  form.appendChild(fileInput);
  form.appendChild(input);
  form.appendChild(sendBtn);

  panel.appendChild(header);
  panel.appendChild(list);
  panel.appendChild(typing);
  panel.appendChild(agentTyping);
  panel.appendChild(form);
  root.appendChild(panel);
  root.appendChild(launcher);

  function mount() { document.body.appendChild(root); }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);

  // --------------------------------------------------------------------------------------------- rendering
  function scrollDown() { list.scrollTop = list.scrollHeight; }

  function findById(messageId) {
    if (!messageId) return null;
    var nodes = list.querySelectorAll(".kefu-msg");
    for (var i = 0; i < nodes.length; i++) {
      if (nodes[i].getAttribute("data-message-id") === messageId) return nodes[i];
    }
    return null;
  }

  function findReply(replyTo) {
    var nodes = list.querySelectorAll(".kefu-msg.kefu-bot");
    for (var i = 0; i < nodes.length; i++) {
      if (nodes[i].getAttribute("data-reply-to") === replyTo) return nodes[i];
    }
    return null;
  }

  function addNote(text, kind) {
    var note = el("p", { "class": "kefu-note" + (kind ? " kefu-note-" + kind : "") }, text);
    list.appendChild(note);
    scrollDown();
    return note;
  }

  function addUser(text, messageId) {
    var bubble = el("div", { "class": "kefu-msg kefu-user kefu-pending", "data-message-id": messageId });
    bubble.appendChild(el("span", { "class": "kefu-text" }, text));
    list.appendChild(bubble);
    scrollDown();
    return bubble;
  }

  function botBubble(replyTo) {
    var bubble = replyTo ? findReply(replyTo) : null;
    if (!bubble) {
      bubble = el("div", { "class": "kefu-msg kefu-bot" });
      if (replyTo) bubble.setAttribute("data-reply-to", replyTo);
      bubble.appendChild(el("span", { "class": "kefu-text" }));
      list.appendChild(bubble);
    }
    return bubble;
  }

  function setText(bubble, text) {
    bubble.querySelector(".kefu-text").textContent = text;
  }

  function appendToken(replyTo, delta) {
    var bubble = botBubble(replyTo);
    if (!bubble.classList.contains("kefu-final")) {
      bubble.classList.add("kefu-streaming");
      bubble.setAttribute("aria-busy", "true");
      bubble.querySelector(".kefu-text").textContent += delta;
    }
    scrollDown();
  }

  function showQuickReplies(bubble, replies, buttons) {
    var old = list.querySelectorAll(".kefu-quick");
    for (var i = 0; i < old.length; i++) old[i].remove(); // only the latest reply offers choices
    var choices = (replies || []).map(function (r) { return { title: r, payload: r }; });
    (buttons || []).forEach(function (b) {
      if (b && b.title) choices.push({ title: String(b.title), payload: String(b.payload || b.title) });
    });
    if (!choices.length) return;
    var box = el("div", { "class": "kefu-quick", role: "group" });
    choices.forEach(function (choice) {
      var b = el("button", { type: "button", "class": "kefu-quick-reply" }, choice.title);
      // a button shows its title and sends its payload (e.g. an intent: /inform{"size": "large"})
      b.addEventListener("click", function () { sendText(choice.payload, choice.title); });
      box.appendChild(b);
    });
    bubble.insertAdjacentElement("afterend", box);
  }

  function finalMessage(frame) {
    var bubble = findById(frame.message_id) || botBubble(frame.reply_to);
    setText(bubble, frame.text);
    bubble.classList.remove("kefu-streaming");
    bubble.classList.add("kefu-final");
    bubble.removeAttribute("aria-busy");
    bubble.setAttribute("data-message-id", frame.message_id);
    if (frame.intent) bubble.setAttribute("data-intent", frame.intent);
    showQuickReplies(bubble, frame.quick_replies, frame.buttons);
    if (frame.handed_off && !handoffShown) {
      handoffShown = true;
      addNote(T.handoff, "handoff");
    }
    scrollDown();
  }

  // The URL of an agent's picture: only this server's own "/avatars/<sha256>" path, resolved against BASE (so a
  // server behind a path prefix works) and kept on BASE's origin; anything else (another origin, a scheme, a
  // different path) is refused: null.
  var AVATAR_PATH = /^\/avatars\/[0-9a-f]{64}$/;
  function pictureUrl(picture) {
    if (typeof picture !== "string" || !AVATAR_PATH.test(picture)) return null;
    try {
      var u = new URL("." + picture, BASE);
      return u.origin === BASE.origin ? u.toString() : null;
    } catch (e) {
      return null;
    }
  }

  // The agent as the server describes them ({"name", "avatar", "picture"?}: plain text cut short, and the path of
  // their picture), or null (older servers).
  function agentCard(agent) {
    if (!agent || typeof agent !== "object" || typeof agent.name !== "string" || !agent.name) return null;
    var avatar = typeof agent.avatar === "string" && agent.avatar ? agent.avatar : agent.name.charAt(0);
    return {
      name: agent.name.slice(0, 64),
      avatar: Array.from(avatar).slice(0, 2).join("").toUpperCase(),
      picture: pictureUrl(agent.picture)
    };
  }

  // The agent's picture (or initials) in a CSS circle and the name; text only, never markup. The picture is an <img>
  // of this server's (pictureUrl) with an empty alt (the name is written next to it); should it fail to load (a
  // history entry naming a picture the agent has since replaced), the initials come back.
  function agentHead(card) {
    var head = el("span", { "class": "kefu-agent-head" });
    var circle = el("span", { "class": "kefu-avatar", "aria-hidden": "true" }, card ? card.avatar : "?");
    if (card && card.picture) {
      var img = el("img", { src: card.picture, alt: "", width: "22", height: "22", decoding: "async",
        "class": "kefu-avatar-img" });
      img.style.objectFit = "cover"; // CSSOM, not a style attribute: allowed under a strict style-src
      img.style.display = "block";
      img.addEventListener("error", function () {
        circle.classList.remove("kefu-avatar-picture");
        circle.textContent = card.avatar;
      });
      circle.textContent = "";
      circle.classList.add("kefu-avatar-picture");
      circle.appendChild(img);
    }
    head.appendChild(circle);
    head.appendChild(el("span", { "class": "kefu-sender" }, card ? card.name : T.agent));
    return head;
  }

  function agentBubble(text, messageId, extraClass, agent) {
    if (messageId && findById(messageId)) return null; // already shown (a push, then a reconnect's history)
    var bubble = el("div", { "class": "kefu-msg kefu-bot kefu-agent kefu-final" + (extraClass || "") });
    if (messageId) bubble.setAttribute("data-message-id", messageId);
    bubble.appendChild(agentHead(agentCard(agent)));
    bubble.appendChild(el("span", { "class": "kefu-text" }, text));
    list.appendChild(bubble);
    return bubble;
  }

  // ------------------------------------------------------------------------------------------- attachments
  // A download link of the server's (relative to BASE, same origin only), or null.
  function attachmentUrl(att) {
    if (!att || typeof att.url !== "string") return null;
    try {
      var u = new URL(att.url, BASE);
      return u.origin === BASE.origin ? u.toString() : null;
    } catch (e) {
      return null;
    }
  }

  function sizeText(n) {
    n = Number(n) || 0;
    return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(n / 1024)) + " KB";
  }

  // An image as a thumbnail linking to the file, anything else (a PDF) as a download link; text only, never markup.
  function attachmentNode(att) {
    var name = String(att.filename || T.attachment);
    var url = attachmentUrl(att);
    var box = el("span", { "class": "kefu-attachment" });
    if (!url) {
      box.appendChild(el("span", { "class": "kefu-file-name" }, name));
      return box;
    }
    var link = el("a", { href: url, target: "_blank", rel: "noopener noreferrer", "class": "kefu-file" });
    if (att.image) {
      link.setAttribute("aria-label", T.image.replace("{name}", name));
      link.appendChild(el("img", { src: url, alt: name, "class": "kefu-thumb", loading: "lazy" }));
    } else {
      link.setAttribute("download", name);
      link.setAttribute("aria-label", T.download.replace("{name}", name));
      link.appendChild(el("span", { "class": "kefu-file-icon", "aria-hidden": "true" }, "PDF"));
      link.appendChild(el("span", { "class": "kefu-file-name" }, name));
      link.appendChild(el("span", { "class": "kefu-file-size" }, sizeText(att.size)));
    }
    box.appendChild(link);
    return box;
  }

  function attachmentBubble(role, att, messageId, extraClass, agent) {
    if (messageId && findById(messageId)) return null; // already shown
    var bubble;
    if (role === "agent") {
      bubble = el("div", { "class": "kefu-msg kefu-bot kefu-agent kefu-final kefu-with-file" + (extraClass || "") });
      bubble.appendChild(agentHead(agentCard(agent)));
    } else {
      bubble = el("div", { "class": "kefu-msg kefu-user kefu-final kefu-with-file" + (extraClass || "") });
    }
    if (messageId) bubble.setAttribute("data-message-id", messageId);
    bubble.appendChild(attachmentNode(att));
    list.appendChild(bubble);
    return bubble;
  }

  function renderHistory(messages) {
    messages.forEach(function (m) {
      if (m.message_id && findById(m.message_id)) return; // already on screen (reconnect without reload)
      if (m.attachment && typeof m.attachment === "object") {
        attachmentBubble(m.role, m.attachment, m.message_id, " kefu-history", m.agent);
        return;
      }
      if (m.role === "agent") {
        agentBubble(m.text, m.message_id, " kefu-history", m.agent);
        return;
      }
      var cls = m.role === "user" ? "kefu-user" : "kefu-bot";
      var bubble = el("div", { "class": "kefu-msg " + cls + " kefu-final kefu-history" });
      if (m.message_id) bubble.setAttribute("data-message-id", m.message_id);
      if (m.reply_to) bubble.setAttribute("data-reply-to", m.reply_to);
      bubble.appendChild(el("span", { "class": "kefu-text" }, m.text));
      list.appendChild(bubble);
    });
    scrollDown();
  }

  // A message with no text answers a customer message while a human agent holds the chat: it only confirms
  // delivery (the agent answers separately, pushed as role "agent").
  function silentReply(frame) {
    var streaming = findReply(frame.reply_to);
    if (streaming && !streaming.classList.contains("kefu-final")) streaming.remove();
  }

  function setStatus(text, kind) {
    status.textContent = text;
    status.setAttribute("data-state", kind);
  }

  // ------------------------------------------------------------------------------------------- connection
  var socket = null;
  var wanted = false; // a connection is wanted once the panel has been opened
  var attempt = 0;
  var reconnectTimer = null;
  var conversationSecret = storageGet("localStorage", SECRET_KEY);
  // An id stored without its secret (by an older widget) cannot be resumed: start a new conversation.
  var conversationId = conversationSecret ? storageGet("localStorage", STORAGE_KEY) : null;
  var inSession = false;
  var handoffShown = false;
  // [{id, text, held, busy}] in the customer's order, sent or to send, until the final message (or an error) answers
  // them. held: not sent yet because the server answered busy (this one or an earlier one); busy: busy answers so far.
  var pending = [];
  var retryTimer = null; // set while the server asked us to wait (busy): every message is held until it fires
  var retryAt = 0;
  var busyNoted = false; // the busy notice was shown, and some message it was about is still unanswered

  function frameOut(obj) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  function sendMessage(m) {
    if (retryTimer) { // the server asked us to wait: send it after the held ones, in order
      m.held = true;
      var bubble = findById(m.id);
      if (bubble) bubble.classList.add("kefu-busy");
      return;
    }
    m.held = false;
    if (inSession) frameOut({ type: "message", conversation_id: conversationId, message_id: m.id, text: m.text });
  }

  function flushPending() {
    pending.forEach(sendMessage);
  }

  function findPending(messageId) {
    for (var i = 0; i < pending.length; i++) {
      if (pending[i].id === messageId) return pending[i];
    }
    return null;
  }

  // The retry time came: resend the held messages, oldest first (the server keeps their order).
  function resendHeld() {
    retryTimer = null;
    if (!inSession) return; // the next session frame sends every pending message
    pending.forEach(function (m) {
      if (m.held) sendMessage(m);
    });
  }

  function holdUntil(waitMs) {
    var at = Date.now() + waitMs;
    if (retryTimer && at <= retryAt) return;
    clearTimeout(retryTimer);
    retryAt = at;
    retryTimer = setTimeout(resendHeld, waitMs);
  }

  function onBusy(frame) {
    var m = findPending(frame.reply_to);
    if (!m) return; // answered or given up meanwhile
    m.held = true;
    m.busy = (m.busy || 0) + 1;
    var bubble = findById(m.id);
    var wait = Math.min(MAX_RETRY_AFTER_MS, Math.max(0, Number(frame.retry_after_ms) || 1000));
    wait = wait * (1 + Math.random() / 2); // jitter, never sooner than asked: shed customers do not return at once
    if (m.busy > MAX_BUSY_RETRIES) {
      if (bubble) bubble.classList.remove("kefu-busy");
      failMessage(m.id, T.busyFailed);
      if (pending.some(function (o) { return o.held; })) holdUntil(wait); // the later ones go on
      return;
    }
    if (bubble) bubble.classList.add("kefu-busy");
    holdUntil(wait);
    if (!busyNoted) {
      busyNoted = true;
      addNote(T.busy, "busy");
    }
  }

  function connect() {
    wanted = true;
    if (socket && (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING)) return;
    clearTimeout(reconnectTimer);
    setStatus(attempt ? T.offline : T.connecting, "connecting");
    var ws;
    try {
      ws = new WebSocket(WS_URL);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    socket = ws;
    inSession = false;
    ws.addEventListener("open", sendHello);
    ws.addEventListener("message", function (event) {
      if (typeof event.data !== "string") return;
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (frame && typeof frame.type === "string") onFrame(frame);
    });
    ws.addEventListener("close", function () {
      if (socket !== ws) return;
      socket = null;
      inSession = false;
      typing.hidden = true;
      hideAgentTyping();
      typingSent = false; // the server forgot it with the socket
      if (upload) uploadFailed(upload.id, "other"); // the server dropped it with the socket
      if (wanted) scheduleReconnect();
    });
  }

  function sendHello() {
    frameOut({
      type: "hello", conversation_id: conversationId, secret: conversationId ? conversationSecret : null,
      language: LANG, user: USER
    });
  }

  function forgetConversation() {
    conversationId = null;
    conversationSecret = null;
    storageSet("localStorage", STORAGE_KEY, null);
    storageSet("localStorage", SECRET_KEY, null);
    root.removeAttribute("data-conversation-id");
  }

  function scheduleReconnect() {
    setStatus(T.offline, "offline");
    var delay = Math.min(30000, 500 * Math.pow(2, attempt)); // exponential back-off, capped at 30 s
    delay = delay / 2 + Math.random() * delay / 2; // jitter, so reconnecting clients spread out
    attempt += 1;
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, delay);
  }

  function dropPending(messageId) {
    pending = pending.filter(function (m) { return m.id !== messageId; });
    if (!pending.some(function (m) { return m.busy > 0; })) busyNoted = false; // the next busy says so again
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "session":
        if (typeof frame.secret === "string") { // a new conversation: its secret is the resume credential
          conversationSecret = frame.secret;
          storageSet("localStorage", SECRET_KEY, conversationSecret);
        }
        conversationId = frame.conversation_id;
        storageSet("localStorage", STORAGE_KEY, conversationId);
        inSession = true;
        attempt = 0;
        setStatus(T.online, "online");
        root.setAttribute("data-conversation-id", conversationId);
        flushPending(); // resend whatever was not answered before the reconnect (the server dedupes), in order
        break;
      case "history":
        if (frame.conversation_id === conversationId && Array.isArray(frame.messages)) renderHistory(frame.messages);
        break;
      case "ack":
        var acked = findById(frame.message_id);
        if (acked) acked.classList.remove("kefu-pending");
        break;
      case "typing":
        typing.hidden = !frame.on;
        if (frame.on) scrollDown();
        break;
      case "token":
        typing.hidden = true;
        appendToken(frame.reply_to, String(frame.text || ""));
        break;
      case "message":
        typing.hidden = true;
        if (frame.role === "agent") {
          hideAgentTyping();
          agentBubble(String(frame.text || ""), frame.message_id, "", frame.agent);
          scrollDown();
          break;
        }
        dropPending(frame.reply_to);
        var asked = findById(frame.reply_to);
        if (asked) {
          asked.classList.remove("kefu-pending");
          asked.classList.remove("kefu-busy");
        }
        if (frame.text === "") silentReply(frame);
        else finalMessage(frame);
        break;
      case "handoff":
        if (frame.status === "agent") {
          handoffShown = true;
          addNote(T.agentJoined, "handoff");
        } else if (frame.status === "bot") {
          handoffShown = false;
          addNote(T.agentLeft, "handoff");
        }
        break;
      case "agent_typing":
        if (frame.state === true) showAgentTyping(agentCard(frame.agent));
        else hideAgentTyping();
        break;
      case "resolved":
        if (frame.conversation_id === conversationId) showRating();
        break;
      case "rating_ack":
        ratingDone(T.rateThanks, "rated");
        break;
      case "busy":
        onBusy(frame);
        break;
      case "upload_ready":
        sendUploadBytes(frame.upload_id);
        break;
      case "upload_ack":
        uploadDone(frame);
        break;
      case "upload_error":
        uploadFailed(frame.upload_id, frame.code);
        break;
      case "attachment":
        if (frame.attachment && typeof frame.attachment === "object") {
          hideAgentTyping();
          attachmentBubble("agent", frame.attachment, frame.message_id, "", frame.agent);
          scrollDown();
        }
        break;
      case "error":
        if (ratingBox && ratingBox.getAttribute("data-sending") && !frame.reply_to) {
          ratingDone(frame.code === "already_rated" ? T.rateThanks : T.rateFailed, "error");
          break;
        }
        onError(frame);
        break;
      default:
        break; // newer server: ignore unknown frames
    }
  }

  // ------------------------------------------------------------------------------------------------ typing
  var AGENT_TYPING_MS = 6000; // an agent_typing true lasts this long without a refresh
  var TYPING_EVERY_MS = 2000; // at most one typing true this often while the customer types
  var TYPING_IDLE_MS = 5000; // no key for this long: stopped typing
  var agentTypingTimer = null;
  var typingSent = false; // the server was told "typing" and not "stopped" since
  var typingSentAt = 0;
  var typingIdleTimer = null;

  function showAgentTyping(card) {
    agentTyping.textContent = "";
    agentTyping.appendChild(agentHead(card));
    agentTyping.appendChild(el("span", { "class": "kefu-agent-typing-text" },
      T.agentTyping.replace("{name}", card ? card.name : T.agent)));
    agentTyping.hidden = false;
    clearTimeout(agentTypingTimer);
    agentTypingTimer = setTimeout(hideAgentTyping, AGENT_TYPING_MS);
    scrollDown();
  }

  function hideAgentTyping() {
    clearTimeout(agentTypingTimer);
    agentTypingTimer = null;
    agentTyping.hidden = true;
  }

  function typingStopped() {
    clearTimeout(typingIdleTimer);
    typingIdleTimer = null;
    if (typingSent) frameOut({ type: "typing", state: false });
    typingSent = false;
    typingSentAt = 0;
  }

  function onTyping() {
    if (!input.value.trim()) {
      typingStopped();
      return;
    }
    var now = Date.now();
    if (inSession && now - typingSentAt >= TYPING_EVERY_MS && frameOut({ type: "typing", state: true })) {
      typingSent = true;
      typingSentAt = now;
    }
    clearTimeout(typingIdleTimer);
    typingIdleTimer = setTimeout(typingStopped, TYPING_IDLE_MS);
  }

  // --------------------------------------------------------------------- rating (after staff resolve the chat)
  var ratingBox = null;
  function showRating() {
    if (ratingBox) return;
    var score = 0;
    ratingBox = el("form", { "class": "kefu-rating", id: "kefu-rating", novalidate: "" });
    ratingBox.appendChild(el("p", { "class": "kefu-rating-prompt" }, T.ratePrompt));
    var scores = el("div", { "class": "kefu-rating-scores", role: "group", "aria-label": T.ratePrompt });
    [1, 2, 3, 4, 5].forEach(function (n) {
      var b = el("button", {
        type: "button", "class": "kefu-rating-score", "data-score": String(n), "aria-pressed": "false",
        "aria-label": T.rateScore.replace("{n}", String(n))
      }, String(n));
      b.addEventListener("click", function () {
        score = n;
        Array.prototype.forEach.call(scores.children, function (x) {
          x.setAttribute("aria-pressed", String(x === b));
        });
        send.disabled = false;
      });
      scores.appendChild(b);
    });
    var comment = el("textarea", {
      "class": "kefu-rating-comment", rows: "2", maxlength: "1000", placeholder: T.rateComment, "aria-label": T.rateComment
    });
    var send = el("button", { type: "submit", "class": "kefu-rating-send" }, T.rateSend);
    send.disabled = true;
    ratingBox.appendChild(scores);
    ratingBox.appendChild(comment);
    ratingBox.appendChild(send);
    ratingBox.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!score) return;
      var text = comment.value.trim();
      if (frameOut({ type: "rating", score: score, comment: text || null })) {
        ratingBox.setAttribute("data-sending", "1");
        send.disabled = true;
      }
    });
    list.appendChild(ratingBox);
    scrollDown();
  }

  function ratingDone(text, kind) {
    if (!ratingBox) return;
    var box = ratingBox;
    box.textContent = "";
    box.removeAttribute("data-sending");
    box.appendChild(el("p", { "class": "kefu-rating-" + kind, role: "status" }, text));
    scrollDown();
  }

  function onError(frame) {
    var text = T.errors[frame.code] || T.errors.other;
    if (frame.code === "resume_denied") { // the stored id/secret no longer work: start over on this socket
      forgetConversation();
      inSession = false;
      addNote(T.restarted, "restarted");
      sendHello();
      return;
    }
    if (!frame.reply_to) {
      addNote(text, "error");
      // hello failed (e.g. store_unavailable): no session, so reconnect with back-off and try again.
      if (!inSession && socket) socket.close();
      return;
    }
    failMessage(frame.reply_to, text);
  }

  // A message that will not be answered: mark its bubble not delivered, with a Retry button, and say why.
  function failMessage(messageId, text) {
    var m = findPending(messageId);
    dropPending(messageId);
    var streaming = findReply(messageId);
    if (streaming && !streaming.classList.contains("kefu-final")) streaming.remove();
    var bubble = findById(messageId);
    if (bubble) {
      bubble.classList.remove("kefu-pending");
      bubble.classList.add("kefu-failed");
      if (m && !bubble.querySelector(".kefu-retry")) {
        var retry = el("button", { type: "button", "class": "kefu-retry", "aria-label": T.retry + ": " + T.failed }, T.retry);
        retry.addEventListener("click", function () {
          retry.remove();
          bubble.classList.remove("kefu-failed");
          bubble.classList.add("kefu-pending");
          m.busy = 0;
          pending.push(m); // same message id: the server answers it once
          sendMessage(m);
        });
        bubble.appendChild(retry);
      }
    }
    addNote(text, "error");
  }

  // ------------------------------------------------------------------------------------------------ uploads
  var upload = null; // {id, file, bubble} while a file is on its way (one at a time, like the server)

  function uploadProblem(code) {
    addNote(T.uploadErrors[code] || T.uploadErrors.other, "error");
  }

  function startUpload(file) {
    if (!file) return;
    if (UPLOAD_TYPES.indexOf(file.type) < 0) return uploadProblem("unsupported_type");
    if (!file.size) return uploadProblem("empty");
    if (file.size > MAX_UPLOAD_BYTES) return uploadProblem("too_large");
    if (upload) return uploadProblem("busy");
    if (!inSession) return uploadProblem("other");
    var id = newMessageId().replace(/[^A-Za-z0-9_-]/g, "");
    var bubble = el("div", { "class": "kefu-msg kefu-user kefu-pending kefu-with-file", "data-message-id": id });
    var pendingName = el("span", { "class": "kefu-attachment" });
    pendingName.appendChild(el("span", { "class": "kefu-file-name" }, file.name));
    pendingName.appendChild(el("span", { "class": "kefu-file-size" }, T.uploading));
    bubble.appendChild(pendingName);
    list.appendChild(bubble);
    scrollDown();
    upload = { id: id, file: file, bubble: bubble };
    if (!frameOut({ type: "upload", upload_id: id, filename: file.name, content_type: file.type, size: file.size })) {
      uploadFailed(id, "other");
    }
  }

  function sendUploadBytes(uploadId) {
    var current = upload;
    if (!current || current.id !== uploadId) return;
    current.file.arrayBuffer().then(function (buffer) {
      if (upload !== current || !socket || socket.readyState !== WebSocket.OPEN) return;
      for (var offset = 0; offset < buffer.byteLength; offset += UPLOAD_CHUNK) {
        socket.send(buffer.slice(offset, offset + UPLOAD_CHUNK)); // binary frames, in order
      }
    }, function () {
      uploadFailed(uploadId, "other");
    });
  }

  function uploadDone(frame) {
    if (!upload || upload.id !== frame.upload_id) return;
    var bubble = upload.bubble;
    upload = null;
    bubble.textContent = "";
    bubble.classList.remove("kefu-pending");
    bubble.classList.add("kefu-final");
    if (frame.message_id) bubble.setAttribute("data-message-id", frame.message_id);
    bubble.appendChild(attachmentNode(frame.attachment || {}));
    scrollDown();
  }

  function uploadFailed(uploadId, code) {
    if (!upload || (uploadId && upload.id !== uploadId)) return;
    var bubble = upload.bubble;
    upload = null;
    bubble.classList.remove("kefu-pending");
    bubble.classList.add("kefu-failed");
    var status = bubble.querySelector(".kefu-file-size");
    if (status) status.textContent = T.failed;
    uploadProblem(code);
  }

  // ------------------------------------------------------------------------------------------------ actions
  function sendText(raw, shown) {
    var text = String(raw).trim();
    if (!text) return false;
    if (text.length > MAX_CHARS) {
      addNote(T.tooLong, "error");
      return false;
    }
    var id = newMessageId();
    addUser(shown || text, id);
    var m = { id: id, text: text, held: false, busy: 0 };
    pending.push(m);
    if (inSession) sendMessage(m); // held behind busy messages, if any
    else connect(); // sent on the session frame
    return true;
  }

  function submit() {
    typingStopped();
    if (sendText(input.value)) {
      input.value = "";
      autoGrow();
    }
    input.focus();
  }

  function autoGrow() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 120) + "px";
  }

  function open() {
    panel.hidden = false;
    root.classList.add("kefu-open");
    launcher.setAttribute("aria-expanded", "true");
    storageSet("sessionStorage", OPEN_KEY, "1");
    connect();
    scrollDown();
    input.focus();
  }

  function close() {
    panel.hidden = true;
    root.classList.remove("kefu-open");
    launcher.setAttribute("aria-expanded", "false");
    storageSet("sessionStorage", OPEN_KEY, null);
    launcher.focus();
  }

  launcher.addEventListener("click", function () {
    if (panel.hidden) open();
    else close();
  });
  closeBtn.addEventListener("click", close);
  attachBtn.addEventListener("click", function () { fileInput.click(); });
  fileInput.addEventListener("change", function () {
    var file = fileInput.files && fileInput.files[0];
    fileInput.value = ""; // the same file may be chosen again
    startUpload(file);
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submit();
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { // isComposing: Chinese IME selection
      event.preventDefault();
      submit();
    }
  });
  input.addEventListener("input", autoGrow);
  input.addEventListener("input", onTyping);
  input.addEventListener("blur", typingStopped);
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      event.preventDefault();
      close();
    }
  });

  // Reopen after a reload when the chat was open (this tab), showing the resumed conversation's history.
  if (storageGet("sessionStorage", OPEN_KEY) === "1") {
    if (document.body) open();
    else document.addEventListener("DOMContentLoaded", open);
  }

  window.KefuWidget = {
    open: open,
    close: close,
    send: sendText,
    attach: startUpload,
    conversationId: function () { return conversationId; },
    language: LANG
  };
})();
