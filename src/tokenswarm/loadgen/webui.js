/* tokenswarm's additions to Locust's web UI, served at tokenswarm/ui.js and added to Locust's page by
 * tokenswarm/loadgen/webui.py:
 *  - charts over time in the tokenswarm tab (output tok/s, TTFT and TPOT p50/p99, users, failures), drawn
 *    as inline SVG from tokenswarm/series, the run's samples of its live figures: no library, nothing
 *    fetched from anywhere else, so the page works offline and behind the web login;
 *  - above them, the reason the last start failed, when it did, and the run folder with a link to its
 *    report once the test has ended; below them, what the level table's marks mean;
 *  - the start form's "Custom parameters" (tokenswarm's options) open, not folded away.
 * Every text from the server is set as text, never as HTML.
 */
(function () {
  "use strict";

  var SCRIPT = document.currentScript;
  var SERIES_URL = SCRIPT.src.replace(/ui\.js(\?.*)?$/, "series");
  var POLL_MS = 2000;
  var PLACE_MS = 500;
  var KEEP = 4000; // samples kept in the page (the server keeps fewer, more coarsely as a test runs long)
  var SVG = "http://www.w3.org/2000/svg";
  var W = 560, H = 210, L = 58, R = 14, T = 30, B = 30;

  var CHARTS = [
    {key: "output_tok_s", title: "Output tokens/s", lines: [
      {field: "output_tok_s", label: "tok/s", color: "#2e7d32"}]},
    {key: "ttft", title: "TTFT (ms)", lines: [
      {field: "ttft_p50", label: "p50", color: "#1565c0"},
      {field: "ttft_p99", label: "p99", color: "#c62828", dash: "6 3"}]},
    {key: "tpot", title: "TPOT (ms)", lines: [
      {field: "tpot_p50", label: "p50", color: "#1565c0"},
      {field: "tpot_p99", label: "p99", color: "#c62828", dash: "6 3"}]},
    {key: "users", title: "Users", lines: [
      {field: "users", label: "users", color: "#6a1b9a", step: true}]},
    {key: "failures", title: "Failed requests/s", lines: [
      {field: "failed_s", label: "failed/s", color: "#c62828"}]}
  ];

  var BASE_URL = SCRIPT.src.replace(/tokenswarm\/ui\.js(\?.*)?$/, "");
  var state = {runId: null, started: 0, samples: [], error: null, last: 0, busy: false, timer: null,
               runDir: null, report: null, finished: null, marks: []};

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    for (var k in attrs) {
      if (Object.prototype.hasOwnProperty.call(attrs, k)) node.setAttribute(k, attrs[k]);
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "-";
    var a = Math.abs(v), text;
    if (a >= 10000) return (v / 1000).toFixed(a >= 100000 ? 0 : 1).replace(/\.0$/, "") + "k";
    if (a >= 100) text = v.toFixed(0);
    else if (a >= 10) text = v.toFixed(1);
    else text = v.toFixed(2);
    return text.indexOf(".") < 0 ? text : text.replace(/\.?0+$/, "");
  }

  // time ticks at a round step (5 s ... 1 h) since the test started, at most about six of them
  var STEPS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400];
  function timeTicks(a, b) {
    var step = STEPS[STEPS.length - 1];
    for (var i = 0; i < STEPS.length; i++) if ((b - a) / STEPS[i] <= 6) { step = STEPS[i]; break; }
    var out = [];
    for (var t = Math.ceil(a / step) * step; t <= b; t += step) out.push(t);
    return out;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function clock(s) {
    s = Math.max(0, Math.round(s));
    var m = Math.floor(s / 60), r = s % 60;
    return m + ":" + (r < 10 ? "0" : "") + r;
  }

  // failures per second between consecutive samples, from the test's running count
  function withRates(samples) {
    var out = [];
    for (var i = 0; i < samples.length; i++) {
      var s = samples[i], p = samples[i - 1];
      var copy = Object.assign({}, s);
      copy.failed_s = p && s.t > p.t ? Math.max(0, (s.failed - p.failed) / (s.t - p.t)) : null;
      out.push(copy);
    }
    return out;
  }

  function drawChart(def, samples, started) {
    var svg = el("svg", {viewBox: "0 0 " + W + " " + H, width: "100%", role: "img",
                         "class": "tokenswarm-chart", "data-chart": def.key});
    var t0 = samples.length ? samples[0].t : 0;
    var t1 = samples.length ? samples[samples.length - 1].t : 1;
    if (t1 <= t0) t1 = t0 + 1;
    var ymax = 0, points = 0;
    def.lines.forEach(function (ln) {
      samples.forEach(function (s) {
        var v = s[ln.field];
        if (v !== null && v !== undefined) { ymax = Math.max(ymax, v); points++; }
      });
    });
    ymax = niceMax(ymax);
    var x = function (t) { return L + (t - t0) / (t1 - t0) * (W - L - R); };
    var y = function (v) { return H - B - v / ymax * (H - T - B); };
    svg.setAttribute("data-points", String(points));

    // title, and each line's colour and latest value
    var last = samples.length ? samples[samples.length - 1] : {};
    svg.appendChild(el("text", {x: 4, y: 16, "font-size": 14, "font-weight": "bold", fill: "currentColor"},
                       def.title));
    var legend = el("text", {x: W - R, y: 16, "font-size": 12, "text-anchor": "end", fill: "currentColor",
                             "class": "tokenswarm-legend"});
    def.lines.forEach(function (ln) {
      legend.appendChild(el("tspan", {fill: ln.color, "font-weight": "bold", dx: 8}, " \u2014 "));
      legend.appendChild(el("tspan", {}, ln.label + " " + fmt(last[ln.field])));
    });
    svg.appendChild(legend);
    // horizontal grid with values, time axis as elapsed m:ss since the test started
    for (var i = 0; i <= 4; i++) {
      var v = ymax * i / 4, yy = y(v);
      svg.appendChild(el("line", {x1: L, x2: W - R, y1: yy, y2: yy, stroke: "currentColor",
                                  "stroke-opacity": i ? 0.12 : 0.5}));
      svg.appendChild(el("text", {x: L - 6, y: yy + 4, "font-size": 11, "text-anchor": "end",
                                  fill: "currentColor"}, fmt(v)));
    }
    var since = started || t0;
    timeTicks(t0 - since, t1 - since).forEach(function (e) {
      var xt = x(since + e);
      svg.appendChild(el("line", {x1: xt, x2: xt, y1: H - B, y2: H - B + 4, stroke: "currentColor",
                                  "stroke-opacity": 0.5}));
      svg.appendChild(el("text", {x: xt, y: H - B + 16, "font-size": 11, fill: "currentColor",
                                  "text-anchor": "middle"}, clock(e)));
    });
    // a dashed line where a level begins
    for (var j = 1; j < samples.length; j++) {
      if (samples[j].level !== samples[j - 1].level && samples[j].level) {
        var xl = x(samples[j].t);
        svg.appendChild(el("line", {x1: xl, x2: xl, y1: T, y2: H - B, stroke: "currentColor",
                                    "stroke-opacity": 0.35, "stroke-dasharray": "3 3"}));
        svg.appendChild(el("text", {x: xl + 3, y: T + 10, "font-size": 10, fill: "currentColor",
                                    "fill-opacity": 0.7}, "level " + samples[j].level));
      }
    }
    // the lines: a run of known values is one polyline; unknown values (warming up, measuring) leave gaps
    def.lines.forEach(function (ln) {
      var runs = [], run = [], prev = null;
      samples.forEach(function (s) {
        var v = s[ln.field];
        if (v === null || v === undefined) {
          if (run.length) runs.push(run);
          run = []; prev = null;
          return;
        }
        var px = x(s.t).toFixed(1), py = y(v).toFixed(1);
        if (ln.step && prev !== null) run.push(px + "," + prev);
        run.push(px + "," + py);
        prev = py;
      });
      if (run.length) runs.push(run);
      runs.forEach(function (r) {
        if (r.length === 1) {
          var xy = r[0].split(",");
          svg.appendChild(el("circle", {cx: xy[0], cy: xy[1], r: 2.5, fill: ln.color, "data-series": ln.field}));
          return;
        }
        var attrs = {points: r.join(" "), fill: "none", stroke: ln.color, "stroke-width": 2,
                     "stroke-linejoin": "round", "data-series": ln.field};
        if (ln.dash) attrs["stroke-dasharray"] = ln.dash;
        svg.appendChild(el("polyline", attrs));
      });
    });
    if (!points) {
      svg.appendChild(el("text", {x: (L + W - R) / 2, y: (T + H - B) / 2, "font-size": 12, "text-anchor": "middle",
                                  fill: "currentColor", "fill-opacity": 0.6},
                         samples.length ? "no value yet (warming up or measuring)" : "no test yet"));
    }
    return svg;
  }

  function render(box) {
    var error = box.querySelector(".tokenswarm-error");
    error.textContent = state.error ? "The last start failed: " + state.error : "";
    error.style.display = state.error ? "block" : "none";
    // the run folder, and once the test has ended its report, served by this web UI
    var run = box.querySelector(".tokenswarm-run");
    run.replaceChildren();
    if (state.runDir) {
      run.appendChild(document.createTextNode((state.finished ? "Run folder: " : "Writing to: ") + state.runDir));
      if (state.report) {
        run.appendChild(document.createTextNode(" \u2014 "));
        var a = document.createElement("a");
        a.href = BASE_URL + state.report;
        a.target = "_blank";
        a.rel = "noopener";
        a.className = "tokenswarm-report";
        a.textContent = "open report.html";
        run.appendChild(a);
      } else if (!state.finished) {
        run.appendChild(document.createTextNode(" (the report is written there when the test ends)"));
      }
    }
    run.style.display = state.runDir ? "block" : "none";
    // what the marks after a level's number in the table below mean (once the report has them)
    var marks = box.querySelector(".tokenswarm-marks");
    marks.textContent = state.marks.length ? "Marks in the table below: " + state.marks.join("; ") : "";
    marks.style.display = state.marks.length ? "block" : "none";
    var grid = box.querySelector(".tokenswarm-grid");
    var samples = withRates(state.samples);
    var charts = CHARTS.map(function (def) {
      var cell = document.createElement("div");
      cell.appendChild(drawChart(def, samples, state.started));
      return cell;
    });
    grid.replaceChildren.apply(grid, charts);
  }

  function poll() {
    var box = document.getElementById("tokenswarm-charts");
    if (!box || state.busy) return;
    state.busy = true;
    fetch(SERIES_URL + "?since=" + encodeURIComponent(state.last), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        if (data.run_id !== state.runId) {
          state.runId = data.run_id;
          state.samples = [];
        }
        state.started = data.started || 0;
        state.error = data.error || null;
        state.runDir = data.run_dir || null;
        state.report = data.report || null;
        state.finished = data.finished;
        state.marks = data.marks || [];
        state.samples = state.samples.concat(data.samples || []);
        var all = state.samples;
        if (all.length > KEEP) {  // every other one, the first and the newest kept
          state.samples = all.filter(function (s, i) { return i % 2 === 0 || i === all.length - 1; });
        }
        if (state.samples.length) state.last = state.samples[state.samples.length - 1].t;
        render(box);
      })
      .catch(function () { /* the server is gone or the login expired: keep what is drawn */ })
      .then(function () { state.busy = false; });
  }

  function makeBox() {
    var box = document.createElement("div");
    box.id = "tokenswarm-charts";
    box.style.cssText = "padding:12px 16px 4px 16px";
    var error = document.createElement("div");
    error.className = "tokenswarm-error";
    error.setAttribute("role", "alert");
    error.style.cssText = "display:none;color:#c62828;border:1px solid #c62828;border-radius:4px;" +
                          "padding:8px 12px;margin-bottom:10px;white-space:pre-wrap";
    var run = document.createElement("div");
    run.className = "tokenswarm-run";
    run.style.cssText = "display:none;font-size:14px;margin-bottom:8px;word-break:break-all";
    var caption = document.createElement("div");
    caption.style.cssText = "font-size:13px;opacity:0.75;margin-bottom:8px";
    caption.textContent = "Live figures from each request's exact record, sampled every few seconds: output " +
      "tokens/s over the current level's latest window, TTFT and TPOT percentiles over the level so far " +
      "(after its warm-up), failures per second as their records arrive. Time is since the test started. " +
      "The table's Req/s is each level's completed requests per second over its window after warm-up; " +
      "Locust's RPS in the header is its own rolling figure (whole-second counts of every request over about " +
      "10 s, ending 2 s ago), so the two differ by design, most while a level starts or ends.";
    caption.className = "tokenswarm-caption";
    var marks = document.createElement("div");
    marks.className = "tokenswarm-marks";
    marks.style.cssText = "display:none;font-size:13px;margin-bottom:8px";
    var grid = document.createElement("div");
    grid.className = "tokenswarm-grid";
    grid.style.cssText = "display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px";
    box.appendChild(error);
    box.appendChild(run);
    box.appendChild(caption);
    box.appendChild(grid);
    box.appendChild(marks);
    return box;
  }

  // the tokenswarm tab is the one whose table has the TTFT p50 column; the charts go above that table
  function place() {
    openParameters();
    var th = document.querySelector('th[data-sortkey="ttft50"]');
    var table = th && th.closest("table");
    if (!table) {
      if (state.timer !== null) { clearInterval(state.timer); state.timer = null; }
      return;
    }
    if (!document.getElementById("tokenswarm-charts")) {
      table.parentNode.insertBefore(makeBox(), table);
      poll();
    }
    if (state.timer === null) state.timer = setInterval(poll, POLL_MS);
  }

  // the start form's "Custom parameters" (tokenswarm's options) start open, once per form shown
  function openParameters() {
    var buttons = document.querySelectorAll('form [aria-expanded="false"]');
    for (var i = 0; i < buttons.length; i++) {
      var b = buttons[i];
      if (b.textContent.trim() === "Custom parameters" && !b.hasAttribute("data-tokenswarm-opened")) {
        b.setAttribute("data-tokenswarm-opened", "");
        b.click();
      }
    }
  }

  setInterval(place, PLACE_MS);
  if (document.readyState !== "loading") place();
  else document.addEventListener("DOMContentLoaded", place);
})();
