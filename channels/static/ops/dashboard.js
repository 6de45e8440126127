/* Kefu console: the dashboard. Numbers from GET /api/dashboard, plots are PNGs rendered by the server (matplotlib). */
(function () {
  "use strict";
  var K = window.KefuOps;
  var el = K.el;
  var days = document.getElementById("dash-days");
  var kpis = document.getElementById("dash-kpis");
  var status = document.getElementById("dash-status");
  var PLOTS = ["conversations", "rates", "intents"];

  function kpi(value, label) {
    var box = el("div", "ops-kpi");
    box.appendChild(el("strong", null, value));
    box.appendChild(el("span", null, label));
    return box;
  }

  function duration(seconds) {
    if (typeof seconds !== "number") return "–";
    if (seconds < 60) return Math.round(seconds) + " s";
    if (seconds < 3600) return Math.round(seconds / 60) + " min";
    if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h";
    return (seconds / 86400).toFixed(1) + " d";
  }

  function load() {
    var n = days.value;
    K.setStatus(status, "Loading…");
    K.api("GET", "/api/dashboard?days=" + encodeURIComponent(n)).then(function (d) {
      kpis.textContent = "";
      kpis.appendChild(kpi(d.conversations, "conversations (" + d.turns + " customer turns)"));
      kpis.appendChild(kpi(K.pct(d.resolution_rate), "resolved by the bot"));
      kpis.appendChild(kpi(K.pct(d.handoff_rate), "handed to a human"));
      kpis.appendChild(kpi(K.pct(d.fallback_rate), "of turns answered with the fallback"));
      kpis.appendChild(kpi(d.safety_blocks, "turns blocked or replies replaced by safety"));
      kpis.appendChild(kpi(d.redactions, "turns with personal data redacted"));
      // The team's figures (the workspace): CSAT, first response, resolution.
      kpis.appendChild(kpi(d.ratings ? d.csat_mean.toFixed(1) + " / 5" : "–", "CSAT (" + d.ratings + " rating" +
        (d.ratings === 1 ? "" : "s") + ")"));
      kpis.appendChild(kpi(d.ratings ? K.pct(d.csat_satisfied) : "–", "of ratings 4 or 5"));
      kpis.appendChild(kpi(duration(d.first_response_median), "median first response of an agent"));
      kpis.appendChild(kpi(duration(d.resolution_median), "median time to resolution"));
      K.setStatus(status, "");
      PLOTS.forEach(function (name) {
        document.getElementById("plot-" + name).src = "/api/dashboard/" + name + ".png?days=" + encodeURIComponent(n);
      });
    }, function (e) {
      K.setStatus(status, "Could not load the dashboard (" + e.message + ")", true);
    });
  }

  days.addEventListener("change", load);
  K.onReady(load);
})();
