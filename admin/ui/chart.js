"use strict";
// anyfront dashboard: number formats and the SVG line charts, shared by
// dashboard.js and fleet.js (the page inlines this script before them).
// Values are written as SVG attributes and textContent, never as markup.
const anyfrontChart = (function () {
  // The SVG namespace, taken from the page's own charts: the page holds
  // no URL at all.
  const SVGNS = document.getElementById("c-transport").namespaceURI;

  // fmt formats a rate or count for a big tile or a legend.
  function fmt(v) {
    if (v == null || !isFinite(v)) return "–";
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100) return v.toFixed(0);
    if (a >= 10) return v.toFixed(1);
    return v.toFixed(2);
  }
  // trimZeros turns an axis label "2.50" into "2.5" and "0.00" into "0".
  function trimZeros(s) { return /^[0-9.]+$/.test(s) && s.includes(".") ? s.replace(/\.?0+$/, "") : s; }

  // niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVGNS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  // chart draws series [{name, color, pts: [[t, v|null]...]}] into svg,
  // over the windowSec seconds ending at now; null values break the line.
  function chart(svg, series, now, windowSec, opts) {
    const w = svg.clientWidth || 600, h = svg.clientHeight || 190;
    const padL = 48, padR = 8, padT = 8, padB = 20;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    const t0 = now - windowSec;
    let max = opts.max || 0;
    if (!opts.max) for (const s of series) for (const p of s.pts) if (p[0] >= t0 && p[1] > max) max = p[1];
    max = opts.max || niceMax(max);
    const x = (t) => padL + (w - padL - padR) * (t - t0) / windowSec;
    const y = (v) => padT + (h - padT - padB) * (1 - v / max);
    for (let i = 0; i <= 4; i++) {
      const v = max * i / 4, yy = y(v);
      el("line", {x1: padL, x2: w - padR, y1: yy, y2: yy, class: "grid"}, svg);
      el("text", {x: padL - 6, y: yy + 4, "text-anchor": "end", class: "axis"}, svg).textContent =
        opts.fmt ? opts.fmt(v) : trimZeros(fmt(v));
    }
    const ticks = windowSec <= 300 ? 60 : windowSec <= 900 ? 180 : 600;
    for (let ago = 0; ago <= windowSec; ago += ticks) {
      const xx = x(now - ago);
      el("text", {x: xx, y: h - 5, "text-anchor": ago === 0 ? "end" : ago === windowSec ? "start" : "middle", class: "axis"}, svg)
        .textContent = ago === 0 ? "now" : "-" + (ago >= 60 ? ago / 60 + "m" : ago + "s");
    }
    for (const s of series) {
      let d = "", pen = false, prevT = 0;
      for (const p of s.pts) {
        if (p[0] < t0) continue;
        // A missing second (sampler paused) breaks the line too.
        if (p[1] == null || (pen && p[0] - prevT > 3)) { pen = false; if (p[1] == null) continue; }
        d += (pen ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(Math.min(p[1], max)).toFixed(1);
        pen = true;
        prevT = p[0];
      }
      if (d) el("path", {d: d, class: "line", stroke: s.color}, svg);
    }
  }

  function legend(div, series, fmtv) {
    div.textContent = "";
    for (const s of series) {
      const span = document.createElement("span");
      const sw = document.createElement("i");
      sw.className = "sw";
      sw.style.background = s.color;
      span.appendChild(sw);
      span.appendChild(document.createTextNode(s.name));
      const b = document.createElement("b");
      const last = s.pts.length ? s.pts[s.pts.length - 1][1] : null;
      b.textContent = fmtv(last);
      span.appendChild(b);
      div.appendChild(span);
    }
  }

  return {fmt, chart, legend};
})();
