/* Kefu console: the admin's retrain (dashboard page). POST /api/training starts the NLU training in the background;
   GET /api/training is polled every 2 s while it runs for its progress (epochs done of the most the schedule runs).
   The new model is swapped into every worker by the server: nothing to reload here. */
(function () {
  "use strict";
  var K = window.KefuOps;
  var section = document.getElementById("train-section");
  var button = document.getElementById("train-start");
  var bar = document.getElementById("train-progress");
  var status = document.getElementById("train-status");
  var timer = null;

  function show(s) {
    var running = s.state === "running";
    button.disabled = running || !s.available;
    bar.hidden = !running && s.state !== "succeeded";
    if (typeof s.progress === "number") bar.value = s.progress;
    else bar.removeAttribute("value");  // indeterminate until the first epoch is reported
    if (!s.available) K.setStatus(status, K.t("train.unavailable"));
    else if (running) {
      K.setStatus(status, typeof s.epoch === "number"
        ? K.t("train.running", { epoch: K.number(s.epoch), epochs: K.number(s.epochs) }) : K.t("train.starting"));
    } else if (s.state === "succeeded") K.setStatus(status, K.t("train.succeeded", { when: K.when(s.finished_at) }));
    else if (s.state === "failed") K.setStatus(status, K.t("train.failed", { when: K.when(s.finished_at) }), true);
    else K.setStatus(status, "");
    if (running && timer === null) timer = window.setTimeout(function () { timer = null; poll(); }, 2000);
  }

  function poll() {
    K.api("GET", "/api/training").then(show, function (e) {
      K.setStatus(status, K.t("train.loadFailed", { error: K.errorText(e) }), true);
    });
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    K.setStatus(status, K.t("common.working"));
    K.api("POST", "/api/training", {}).then(show, function (e) {
      K.setStatus(status, K.t("train.startFailed", { error: K.errorText(e) }), true);
      poll();
    });
  });

  K.onReady(function () {
    if (!K.can("admin")) return;
    section.hidden = false;
    poll();
  });
})();
