"use strict";
// anyfront dashboard. Everything from the server is written with
// textContent or SVG attributes, never parsed as markup: backend names and
// reasons come from the config and the network.
(function () {
  const $ = (id) => document.getElementById(id);
  const {fmt, chart, legend} = anyfrontChart;
  const MAX_SAMPLES = 3600;

  let samples = [];      // oldest first, from /api/v1/stats
  let lastT = 0;
  let windowSec = 900;
  let token = null;      // the admin token: memory only, never stored
  let pending = null;    // {what, run} waiting for a token
  let pendingSet = null; // where the token typed in goes (default: token)
  let xdpOn = false;

  const TRANSPORT_COLORS = {udp: "#4aa3ff", tcp: "#b37feb", dot: "#36cfc9", doh: "#f5a623", doq: "#2ecc71"};
  const RCODE_COLORS = {NOERROR: "#2ecc71", NXDOMAIN: "#4aa3ff", SERVFAIL: "#ff4d4f", REFUSED: "#f5a623",
    FORMERR: "#b37feb", NOTIMP: "#8c9bab"};
  const XDP_COLORS = {pass: "#2ecc71", blocked: "#ff4d4f", ratelimited: "#f5a623", malformed: "#b37feb", answered: "#4aa3ff", truncated: "#ffd666"};
  const SPARE = ["#36cfc9", "#ff85c0", "#d3f261", "#ffc069"];

  function color(map, key, i) { return map[key] || SPARE[i % SPARE.length]; }

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
    chart($("c-transport"), tr, now, windowSec, {});
    const rc = keyed("rcode", RCODE_COLORS);
    // Cache hits carry no rcode in the counters; shown beside the rcodes,
    // the lines add up to the answers sent.
    if (samples.some((s) => s.cache && (s.cache.hit || s.cache.stale))) {
      rc.push({name: "from cache", color: "#36cfc9",
        pts: samples.map((s) => [s.t, s.cache ? (s.cache.hit || 0) + (s.cache.stale || 0) : 0])});
    }
    legend($("l-rcode"), rc, fmt);
    chart($("c-rcode"), rc, now, windowSec, {});
    const lat = [
      {name: "p50", color: "#4aa3ff", pts: samples.map((s) => [s.t, s.p50_ms])},
      {name: "p99", color: "#f5a623", pts: samples.map((s) => [s.t, s.p99_ms])},
    ];
    legend($("l-latency"), lat, (v) => v == null ? "–" : fmt(v) + " ms");
    chart($("c-latency"), lat, now, windowSec, {});
    const ratio = [
      {name: "cache hit", color: "#36cfc9", pts: samples.map((s) => [s.t, s.cache_hit_ratio == null ? null : s.cache_hit_ratio * 100])},
      {name: "SERVFAIL", color: "#ff4d4f", pts: samples.map((s) => [s.t, s.servfail_ratio == null ? null : s.servfail_ratio * 100])},
    ];
    legend($("l-ratio"), ratio, (v) => v == null ? "–" : v.toFixed(v >= 10 ? 1 : 2) + " %");
    chart($("c-ratio"), ratio, now, windowSec, {max: 100, fmt: (v) => v.toFixed(0)});

    $("xdp-off").hidden = xdpOn;
    $("c-xdp").hidden = !xdpOn;
    if (xdpOn) {
      const xs = keyed("xdp", XDP_COLORS);
      legend($("l-xdp"), xs, fmt);
      chart($("c-xdp"), xs, now, windowSec, {});
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
    fleet.on = !!node.fleet;
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

  // The fleet panel (fleet.js), shown once GET api/v1/node says
  // admin.fleet_file is set.
  const fleet = anyfrontFleet({$, td, button, setPill, fmt, askToken, message, authHeaders});

  // getJSON reads path; a 401 asks for a token (the read token will do)
  // and polls again once it is given. optional paths answer their error
  // body instead of failing the whole poll.
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
      const firstFleet = !fleet.on && node.fleet;
      drawNode(node);
      if (firstFleet) fleet.poll();
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
  setInterval(fleet.poll, 3000);
  window.addEventListener("resize", drawStats);
})();
