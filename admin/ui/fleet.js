"use strict";
// anyfront dashboard: the fleet panel, one row per node of
// admin.fleet_file, with drain and undrain relayed through this node
// (POST api/v1/fleet/NODE/VERB). Like the rest of the page it writes what
// the server sends with textContent only.

// anyfrontFleet builds the panel from the page's helpers in ui ($, td,
// button, setPill, fmt, askToken, message, authHeaders). It returns on
// (set from GET api/v1/node: admin.fleet_file is set) and poll.
function anyfrontFleet(ui) {
  const {$, td, button, setPill, fmt, askToken, message, authHeaders} = ui;
  // Each node's operate token, typed in when its button is first
  // pressed: memory only, like token, and never sent to another node.
  const fleetTokens = {};
  let fleetOn = false;

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

  return {
    get on() { return fleetOn; },
    set on(v) { fleetOn = v; },
    poll: pollFleet,
  };
}
