// skypanda monitor: confirmations, live updates, charts (uPlot) and the task graph (dagre).
// Pages are rendered on the server; this only adds what a static page cannot do.
"use strict";

(function () {
  const COLORS = {
    finished: "#1f8a4c", done: "#1f8a4c", failed: "#c9322b", running: "#2f74d0",
    starting: "#5b93db", sent: "#8fb4e6", activated: "#9aa3b2", defined: "#c3c9d4",
    cancelled: "#c07a12", closed: "#d9a54c", aborted: "#c07a12", skipped: "#d9a54c",
    paused: "#7b4fc2", ready: "#9aa3b2", registered: "#c3c9d4", pending: "#c3c9d4",
  };
  const PALETTE = ["#2f5fd0", "#1f8a4c", "#c9322b", "#c07a12", "#7b4fc2", "#0f8a8a", "#8a5a2f"];
  const color = (label, i) => COLORS[label] || PALETTE[i % PALETTE.length];

  // -- confirmations: a form with data-confirm asks first, in a <dialog> ----------------------
  function confirmations() {
    const dialog = document.getElementById("confirm");
    if (!dialog) return;
    let pending = null;
    document.querySelectorAll("form[data-confirm]").forEach((form) => {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        pending = form;
        document.getElementById("confirm-text").textContent = form.dataset.confirm;
        dialog.showModal();
      });
    });
    dialog.addEventListener("close", () => {
      if (dialog.returnValue === "ok" && pending) pending.submit();
      pending = null;
    });
  }

  // -- live: task and workflow states and job counts on screen --------------------------------
  function setBadge(el, status) {
    const badge = el.querySelector("[data-status]");
    if (!badge || badge.textContent === status) return false;
    badge.textContent = status;
    badge.className = "badge st-" + status;
    return true;
  }

  function setBar(el, info) {
    const bar = el.querySelector("[data-bar]");
    if (bar) {
      bar.replaceChildren(...info.progress.map((s) => {
        const span = document.createElement("span");
        span.className = "g-" + s.group;
        span.style.width = s.pct + "%";
        span.title = s.count + " " + s.group;
        return span;
      }));
    }
    const counts = el.querySelector("[data-counts]");
    if (counts) counts.textContent = info.progress.map((s) => s.count + " " + s.group).join(" · ");
    const total = el.querySelector("[data-total]");
    if (total) total.textContent = info.total;
  }

  function liveCounts() {
    const tasks = () => [...document.querySelectorAll("[data-live-task]")];
    const flows = () => [...document.querySelectorAll("[data-live-workflow]")];
    if (!tasks().length && !flows().length) return;
    async function poll() {
      const q = new URLSearchParams();
      new Set(tasks().map((el) => el.dataset.liveTask)).forEach((id) => q.append("task", id));
      new Set(flows().map((el) => el.dataset.liveWorkflow)).forEach((id) => q.append("workflow", id));
      if (![...q.keys()].length) return;
      let body;
      try {
        const reply = await fetch("/ui/live/tasks?" + q, { credentials: "same-origin" });
        if (!reply.ok) return schedule();
        body = await reply.json();
      } catch (e) {
        return schedule();
      }
      for (const el of tasks()) {
        const info = body.tasks[el.dataset.liveTask];
        if (!info) continue;
        const changed = setBadge(el, info.status);
        setBar(el, info);
        if (changed && el.hasAttribute("data-reload")) return location.reload();
        if (info.final) el.removeAttribute("data-live-task");
      }
      for (const el of flows()) {
        const info = body.workflows[el.dataset.liveWorkflow];
        if (!info) continue;
        const changed = setBadge(el, info.status);
        if (changed && el.hasAttribute("data-reload")) return location.reload();
        if (info.final) el.removeAttribute("data-live-workflow");
      }
      schedule();
    }
    function schedule() {
      if (tasks().length || flows().length) setTimeout(poll, 2000);
    }
    schedule();
  }

  // -- live: a running job's log tail --------------------------------------------------------
  function liveLog() {
    const pre = document.querySelector("[data-live-job]");
    if (!pre) return;
    const url = "/ui/live/jobs/" + encodeURIComponent(pre.dataset.liveJob) +
      "?attempt=" + encodeURIComponent(pre.dataset.attempt);
    const status = document.getElementById("job-status");
    const first = status ? status.textContent.trim() : "";
    async function poll() {
      try {
        const reply = await fetch(url, { credentials: "same-origin" });
        if (reply.ok) {
          const body = await reply.json();
          const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          if (body.tail !== null && body.tail !== pre.textContent) {
            pre.textContent = body.tail;
            const none = document.getElementById("no-log");
            if (none) none.remove();
            if (atEnd) pre.scrollTop = pre.scrollHeight;
          }
          if (body.status !== first) return location.reload(); // new state: attempts, codes
        }
      } catch (e) { /* the server restarts: try again */ }
      setTimeout(poll, 1500);
    }
    pre.scrollTop = pre.scrollHeight;
    setTimeout(poll, 1500);
  }

  // -- charts -----------------------------------------------------------------------------------
  function dataOf(id) {
    const el = document.getElementById("data-" + id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function empty(el, text) {
    el.classList.add("chart-empty");
    el.textContent = text;
  }

  // Counts are whole: ticks of 1, 2, 5, 10, ...; times are UTC, as everywhere in the monitor.
  const WHOLE = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7];
  function utcTicks(u, splits) {
    const range = u.scales.x.max - u.scales.x.min;
    return splits.map((v) => {
      const iso = new Date(v * 1000).toISOString();
      if (range > 86400) return iso.slice(5, 16).replace("T", " ");
      if (range < 20) return iso.slice(11, 21); // tenths of a second
      return range < 600 ? iso.slice(11, 19) : iso.slice(11, 16);
    });
  }

  function chartSize(el) {
    return { width: Math.max(el.clientWidth, 300), height: 220 };
  }

  function linesChart(el, data) {
    if (!data.x.length || !data.series.length) return empty(el, "Nothing to plot yet.");
    const time = el.dataset.time === "1";
    const lo = data.x[0], hi = data.x[data.x.length - 1];
    const opts = {
      ...chartSize(el),
      legend: { live: false },
      scales: {
        x: { time, range: lo === hi ? [lo - 60, hi + 60] : [lo, hi] }, // one moment: a minute round it
        y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
      },
      axes: [time ? { values: utcTicks, space: 90 } : {}, { label: el.dataset.ylabel || "", size: 60, incrs: WHOLE }],
      series: [{ label: time ? "time (UTC)" : "" }].concat(data.series.map((s, i) => ({
        label: s.label, stroke: color(s.label, i), width: 1.6,
        fill: color(s.label, i) + "18", points: { show: data.x.length < 40 },
      }))),
    };
    return new uPlot(opts, [data.x].concat(data.series.map((s) => s.values)), el);
  }

  function barsChart(el, data) {
    if (!data.values.length) return empty(el, "Nothing to plot yet.");
    const xs = data.labels.map((_, i) => i);
    const fill = el.dataset.color || "#2f5fd0";
    const opts = {
      ...chartSize(el),
      scales: { x: { time: false, range: [-0.5, xs.length - 0.5] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.1)] } },
      axes: [
        { values: (u, splits) => splits.map((v) => (Number.isInteger(v) ? data.labels[v] ?? "" : "")), splits: () => xs, gap: 6 },
        { label: el.dataset.ylabel || "", size: 60, incrs: WHOLE },
      ],
      legend: { show: false },
      cursor: { show: true, points: { show: false } },
      series: [{}, { label: el.dataset.ylabel || "count", fill: fill + "cc", stroke: fill, paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false } }],
    };
    return new uPlot(opts, [xs, data.values], el);
  }

  function memoryChart(el, points) {
    if (!points.length) return empty(el, "No memory reported yet.");
    const sorted = [...points].sort((a, b) => a.used - b.used);
    const xs = sorted.map((_, i) => i + 1);
    const opts = {
      ...chartSize(el),
      scales: { x: { time: false }, y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.1)] } },
      legend: { live: false },
      axes: [{ label: "jobs, by memory used" }, { label: "MB", size: 60 }],
      series: [
        {},
        { label: "used", stroke: "#2f5fd0", width: 0, paths: () => null, points: { show: true, size: 5, fill: "#2f5fd0" } },
        { label: "requested", stroke: "#c9322b", width: 1.5, dash: [6, 4], points: { show: false } },
      ],
    };
    return new uPlot(opts, [xs, sorted.map((p) => p.used), sorted.map((p) => p.requested)], el);
  }

  function draw(el, data) {
    const kind = el.dataset.kind;
    const plot = kind === "bars" ? barsChart(el, data) : kind === "memory" ? memoryChart(el, data) : linesChart(el, data);
    if (!plot) return (el.dataset.drawn = "empty");
    new ResizeObserver(() => plot.setSize(chartSize(el))).observe(el);
    el.dataset.drawn = "1";
  }

  function charts() {
    if (typeof uPlot === "undefined") return;
    document.querySelectorAll("[data-chart]").forEach(async (el) => {
      if (!el.dataset.src) {
        const data = dataOf(el.dataset.chart);
        if (data !== null) draw(el, data);
        return;
      }
      // A big task's chart comes after the page, by itself.
      empty(el, "Loading…");
      try {
        const reply = await fetch(el.dataset.src, { credentials: "same-origin" });
        const body = await reply.json();
        if (!reply.ok) return empty(el, body.message || "Could not load this chart.");
        el.classList.remove("chart-empty");
        el.textContent = "";
        draw(el, body);
      } catch (e) {
        empty(el, "Could not load this chart.");
      }
    });
  }

  // -- the task graph ---------------------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, parent) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    if (parent) parent.appendChild(el);
    return el;
  }

  function dag() {
    const box = document.getElementById("dag");
    if (!box || typeof dagre === "undefined") return;
    const data = dataOf("dag");
    const g = new dagre.graphlib.Graph({ compound: true, multigraph: true });
    g.setGraph({ rankdir: "LR", nodesep: 24, ranksep: 70, edgesep: 12, marginx: 16, marginy: 16 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const lp of data.loops) g.setNode("loop:" + lp.name, { label: lp.label, clusterLabelPos: "top", paddingTop: 24 });
    for (const n of data.nodes) {
      g.setNode(n.name, { width: Math.max(150, 8 * n.name.length + 30), height: 62, n });
      if (n.loop) g.setParent(n.name, "loop:" + n.loop);
    }
    data.edges.forEach((e, i) => {
      g.setEdge(e.from, e.to, { label: e.label, width: e.label ? 6.2 * e.label.length : 0, height: e.label ? 14 : 0, labelpos: "c" }, "e" + i);
    });
    dagre.layout(g);
    const G = g.graph();
    const root = svg("svg", { width: G.width, height: G.height, viewBox: `0 0 ${G.width} ${G.height}`, role: "img", "aria-label": "task graph" }, null);
    const defs = svg("defs", {}, root);
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs);
    svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#9aa3b2" }, marker);
    for (const lp of data.loops) {
      const c = g.node("loop:" + lp.name);
      if (!c || !c.width) continue;
      const group = svg("g", { class: "cluster" }, root);
      svg("rect", { x: c.x - c.width / 2, y: c.y - c.height / 2, width: c.width, height: c.height, rx: 10 }, group);
      svg("text", { x: c.x - c.width / 2 + 10, y: c.y - c.height / 2 + 15 }, group).textContent = lp.label;
    }
    for (const e of g.edges()) {
      const info = g.edge(e);
      const group = svg("g", { class: "edge" }, root);
      const d = info.points.map((p, i) => (i ? "L" : "M") + p.x.toFixed(1) + " " + p.y.toFixed(1)).join(" ");
      svg("path", { d, "marker-end": "url(#arrow)" }, group);
      if (info.label) {
        svg("rect", { x: info.x - info.width / 2 - 3, y: info.y - 8, width: info.width + 6, height: 15, rx: 3, class: "label-bg" }, group);
        svg("text", { x: info.x, y: info.y + 3.5, "text-anchor": "middle" }, group).textContent = info.label;
      }
    }
    for (const name of g.nodes()) {
      const node = g.node(name);
      if (!node || !node.n) continue;
      const n = node.n;
      const c = COLORS[n.status] || "#9aa3b2";
      const link = svg("a", n.id ? { href: "/ui/tasks/" + encodeURIComponent(n.id) } : {}, root);
      const group = svg("g", { class: "node", "data-task": n.name, "data-status": n.status, transform: `translate(${node.x - node.width / 2},${node.y - node.height / 2})` }, link);
      svg("rect", { width: node.width, height: node.height, rx: 8, fill: "#fff", stroke: c }, group);
      svg("rect", { width: 6, height: node.height, rx: 3, fill: c }, group);
      svg("text", { x: 16, y: 20, class: "name" }, group).textContent = n.name;
      const iter = n.iteration > 1 ? ` · iteration ${n.iteration}` : "";
      svg("text", { x: 16, y: 36, class: "meta" }, group).textContent = n.status + iter;
      if (n.jobs) {
        svg("rect", { x: 16, y: 46, width: node.width - 28, height: 6, rx: 3, fill: "#eceff4" }, group);
        const w = (node.width - 28);
        const done = w * n.done / n.jobs, failed = w * n.failed / n.jobs;
        if (done) svg("rect", { x: 16, y: 46, width: done, height: 6, rx: 3, fill: COLORS.finished }, group);
        if (failed) svg("rect", { x: 16 + done, y: 46, width: failed, height: 6, fill: COLORS.failed }, group);
        svg("title", {}, group).textContent = `${n.done} of ${n.jobs} jobs finished, ${n.failed} failed`;
      }
    }
    box.replaceChildren(root);
    box.dataset.drawn = "1";
  }

  document.addEventListener("DOMContentLoaded", () => {
    confirmations();
    charts();
    dag();
    liveCounts();
    liveLog();
  });
})();
