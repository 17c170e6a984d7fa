/* pipelines dashboard: follows one run over socket.io (namespace /dashboard) and draws it.
 *
 * Events: `runs` fills the run selector; `graph` draws the SVG, the chart panels and the table
 * rows; `history` brings the per-node samples the charts draw (all of them after a watch, then
 * the new ones); `stats` updates the figures, the run state and the failure log. The buttons call
 * the control API. Every text that comes from the server is put in the DOM with textContent,
 * never as HTML. The charts are SVG drawn here: the page loads nothing from elsewhere.
 */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var BOX_W = 196;
  var BOX_H = 100;
  var GAP_X = 56;
  var GAP_Y = 22;
  var PAD = 14;
  var LIVE = { built: true, running: true, stopping: true };
  var RATE_WINDOW = 2; // seconds the live rate looks back
  var CHART_W = 300; // the charts' own units: they stretch to their panel's width
  var CHART_H = 40;
  /* How a node's items that did not complete are shown: failures in red, the others in their own
   * quieter colours, each with its name (see wiki/Semantics.md for what each count means). */
  /* What the node's on_error did with each item in the failure list. */
  var FAILURE_OUTCOMES = {
    skipped: { tone: "warn", label: "skipped", title: "on_error 'skip': counted, logged, and the run went on" },
    routed: { tone: "bad", label: "to error node", title: "sent to the node's error node" },
    failed: { tone: "bad", label: "failed the run", title: "on_error 'fail': the run stopped" },
  };
  var OUTCOMES = [
    {
      field: "failed",
      tone: "bad",
      label: "failed",
      short: "fail",
      title: "raised after its retries: sent to the error node, or failing the run",
    },
    {
      field: "skipped",
      tone: "warn",
      label: "skipped",
      short: "skip",
      title: "raised after its retries and was skipped (on_error 'skip')",
    },
    {
      field: "dropped",
      tone: "quiet",
      label: "dropped",
      short: "drop",
      title: "produced nothing: the node returned None (a filter), or a join group lost a member",
    },
    {
      field: "dropped_at_input",
      tone: "quiet",
      label: "dropped at input",
      short: "lost",
      title: "pushed out of the node's lossy input (property 'input') by newer items before it took them",
    },
  ];

  var token = new URLSearchParams(window.location.search).get("token");

  var el = {
    select: q("run-select"),
    label: q("run-label"),
    state: q("run-state"),
    elapsed: q("elapsed"),
    pause: q("pause"),
    resume: q("resume"),
    stop: q("stop"),
    banner: q("banner"),
    graph: q("graph"),
    tbody: q("nodes").querySelector("tbody"),
    charts: q("charts"),
    chartSpan: q("chart-span"),
    failures: q("failures"),
    failuresEmpty: q("failures-empty"),
    failureCount: q("failure-count"),
    connection: q("connection"),
    updates: q("updates"),
    error: q("error"),
  };

  var view = {
    graph: null, // the last `graph` event
    runId: null, // the run the figures belong to
    boxes: {}, // node name -> {count, rate, queue, bar, failed, box}
    rows: {}, // node name -> {cells...}
    roles: {}, // node name -> role
    rates: {}, // node name -> recent [{at, seen}] samples, for the live rate
    charts: {}, // node name -> {role, workers, out, queue}: a chart panel's parts
    history: { run: null, every: 1, kept: 300, samples: [] }, // the watched run's samples, oldest first
    bounds: {}, // node name -> its queue bound, from the latest stats
    chartsEnded: null, // whether the charts were last drawn for a run that had ended
    state: null,
    paused: false,
    failuresKey: null,
    updates: 0,
    busy: false,
    asked: false, // a watch is on its way: its graph will come
  };

  function q(testid) {
    return document.querySelector('[data-testid="' + testid + '"]');
  }

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    for (var name in attrs) node.setAttribute(name, attrs[name]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // -- formatting ---------------------------------------------------------------------------

  var integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var oneDecimal = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });

  function fmtCount(n) {
    return integer.format(n || 0);
  }

  function fmtRate(r) {
    if (!r) return "0";
    return r < 100 ? oneDecimal.format(r) : integer.format(r);
  }

  function fmtLatency(seconds) {
    if (!seconds) return "–";
    if (seconds < 0.001) return oneDecimal.format(seconds * 1e6) + " µs";
    if (seconds < 1) return oneDecimal.format(seconds * 1e3) + " ms";
    return oneDecimal.format(seconds) + " s";
  }

  function plural(n, noun) {
    return fmtCount(n) + " " + noun + (n === 1 ? "" : "s");
  }

  function fmtSeconds(seconds) {
    return seconds >= 1 ? oneDecimal.format(seconds).replace(/\.0$/, "") + " s" : integer.format(seconds * 1000) + " ms";
  }

  function fmtElapsed(seconds) {
    var s = Math.floor(seconds || 0);
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var rest = String(s % 60).padStart(2, "0");
    return h ? h + ":" + String(m).padStart(2, "0") + ":" + rest : m + ":" + rest;
  }

  function fmtClock(epochSeconds) {
    var d = new Date(epochSeconds * 1000);
    return [d.getHours(), d.getMinutes(), d.getSeconds()]
      .map(function (n) {
        return String(n).padStart(2, "0");
      })
      .join(":");
  }

  function processed(role, s) {
    return role === "source" ? s.items_out : s.completed;
  }

  /* Items per second over the last RATE_WINDOW seconds, from the counts of successive stats (0
   * once nothing moved for that long). The server's `rate` is the whole run's average: it is what
   * a run that has ended shows, and what shows until there are two samples. */
  function liveRate(name, role, s, stats) {
    var seen = role === "source" ? s.items_out : s.items_in;
    if (!LIVE[stats.state]) {
      delete view.rates[name];
      return s.rate;
    }
    var samples = view.rates[name] || (view.rates[name] = []);
    var now = stats.elapsed;
    samples.push({ at: now, seen: seen });
    while (samples.length > 2 && samples[1].at <= now - RATE_WINDOW) samples.shift();
    var first = samples[0];
    var dt = now - first.at;
    return dt > 0 ? Math.max(0, seen - first.seen) / dt : s.rate;
  }

  function displayState(state, paused) {
    return paused && state === "running" ? "paused" : state;
  }

  // -- banner and status --------------------------------------------------------------------

  function showBanner(text, kind) {
    el.banner.textContent = text;
    el.banner.className = "banner banner-" + (kind || "info");
    el.banner.hidden = false;
  }

  function hideBanner() {
    el.banner.hidden = true;
    el.banner.textContent = "";
  }

  function setConnection(state, text) {
    el.connection.dataset.state = state;
    el.connection.textContent = text;
  }

  function setError(text) {
    el.error.textContent = text ? "· " + text : "";
  }

  // -- run selector -------------------------------------------------------------------------

  function renderRuns(runs) {
    var chosen = el.select.value;
    clear(el.select);
    el.select.appendChild(new Option("newest live run", ""));
    var known = false;
    runs
      .slice()
      .reverse()
      .forEach(function (run) {
        var state = displayState(run.state, run.paused);
        el.select.appendChild(new Option(run.label + " (" + run.id + ") — " + state, run.id));
        if (run.id === chosen) known = true;
      });
    el.select.value = known ? chosen : "";
    if (chosen && !known) {
      watch(); // the run we showed was forgotten: back to the newest live one
    } else if (!el.select.value && runs.length && newestLive(runs) !== view.runId) {
      watch();
    }
    if (!runs.length) {
      view.graph = null;
      view.runId = null;
      drawEmpty("No run yet. Attach a pipeline to this server to see it here.");
      applyState(null, false, 0);
    }
  }

  function newestLive(runs) {
    var live = runs.filter(function (run) {
      return LIVE[run.state];
    });
    var pool = live.length ? live : runs;
    return pool[pool.length - 1].id;
  }

  function watch() {
    view.asked = true;
    socket.emit("watch", { run: el.select.value || null });
  }

  // -- graph --------------------------------------------------------------------------------

  function drawEmpty(text) {
    clear(el.graph);
    el.graph.appendChild(make("p", "empty", text));
    clear(el.tbody);
    clear(el.charts);
    el.chartSpan.textContent = "";
    view.boxes = {};
    view.rows = {};
    view.charts = {};
    view.history = { run: null, every: 1, kept: 300, samples: [] };
    view.failuresKey = null;
    renderFailures([]);
  }

  function layout(nodes) {
    var perLayer = {};
    var layers = 0;
    var rows = 0;
    nodes.forEach(function (n) {
      perLayer[n.layer] = (perLayer[n.layer] || 0) + 1;
      layers = Math.max(layers, n.layer + 1);
    });
    for (var k in perLayer) rows = Math.max(rows, perLayer[k]);
    var place = {};
    nodes.forEach(function (n) {
      var offset = ((rows - perLayer[n.layer]) * (BOX_H + GAP_Y)) / 2;
      place[n.name] = {
        x: PAD + n.layer * (BOX_W + GAP_X),
        y: PAD + offset + n.row * (BOX_H + GAP_Y),
      };
    });
    return {
      place: place,
      width: PAD * 2 + layers * BOX_W + Math.max(0, layers - 1) * GAP_X,
      height: PAD * 2 + rows * BOX_H + Math.max(0, rows - 1) * GAP_Y,
    };
  }

  function markers() {
    var defs = svg("defs", {});
    [
      ["arrow", "edge-head"],
      ["arrow-error", "edge-head edge-head-error"],
    ].forEach(function (m) {
      var marker = svg("marker", {
        id: m[0],
        viewBox: "0 0 10 10",
        refX: "9",
        refY: "5",
        markerWidth: "7",
        markerHeight: "7",
        orient: "auto-start-reverse",
      });
      marker.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", class: m[1] }));
      defs.appendChild(marker);
    });
    return defs;
  }

  /* Cut `node`'s text with an ellipsis until it fits `width` px (it must be in the page to be measured). */
  function fitText(node, width) {
    var full = node.textContent;
    if (node.getComputedTextLength() <= width) return;
    var lo = 0;
    var hi = full.length;
    while (lo < hi) {
      var mid = Math.ceil((lo + hi) / 2);
      node.textContent = full.slice(0, mid) + "…";
      if (node.getComputedTextLength() <= width) lo = mid;
      else hi = mid - 1;
    }
    node.textContent = full.slice(0, lo) + "…";
  }

  function drawGraph(graph) {
    view.asked = false;
    view.graph = graph;
    view.runId = graph.run;
    view.failuresKey = null; // the first stats of this run renders its list, empty or not
    view.roles = {};
    view.rates = {};
    view.bounds = {};
    if (view.history.run !== graph.run) view.history = { run: null, every: 1, kept: 300, samples: [] };
    graph.nodes.forEach(function (n) {
      view.roles[n.name] = n.role;
    });
    el.label.textContent = graph.label;
    document.title = graph.label + " · pipelines dashboard";
    clear(el.graph);
    if (!graph.nodes.length) {
      el.graph.appendChild(make("p", "empty", "This run has no nodes."));
      clear(el.tbody);
      clear(el.charts);
      view.boxes = {};
      view.rows = {};
      view.charts = {};
      return;
    }
    var geo = layout(graph.nodes);
    var root = svg("svg", {
      class: "graph",
      width: geo.width,
      height: geo.height,
      viewBox: "0 0 " + geo.width + " " + geo.height,
      role: "img",
      "aria-label": "Pipeline graph of " + graph.label,
    });
    root.appendChild(markers());

    var edges = svg("g", { class: "edges" });
    graph.edges.forEach(function (e) {
      var a = geo.place[e.from];
      var b = geo.place[e.to];
      if (!a || !b) return;
      var x1 = a.x + BOX_W;
      var y1 = a.y + BOX_H / 2;
      var x2 = b.x - 2;
      var y2 = b.y + BOX_H / 2;
      var bend = Math.max(30, (x2 - x1) / 2);
      var error = e.kind === "error";
      var path = svg("path", {
        d: "M" + x1 + "," + y1 + " C" + (x1 + bend) + "," + y1 + " " + (x2 - bend) + "," + y2 + " " + x2 + "," + y2,
        class: error ? "edge edge-error" : "edge",
        "marker-end": error ? "url(#arrow-error)" : "url(#arrow)",
        "data-testid": "edge-" + e.from + "-" + e.to,
        "data-kind": e.kind,
      });
      path.appendChild(svg("title", {}, e.from + " → " + e.to + (error ? " (errors)" : "")));
      edges.appendChild(path);
    });
    root.appendChild(edges);

    view.boxes = {};
    graph.nodes.forEach(function (n) {
      var p = geo.place[n.name];
      var g = svg("g", {
        class: "box role-" + n.role,
        transform: "translate(" + p.x + "," + p.y + ")",
        "data-testid": "box-" + n.name,
      });
      g.appendChild(svg("title", {}, n.name + " (" + n.role + ")"));
      g.appendChild(svg("rect", { class: "box-bg", width: BOX_W, height: BOX_H, rx: 9 }));
      g.appendChild(svg("rect", { class: "box-stripe", width: 5, height: BOX_H - 18, x: 0, y: 9, rx: 2.5 }));
      var name = svg("text", { class: "box-name", x: 16, y: 22 }, n.name);
      g.appendChild(name);
      g.appendChild(svg("text", { class: "box-role", x: BOX_W - 12, y: 22, "text-anchor": "end" }, n.role));
      var count = svg("text", { class: "box-count", x: 16, y: 47 }, "0");
      var unit = svg("text", { class: "box-unit", x: BOX_W - 12, y: 47, "text-anchor": "end" }, "0/s");
      var detail = svg("text", { class: "box-detail", x: 16, y: 64 }, "");
      var track = svg("rect", { class: "box-track", x: 16, y: 70, width: BOX_W - 28, height: 4, rx: 2 });
      var bar = svg("rect", { class: "box-bar", x: 16, y: 70, width: 0, height: 4, rx: 2 });
      var badges = {};
      OUTCOMES.forEach(function (o) {
        var badge = svg("g", {
          class: "box-badge tone-" + o.tone,
          "data-testid": "badge-" + o.field + "-" + n.name,
          "data-tone": o.tone,
          display: "none",
        });
        badge.appendChild(svg("title", {}, o.label + ": " + o.title));
        var bg = svg("rect", { class: "box-badge-bg", height: 16, rx: 8, y: 79 });
        var text = svg("text", { class: "box-badge-text", y: 91 }, "");
        badge.append(bg, text);
        badges[o.field] = { g: badge, bg: bg, text: text, shown: null };
        g.appendChild(badge);
      });
      [count, unit, detail, track, bar].forEach(function (child) {
        g.appendChild(child);
      });
      root.appendChild(g);
      view.boxes[n.name] = {
        g: g,
        name: name,
        count: count,
        unit: unit,
        detail: detail,
        badges: badges,
        bar: bar,
        track: track,
      };
    });
    el.graph.appendChild(root);
    for (var boxName in view.boxes) {
      var parts = view.boxes[boxName];
      fitText(parts.name, BOX_W - 16 - 12 - parts.g.querySelector(".box-role").getComputedTextLength() - 10);
    }
    buildRows(graph.nodes);
    buildCharts(graph.nodes);
    drawCharts();
  }

  /* Show the non-zero outcome badges of a box side by side, each as wide as its text; when the
   * three do not fit in the box, their names shorten (the full one is in each badge's title). */
  function setBadges(box, s) {
    if (!placeBadges(box, s, "label")) placeBadges(box, s, "short");
  }

  function placeBadges(box, s, labelKey) {
    var x = 16;
    OUTCOMES.forEach(function (o) {
      var badge = box.badges[o.field];
      var n = s[o.field] || 0;
      if (!n) {
        badge.g.setAttribute("display", "none");
        return;
      }
      badge.g.setAttribute("display", "inline");
      var label = (o.tone === "bad" ? "✕ " : "") + fmtCount(n) + " " + o[labelKey];
      if (badge.shown !== label) {
        badge.text.textContent = label;
        badge.shown = label;
      }
      var width = badge.text.getComputedTextLength() + 14;
      badge.bg.setAttribute("x", String(x));
      badge.bg.setAttribute("width", String(width));
      badge.text.setAttribute("x", String(x + 7));
      x += width + 5;
    });
    return x - 5 <= BOX_W - 8;
  }

  // -- charts -------------------------------------------------------------------------------

  function buildCharts(nodes) {
    clear(el.charts);
    view.charts = {};
    nodes.forEach(function (n) {
      var panel = make("div", "chart-panel");
      panel.dataset.testid = "chart-" + n.name;
      var head = make("div", "chart-head");
      var name = make("span", "node-name", n.name);
      name.title = n.name;
      var workers = make("span", "chart-workers", "");
      workers.dataset.testid = "chart-workers-" + n.name;
      workers.title = "Workers running now, and the most that ran at once";
      head.append(make("span", "dot role-" + n.role), name, workers);
      panel.appendChild(head);
      var out = chartRow(
        panel,
        "out/s",
        "Items sent on per second: put by a source, emitted by a node, completed by a sink",
        "chart-out-" + n.name
      );
      var queue = null;
      if (n.role !== "source") {
        queue = chartRow(panel, "queue", "Items waiting in the node's input queue, against its bound", "chart-queue-" + n.name);
      } else {
        panel.appendChild(make("div", "chart-note muted small", "a source has no input queue"));
      }
      el.charts.appendChild(panel);
      view.charts[n.name] = { role: n.role, workers: workers, out: out, queue: queue };
    });
  }

  function chartRow(panel, label, title, testid) {
    var row = make("div", "chart-row");
    row.title = title;
    var root = svg("svg", {
      class: "chart",
      viewBox: "0 0 " + CHART_W + " " + CHART_H,
      preserveAspectRatio: "none",
      "data-testid": testid,
      role: "img",
      "aria-label": label,
    });
    var area = svg("path", { class: "chart-area", d: "" });
    var line = svg("path", { class: "chart-line", d: "", "vector-effect": "non-scaling-stroke" });
    root.append(area, line);
    var value = make("span", "chart-value", "–");
    value.dataset.testid = testid + "-now";
    row.append(make("span", "chart-label", label), root, value);
    panel.appendChild(row);
    return { svg: root, area: area, line: line, value: value };
  }

  function applyHistory(data) {
    if (data.run !== view.runId) return; // another run's: the watch on its way brings the right one
    var h = view.history;
    if (data.reset || h.run !== data.run) {
      h = view.history = { run: data.run, every: data.every, kept: data.kept, samples: [] };
    }
    var last = h.samples.length ? h.samples[h.samples.length - 1].seq : 0;
    data.samples.forEach(function (sample) {
      if (sample.seq > last) h.samples.push(sample);
    });
    if (h.samples.length > h.kept) h.samples.splice(0, h.samples.length - h.kept);
    drawCharts();
  }

  /* Each sample's time span: from the previous sample (the run's start for the first one it ever
   * took; one interval back for the oldest one kept) to its own time. */
  function spans(samples, every) {
    return samples.map(function (sample, i) {
      var from = i > 0 ? samples[i - 1].t : sample.seq === 1 ? 0 : Math.max(0, sample.t - every);
      return { from: from, to: sample.t, sample: sample };
    });
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    var step = Math.pow(10, Math.floor(Math.log10(value)));
    var nice = [1, 2, 2.5, 5, 10].map(function (k) {
      return k * step;
    });
    for (var i = 0; i < nice.length; i++) if (nice[i] >= value) return nice[i];
    return value;
  }

  function drawCharts() {
    var h = view.history;
    var samples = h.run === view.runId ? h.samples : [];
    var parts = spans(samples, h.every);
    var x0 = parts.length ? parts[0].from : 0;
    var x1 = parts.length ? parts[parts.length - 1].to : 0;
    var width = x1 - x0 || 1;
    function x(t) {
      return (((t - x0) / width) * CHART_W).toFixed(2);
    }
    el.chartSpan.textContent = parts.length
      ? "run time " + fmtElapsed(x0) + " – " + fmtElapsed(x1) + " · a sample every " + fmtSeconds(h.every)
      : "no samples yet";
    for (var name in view.charts) {
      var chart = view.charts[name];
      var rates = parts.map(function (p) {
        var node = p.sample.nodes[name] || { out: 0 };
        var dt = p.to - p.from;
        return dt > 0 ? node.out / dt : 0;
      });
      var total = parts.reduce(function (sum, p) {
        return sum + ((p.sample.nodes[name] || {}).out || 0);
      }, 0);
      var top = niceMax(Math.max.apply(null, [0].concat(rates)));
      var step = [];
      parts.forEach(function (p, i) {
        var y = (CHART_H - 1 - (rates[i] / top) * (CHART_H - 3)).toFixed(2);
        step.push((i ? "L" : "M") + x(p.from) + "," + y, "L" + x(p.to) + "," + y);
      });
      paint(chart.out, step);
      chart.out.svg.dataset.samples = String(parts.length);
      chart.out.svg.dataset.total = String(total);
      chart.out.svg.dataset.top = String(top);
      // Live, the last sample's rate; once the run has ended, the mean over the charts' span (its
      // last sample covers only the drain, and would read as a rate that fell to nothing).
      var ended = view.state !== null && !LIVE[view.state];
      chart.out.value.textContent = !parts.length
        ? "–"
        : ended
        ? "avg " + fmtRate(total / width)
        : fmtRate(rates[rates.length - 1]);
      chart.out.value.title =
        (ended ? "mean over the span shown; " : "the last sample; ") +
        "peak " +
        fmtRate(Math.max.apply(null, [0].concat(rates))) +
        "/s";
      if (chart.queue) {
        var depths = parts.map(function (p) {
          return (p.sample.nodes[name] || { queue: 0 }).queue;
        });
        var bound = view.bounds[name] || 0;
        var qTop = Math.max(bound, Math.max.apply(null, [1].concat(depths)));
        var line = [];
        parts.forEach(function (p, i) {
          var y = (CHART_H - 1 - (depths[i] / qTop) * (CHART_H - 3)).toFixed(2);
          if (!i) line.push("M" + x(p.from) + "," + y);
          line.push("L" + x(p.to) + "," + y);
        });
        paint(chart.queue, line);
        chart.queue.svg.dataset.samples = String(parts.length);
        chart.queue.svg.dataset.max = String(Math.max.apply(null, [0].concat(depths)));
        chart.queue.svg.dataset.bound = String(bound);
        chart.queue.value.title = "most in the window: " + fmtCount(Math.max.apply(null, [0].concat(depths)));
      }
    }
  }

  /* Draw a series (path commands from left to right) as a line over a filled area. */
  function paint(chart, commands) {
    if (!commands.length) {
      chart.line.setAttribute("d", "");
      chart.area.setAttribute("d", "");
      return;
    }
    var d = commands.join(" ");
    var first = commands[0].slice(1).split(",")[0];
    var last = commands[commands.length - 1].slice(1).split(",")[0];
    chart.line.setAttribute("d", d);
    chart.area.setAttribute("d", d + " L" + last + "," + CHART_H + " L" + first + "," + CHART_H + " Z");
  }

  // -- table --------------------------------------------------------------------------------

  function buildRows(nodes) {
    clear(el.tbody);
    view.rows = {};
    nodes.forEach(function (n) {
      var tr = make("tr");
      tr.dataset.testid = "row-" + n.name;
      var nameCell = make("td");
      var nameWrap = make("div", "node-cell");
      var dot = make("span", "dot role-" + n.role);
      var name = make("span", "node-name", n.name);
      name.title = n.name;
      var bp = make("span", "badge badge-warn", "backpressure");
      bp.dataset.testid = "backpressure-" + n.name;
      bp.title = "A successor's input queue is full: this node waits to send";
      bp.hidden = true;
      var pausedBadge = make("span", "badge badge-paused", "paused");
      pausedBadge.dataset.testid = "paused-" + n.name;
      pausedBadge.title = "This node is paused: it takes no more items, and its input fills up";
      pausedBadge.hidden = true;
      nameWrap.append(dot, name, pausedBadge, bp);
      nameCell.appendChild(nameWrap);

      nameCell.dataset.label = "Node";
      var queueCell = make("td", "queue-cell");
      queueCell.dataset.label = "Queue";
      var queueText = make("span", "queue-text", "–");
      queueText.dataset.testid = "queue-" + n.name;
      var meter = make("span", "meter");
      var fill = make("span", "meter-fill");
      meter.appendChild(fill);
      queueCell.append(meter, queueText);

      var cells = {
        rate: numCell("rate-" + n.name, "Rate"),
        inFlight: numCell("inflight-" + n.name, "In flight"),
        workers: numCell("workers-" + n.name, "Workers"),
        count: numCell("count-" + n.name, "Processed"),
        failed: numCell("failed-" + n.name, "Failed"),
        skipped: numCell("skipped-" + n.name, "Skipped"),
        dropped: numCell("dropped-" + n.name, "Dropped"),
        retried: numCell("retried-" + n.name, "Retried"),
        latency: numCell("latency-" + n.name, "Latency"),
      };
      var controlCell = make("td", "node-controls");
      controlCell.dataset.label = "Control";
      var nodePause = make("button", "btn btn-small", "Pause");
      nodePause.type = "button";
      nodePause.dataset.testid = "pause-" + n.name;
      nodePause.title = "Pause node " + n.name + " alone";
      nodePause.disabled = true;
      var nodeResume = make("button", "btn btn-small", "Resume");
      nodeResume.type = "button";
      nodeResume.dataset.testid = "resume-" + n.name;
      nodeResume.title = "Let node " + n.name + " go on";
      nodeResume.disabled = true;
      nodePause.addEventListener("click", function () {
        nodeControl(n.name, "pause");
      });
      nodeResume.addEventListener("click", function () {
        nodeControl(n.name, "resume");
      });
      controlCell.append(nodePause, nodeResume);
      tr.append(
        nameCell,
        cells.rate,
        cells.inFlight,
        cells.workers,
        queueCell,
        cells.count,
        cells.failed,
        cells.skipped,
        cells.dropped,
        cells.retried,
        cells.latency,
        controlCell
      );
      cells.bp = bp;
      cells.pausedBadge = pausedBadge;
      cells.pause = nodePause;
      cells.resume = nodeResume;
      cells.paused = false;
      cells.queueText = queueText;
      cells.meter = meter;
      cells.fill = fill;
      el.tbody.appendChild(tr);
      view.rows[n.name] = cells;
    });
  }

  function numCell(testid, label) {
    var td = make("td", "num", "0");
    td.dataset.testid = testid;
    td.dataset.label = label; // the heading shown beside it when the table is laid out as cards
    return td;
  }

  function setNum(cell, value, text) {
    cell.textContent = text === undefined ? fmtCount(value) : text;
    cell.classList.toggle("zero", !value);
  }

  // "held/bound", and "+N taken" for the items the node's workers took and have not started yet.
