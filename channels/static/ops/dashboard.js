/* Kefu console: the dashboard. Numbers from GET /api/dashboard, plots are PNGs rendered by the server (matplotlib)
   in the console's language (&lang=; switching it reloads the page, see ops.js). */
(function () {
  "use strict";
  var K = window.KefuOps;
  var I = window.KefuI18n;
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
    var one = { minimumFractionDigits: 1, maximumFractionDigits: 1 };
    if (seconds < 60) return K.t("dur.s", { n: K.number(Math.round(seconds)) });
    if (seconds < 3600) return K.t("dur.min", { n: K.number(Math.round(seconds / 60)) });
    if (seconds < 86400) return K.t("dur.h", { n: K.number(seconds / 3600, one) });
    return K.t("dur.d", { n: K.number(seconds / 86400, one) });
  }

  function load() {
    var n = days.value;
    K.setStatus(status, K.t("common.loading"));
    K.api("GET", "/api/dashboard?days=" + encodeURIComponent(n)).then(function (d) {
      kpis.textContent = "";
      kpis.appendChild(kpi(K.number(d.conversations), K.t("dash.conversations", { turns: K.number(d.turns) })));
      kpis.appendChild(kpi(K.pct(d.resolution_rate), K.t("dash.resolvedBot")));
      kpis.appendChild(kpi(K.pct(d.handoff_rate), K.t("dash.handedHuman")));
      kpis.appendChild(kpi(K.pct(d.fallback_rate), K.t("dash.fallback")));
      kpis.appendChild(kpi(K.number(d.safety_blocks), K.t("dash.safety")));
      kpis.appendChild(kpi(K.number(d.redactions), K.t("dash.redactions")));
      // The team's figures (the workspace): CSAT, first response, resolution.
      kpis.appendChild(kpi(d.ratings ? K.t("dash.csatValue", { value: K.number(d.csat_mean,
        { minimumFractionDigits: 1, maximumFractionDigits: 1 }) }) : "–", K.tn("dash.csat", d.ratings)));
      kpis.appendChild(kpi(d.ratings ? K.pct(d.csat_satisfied) : "–", K.t("dash.satisfied")));
      kpis.appendChild(kpi(duration(d.first_response_median), K.t("dash.firstResponse")));
      kpis.appendChild(kpi(duration(d.resolution_median), K.t("dash.resolution")));
      K.setStatus(status, "");
      PLOTS.forEach(function (name) {
        document.getElementById("plot-" + name).src = "/api/dashboard/" + name + ".png?days=" + encodeURIComponent(n) +
          "&lang=" + encodeURIComponent(I.locale());
      });
    }, function (e) {
      K.setStatus(status, K.t("dash.failed", { error: K.errorText(e) }), true);
    });
  }

  days.addEventListener("change", load);
  K.onReady(load);
})();
