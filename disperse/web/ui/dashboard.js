// The Disperse dashboard: polls /cluster/overview once a second and redraws
// the page from it. Plain DOM and textContent only: member names come from
// gossip and are never parsed as markup.
"use strict";

(function () {
  const POLL_MS = 1000;
  const TIMEOUT_MS = 3000;
  const PAGE_SIZE = 64;
  const COLOURS = 8; // CSS classes owner-0 .. owner-7

  const $ = (id) => document.getElementById(id);
  const state = {
    table: null,        // digest of the partition table we hold owners for
    owners: null,       // owners[partition] = [primary, ...]
    ownerNames: [],     // members holding data, in colour order
    previous: {},       // name -> {time, counters} from the last poll
    rates: {},          // name -> {counter: per second}
    redis: false,       // some member serves the Redis protocol
    disk: false,        // some member keeps a data directory
    lastUpdate: null,
    page: 0,
    // A node with --auth-tokens answers the overview only with a token; it
    // is kept for this tab only, and sent to this node alone.
    token: sessionStorage.getItem("disperse.token") || "",
  };

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function formatBytes(n) {
    if (typeof n !== "number") return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }

  function formatAgo(seconds, now) {
    if (typeof seconds !== "number" || seconds <= 0) return "–";
    const d = Math.max(0, Math.round(now - seconds));
    if (d < 60) return d + " s ago";
    if (d < 3600) return Math.floor(d / 60) + " min ago";
    if (d < 86400) return Math.floor(d / 3600) + " h ago";
    return Math.floor(d / 86400) + " d ago";
  }

  function timeElement(seconds, text) {
    const t = el("time", text);
    if (typeof seconds === "number" && seconds > 0) {
      const when = new Date(seconds * 1000);
      t.dateTime = when.toISOString();
      t.title = when.toLocaleString();
    }
    return t;
  }

  function colourOf(name) {
    const i = state.ownerNames.indexOf(name);
    return i < 0 ? "owner-none" : "owner-" + (i % COLOURS);
  }

  // The counters whose rates the page shows: HTTP cache requests, and the
  // commands of members that serve the Redis protocol.
  const COUNTERS = ["cacheRequests", "redisCommands"];

  // Rates per second from each counter's change between two polls; a
  // restarted member (counter going down) has no rate until the next poll.
  function updateRates(overview) {
    const rates = {};
    const seen = {};
    for (const m of overview.members) {
      const before = state.previous[m.name];
      const counters = {};
      rates[m.name] = {};
      for (const counter of COUNTERS) {
        const n = m.stats && m.stats[counter];
        if (typeof n !== "number") continue;
        counters[counter] = n;
        const was = before && before.counters[counter];
        if (typeof was !== "number") continue;
        if (overview.time > before.time && n >= was) {
          rates[m.name][counter] = (n - was) / (overview.time - before.time);
        } else if (overview.time === before.time) {
          rates[m.name][counter] = (state.rates[m.name] || {})[counter];
        }
      }
      seen[m.name] = { time: overview.time, counters };
    }
    state.previous = seen;
    state.rates = rates;
    state.redis = overview.members.some(
      (m) => m.stats && typeof m.stats.redisCommands === "number");
    for (const node of document.querySelectorAll("[data-redis]")) {
      node.hidden = !state.redis;
    }
    state.disk = overview.members.some(
      (m) => m.stats && typeof m.stats.diskWritable === "number");
    for (const node of document.querySelectorAll("[data-disk]")) {
      node.hidden = !state.disk;
    }
  }

  function rateOf(name, counter) {
    const rate = (state.rates[name] || {})[counter];
    return typeof rate === "number" ? rate : null;
  }

  function renderSummary(overview) {
    const counts = { alive: 0, suspect: 0, dead: 0, left: 0 };
    let keys = 0, bytes = 0, budget = 0, connections = 0, damaged = 0;
    let disks = 0, writable = 0, diskBytes = 0;
    const totals = {};
    for (const m of overview.members) {
      counts[m.state] = (counts[m.state] || 0) + 1;
      if (m.stats) {
        keys += m.stats.keys || 0;
        bytes += m.stats.bytes || 0;
        budget += m.stats.maxBytes || 0;
        connections += m.stats.redisConnections || 0;
        damaged += m.stats.integrityFailures || 0;
        if (typeof m.stats.diskWritable === "number") {
          disks += 1;
          writable += m.stats.diskWritable;
          diskBytes += m.stats.diskBytes || 0;
        }
      }
      for (const counter of COUNTERS) {
        const rate = rateOf(m.name, counter);
        if (rate !== null) totals[counter] = (totals[counter] || 0) + rate;
      }
    }
    const shown = (total) => typeof total === "number" ? total.toFixed(1) : "–";
    for (const s of Object.keys(counts)) {
      const dd = $("sum-" + s);
      if (dd) dd.textContent = counts[s];
    }
    $("sum-keys").textContent = keys.toLocaleString();
    $("sum-memory").textContent = formatBytes(bytes) + " of " + formatBytes(budget);
    $("sum-rate").textContent = shown(totals.cacheRequests);
    $("sum-damaged").textContent = damaged.toLocaleString();
    $("sum-disk").textContent = writable + " of " + disks + " writable, "
      + formatBytes(diskBytes);
    $("sum-redis-rate").textContent = shown(totals.redisCommands);
    $("sum-redis-connections").textContent = connections.toLocaleString();
  }

  function renderMembers(overview) {
    const body = $("members").tBodies[0];
    const rows = [];
    const perMember = (overview.partitions && overview.partitions.members) || {};
    for (const m of overview.members) {
      const tr = el("tr");
      tr.dataset.member = m.name;
      tr.dataset.state = m.state;
      if (m.name === overview.node) tr.classList.add("self");

      const name = el("th", m.name);
      name.scope = "row";
      if (m.name === overview.node) name.append(el("span", " (this node)", "muted"));
      tr.append(name);

      const st = el("td");
      st.append(el("span", m.state, "state state-" + m.state));
      tr.append(st);
      tr.append(el("td", m.zone || "–"));
      tr.append(el("td", m.incarnation, "num"));
      const changed = el("td");
      changed.append(timeElement(m.last_change, formatAgo(m.last_change, overview.time)));
      tr.append(changed);

      const s = m.stats;
      const keys = s && typeof s.keys === "number" ? s.keys.toLocaleString() : "–";
      tr.append(el("td", keys, "num keys"));
      const memory = el("td", null, "memory");
      if (s && typeof s.bytes === "number" && s.maxBytes) {
        const meter = el("meter");
        meter.min = 0;
        meter.max = s.maxBytes;
        meter.value = s.bytes;
        meter.high = s.maxBytes * 0.9;
        meter.setAttribute("aria-label", "memory of " + m.name);
        memory.append(meter, " ", formatBytes(s.bytes) + " / " + formatBytes(s.maxBytes));
      } else {
        memory.textContent = m.error ? "no answer" : "–";
        if (m.error) memory.title = m.error;
      }
      tr.append(memory);
      const rate = rateOf(m.name, "cacheRequests");
      tr.append(el("td", rate === null ? "–" : rate.toFixed(1), "num"));
      if (state.redis) {
        const open = s && typeof s.redisConnections === "number"
          ? s.redisConnections.toLocaleString() : "–";
        tr.append(el("td", open, "num redis-connections"));
        const commands = rateOf(m.name, "redisCommands");
        tr.append(el("td", commands === null ? "–" : commands.toFixed(1),
          "num redis-rate"));
      }
      if (state.disk) tr.append(diskCell(s, overview.time));
      const held = perMember[m.name];
      tr.append(el("td", held ? held.primary + " / " + held.replicas : "–", "num"));

      const addresses = el("td", null, "addresses");
      if (m.http_addr) {
        const scheme = m.http_scheme || "http";
        const link = el("a", scheme + " " + m.http_addr);
        link.href = scheme + "://" + m.http_addr + "/";
        addresses.append(link, el("br"));
      }
      addresses.append(el("span", "gossip " + m.gossip_addr, "muted"));
      tr.append(addresses);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  // A member's data directory: loading, refusing writes, or its size and
  // the age of its last snapshot.
  function diskCell(s, now) {
    const td = el("td", null, "disk");
    if (!s || typeof s.diskWritable !== "number") {
      td.textContent = "–";
    } else if (s.diskLoading) {
      td.textContent = "loading";
    } else if (!s.diskWritable) {
      td.append(el("span", "writes refused", "state state-dead"));
    } else {
      const age = typeof s.snapshotAge === "number"
        ? ", snapshot " + formatAgo(now - s.snapshotAge, now) : "";
      td.textContent = formatBytes(s.diskBytes || 0) + age;
    }
    const details = [];
    if (s && typeof s.loadMs === "number") details.push("loaded in " + s.loadMs + " ms");
    if (s && typeof s.snapshotMs === "number") {
      details.push("last snapshot took " + s.snapshotMs + " ms");
    }
    if (details.length) td.title = details.join("; ");
    return td;
  }

  function renderPartitions(overview) {
    const p = overview.partitions;
    if (!p) return;
    if (p.owners) {
      state.owners = p.owners;
      state.table = p.table;
    }
    state.ownerNames = Object.keys(p.members).sort();
    const holders = state.ownerNames.length;
    $("partitions-summary").textContent =
      p.count + " partitions, " + p.replicas + " replicas each, on " + holders +
      (holders === 1 ? " member" : " members") + " (table " + p.table.slice(0, 8) + ")";

    const legend = [];
    for (const name of state.ownerNames) {
      const li = el("li");
      li.append(el("span", "", "swatch " + colourOf(name)));
      li.append(name + ": " + p.members[name].primary + " primary, " +
        p.members[name].replicas + " in all");
      legend.push(li);
    }
    $("legend").replaceChildren(...legend);

    const grid = $("grid");
    if (grid.children.length !== p.count) {
      const cells = [];
      for (let i = 0; i < p.count; i += 1) cells.push(el("span", null, "cell"));
      grid.replaceChildren(...cells);
    }
    if (state.owners) {
      for (let i = 0; i < grid.children.length; i += 1) {
        const owners = state.owners[i] || [];
        const cell = grid.children[i];
        cell.className = "cell " + colourOf(owners[0]);
        cell.title = "partition " + i + ": " + (owners.length ? owners.join(", ") : "no owner");
      }
    }

    const select = $("partition-member");
    const options = ["", ...state.ownerNames];
    const current = Array.from(select.options).map((o) => o.value);
    if (current.join("\n") !== options.join("\n")) {
      const chosen = select.value;
      select.replaceChildren(...options.map((v) => {
        const o = el("option", v || "any");
        o.value = v;
        return o;
      }));
      select.value = options.includes(chosen) ? chosen : "";
    }
    renderPartitionTable();
  }

  function renderPartitionTable() {
    if (!$("partition-table").open || !state.owners) return;
    const member = $("partition-member").value;
    const chosen = [];
    state.owners.forEach((owners, i) => {
      if (!member || owners.includes(member)) chosen.push(i);
    });
    const pages = Math.max(1, Math.ceil(chosen.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    const shown = chosen.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
    $("partition-range").textContent = chosen.length
      ? "partitions " + (state.page * PAGE_SIZE + 1) + "–" +
        (state.page * PAGE_SIZE + shown.length) + " of " + chosen.length
      : "no partitions";
    $("partition-prev").disabled = state.page === 0;
    $("partition-next").disabled = state.page >= pages - 1;
    $("partition-rows").replaceChildren(...shown.map((i) => {
      const tr = el("tr");
      tr.append(el("td", i, "num"));
      const td = el("td");
      state.owners[i].forEach((name, rank) => {
        if (rank) td.append(", ");
        td.append(el("span", name, rank ? "" : "primary"));
      });
      tr.append(td);
      return tr;
    }));
  }

  function renderEvents(overview) {
    const rows = overview.events.slice().reverse().map((e) => {
      const tr = el("tr");
      const when = el("td");
      when.append(timeElement(e.time, new Date(e.time * 1000).toLocaleTimeString()));
      tr.append(when, el("td", e.member), el("td", e.change));
      const st = el("td");
      st.append(el("span", e.state, "state state-" + e.state));
      tr.append(st, el("td", e.incarnation, "num"));
      return tr;
    });
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", "none yet", "muted");
      td.colSpan = 5;
      tr.append(td);
      rows.push(tr);
    }
    $("events").tBodies[0].replaceChildren(...rows);
  }

  function setStatus(kind, text) {
    const status = $("status");
    status.dataset.state = kind;
    status.textContent = text;
  }

  async function poll() {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      const query = state.table ? "?table=" + encodeURIComponent(state.table) : "";
      const headers = { Accept: "application/json" };
      if (state.token) headers.Authorization = "Bearer " + state.token;
      const response = await fetch("/cluster/overview" + query, {
        signal: controller.signal,
        cache: "no-store",
        headers,
      });
      if (response.status === 401 || response.status === 403) {
        $("token-form").hidden = false;
        setStatus("error", response.status === 401
          ? "This node needs a token: enter one with read access"
          : "This token may not read the cluster overview: enter another");
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      $("token-form").hidden = true;
      const overview = await response.json();
      updateRates(overview);
      renderSummary(overview);
      renderMembers(overview);
      renderPartitions(overview);
      renderEvents(overview);
      state.lastUpdate = new Date();
      document.title = "Disperse cluster · " + overview.node;
      setStatus("live", "Live from " + overview.node + ", updated " +
        state.lastUpdate.toLocaleTimeString());
    } catch (error) {
      const since = state.lastUpdate
        ? " (last update " + state.lastUpdate.toLocaleTimeString() + ")" : "";
      setStatus("error", "Cannot reach this node: " + error.message + "; retrying" + since);
    } finally {
      clearTimeout(timer);
      // The next poll starts after this one ends, so a slow node never has
      // requests piling up.
      setTimeout(poll, POLL_MS);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.token = $("token").value.trim();
      sessionStorage.setItem("disperse.token", state.token);
      $("token").value = "";
      setStatus("connecting", "Connecting with the token…");
    });
    $("partition-table").addEventListener("toggle", renderPartitionTable);
    $("partition-member").addEventListener("change", () => {
      state.page = 0;
      renderPartitionTable();
    });
    $("partition-prev").addEventListener("click", () => {
      state.page = Math.max(0, state.page - 1);
      renderPartitionTable();
    });
    $("partition-next").addEventListener("click", () => {
      state.page += 1;
      renderPartitionTable();
    });
    $("grid").addEventListener("click", (event) => {
      const index = Array.prototype.indexOf.call($("grid").children, event.target);
      if (index < 0) return;
      $("partition-member").value = "";
      state.page = Math.floor(index / PAGE_SIZE);
      $("partition-table").open = true;
      renderPartitionTable();
    });
    poll();
  });
})();
