// faultline timeline page: draws the summary written by `faultline timeline` (see
// timeline.rs for the data). Plain script, no dependencies, no network.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("faultline-data").textContent);
  const SPAN = Math.max(D.span_ns, 1);
  const NB = D.nbins;
  const BIN = SPAN / NB;
  const css = getComputedStyle(document.documentElement);
  const color = (n) => css.getPropertyValue(n).trim();
  const COLORS = {
    density: color("--density"), faulted: color("--faulted"), full: color("--full"),
    stalled: color("--stalled"), too_big: color("--too-big"), packets: color("--packets"),
    remote: color("--remote"), grid: color("--grid"), muted: color("--muted"), fg: color("--fg"),
  };
  const CAUSES = [
    ["full", "buffer full"], ["stalled", "writer stalled"], ["too_big", "event too big"],
    ["packets", "packets lost"],
  ];

  // ---- formatting ----
  const group = (n) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  function fmtTime(ns, step) {
    const a = Math.abs(ns);
    const s = step === undefined ? a : step;
    if (s >= 1e9 || a >= 1e10) return (ns / 1e9).toFixed(s >= 1e9 ? 0 : digits(s / 1e9)) + " s";
    if (s >= 1e6 || a >= 1e7) return (ns / 1e6).toFixed(s >= 1e6 ? 0 : digits(s / 1e6)) + " ms";
    if (s >= 1e3 || a >= 1e4) return (ns / 1e3).toFixed(s >= 1e3 ? 0 : digits(s / 1e3)) + " \u00b5s";
    return ns.toFixed(0) + " ns";
  }
  function digits(x) { return Math.min(6, Math.max(0, Math.ceil(-Math.log10(x)))); }
  // Axis time (ns from the first packet) to time since the trace start (the first event).
  const sinceStart = (t) => t + D.axis_from_start_ns;

  // ---- header and legend ----
  document.getElementById("trace-name").textContent = D.trace;
  const stats = document.getElementById("stats");
  function stat(label, value, id) {
    const s = document.createElement("span");
    s.className = "stat";
    if (id) s.id = id;
    s.append(label + " ");
    const b = document.createElement("b");
    b.textContent = value;
    s.append(b);
    stats.append(s);
    return s;
  }
  stat("events", group(D.events_total), "stat-events");
  stat("span", fmtTime(D.span_ns), "stat-span");
  stat("CPUs", String(D.lanes.length), "stat-cpus");
  const lost = stat("lost", group(D.lost_total) + " events", "stat-lost");
  lost.title = `buffer full ${group(D.lost_full)}, writer stalled ${group(D.lost_stalled)}, too big ${group(D.lost_too_big)}`;
  lost.append(` (full ${group(D.lost_full)}, stalled ${group(D.lost_stalled)}, too big ${group(D.lost_too_big)})`);
  stat("packets lost", group(D.lost_packets), "stat-lost-packets");
  stat("faulted", group(D.faulted_total) + " events", "stat-faulted");
  if (D.remote_commits_recorded) {
    const r = stat("REMOTE commits", group(D.remote_commits), "stat-remote");
    r.title = "commits by writers that migrated to another CPU between reserve and commit";
  } else {
    const n = document.createElement("span");
    n.className = "note";
    n.textContent = "REMOTE commits: not recorded in this (older) trace";
    stats.append(n);
  }

  const legend = document.getElementById("legend");
  function legendItem(cls, col, text) {
    const it = document.createElement("span");
    it.className = "item";
    const sw = document.createElement("span");
    sw.className = "swatch " + cls;
    if (cls === "tri") sw.style.borderTopColor = col;
    else if (cls === "rtri") sw.style.borderBottomColor = col;
    else sw.style.background = col;
    it.append(sw, text);
    legend.append(it);
  }
  legendItem("", COLORS.density, "event density (bar height, square-root scale)");
  legendItem("", COLORS.faulted, "faulted events (a pointer could not be read)");
  for (const [k, label] of CAUSES) legendItem("tri", COLORS[k], "loss: " + label);
  legendItem("rtri", COLORS.remote, "REMOTE commits (writer migrated between reserve and commit)");

  // ---- lanes ----
  const lanesEl = document.getElementById("lanes");
  const lanes = D.lanes.map((l) => {
    const el = document.createElement("div");
    el.className = "lane";
    el.dataset.cpu = l.cpu;
    const label = document.createElement("div");
    label.className = "lane-label";
    label.innerHTML = `CPU ${l.cpu}<br><span class="sub">${group(l.events)} ev</span>`;
    const body = document.createElement("div");
    body.className = "lane-body";
    const canvas = document.createElement("canvas");
    body.append(canvas);
    el.append(label, body);
    lanesEl.append(el);
    // Prefix sums of the bins: events in [a, b) ns by interpolation.
    const cum = new Float64Array(NB + 1);
    for (let i = 0; i < NB; i++) cum[i + 1] = cum[i] + l.bins[i];
    const faulted = new Map(l.faulted_bins.map(([b, n]) => [b, n]));
    return { lane: l, el, body, canvas, cum, faulted, markers: [] };
  });
  let maxBin = 1;
  for (const L of lanes) for (const n of L.lane.bins) if (n > maxBin) maxBin = n;
  const maxRate = maxBin / BIN;

  function countIn(L, a, b) {
    const at = (t) => {
      const x = Math.min(Math.max(t / BIN, 0), NB);
      const i = Math.min(Math.floor(x), NB - 1);
      return L.cum[i] + (L.cum[i + 1] - L.cum[i]) * (x - i);
    };
    return Math.max(0, at(b) - at(a));
  }

  // Loss markers: one element per cause of each marker.
  const byCpu = new Map(lanes.map((L) => [L.lane.cpu, L]));
  for (const m of D.loss_marks) {
    const L = byCpu.get(m.cpu);
    if (!L) continue;
    for (const [k, label] of CAUSES) {
      const n = m[k];
      if (!n) continue;
      const el = document.createElement("div");
      el.className = "loss-marker " + k;
      el.dataset.cause = k;
      el.dataset.count = n;
      el.dataset.cpu = m.cpu;
      const what = k === "packets" ? `${group(n)} packets lost` : `${group(n)} events lost: ${label}`;
      el.dataset.tip = `CPU ${m.cpu} at ${fmtTime(sinceStart(m.t), 1)}\n${what}` +
        (m.merged > 1 ? `\n(${m.merged} packets merged)` : "") +
        "\ncounted in the packet starting here";
      L.body.append(el);
      L.markers.push({ t: m.t, el });
    }
  }

  // REMOTE commit markers (hoverable like the loss markers).
  for (const m of D.remote_marks) {
    const L = byCpu.get(m.cpu);
    if (!L) continue;
    const el = document.createElement("div");
    el.className = "loss-marker remote";
    el.dataset.cause = "remote";
    el.dataset.count = m.count;
    el.dataset.cpu = m.cpu;
    el.dataset.tip = `CPU ${m.cpu} at ${fmtTime(sinceStart(m.t), 1)}\n` +
      `${group(m.count)} REMOTE commit${m.count === 1 ? "" : "s"} (writer migrated between reserve and commit)` +
      (m.merged > 1 ? `\n(${m.merged} packets merged)` : "") +
      `\ncounted between the previous packet's close and this packet's close (${fmtTime(sinceStart(m.t_end), 1)})`;
    L.body.append(el);
    L.markers.push({ t: m.t, el });
  }

  // Exact faulted events, per lane.
  for (const L of lanes) L.faults = [];
  for (const f of D.fault_marks) {
    const L = byCpu.get(f.cpu);
    if (L) L.faults.push(f);
  }
  for (const L of lanes) L.faultT = L.faults.map((f) => f.t);

  // ---- view ----
  let v0 = 0, v1 = SPAN;
  const MIN_SPAN = Math.max(SPAN / 1e7, 10);
  function setView(a, b) {
    let w = Math.max(b - a, MIN_SPAN);
    w = Math.min(w, SPAN);
    a = Math.min(Math.max(a, 0), SPAN - w);
    v0 = a; v1 = a + w;
    schedule();
  }
  let pending = false;
  function schedule() {
    if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); }
  }

  const names = D.names;
  function nameColor(i) {
    const h = (i * 137.508) % 360;
    return `hsl(${h.toFixed(0)} 65% 45%)`;
  }

  function lowerBound(arr, x) {
    let lo = 0, hi = arr.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (arr[m] < x) lo = m + 1; else hi = m; }
    return lo;
  }

  function sizeCanvas(c) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(c.clientWidth * dpr));
    const h = Math.max(1, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    return dpr;
  }

  function drawAxis() {
    const c = document.getElementById("axis-canvas");
    const dpr = sizeCanvas(c);
    const g = c.getContext("2d");
    const W = c.width, H = c.height;
    g.clearRect(0, 0, W, H);
    g.fillStyle = COLORS.fg;
    g.strokeStyle = COLORS.muted;
    g.font = `${11 * dpr}px system-ui, sans-serif`;
    const span = v1 - v0;
    const raw = span / 8;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((k) => k * p).find((s) => s >= raw) || 10 * p;
    const s0 = sinceStart(v0);
    for (let t = Math.ceil(s0 / step) * step; t <= sinceStart(v1); t += step) {
      const x = ((t - s0) / span) * W;
      g.beginPath(); g.moveTo(x, H); g.lineTo(x, H - 6 * dpr); g.stroke();
      g.fillText(fmtTime(t, step), x + 3 * dpr, H - 9 * dpr);
    }
    document.getElementById("view-range").textContent =
      `${fmtTime(sinceStart(v0), span / 100)} \u2013 ${fmtTime(sinceStart(v1), span / 100)} (${fmtTime(span, span / 100)} shown)`;
  }

  function drawLane(L) {
    const c = L.canvas;
    const dpr = sizeCanvas(c);
    const g = c.getContext("2d");
    const W = c.width, H = c.height;
    g.clearRect(0, 0, W, H);
    const span = v1 - v0;
    const nsPerPx = span / W;
    const strip = 5 * dpr;
    // Individual events when the trace carried them and few are in view.
    let drewDetail = false;
    const det = D.detail;
    if (det) {
      const i0 = lowerBound(det.t, v0), i1 = lowerBound(det.t, v1 + 1);
      if (i1 - i0 <= W * 2) {
        drewDetail = true;
        for (let i = i0; i < i1; i++) {
          if (det.cpu[i] !== L.lane.cpu) continue;
          const x = Math.floor(((det.t[i] - v0) / span) * W);
          g.fillStyle = det.faulted[i] ? COLORS.faulted : nameColor(det.name[i]);
          const top = det.faulted[i] ? H * 0.2 : H * 0.35;
          g.fillRect(x, top, Math.max(1, dpr), H - strip - top);
        }
      }
    }
    if (!drewDetail) {
      g.fillStyle = COLORS.density;
      for (let px = 0; px < W; px++) {
        const a = v0 + px * nsPerPx;
        const n = countIn(L, a, a + nsPerPx);
        if (n <= 0) continue;
        const r = Math.min(1, Math.sqrt(n / nsPerPx / maxRate));
        const h = Math.max(1, r * (H - strip - 2));
        g.fillRect(px, H - strip - h, 1, h);
      }
    }
    L.detailShown = drewDetail;
    // Faulted bins: a strip at the bottom (individual events, when drawn, show it themselves).
    g.fillStyle = COLORS.faulted;
    if (!drewDetail) for (const [b] of L.faulted) {
      const a = b * BIN, e = a + BIN;
      if (e < v0 || a > v1) continue;
      const x0 = ((a - v0) / span) * W, x1 = ((e - v0) / span) * W;
      g.fillRect(x0, H - strip, Math.max(2 * dpr, x1 - x0), strip);
    }
    // Exact faulted events once they are few enough in view to be told apart (the top of the
    // lane is kept for the loss markers): a thin line and a diamond.
    const lo = lowerBound(L.faultT, v0), hi = lowerBound(L.faultT, v1 + 1);
    if (!drewDetail && hi - lo <= W / (8 * dpr)) {
      const y = H * 0.45, r = 4 * dpr;
      for (let i = lo; i < hi; i++) {
        const x = ((L.faults[i].t - v0) / span) * W;
        g.fillRect(x - 0.5 * dpr, y, dpr, H - strip - y);
        g.beginPath();
        g.moveTo(x, y - r); g.lineTo(x + r, y); g.lineTo(x, y + r); g.lineTo(x - r, y);
        g.closePath(); g.fill();
      }
    }
    // Loss markers (DOM elements so that they can be hovered).
    const cssW = L.body.clientWidth;
    for (const m of L.markers) {
      if (m.t < v0 || m.t > v1) { m.el.style.display = "none"; continue; }
      m.el.style.display = "";
      m.el.style.left = (((m.t - v0) / span) * cssW).toFixed(1) + "px";
    }
  }

  function draw() {
    drawAxis();
    for (const L of lanes) drawLane(L);
  }

  // ---- interaction ----
  function zoomAround(frac, factor) {
    const t = v0 + frac * (v1 - v0);
    const w = (v1 - v0) * factor;
    setView(t - frac * w, t - frac * w + w);
  }
  function pan(frac) { const w = v1 - v0; setView(v0 + frac * w, v1 + frac * w); }
  document.getElementById("zoom-in").onclick = () => zoomAround(0.5, 0.5);
  document.getElementById("zoom-out").onclick = () => zoomAround(0.5, 2);
  document.getElementById("zoom-reset").onclick = () => setView(0, SPAN);
  const tip = document.getElementById("tooltip");
  function showTip(text, x, y) {
    tip.textContent = text;
    tip.hidden = false;
    const r = tip.getBoundingClientRect();
    tip.style.left = Math.min(x + 14, window.innerWidth - r.width - 4) + "px";
    tip.style.top = Math.min(y + 14, window.innerHeight - r.height - 4) + "px";
  }
  let drag = null;
  for (const L of lanes) {
    const body = L.body;
    body.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = body.getBoundingClientRect();
      zoomAround((e.clientX - r.left) / r.width, e.deltaY > 0 ? 1.25 : 0.8);
    }, { passive: false });
    body.addEventListener("mousedown", (e) => {
      drag = { x: e.clientX, v0, v1, w: body.clientWidth, body };
      body.classList.add("dragging");
      e.preventDefault();
    });
    body.addEventListener("mousemove", (e) => {
      if (drag) return;
      if (e.target.classList.contains("loss-marker")) {
        showTip(e.target.dataset.tip, e.clientX, e.clientY);
        return;
      }
      const r = body.getBoundingClientRect();
      const span = v1 - v0;
      const t = v0 + ((e.clientX - r.left) / r.width) * span;
      const px = span / r.width;
      let text = `CPU ${L.lane.cpu} at ${fmtTime(sinceStart(t), px)}\n`;
      if (L.detailShown) {
        // Individual events: the ones within 3 pixels.
        const det = D.detail;
        const near = [];
        for (let i = lowerBound(det.t, t - 3 * px); i < det.t.length && det.t[i] <= t + 3 * px; i++) {
          if (det.cpu[i] === L.lane.cpu) near.push(i);
        }
        text += near.length ? near.slice(0, 8).map((i) =>
          `${fmtTime(sinceStart(det.t[i]), 1)}  ${names[det.name[i]]}${det.faulted[i] ? "  (faulted)" : ""}`).join("\n") +
          (near.length > 8 ? `\n\u2026 ${near.length - 8} more` : "") : "no event within 3 pixels";
      } else {
        const n = countIn(L, t - px / 2, t + px / 2);
        text += `${n >= 10 ? group(Math.round(n)) : n.toFixed(n > 0 && n < 1 ? 2 : 0)} events in this pixel (${fmtTime(px)})`;
      }
      const near = L.faults.find((f) => Math.abs(f.t - t) <= 3 * px);
      if (near) text += `\nfaulted: ${near.name} { ${near.fields} }`;
      showTip(text, e.clientX, e.clientY);
    });
    body.addEventListener("mouseleave", () => { tip.hidden = true; });
  }
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const dt = ((e.clientX - drag.x) / drag.w) * (drag.v1 - drag.v0);
    setView(drag.v0 - dt, drag.v1 - dt);
  });
  window.addEventListener("mouseup", () => {
    if (drag) drag.body.classList.remove("dragging");
    drag = null;
  });
  window.addEventListener("keydown", (e) => {
    const k = e.key;
    if (k === "+" || k === "=" || k === "w") zoomAround(0.5, 0.5);
    else if (k === "-" || k === "s") zoomAround(0.5, 2);
    else if (k === "0") setView(0, SPAN);
    else if (k === "ArrowLeft" || k === "a") pan(-0.2);
    else if (k === "ArrowRight" || k === "d") pan(0.2);
  });
  window.addEventListener("resize", schedule);

  // ---- event names ----
  const namesEl = document.getElementById("names");
  if (names.length) {
    const order = names.map((n, i) => i).sort((a, b) => D.name_counts[b] - D.name_counts[a]);
    const tbl = document.createElement("table");
    for (const i of order) {
      const tr = document.createElement("tr");
      const sw = document.createElement("td");
      sw.innerHTML = `<span style="display:inline-block;width:10px;height:10px;background:${nameColor(i)}"></span>`;
      const a = document.createElement("td"); a.textContent = names[i];
      const b = document.createElement("td"); b.textContent = group(D.name_counts[i]);
      tr.append(sw, a, b);
      tbl.append(tr);
    }
    const h = document.createElement("div");
    h.textContent = D.detail ? "Events (colours of the individual events when zoomed in):" : "Events:";
    namesEl.append(h, tbl);
  }

  // For tests and scripts: what the page shows.
  window.faultlineTimeline = {
    lanes: lanes.length,
    lossTotals() {
      const t = { full: 0, stalled: 0, too_big: 0, packets: 0 };
      for (const el of document.querySelectorAll(".loss-marker")) t[el.dataset.cause] += Number(el.dataset.count);
      return t;
    },
    setView,
  };
  draw();
  document.body.dataset.ready = "1";
})();
