// SPDX-License-Identifier: GPL-2.0-only
// The viewer of a pagesim report. Everything it shows comes from the JSON block
// #report-data (built by pagesim/report/data.py); this script only draws it. Text from
// the data is always set as text, never parsed as markup. Lanes are drawn lazily (only
// the boxes near the visible part), because a simulation's report holds tens of
// thousands of boxes.
(function () {
  "use strict";
  const doc = JSON.parse(document.getElementById("report-data").textContent);
  const items = doc.items;
  const cpus = doc.cpus;
  const isCex = doc.kind === "counterexample";
  const laneOf = new Map(cpus.map((c, i) => [c, i]));
  const ZOOMS = [6, 10, 14, 20, 30, 44, 60, 84, 120];
  let zoom = items.length > 3000 ? 2 : 6;
  let sel = -1;

  const scroll = document.getElementById("scroll");
  const canvas = document.getElementById("canvas");
  const axis = document.getElementById("axis");
  const detail = document.getElementById("detail");

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // ---- geometry -----------------------------------------------------------------------
  let slots = 1;
  for (const it of items) slots = Math.max(slots, it.x + (it.w || 1));
  const boxes = [];   // indices of one-slot items, in slot order
  const spans = [];   // indices of spans (drawn whatever the scroll position)
  const perCpu = new Map(cpus.map((c) => [c, []]));
  items.forEach((it, i) => {
    (it.span ? spans : boxes).push(i);
    perCpu.get(it.cpu).push(i);
  });
  // the step number shown on the axis at each slot (a simulation's slots are not steps)
  const stepAt = new Array(slots).fill(null);
  for (const it of items) if (stepAt[it.x] === null) stepAt[it.x] = it.step;
  for (let x = 1; x < slots; x++) if (stepAt[x] === null) stepAt[x] = stepAt[x - 1];

  const lanes = new Map();
  const labels = document.getElementById("labels");
  labels.appendChild(el("div", "axis-label", isCex ? "step" : "sim step"));
  for (const c of cpus) {
    labels.appendChild(el("div", null, "CPU" + c));
    const lane = el("div", "lane");
    lane.dataset.cpu = c;
    canvas.appendChild(lane);
    lanes.set(c, lane);
  }

  function boxW() { return ZOOMS[zoom]; }

  // ---- legend ---------------------------------------------------------------------------
  const legend = document.getElementById("legend");
  const used = new Set(items.map((it) => it.kind));
  for (const [kind, text] of doc.kinds) {
    if (!used.has(kind)) continue;
    const s = el("span", null);
    s.appendChild(el("span", "sw k-" + kind));
    s.appendChild(document.createTextNode(kind + ": " + text));
    legend.appendChild(s);
  }
  if (isCex) {
    const s = el("span", null, "● changed machine state   ▌ preempted before this step");
    legend.appendChild(s);
  }

  // ---- drawing --------------------------------------------------------------------------
  function box(i) {
    const it = items[i];
    const w = boxW();
    const b = el("div", "step k-" + it.kind, w >= 30 || it.span ? it.label : "");
    if (it.span) b.classList.add("span");
    if (it.changes && it.changes.length) b.classList.add("chg");
    if (it.preemption) b.classList.add("pre");
    if (it.violation) b.classList.add("viol");
    if (i === sel) b.classList.add("sel");
    b.dataset.i = i;
    b.style.left = it.x * w + 1 + "px";
    b.style.width = Math.max(3, (it.w || 1) * w - 2) + "px";
    b.title = (it.thread ? it.thread + ": " : "") + it.title;
    return b;
  }

  function lowerBound(x) {
    let lo = 0, hi = boxes.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (items[boxes[mid]].x < x) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  // Boxes already on the page stay the same elements while they remain near the view
  // (a redraw on scroll must not replace the box being clicked); a zoom redraws all.
  let drawn = null;
  let drawnW = null;
  const rendered = new Map();
  function draw() {
    const w = boxW();
    canvas.style.width = slots * w + 40 + "px";
    canvas.classList.toggle("narrow", w < 30);
    const margin = Math.ceil(scroll.clientWidth / w) + 20;
    const x0 = Math.max(0, Math.floor(scroll.scrollLeft / w) - margin);
    const x1 = Math.ceil((scroll.scrollLeft + scroll.clientWidth) / w) + margin;
    const key = x0 + ":" + x1 + ":" + w;
    if (key === drawn) return;
    drawn = key;
    if (w !== drawnW) {
      for (const b of rendered.values()) b.remove();
      rendered.clear();
      drawnW = w;
    }
    const wanted = new Set(spans);
    for (let k = lowerBound(x0); k < boxes.length && items[boxes[k]].x <= x1; k++) {
      wanted.add(boxes[k]);
    }
    for (const [i, b] of rendered) {
      if (!wanted.has(i)) { b.remove(); rendered.delete(i); }
    }
    for (const i of wanted) {
      if (rendered.has(i)) continue;
      const b = box(i);
      rendered.set(i, b);
      lanes.get(items[i].cpu).appendChild(b);
    }
    // the axis: a tick every `every` slots, at least 60 px apart
    let every = 1;
    for (const n of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]) {
      every = n;
      if (n * w >= 60) break;
    }
    const ticks = document.createDocumentFragment();
    for (let x = Math.floor(x0 / every) * every; x <= Math.min(x1, slots - 1); x += every) {
      const t = el("span", null, isCex ? x : stepAt[x]);
      t.style.left = x * w + "px";
      ticks.appendChild(t);
    }
    axis.replaceChildren(ticks);
  }

  function markSelected(prev, next) {
    const a = rendered.get(prev);
    if (a) a.classList.remove("sel");
    const b = rendered.get(next);
    if (b) b.classList.add("sel");
  }

  let pending = false;
  scroll.addEventListener("scroll", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  });
  window.addEventListener("resize", () => { drawn = null; draw(); });

  function reveal(i) {
    const it = items[i];
    const w = boxW();
    const left = it.x * w;
    if (left < scroll.scrollLeft + w || left > scroll.scrollLeft + scroll.clientWidth - 2 * w) {
      scroll.scrollLeft = Math.max(0, left - scroll.clientWidth / 2);
    }
    draw();
  }

  // ---- state (counterexamples: the snapshot facts after each step) ---------------------
  const states = [];
  function stateAfter(i) {
    if (!isCex || !doc.initial) return null;
    if (states.length === 0) {
      let cur = Object.assign({}, doc.initial);
      for (const it of items) {
        cur = Object.assign({}, cur);
        for (const [name, , after] of it.changes || []) {
          if (after === null) delete cur[name]; else cur[name] = after;
        }
        states.push(cur);
      }
    }
    return states[i];
  }

  const CATEGORIES = ["pcplists", "free lists", "pageblock types", "lock owners",
                      "pages held by tasks", "zone counters and other"];
  function category(name) {
    if (/^pageblock /.test(name)) return "pageblock types";
    if (/^lock /.test(name) || / lock$/.test(name)) return "lock owners";
    if (/ pcp /.test(name)) return "pcplists";
    if (/free_area\[/.test(name)) return "free lists";
    if (/^held /.test(name)) return "pages held by tasks";
    return "zone counters and other";
  }
  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (Array.isArray(v)) return "[" + v.join(", ") + "]";
    return String(v);
  }
  function isEmpty(v) {
    return v === null || v === undefined || v === 0 || (Array.isArray(v) && v.length === 0);
  }
  function diffCell(before, after) {
    const td = el("td", "v");
    if (!Array.isArray(before) && !Array.isArray(after)) return td;
    const b = Array.isArray(before) ? before : [];
    const a = Array.isArray(after) ? after : [];
    const added = a.filter((p) => !b.includes(p));
    const removed = b.filter((p) => !a.includes(p));
    if (added.length) td.appendChild(el("span", "add", "+" + added.join(" +") + " "));
    if (removed.length) td.appendChild(el("span", "del", "−" + removed.join(" −")));
    return td;
  }

  function table(head, rows) {
    const t = el("table");
    if (head) {
      const tr = el("tr");
      for (const h of head) tr.appendChild(el("th", null, h));
      t.appendChild(tr);
    }
    for (const r of rows) t.appendChild(r);
    return t;
  }
  function row(cells, cls) {
    const tr = el("tr", cls || null);
    cells.forEach((c, k) => {
      if (c instanceof Node) tr.appendChild(c);
      else tr.appendChild(el(k === 0 ? "th" : "td", k === 0 ? null : "v", c));
    });
    return tr;
  }

  function changesSection(it) {
    const box = el("div", "changes");
    box.appendChild(el("h3", null, "State this step changed"));
    const ch = it.changes || [];
    if (!ch.length) {
      box.appendChild(el("p", "empty", doc.initial && Object.keys(doc.initial).length
        ? "Nothing: this step changed no machine fact."
        : "This scenario records no machine snapshot."));
      return box;
    }
    const groups = new Map();
    for (const c of ch) {
      const g = category(c[0]);
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push(c);
    }
    for (const g of CATEGORIES) {
      if (!groups.has(g)) continue;
      const sec = el("div", "change-group");
      sec.dataset.category = g;
      sec.appendChild(el("h3", null, g));
      const rows = groups.get(g).map(([name, before, after]) => {
        const tr = row([name, fmt(before), fmt(after)]);
        tr.appendChild(diffCell(before, after));
        tr.dataset.fact = name;
        return tr;
      });
      sec.appendChild(table(["fact", "before", "after", "pfns"], rows));
      box.appendChild(sec);
    }
    return box;
  }

  function stateSection(i) {
    const st = stateAfter(i);
    if (!st || !Object.keys(st).length) return null;
    const changed = new Set((items[i].changes || []).map((c) => c[0]));
    const box = el("div", "machine");
    box.appendChild(el("h3", null, "The machine after this step"));
    const cols = el("div", "cols");
    const groups = new Map(CATEGORIES.map((g) => [g, []]));
    for (const name of Object.keys(st).sort()) {
      const v = st[name];
      const g = category(name);
      // empty free lists and idle locks are noise; keep them when this step made them so
      if ((g === "free lists" || g === "lock owners" || g === "pcplists") && isEmpty(v)
          && !changed.has(name) && !/ count$| high$| batch$/.test(name)) continue;
      groups.get(g).push(row([name, fmt(v)], changed.has(name) ? "changed" : null));
    }
    for (const g of CATEGORIES) {
      const rows = groups.get(g);
      if (!rows.length) continue;
      const sec = el("div");
      sec.appendChild(el("h3", null, g));
      sec.appendChild(table(null, rows));
      cols.appendChild(sec);
    }
    box.appendChild(cols);
    return box;
  }

  function sampleSection(it) {
    const s = doc.samples;
    if (!s || !s.step || !s.step.length) return null;
    let k = 0;
    while (k + 1 < s.step.length && s.step[k + 1] <= it.step) k++;
    const box = el("div", "sample");
    box.appendChild(el("h3", null, "Counters sampled at step " + s.step[k] +
      (k > 0 ? " (change since step " + s.step[k - 1] + ")" : "")));
    const delta = (series, j) => (k > 0 && series ? series[k][j] - series[k - 1][j] : null);
    const cols = el("div", "cols");
    // one column per sampled series: a row per CPU or order, its value and change
    const column = (title, series, label) => {
      if (!series) return;
      const rows = series[k].map((v, j) => {
        const d = delta(series, j);
        return row([label(j), v, d === null ? "" : (d > 0 ? "+" : "") + d]);
      });
      const sec = el("div");
      sec.appendChild(el("h3", null, title));
      sec.appendChild(table(null, rows));
      cols.appendChild(sec);
    };
    column("pages on pcplists", s.pcp_pages, (c) => "CPU" + c);
    column("free blocks", s.free_blocks, (o) => "order " + o);
    const scalars = ["nr_free_pages", "in_use", "isolated_on_pcp", "drains", "remote_drains",
                     "migrations", "offline_retries"].filter((n) => s[n]);
    if (scalars.length) {
      const sec = el("div");
      sec.appendChild(el("h3", null, "zone counters"));
      sec.appendChild(table(null, scalars.map((n) => row([n, s[n][k],
        k > 0 ? ((s[n][k] - s[n][k - 1] > 0 ? "+" : "") + (s[n][k] - s[n][k - 1])) : ""]))));
      cols.appendChild(sec);
    }
    box.appendChild(cols);
    return box;
  }

  function renderDetail(i) {
    const it = items[i];
    const out = document.createDocumentFragment();
    const head = isCex
      ? "Step " + it.step + " · " + it.thread + " on CPU" + it.cpu
      : it.title + " · CPU" + it.cpu + " · step " + it.step;
    out.appendChild(el("h2", null, head));
    if (it.violation && doc.violation) {
      const v = el("div", "violation");
      v.appendChild(el("strong", null, "Violation: " + doc.violation.property));
      v.appendChild(document.createTextNode(": " + doc.violation.message));
      if (doc.violation.property === "final") {
        v.appendChild(el("div", null, "(found by the final check, after this last step)"));
      }
      out.appendChild(v);
    }
    if (it.effects && it.effects.length) {
      const ul = el("ul", "effects");
      for (const e of it.effects) ul.appendChild(el("li", null, e));
      out.appendChild(ul);
    }
    if (it.fields && it.fields.length) {
      out.appendChild(table(null, it.fields.map(([k, v]) => row([k, fmt(v)]))));
    }
    if (it.chain && it.chain.length) {
      out.appendChild(el("h3", null, "Call chain (outermost first)"));
      const ol = el("ol", "chain");
      for (const [fn, line] of it.chain) ol.appendChild(el("li", null, fn + ":" + line));
      out.appendChild(ol);
    }
    if (isCex) {
      out.appendChild(changesSection(it));
      const m = stateSection(i);
      if (m) out.appendChild(m);
    } else {
      const s = sampleSection(it);
      if (s) out.appendChild(s);
    }
    detail.replaceChildren(out);
    detail.dataset.item = i;
  }

  function select(i) {
    if (i < 0 || i >= items.length) return;
    const prev = sel;
    sel = i;
    reveal(i);
    markSelected(prev, i);
    renderDetail(i);
    if (history.replaceState) history.replaceState(null, "", "#item-" + i);
  }

  function nearestOnLane(cpu, x) {
    const list = perCpu.get(cpu);
    let best = -1;
    for (const i of list) {
      if (best < 0 || Math.abs(items[i].x - x) < Math.abs(items[best].x - x)) best = i;
    }
    return best;
  }

  canvas.addEventListener("click", (ev) => {
    const b = ev.target.closest(".step");
    if (b) select(Number(b.dataset.i));
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    let to = null;
    if (ev.key === "ArrowRight") to = sel + 1;
    else if (ev.key === "ArrowLeft") to = sel - 1;
    else if (ev.key === "Home") to = 0;
    else if (ev.key === "End") to = items.length - 1;
    else if ((ev.key === "ArrowDown" || ev.key === "ArrowUp") && sel >= 0) {
      const lane = laneOf.get(items[sel].cpu) + (ev.key === "ArrowDown" ? 1 : -1);
      if (lane >= 0 && lane < cpus.length) to = nearestOnLane(cpus[lane], items[sel].x);
    }
    if (to === null) return;
    ev.preventDefault();
    if (to >= 0 && to < items.length) select(to);
  });
  document.getElementById("prev").addEventListener("click", () => select(sel - 1));
  document.getElementById("next").addEventListener("click", () => select(sel + 1));
  function setZoom(z) {
    const center = (scroll.scrollLeft + scroll.clientWidth / 2) / boxW();
    zoom = Math.max(0, Math.min(ZOOMS.length - 1, z));
    drawn = null;
    draw();
    scroll.scrollLeft = Math.max(0, center * boxW() - scroll.clientWidth / 2);
    draw();
  }
  document.getElementById("zoom-in").addEventListener("click", () => setZoom(zoom + 1));
  document.getElementById("zoom-out").addEventListener("click", () => setZoom(zoom - 1));
  const gv = document.getElementById("goto-violation");
  if (doc.violation && doc.violation.item !== null && doc.violation.item !== undefined) {
    gv.hidden = false;
    gv.addEventListener("click", () => select(doc.violation.item));
  }

  draw();
  const m = /^#item-(\d+)$/.exec(location.hash);
  if (items.length) select(m && Number(m[1]) < items.length ? Number(m[1]) : doc.selected || 0);

  // for tests and the console: the data, and the same moves a click or a key makes
  window.pagesimReport = { doc: doc, select: select, reveal: reveal,
                           selected: () => sel };
})();