function queueText(held, s, sep) {
  var text = fmtCount(held) + sep + fmtCount(s.queue_bound);
  return s.taken ? text + " +" + fmtCount(s.taken) + " taken" : text;
}

function fillLevel(depth, bound) {
    if (!bound) return { ratio: 0, level: "none" };
    var ratio = Math.min(1, depth / bound);
    return { ratio: ratio, level: ratio >= 0.9 ? "high" : ratio >= 0.5 ? "mid" : "low" };
  }

  // -- stats --------------------------------------------------------------------------------

  function applyStats(stats) {
    view.updates += 1;
    el.updates.textContent = String(view.updates);
    if (!view.graph || stats.run !== view.runId) {
      // The newest live run changed (or the graph is not here yet): ask for its graph.
      if (!view.asked) watch();
      return;
    }
    var boundsChanged = false;
    for (var name in stats.nodes) {
      var s = stats.nodes[name];
      var role = view.roles[name];
      var count = processed(role, s);
      var rate = liveRate(name, role, s, stats);
      var held = s.queue_depth - (s.taken || 0); // what the input edges hold, within their bound
      var fill = fillLevel(held, s.queue_bound);
      var row = view.rows[name];
      if (row) {
        setNum(row.rate, rate, fmtRate(rate));
        setNum(row.inFlight, s.in_flight);
        setNum(
          row.workers,
          s.workers,
          role === "source" ? "–" : fmtCount(s.workers || 0) + " (peak " + fmtCount(s.peak_workers || 0) + ")"
        );
        setNum(row.count, count);
        setNum(row.failed, s.failed);
        setNum(row.skipped, s.skipped);
        var atInput = s.dropped_at_input || 0; // a lossy input's drops, apart from the node's own
        setNum(
          row.dropped,
          s.dropped + atInput,
          atInput ? fmtCount(s.dropped) + " +" + fmtCount(atInput) + " at input" : undefined
        );
        setNum(row.retried, s.retried);
        setNum(row.latency, s.latency, fmtLatency(s.latency));
        row.failed.classList.toggle("bad", s.failed > 0);
        row.skipped.classList.toggle("warn", s.skipped > 0);
        row.bp.hidden = !s.backpressure;
        row.paused = !!s.paused;
        row.pausedBadge.hidden = !s.paused;
        if (s.queue_bound) {
          row.queueText.textContent = queueText(held, s, " / ");
          row.meter.hidden = false;
          row.fill.style.width = (fill.ratio * 100).toFixed(1) + "%";
          row.fill.dataset.level = fill.level;
        } else {
          row.queueText.textContent = "–";
          row.meter.hidden = true;
        }
      }
      var box = view.boxes[name];
      if (box) {
        box.count.textContent = fmtCount(count);
        box.unit.textContent = fmtRate(rate) + "/s";
        var detail = [];
        if (role === "source") detail.push("items sent");
        if (s.queue_bound) detail.push("queue " + queueText(held, s, "/"));
        if (role !== "source") detail.push(plural(s.workers || 0, "worker"));
        box.detail.textContent = detail.join(" · ");
        setBadges(box, s);
        box.bar.setAttribute("width", String(fill.ratio * (BOX_W - 28)));
        box.bar.setAttribute("data-level", fill.level);
        box.track.style.display = s.queue_bound ? "" : "none";
        box.bar.style.display = s.queue_bound ? "" : "none";
        box.g.classList.toggle("backpressure", !!s.backpressure);
        box.g.classList.toggle("troubled", s.failed > 0);
        box.g.classList.toggle("paused", !!s.paused);
      }
      var chart = view.charts[name];
      if (chart) {
        chart.workers.textContent =
          role === "source" ? "source" : plural(s.workers || 0, "worker") + " · peak " + fmtCount(s.peak_workers || 0);
        if (chart.queue) chart.queue.value.textContent = queueText(held, s, "/");
        if (view.bounds[name] !== s.queue_bound) {
          view.bounds[name] = s.queue_bound;
          boundsChanged = true;
        }
      }
    }
    applyState(stats.state, stats.paused, stats.elapsed); // after the rows: their buttons follow their state
    var chartsEnded = !LIVE[stats.state];
    if (boundsChanged || chartsEnded !== view.chartsEnded) {
      view.chartsEnded = chartsEnded;
      drawCharts();
    }
    renderFailures(stats.failures || []);
  }

  function applyState(state, paused, elapsed) {
    view.state = state;
    view.paused = paused;
    var shown = state ? displayState(state, paused) : "no run";
    el.state.textContent = shown;
    el.state.dataset.state = state ? shown : "none";
    el.elapsed.textContent = fmtElapsed(elapsed);
    updateButtons();
  }

  function updateButtons() {
    var state = view.state;
    var live = !!LIVE[state];
    el.pause.disabled = view.busy || state !== "running" || view.paused;
    el.resume.disabled = view.busy || !live || !view.paused;
    el.stop.disabled = view.busy || state !== "running";
    for (var name in view.rows) {
      var row = view.rows[name];
      row.pause.disabled = view.busy || !live || row.paused;
      row.resume.disabled = view.busy || !live || !row.paused;
    }
  }

  // -- failures -----------------------------------------------------------------------------

  function renderFailures(failures) {
    var key = failures.length ? failures.length + ":" + failures[0].at + ":" + failures[0].node : "";
    if (key === view.failuresKey) return;
    view.failuresKey = key;
    clear(el.failures);
    failures.forEach(function (f) {
      var li = make("li", "failure");
      li.dataset.testid = "failure";
      var head = make("div", "failure-head");
      var node = make("span", "chip", f.node);
      node.dataset.testid = "failure-node";
      var when = make("time", "muted small", fmtClock(f.at));
      when.dateTime = new Date(f.at * 1000).toISOString();
      var outcome = FAILURE_OUTCOMES[f.outcome] || FAILURE_OUTCOMES.failed;
      var tag = make("span", "tag tone-" + outcome.tone, outcome.label);
      tag.dataset.testid = "failure-outcome";
      tag.title = outcome.title;
      var left = make("span", "failure-what");
      left.append(node, tag);
      head.append(left, when);
      var error = make("div", "failure-error", f.error);
      error.dataset.testid = "failure-error";
      var item = make("div", "failure-item");
      item.append(make("span", "muted", "item "));
      var itemText = make("code", "", f.item);
      itemText.dataset.testid = "failure-item";
      item.appendChild(itemText);
      li.append(head, error, item);
      el.failures.appendChild(li);
    });
    el.failuresEmpty.hidden = failures.length > 0;
    el.failureCount.textContent = failures.length ? "latest " + failures.length : "";
  }

  // -- controls -----------------------------------------------------------------------------

  function control(action) {
    post(action, action);
  }

  // Pause or resume one node: "/api/nodes/<node>/pause" or ".../resume".
  function nodeControl(name, action) {
    post("nodes/" + encodeURIComponent(name) + "/" + action, action + " " + name);
  }

  function post(path, action) {
    if (!view.runId || view.busy) return;
    view.busy = true;
    updateButtons();
    setError("");
    var headers = token ? { Authorization: "Bearer " + token } : {};
    fetch("/api/" + path + "?run=" + encodeURIComponent(view.runId), { method: "POST", headers: headers })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body && body.error ? body.error : "HTTP " + response.status);
        });
      })
      .catch(function (err) {
        setError(action + " failed: " + err.message);
      })
      .then(function () {
        view.busy = false;
        updateButtons();
      });
  }

  el.pause.addEventListener("click", function () {
    control("pause");
  });
  el.resume.addEventListener("click", function () {
    control("resume");
  });
  el.stop.addEventListener("click", function () {
    control("stop");
  });
  el.select.addEventListener("change", watch);

  // -- socket.io ----------------------------------------------------------------------------

  if (typeof io !== "function") {
    showBanner("The socket.io client script did not load; the dashboard cannot connect.", "error");
    setConnection("failed", "no socket.io client");
    return;
  }

  var socket = io("/dashboard", { auth: token ? { token: token } : {} });

  socket.on("connect", function () {
    hideBanner();
    setConnection("connected", "live");
    watch();
  });

  socket.on("disconnect", function () {
    setConnection("disconnected", "disconnected — reconnecting…");
  });

  socket.on("connect_error", function (err) {
    var message = err && err.message ? err.message : String(err);
    if (/token/i.test(message)) {
      setConnection("refused", "refused");
      drawEmpty("Not connected.");
      showBanner(
        token
          ? "This server refused the token in the address. Open the page with the right ?token=… value."
          : "This server requires a token: open this page as /?token=<token> (the server's owner has it).",
        "error"
      );
    } else {
      setConnection("disconnected", "cannot connect — retrying…");
    }
  });

  socket.on("runs", renderRuns);
  socket.on("graph", drawGraph);
  socket.on("history", applyHistory);
  socket.on("stats", applyStats);
})();
