"use strict";
// anyfront dashboard. Everything from the server is written with
// textContent or SVG attributes, never parsed as markup: backend names and
// reasons come from the config and the network.
(function () {
  const $ = (id) => document.getElementById(id);
  // The SVG namespace, taken from the page's own charts: the page holds
  // no URL at all.
  const SVGNS = $("c-transport").namespaceURI;
  const MAX_SAMPLES = 3600;

  let samples = [];      // oldest first, from /api/v1/stats
  let lastT = 0;
  let windowSec = 900;
  let token = null;      // the admin token: memory only, never stored
  let pending = null;    // {what, run} waiting for a token
  let pendingSet = null; // where the token typed in goes (default: token)
  // Each fleet node's operate token, typed in when its button is first
  // pressed: memory only, like token, and never sent to another node.
  const fleetTokens = {};
  let xdpOn = false;

  const TRANSPORT_COLORS = {udp: "#4aa3ff", tcp: "#b37feb", dot: "#36cfc9", doh: "#f5a623", doq: "#2ecc71"};
  const RCODE_COLORS = {NOERROR: "#2ecc71", NXDOMAIN: "#4aa3ff", SERVFAIL: "#ff4d4f", REFUSED: "#f5a623",
    FORMERR: "#b37feb", NOTIMP: "#8c9bab"};
  const XDP_COLORS = {pass: "#2ecc71", blocked: "#ff4d4f", ratelimited: "#f5a623", malformed: "#b37feb", answered: "#4aa3ff", truncated: "#ffd666"};
  const SPARE = ["#36cfc9", "#ff85c0", "#d3f261", "#ffc069"];

  function color(map, key, i) { return map[key] || SPARE[i % SPARE.length]; }

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
  function pct(v) { return v == null ? "–" : (v * 100 >= 10 ? (v * 100).toFixed(1) : (v * 100).toFixed(2)); }

  function setTile(id, text, unit, cls) {
    const el = $(id);
    el.textContent = text;
    if (unit && text !== "–") {
      const s = document.createElement("small");
      s.textContent = unit;
      el.appendChild(s);
    }
    el.className = "v" + (cls ? " " + cls : "");
  }

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
  // over the window ending at now; null values break the line.
  function chart(svg, series, now, opts) {
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

  // keyed builds one series per key found in field over the window.
  function keyed(field, colors) {
    const keys = new Set();
    for (const s of samples) if (s[field]) for (const k in s[field]) keys.add(k);
    return Array.from(keys).sort().map((k, i) => ({
      name: k, color: color(colors, k, i),
      pts: samples.map((s) => [s.t, s[field] && s[field][k] != null ? s[field][k] : 0]),
    }));
  }

  function drawStats() {
    const now = samples.length ? samples[samples.length - 1].t : Math.floor(Date.now() / 1000);
    const last = samples.length ? samples[samples.length - 1] : {};
    setTile("v-qps", fmt(last.qps), "", "");
    setTile("v-servfail", pct(last.servfail_ratio), "%", last.servfail_ratio == null ? "" : last.servfail_ratio > 0.01 ? "down" : last.servfail_ratio > 0 ? "warn" : "up");
    setTile("v-cache", pct(last.cache_hit_ratio), "%", "");
    setTile("v-p50", last.p50_ms == null ? "–" : fmt(last.p50_ms), "ms", "");
    setTile("v-p99", last.p99_ms == null ? "–" : fmt(last.p99_ms), "ms", last.p99_ms > 250 ? "warn" : "");

    const tr = keyed("transport", TRANSPORT_COLORS);
    if (!tr.length) tr.push({name: "udp", color: TRANSPORT_COLORS.udp, pts: samples.map((s) => [s.t, s.qps])});
    legend($("l-transport"), tr, fmt);
    chart($("c-transport"), tr, now, {});
    const rc = keyed("rcode", RCODE_COLORS);
    // Cache hits carry no rcode in the counters; shown beside the rcodes,
    // the lines add up to the answers sent.
    if (samples.some((s) => s.cache && (s.cache.hit || s.cache.stale))) {
      rc.push({name: "from cache", color: "#36cfc9",
        pts: samples.map((s) => [s.t, s.cache ? (s.cache.hit || 0) + (s.cache.stale || 0) : 0])});
    }
    legend($("l-rcode"), rc, fmt);
    chart($("c-rcode"), rc, now, {});
    const lat = [
      {name: "p50", color: "#4aa3ff", pts: samples.map((s) => [s.t, s.p50_ms])},
      {name: "p99", color: "#f5a623", pts: samples.map((s) => [s.t, s.p99_ms])},
    ];
    legend($("l-latency"), lat, (v) => v == null ? "–" : fmt(v) + " ms");
    chart($("c-latency"), lat, now, {});
    const ratio = [
      {name: "cache hit", color: "#36cfc9", pts: samples.map((s) => [s.t, s.cache_hit_ratio == null ? null : s.cache_hit_ratio * 100])},
      {name: "SERVFAIL", color: "#ff4d4f", pts: samples.map((s) => [s.t, s.servfail_ratio == null ? null : s.servfail_ratio * 100])},
    ];
    legend($("l-ratio"), ratio, (v) => v == null ? "–" : v.toFixed(v >= 10 ? 1 : 2) + " %");
    chart($("c-ratio"), ratio, now, {max: 100, fmt: (v) => v.toFixed(0)});

    $("xdp-off").hidden = xdpOn;
    $("c-xdp").hidden = !xdpOn;
    if (xdpOn) {
      const xs = keyed("xdp", XDP_COLORS);
      legend($("l-xdp"), xs, fmt);
      chart($("c-xdp"), xs, now, {});
    } else {
      $("l-xdp").textContent = "";
    }
  }

  function td(tr, text, cls) {
    const c = document.createElement("td");
    if (text instanceof Node) c.appendChild(text); else c.textContent = text;
    if (cls) c.className = cls;
    tr.appendChild(c);
    return c;
  }
  function pill(text, cls) {
    const s = document.createElement("span");
    s.className = "pill " + cls;
    s.textContent = text;
    return s;
  }
  function button(text, cls, onclick) {
    const b = document.createElement("button");
    b.textContent = text;
    b.className = cls;
    b.addEventListener("click", onclick);
    return b;
  }

  // drawBackends updates the table in place: rows are rebuilt only when
  // the set of backends changes, so a button being clicked is not swapped
  // out under the pointer by the next refresh.
  let rowKey = "";
  function drawBackends(list) {
    const table = $("backends");
    const key = list.map((b) => b.pool + "/" + b.name).join("\n");
    if (key !== rowKey) {
      const body = document.createElement("tbody");
      for (const b of list) {
        const tr = document.createElement("tr");
        tr.dataset.backend = b.name;
        for (const cls of ["name", "pool", "muted", "health", "admin", "num qps", "num latency", "num outstanding", "num weight", "reason", "act"]) {
          td(tr, "", cls);
        }
        const path = "api/v1/backends/" + encodeURIComponent(b.name);
        const act = tr.lastChild;
        act.appendChild(button("drain", "drain warn", () => mutate(b.name + " drain", path + "/drain")));
        act.appendChild(button("undrain", "undrain", () => mutate(b.name + " undrain", path + "/undrain")));
        body.appendChild(tr);
      }
      table.replaceChild(body, table.tBodies[0]);
      rowKey = key;
    }
    let up = 0;
    list.forEach((b, i) => {
      if (b.usable) up++;
      const c = table.tBodies[0].rows[i].cells;
      c[0].textContent = b.name;
      c[1].textContent = b.pool;
      c[2].textContent = b.address;
      setPill(c[3], b.health, b.health === "up" ? "up" : "down");
      setPill(c[4], b.admin, b.admin === "auto" || b.admin === "up" ? "idle" : b.admin === "drain" ? "warn" : "down");
      c[5].textContent = fmt(b.qps);
      c[6].textContent = b.latency_ms ? b.latency_ms.toFixed(2) : "–";
      c[7].textContent = String(b.outstanding);
      c[8].textContent = String(b.weight);
      c[9].textContent = b.reason || "";
      c[10].querySelector("button.drain").hidden = b.admin === "drain";
      c[10].querySelector("button.undrain").hidden = b.admin !== "drain";
    });
    const cls = list.length && up === list.length ? "up" : up === 0 ? "down" : "warn";
    setTile("v-backends", up + "/" + list.length, "", cls);
  }
  function setPill(cell, text, cls) {
    let p = cell.firstChild;
    if (!p) { p = pill("", ""); cell.appendChild(p); }
    p.textContent = text;
    p.className = "pill " + cls;
  }

  function drawNode(node) {
    const badge = $("node-state");
    if (node.shutting_down) { badge.textContent = "SHUTTING DOWN"; badge.className = "badge down"; }
    else if (node.drained) { badge.textContent = "NODE DRAINED"; badge.className = "badge warn"; }
    else { badge.textContent = "SERVING"; badge.className = "badge up"; }
    $("node-note").textContent = node.note || "";
    fleetOn = !!node.fleet;
    $("node-id").textContent = (node.name || "") + (node.site ? " · " + node.site : "") +
      (node.version ? " · " + node.version : "");
  }

  function drawBGP(bgp) {
    const peers = document.createElement("tbody"), prefixes = document.createElement("tbody");
    if (!bgp.enabled) {
      $("bgp-summary").textContent = "not configured on this node";
      setTile("v-prefixes", "–", "", "");
    } else {
      let est = 0, ann = 0;
      for (const p of bgp.peers || []) {
        const tr = document.createElement("tr");
        td(tr, p.address, "name");
        td(tr, String(p.asn), "num");
        const ok = p.state === "established";
        if (ok) est++;
        td(tr, pill(p.state, ok ? "up" : "down"));
        td(tr, p.uptime, "num");
        peers.appendChild(tr);
      }
      for (const p of bgp.prefixes || []) {
        const tr = document.createElement("tr");
        td(tr, p.prefix, "name");
        if (p.announced) ann++;
        td(tr, pill(p.announced ? "announced" : "withdrawn", p.announced ? "up" : "down"));
        td(tr, p.reason, "reason");
        prefixes.appendChild(tr);
      }
      const n = (bgp.prefixes || []).length;
      $("bgp-summary").textContent = "AS" + bgp.asn + " router-id " + bgp.router_id + " · " + est + "/" + (bgp.peers || []).length + " sessions up";
      setTile("v-prefixes", ann + "/" + n, "", n && ann === n ? "up" : ann === 0 ? "down" : "warn");
    }
    document.querySelector(".two").hidden = !bgp.enabled;
    $("node-drain").parentNode.querySelector("#node-note").hidden = false;
    $("peers").replaceChild(peers, $("peers").tBodies[0]);
    $("prefixes").replaceChild(prefixes, $("prefixes").tBodies[0]);
  }

  // drawTop fills the two top tables; a bar shows each entry against the
  // busiest one.
  function drawTop(top) {
    if (top.error) {
      // Client addresses are never served without a token (403).
      $("top-off").textContent = top.error;
      top = {enabled: false};
    }
    $("top-off").hidden = top.enabled;
    $("top-tables").hidden = !top.enabled;
    const win = top.window_seconds || 60;
    $("top-summary").textContent = top.enabled ? "last " + win + " s" +
      (top.sample > 1 ? " · 1 query in " + top.sample + " counted, figures are estimates" : "") : "";
    fillTop($("top-clients"), top.clients || [], "client", win);
    fillTop($("top-names"), top.names || [], "name", win);
  }
  function fillTop(table, list, field, win) {
    const body = document.createElement("tbody");
    const most = list.length ? list[0].queries : 1;
    for (const e of list) {
      const tr = document.createElement("tr");
      td(tr, e[field], "key");
      td(tr, fmt(e.queries), "num");
      td(tr, fmt(e.queries / win), "num");
      const bar = document.createElement("i");
      bar.style.width = (100 * e.queries / most).toFixed(1) + "%";
      td(tr, bar, "bar");
      body.appendChild(tr);
    }
    if (!list.length) {
      const tr = document.createElement("tr");
      td(tr, "no queries in the last minute", "muted").colSpan = 4;
      body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
  }

  function message(text, ok) {
    const m = $("msg");
    m.textContent = text;
    m.className = "msg " + (ok ? "ok" : "err");
    m.hidden = false;
    clearTimeout(message.timer);
    if (ok) message.timer = setTimeout(() => { m.hidden = true; }, 5000);
  }

  // mutate makes a POST with the token, asking for it first if needed. A
  // refused token is forgotten so the next click asks again.
  function mutate(what, path) {
    if (!token) { askToken(what, () => mutate(what, path)); return; }
    fetch(path, {method: "POST", headers: {"Authorization": "Bearer " + token}, cache: "no-store"})
      .then((res) => res.json().catch(() => ({})).then((body) => ({res, body})))
      .then(({res, body}) => {
        if (res.ok) {
          message(what + ": done" + (body.changed === false ? " (no change)" : ""), true);
        } else {
          message(what + " refused (" + res.status + "): " + (body.error || res.statusText), false);
          if (res.status === 401) token = null;
          // 403: a read token; it still reads, and the operate token is
          // asked for to run the change.
          if (res.status === 403 && token) askToken(what + " (the operate token)", () => mutate(what, path));
        }
        poll();
      })
      .catch((e) => message(what + " failed: " + e.message, false));
  }

  function askToken(what, run, set) {
    pending = run;
    pendingSet = set || null;
    $("token-what").textContent = what;
    $("token-bar").hidden = false;
    $("token-input").value = "";
    $("token-input").focus();
  }
  $("token-bar").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("token-input").value.trim();
    $("token-input").value = "";
    $("token-bar").hidden = true;
    if (!v) return;
    if (pendingSet) pendingSet(v); else token = v;
    const run = pending;
    pending = null;
    pendingSet = null;
    if (run) run();
  });
  $("token-cancel").addEventListener("click", () => { pending = null; $("token-bar").hidden = true; });

  // Node drain withdraws the anycast route: it takes a second click.
  function armed(btn, what, path) {
    btn.addEventListener("click", () => {
      if (btn.classList.contains("armed")) {
        btn.classList.remove("armed");
        btn.textContent = what;
        mutate(what, path);
        return;
      }
      btn.classList.add("armed");
      btn.textContent = "click again to " + what;
      setTimeout(() => { btn.classList.remove("armed"); btn.textContent = what; }, 5000);
    });
  }
  armed($("node-drain"), "drain node", "api/v1/node/drain");
  armed($("node-undrain"), "undrain node", "api/v1/node/undrain");

  for (const b of document.querySelectorAll("#win button")) {
    b.addEventListener("click", () => {
      windowSec = Number(b.dataset.win);
      for (const o of document.querySelectorAll("#win button")) o.classList.toggle("on", o === b);
      drawStats();
    });
  }

  // authHeaders sends the token, once the operator gave one, with reads
  // too: a node with tokens configured answers no read without one.
  function authHeaders() { return token ? {"Authorization": "Bearer " + token} : {}; }

  // getJSON reads path; a 401 asks for a token (the read token will do)
  // and polls again once it is given. optional paths answer their error
  // body instead of failing the whole poll.
  // fleetMutate drains or undrains another node through this one
  // (POST api/v1/fleet/NODE/VERB), with that node's own token.
  function fleetMutate(name, verb) {
    const what = verb + " node " + name;
    const tok = fleetTokens[name];
    if (!tok) {
      askToken(what + " (that node's operate token)", () => fleetMutate(name, verb), (v) => { fleetTokens[name] = v; });
      return;
    }
    fetch("api/v1/fleet/" + encodeURIComponent(name) + "/" + verb,
      {method: "POST", headers: {"Authorization": "Bearer " + tok}, cache: "no-store"})
      .then((res) => res.json().catch(() => ({})).then((body) => ({res, body})))
      .then(({res, body}) => {
        if (res.ok) message(what + ": done" + (body.changed === false ? " (no change)" : ""), true);
        else {
          if (res.status === 401 || res.status === 403) delete fleetTokens[name];
          message(what + " refused (" + res.status + "): " + (body.error || res.statusText), false);
        }
        pollFleet();
      })
      .catch((e) => message(what + " failed: " + e.message, false));
  }

  let fleetKey = "";
  function drawFleet(nodes) {
    const table = $("fleet");
    const key = nodes.map((n) => n.name).join("\n");
    if (key !== fleetKey) {
      const body = document.createElement("tbody");
      for (const n of nodes) {
        const tr = document.createElement("tr");
        tr.dataset.node = n.name;
        for (const cls of ["name", "site", "serving", "drained", "num prefixes", "num backends", "num qps", "num servfail", "version", "act"]) td(tr, "", cls);
        tr.lastChild.appendChild(button("drain", "drain warn", () => fleetMutate(n.name, "drain")));
        tr.lastChild.appendChild(button("undrain", "undrain", () => fleetMutate(n.name, "undrain")));
        body.appendChild(tr);
      }
      table.replaceChild(body, table.tBodies[0]);
      fleetKey = key;
    }
    nodes.forEach((n, i) => {
      const c = table.tBodies[0].rows[i].cells;
      c[0].textContent = n.name;
      if (n.error) {
        setPill(c[2], "unreachable", "down");
        c[1].textContent = "";
        for (let k = 3; k < 9; k++) c[k].textContent = k === 8 ? n.error : "–";
        return;
      }
      c[1].textContent = n.site || "–";
      setPill(c[2], n.serving ? "yes" : "no", n.serving ? "up" : "down");
      setPill(c[3], n.drained ? "yes" : "no", n.drained ? "warn" : "idle");
      c[4].textContent = n.prefixes_announced + "/" + n.prefixes_configured;
      c[5].textContent = n.backends_usable + "/" + n.backends_total;
      c[6].textContent = fmt(n.qps);
      c[7].textContent = n.servfail_pct == null ? "–" : n.servfail_pct.toFixed(2);
      c[8].textContent = n.version || "";
    });
  }

  // pollFleet reads the fleet rows every few seconds (each asks every
  // node); a node without admin.fleet_file answers 404 and the panel
  // stays hidden.
  let fleetPolling = false;
  let fleetOn = false;   // GET api/v1/node says admin.fleet_file is set
  async function pollFleet() {
    if (fleetPolling || !fleetOn) return;
    fleetPolling = true;
    try {
      const res = await fetch("api/v1/fleet", {cache: "no-store", headers: authHeaders()});
      if (res.ok) {
        const body = await res.json();
        $("fleet-panel").hidden = false;
        drawFleet(body.nodes || []);
      }
    } catch (e) {
      // The main poll reports an unreachable API.
    } finally {
      fleetPolling = false;
    }
  }

  async function getJSON(path, optional) {
    const res = await fetch(path, {cache: "no-store", headers: authHeaders()});
    if (res.status === 401) {
      token = null;
      if (!pending) askToken("reading this node (read or operate token)", poll);
      throw new Error("a token is needed to read this node");
    }
    if (!res.ok && optional) return res.json().catch(() => ({error: "HTTP " + res.status}));
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return res.json();
  }

  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    const conn = $("conn");
    try {
      const [stats, backends, node, bgp, top] = await Promise.all([
        getJSON("api/v1/stats" + (lastT ? "?since=" + lastT : "")),
        getJSON("api/v1/backends"), getJSON("api/v1/node"), getJSON("api/v1/bgp"),
        getJSON("api/v1/top?n=10", true),
      ]);
      xdpOn = stats.xdp;
      for (const s of stats.samples) if (s.t > lastT) { samples.push(s); lastT = s.t; }
      if (samples.length > MAX_SAMPLES) samples = samples.slice(samples.length - MAX_SAMPLES);
      drawStats();
      drawBackends(backends);
      const firstFleet = !fleetOn && node.fleet;
      drawNode(node);
      if (firstFleet) pollFleet();
      drawBGP(bgp);
      drawTop(top);
      conn.className = "conn";
      conn.textContent = "live · " + new Date().toLocaleTimeString();
    } catch (e) {
      conn.className = "conn err";
      conn.textContent = "admin API unreachable: " + e.message;
    } finally {
      polling = false;
    }
  }

  $("host").textContent = location.host;
  poll();
  setInterval(poll, 1000);
  setInterval(pollFleet, 3000);
  window.addEventListener("resize", drawStats);
})();
