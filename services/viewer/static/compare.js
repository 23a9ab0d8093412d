/* gaitway compare: draws the gait-cycle curves of the comparison page from its embedded data
   (<script id="comparison-data">, written by services/viewer/compare.py) as inline SVG. No libraries, no
   network. When done the body carries data-viewer-state="ready" ("error" if drawing failed). */
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var W = 360, LEFT = 40, RIGHT = 18;
  var TOP = 18, MAIN_H = 140, GAP = 26, DIFF_H = 60, BOTTOM = 34;
  var H = TOP + MAIN_H + GAP + DIFF_H + BOTTOM;
  var PW = W - LEFT - RIGHT;
  var SOURCES = { "2d": "2D sagittal", "2d_corrected": "2D sagittal, view corrected", "3d": "lifted 3D",
    "mocap": "3D motion capture" };

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVGNS, name);
    for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) node.setAttribute(k, attrs[k]); }
    if (parent) parent.appendChild(node);
    return node;
  }

  function html(tag, cls, text, parent) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmt(v, d) {
    return v === null || v === undefined || !isFinite(v) ? "–" : v.toFixed(d === undefined ? 1 : d);
  }

  function niceStep(span, count) {
    var raw = span / Math.max(count, 1);
    var mag = Math.pow(10, Math.floor(Math.log(raw) / Math.LN10));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) { if (steps[i] * mag >= raw) return steps[i] * mag; }
    return 10 * mag;
  }

  function range(curves) {
    var lo = Infinity, hi = -Infinity;
    curves.forEach(function (c) {
      if (!c || !c.mean) return;
      for (var i = 0; i < c.mean.length; i++) {
        var s = c.sd ? c.sd[i] : 0;
        lo = Math.min(lo, c.mean[i] - s);
        hi = Math.max(hi, c.mean[i] + s);
      }
    });
    if (!isFinite(lo)) return null;
    if (hi - lo < 1) { var mid = (hi + lo) / 2; lo = mid - 0.5; hi = mid + 0.5; }
    var pad = 0.05 * (hi - lo);
    return [lo - pad, hi + pad];
  }

  function scaler(lo, hi, top, height) {
    return function (v) { return top + height * (1 - (v - lo) / (hi - lo)); };
  }

  function xOf(pct) { return LEFT + PW * pct / 100; }

  function path(values, y) {
    var n = values.length, d = "";
    for (var i = 0; i < n; i++) {
      d += (i ? "L" : "M") + xOf(100 * i / (n - 1)).toFixed(1) + "," + y(values[i]).toFixed(1);
    }
    return d;
  }

  function band(mean, sd, y) {
    var n = mean.length, up = [], down = [];
    for (var i = 0; i < n; i++) {
      var x = xOf(100 * i / (n - 1)).toFixed(1);
      up.push(x + "," + y(mean[i] + sd[i]).toFixed(1));
      down.unshift(x + "," + y(mean[i] - sd[i]).toFixed(1));
    }
    return "M" + up.join("L") + "L" + down.join("L") + "Z";
  }

  function yAxis(svg, lo, hi, y, top, height, ticks, unit) {
    var step = niceStep(hi - lo, ticks);
    for (var v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) {
      var yy = y(v);
      el("line", { "class": "grid", x1: LEFT, x2: LEFT + PW, y1: yy, y2: yy }, svg);
      el("text", { x: LEFT - 4, y: yy + 3.5, "text-anchor": "end" }, svg).textContent =
        Math.abs(v) < 1e-9 ? "0" : String(+v.toFixed(2));
    }
    el("line", { "class": "axis", x1: LEFT, x2: LEFT, y1: top, y2: top + height }, svg);
    if (unit) {
      el("text", { x: LEFT, y: top - 6 }, svg).textContent = unit;
    }
  }

  function xAxis(svg, yBase, labels) {
    for (var p = 0; p <= 100; p += 20) {
      var x = xOf(p);
      el("line", { "class": "grid", x1: x, x2: x, y1: TOP, y2: TOP + MAIN_H }, svg);
      el("line", { "class": "grid", x1: x, x2: x, y1: TOP + MAIN_H + GAP, y2: TOP + MAIN_H + GAP + DIFF_H }, svg);
      if (labels) el("text", { x: x, y: yBase + 13, "text-anchor": "middle" }, svg).textContent = p + " %";
    }
  }

  function panel(curve, data, parent) {
    var labels = data.labels;
    var box = html("div", "panel", null, parent);
    box.setAttribute("data-side", curve.side);
    html("h4", null, curve.side === "left" ? "Left foot's cycles" : "Right foot's cycles", box);
    var counts = "A " + curve.a.n + " of " + curve.a.cycles + " cycles, B " + curve.b.n + " of " +
      curve.b.cycles;
    if (curve.diff_summary) {
      counts += "; mean |B − A| " + fmt(curve.diff_summary.mean_abs) + "°, max " +
        fmt(curve.diff_summary.max_abs) + "° at " + fmt(curve.diff_summary.max_at_pct, 0) + " %";
    }
    html("div", "counts", counts, box);
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img",
      "aria-label": curve.title + ", " + curve.side + ": " + labels[0] + " and " + labels[1] }, box);
    var r = range([curve.a, curve.b]);
    var base = TOP + MAIN_H + GAP + DIFF_H;
    xAxis(svg, base, true);
    el("text", { x: LEFT + PW / 2, y: H - 3, "text-anchor": "middle" }, svg).textContent =
      "% gait cycle (0 = foot contact)";
    if (!r) {
      el("text", { "class": "empty", x: LEFT + PW / 2, y: TOP + MAIN_H / 2, "text-anchor": "middle" }, svg)
        .textContent = "no unflagged cycle in either run";
    } else {
      var y = scaler(r[0], r[1], TOP, MAIN_H);
      yAxis(svg, r[0], r[1], y, TOP, MAIN_H, 5, "deg");
      [["a", curve.a], ["b", curve.b]].forEach(function (pair) {
        var k = pair[0], c = pair[1];
        if (!c.mean) return;
        if (c.sd) el("path", { "class": "band-" + k, d: band(c.mean, c.sd, y) }, svg);
        if (c.toe_off_pct !== null && c.toe_off_pct !== undefined) {
          var tx = xOf(c.toe_off_pct);
          el("line", { "class": "toe-" + k, x1: tx, x2: tx, y1: TOP, y2: TOP + MAIN_H }, svg);
        }
      });
      [["a", curve.a], ["b", curve.b]].forEach(function (pair) {
        if (pair[1].mean) el("path", { "class": "line-" + pair[0], d: path(pair[1].mean, y) }, svg);
      });
    }
    var dTop = TOP + MAIN_H + GAP;
    el("text", { x: LEFT, y: dTop - 6 }, svg).textContent = "B − A (deg)";
    if (curve.diff) {
      var m = 0.5;
      curve.diff.forEach(function (v) { m = Math.max(m, Math.abs(v)); });
      m *= 1.1;
      var yd = scaler(-m, m, dTop, DIFF_H);
      yAxis(svg, -m, m, yd, dTop, DIFF_H, 2, "");
      el("line", { "class": "zero", x1: LEFT, x2: LEFT + PW, y1: yd(0), y2: yd(0) }, svg);
      el("path", { "class": "line-d", d: path(curve.diff, yd) }, svg);
    } else {
      el("text", { "class": "empty", x: LEFT + PW / 2, y: dTop + DIFF_H / 2, "text-anchor": "middle" }, svg)
        .textContent = "needs a curve in both runs";
    }
    var cursor = el("line", { "class": "cursor", x1: -10, x2: -10, y1: TOP, y2: base }, svg);
    var readout = html("div", "readout", "\u00a0", box);
    function show(evt) {
      var rect = svg.getBoundingClientRect();
      var px = (evt.clientX - rect.left) * W / rect.width;
      var pct = Math.max(0, Math.min(100, (px - LEFT) / PW * 100));
      var i = Math.round(pct * (data.points - 1) / 100);
      var p = 100 * i / (data.points - 1);
      cursor.setAttribute("x1", xOf(p));
      cursor.setAttribute("x2", xOf(p));
      function at(c) { return c.mean ? fmt(c.mean[i]) + (c.sd ? " ± " + fmt(c.sd[i]) : "") : "–"; }
      readout.textContent = fmt(p, 0) + " %: A " + at(curve.a) + ", B " + at(curve.b) + ", B − A " +
        (curve.diff ? fmt(curve.diff[i]) : "–") + " deg";
    }
    svg.addEventListener("pointermove", show);
    svg.addEventListener("pointerdown", show);
    var notes = [];
    [["A", curve.a], ["B", curve.b]].forEach(function (pair) {
      var c = pair[1], ex = c.excluded || {}, keys = Object.keys(ex);
      if (keys.length) {
        notes.push(pair[0] + " left out: " + keys.map(function (k) { return k + " ×" + ex[k]; }).join(", "));
      }
    });
    (curve.warnings || []).forEach(function (w) { notes.push("⚠ " + w); });
    if (notes.length) html("div", "note", notes.join("; "), box);
  }

  function legend(data, parent) {
    var items = [["a", "A: " + data.labels[0]], ["b", "B: " + data.labels[1]], ["d", "B − A"]];
    items.forEach(function (it) {
      var span = html("span", null, null, parent);
      html("span", "swatch " + it[0], null, span);
      span.appendChild(document.createTextNode(it[1]));
    });
    var note = html("span", null, data.include_flagged ?
      "flagged cycles included (--include-flagged)" : "only cycles free of quality flags", parent);
    note.style.color = data.include_flagged ? "#8a4b00" : "#666";
  }

  function render() {
    var data = JSON.parse(document.getElementById("comparison-data").textContent);
    legend(data, document.getElementById("legend"));
    var root = document.getElementById("curves");
    root.textContent = "";
    var byAngle = {}, order = [];
    data.curves.forEach(function (c) {
      if (!byAngle[c.angle]) { byAngle[c.angle] = []; order.push(c.angle); }
      byAngle[c.angle].push(c);
    });
    order.forEach(function (angle) {
      var curves = byAngle[angle];
      var card = html("div", "angle", null, root);
      card.setAttribute("data-angle", angle);
      var src = [curves[0].a.source, curves[0].b.source].map(function (s) { return SOURCES[s] || s || "–"; });
      html("h3", null, curves[0].title + " (sources: A " + src[0] + ", B " + src[1] + ")", card);
      var panels = html("div", "panels", null, card);
      curves.forEach(function (c) { panel(c, data, panels); });
    });
    document.body.setAttribute("data-cycles-a", String(data.runs[0].cycles.length));
    document.body.setAttribute("data-cycles-b", String(data.runs[1].cycles.length));
  }

  function start() {
    try {
      render();
      document.body.setAttribute("data-viewer-state", "ready");
    } catch (err) {
      var root = document.getElementById("curves");
      if (root) html("p", "error", "The curves could not be drawn: " + err, root);
      document.body.setAttribute("data-viewer-state", "error");
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
