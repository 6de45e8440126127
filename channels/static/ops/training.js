/* Kefu console: the admin's retrain (dashboard page). POST /api/training starts the NLU training in the background;
   GET /api/training is polled every 2 s while it runs for its progress (epochs done of the most the schedule runs),
   and every 15 s while nothing runs, so a page left open learns of a colleague's run (and its end) by itself; a
   failed poll is retried at the same pace.
   The new model is swapped into every worker by the server: nothing to reload here.
   A start that does not happen (409: another admin's run is going on) says why beside the state it shows, until
   that run ends: the state alone ("epoch 2 of 4") would read as if this click had started it. */
(function () {
  "use strict";
  var K = window.KefuOps;
  var section = document.getElementById("train-section");
  var button = document.getElementById("train-start");
  var bar = document.getElementById("train-progress");
  var status = document.getElementById("train-status");
  var timer = null;
  var RUNNING_POLL_MS = 2000;
  var IDLE_POLL_MS = 15000;
  var notice = null;  // { text, error }: why this page's last start did not happen
  var last = null;  // the state shown last

  function show(s) {
    var running = s.state === "running";
    if (last === "running" && !running) notice = null;  // the run it collided with is over: its end says more
    last = s.state;
    button.disabled = running || !s.available;
    bar.hidden = !running && s.state !== "succeeded";
    if (typeof s.progress === "number") bar.value = s.progress;
    else bar.removeAttribute("value");  // indeterminate until the first epoch is reported
    var text = "";
    if (!s.available) text = K.t("train.unavailable");
    else if (running) {
      text = typeof s.epoch === "number"
        ? K.t("train.running", { epoch: K.number(s.epoch), epochs: K.number(s.epochs) }) : K.t("train.starting");
    } else if (s.state === "succeeded") text = K.t("train.succeeded", { when: K.when(s.finished_at) });
    else if (s.state === "failed") text = K.t("train.failed", { when: K.when(s.finished_at) });
    if (notice) text = text ? notice.text + " " + text : notice.text;
    K.setStatus(status, text, (notice !== null && notice.error) || s.state === "failed");
    later(running ? RUNNING_POLL_MS : IDLE_POLL_MS);
  }

  function later(ms) {  // one poll pending at most: a click's answer replaces the wait under way
    if (timer !== null) window.clearTimeout(timer);
    timer = window.setTimeout(function () { timer = null; poll(); }, ms);
  }

  function poll() {
    K.api("GET", "/api/training").then(show, function (e) {
      K.setStatus(status, K.t("train.loadFailed", { error: K.errorText(e) }), true);
      if (e && e.status === 401) return;  // signed out: K.api sends the page to the login form
      later(last === "running" ? RUNNING_POLL_MS : IDLE_POLL_MS);
    });
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    notice = null;
    K.setStatus(status, K.t("common.working"));
    K.api("POST", "/api/training", {}).then(show, function (e) {
      notice = e && e.code === "conflict" ? { text: K.t("train.busy"), error: false }
        : { text: K.t("train.startFailed", { error: K.errorText(e) }), error: true };
      K.setStatus(status, notice.text, notice.error);
      poll();
    });
  });

  K.onReady(function () {
    if (!K.can("admin")) return;
    section.hidden = false;
    poll();
  });
})();
