// The operations page: a table of requests kept live by Server-Sent Events.
// Every value from the server (subjects, senders, file names come from
// strangers) goes into the page as text (textContent), never as markup; the
// Content-Security-Policy forbids inline scripts besides.
"use strict";

(function () {
  const PAGE = 50;
  const THREATENED = ["VULNERABLE", "ENDANGERED", "CRITICALLY ENDANGERED", "EXTINCT IN THE WILD"];
  const OUTCOME_WORDS = { answered: "answered", refused: "refused", ignored: "ignored",
                          set_aside: "set aside", working: "working" };
  const state = { filters: {}, before: "", pages: [], rowsByKey: new Map(), total: 0,
                  window: "hour", charts: {} };

  const $ = (id) => document.getElementById(id);
  // A row keeps its id when its mailbox key changes (a claim returned to the queue).
  const rowId = (row) => row.id || row.key;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function when(seconds) {
    const date = new Date(seconds * 1000);
    const today = new Date();
    const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return date.toDateString() === today.toDateString() ? time : date.toLocaleDateString() + " " + time;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 2 : 1) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s";
    return (seconds / 3600).toFixed(1) + " h";
  }

  // -- the table -------------------------------------------------------------------

  function photoCell(images) {
    const cell = el("td", "photos");
    if (!images.length) cell.appendChild(el("span", "muted", "–"));
    for (const image of images) {
      const box = el("div", "photo");
      if (typeof image.thumb === "string" && image.thumb.startsWith("/thumbs/")) {
        const img = el("img");
        img.alt = "";
        let tries = 0;
        // A thumbnail is written just after the answer: try again a few times.
        img.addEventListener("error", () => {
          tries += 1;
          if (tries > 3) { img.replaceWith(el("div", "nothumb")); return; }  // a "thumb" event may follow
          setTimeout(() => { img.src = image.thumb + "?try=" + tries; }, 700 * tries);
        });
        img.src = image.thumb;
        box.appendChild(img);
      } else {
        box.appendChild(el("div", "nothumb"));
      }
      const text = el("div");
      text.appendChild(el("div", "headline", image.headline));
      const badges = el("div");
      if (typeof image.probability === "number") badges.appendChild(el("span", "badge prob", image.probability + "%"));
      for (const flag of image.flags || []) {
        let cls = "badge danger";
        let word = flag;
        if (flag === "VENOMOUS" || flag === "POISONOUS") cls = "badge venom";
        if (THREATENED.includes(flag)) { cls = "badge threat"; word = "threatened"; }
        const badge = el("span", cls, word);
        badge.title = flag.toLowerCase();
        badges.appendChild(badge);
      }
      text.appendChild(badges);
      text.appendChild(el("div", "file", image.file));
      box.appendChild(text);
      cell.appendChild(box);
    }
    return cell;
  }

  function rowElement(row) {
    const tr = el("tr");
    tr.appendChild(el("td", "arrived", when(row.arrived)));
    tr.appendChild(el("td", "sender", row.sender || "(no sender)"));
    tr.appendChild(el("td", "subject", row.subject || "(no subject)"));
    tr.appendChild(photoCell(row.images || []));
    const outcome = el("td");
    outcome.appendChild(el("div", "outcome o-" + row.outcome, OUTCOME_WORDS[row.outcome] || row.outcome));
    if (row.reason) outcome.appendChild(el("div", "reason", row.reason));
    tr.appendChild(outcome);
    tr.appendChild(el("td", "seconds", duration(row.seconds)));
    tr.appendChild(el("td", "workername", row.worker || "–"));
    return tr;
  }

  function matches(row) {
    const f = state.filters;
    if (f.outcome && row.outcome !== f.outcome) return false;
    if (f.sender && !(row.sender || "").toLowerCase().includes(f.sender.toLowerCase())) return false;
    if (f.subject && !(row.subject || "").toLowerCase().includes(f.subject.toLowerCase())) return false;
    if (f.from && row.arrived < Number(f.from)) return false;
    if (f.to && row.arrived >= Number(f.to)) return false;
    return true;
  }

  function showCount() {
    const shown = state.rowsByKey.size;
    const first = state.pages.length * PAGE;
    $("count").textContent = state.total
      ? `rows ${first + 1}–${first + shown} of ${state.total.toLocaleString()}`
      : "no requests match";
    $("newest").disabled = state.pages.length === 0;
  }

  function render(rows) {
    const body = $("rows");
    body.replaceChildren();
    state.rowsByKey.clear();
    for (const row of rows) {
      const tr = rowElement(row);
      state.rowsByKey.set(rowId(row), { row, tr });
      body.appendChild(tr);
    }
    showCount();
  }

  // A live row: replace it where it is, or put it in place by arrival time
  // (only on the first page, and only when it matches the filters).
  function upsert(row) {
    const known = state.rowsByKey.get(rowId(row));
    if (known) {
      const tr = rowElement(row);
      tr.classList.add("fresh");
      known.tr.replaceWith(tr);
      state.rowsByKey.set(rowId(row), { row, tr });
      return;
    }
    if (state.pages.length || !matches(row)) return;
    // A full page shows every row down to its oldest: an unknown row older
    // than that belongs to a later page; any other unknown row is new.
    const shown = [...state.rowsByKey.values()];
    if (shown.length >= PAGE && row.arrived < shown[shown.length - 1].row.arrived) return;
    const tr = rowElement(row);
    tr.classList.add("fresh");
    const body = $("rows");
    let before = null;
    for (const child of state.rowsByKey.values()) {
      if (child.row.arrived < row.arrived || (child.row.arrived === row.arrived && child.row.key < row.key)) {
        before = child.tr; break;
      }
    }
    body.insertBefore(tr, before);
    state.rowsByKey.set(rowId(row), { row, tr });
    // Keep the map in table order (Map keeps insertion order).
    const ordered = [...body.children];
    const byTr = new Map([...state.rowsByKey.values()].map((v) => [v.tr, v]));
    state.rowsByKey = new Map(ordered.map((t) => [rowId(byTr.get(t).row), byTr.get(t)]));
    while (state.rowsByKey.size > PAGE) {
      const lastKey = [...state.rowsByKey.keys()].pop();
      state.rowsByKey.get(lastKey).tr.remove();
      state.rowsByKey.delete(lastKey);
    }
    state.total += 1;
    showCount();
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw new Error(url + ": " + response.status + " " + (await response.text()));
    return response.json();
  }

  async function load() {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(state.filters)) if (value) params.set(name, value);
    params.set("limit", String(PAGE));
    if (state.before) params.set("before", state.before);
    try {
      const page = await getJSON("/api/requests?" + params.toString());
      state.total = page.total;
      state.next = page.before;
      render(page.rows);
      $("older").disabled = !page.more;
    } catch (error) {
      $("count").textContent = "could not load the requests: " + error.message;
    }
  }

  function readFilters() {
    const form = $("filters");
    const filters = {
      outcome: form.elements.outcome.value,
      sender: form.elements.sender.value.trim(),
      subject: form.elements.subject.value.trim(),
    };
    const day = form.elements.date.value; // the browser's own day, as Unix seconds
    if (day) {
      const start = new Date(day + "T00:00:00");
      const end = new Date(start); end.setDate(end.getDate() + 1);
      filters.from = String(start.getTime() / 1000);
      filters.to = String(end.getTime() / 1000);
    }
    return filters;
  }

  // -- around the table ------------------------------------------------------------

  function summary(data) {
    $("worker").textContent = data.worker;
    $("queue").textContent = data.queue_depth;
    $("claims").textContent = data.claims_held;
    const hour = data.last_hour || {};
    $("answered").textContent = hour.answered || 0;
    $("refused").textContent = (hour.refused || 0) + " · " + (hour.ignored || 0);
    $("aside").textContent = hour.set_aside || 0;
    $("errors").textContent = data.errors.count;
    const workers = $("workers");
    workers.replaceChildren();
    for (const w of data.workers) {
      const tr = el("tr");
      tr.appendChild(el("td", w.this ? "outcome" : "", w.worker + (w.this ? " (this one)" : "")));
      tr.appendChild(el("td", w.alive ? "" : "o-refused", w.last_seen_s === null ? "–" : duration(w.last_seen_s) + " ago"));
      tr.appendChild(el("td", "", w.claims));
      tr.appendChild(el("td", "", w.oldest_claim_s === null ? "–" : duration(w.oldest_claim_s)));
      tr.appendChild(el("td", "", w.lease_age_s === null ? "–" : duration(w.lease_age_s) + " ago"));
      const page = el("td");
      if (typeof w.page === "string" && /^https?:\/\//.test(w.page)) {
        const a = el("a", "", w.page);
        a.href = w.page;
        a.rel = "noreferrer";
        page.appendChild(a);
      } else {
        page.textContent = "–";
      }
      tr.appendChild(page);
      workers.appendChild(tr);
    }
    const list = $("errorlist");
    list.replaceChildren();
    if (!data.errors.latest.length) list.appendChild(el("li", "muted", "none"));
    for (const entry of data.errors.latest) {
      list.appendChild(el("li", entry.level, when(entry.at) + "  " + entry.text));
    }
  }

  // -- charts ------------------------------------------------------------------------

  function chartWidth(id) {
    return Math.max(280, $(id).clientWidth || 480);
  }

  function drawCharts(data) {
    if (typeof uPlot === "undefined") return;
    const rate = [data.times, data.per_minute];
    const latency = [data.times, data.p50, data.p90, data.p99];
    const common = { height: 200, legend: { live: false }, cursor: { drag: { x: false, y: false } } };
    for (const chart of Object.values(state.charts)) chart.destroy();
    $("chart-rate").replaceChildren();
    $("chart-latency").replaceChildren();
    state.charts.rate = new uPlot(Object.assign({}, common, {
      title: "requests per minute", width: chartWidth("chart-rate"),
      series: [{}, { label: "requests/min", stroke: "#0b5cad", fill: "rgba(11,92,173,.12)", width: 2 }],
      axes: [{}, { size: 40 }],
    }), rate, $("chart-rate"));
    state.charts.latency = new uPlot(Object.assign({}, common, {
      title: "arrival to reply, seconds", width: chartWidth("chart-latency"),
      // Minutes without a reply have no point; the lines join the minutes that do.
      series: [{}, { label: "p50", stroke: "#1a7f37", width: 2, spanGaps: true, points: { show: true, size: 4 } },
                   { label: "p90", stroke: "#9a6700", width: 2, spanGaps: true, points: { show: true, size: 4 } },
                   { label: "p99", stroke: "#c62828", width: 2, spanGaps: true, points: { show: true, size: 4 } }],
      axes: [{}, { size: 40 }],
    }), latency, $("chart-latency"));
    const overall = data.overall;
    $("chartnote").textContent = `${data.total} request(s) in the last ${data.window}; ` +
      (overall.p50 === null ? "no replies yet" :
       `reply after p50 ${duration(overall.p50)}, p90 ${duration(overall.p90)}, p99 ${duration(overall.p99)}`) +
      `; one point per ${data.bucket_s / 60} min`;
  }

  async function loadCharts() {
    try {
      drawCharts(await getJSON("/api/charts?window=" + state.window));
    } catch (error) {
      $("chartnote").textContent = "could not load the charts: " + error.message;
    }
  }

  // -- live updates ------------------------------------------------------------------

  function connect() {
    const live = $("live");
    const source = new EventSource("/events");
    source.addEventListener("open", () => { live.textContent = "live"; live.className = "pill on"; });
    source.addEventListener("error", () => { live.textContent = "reconnecting…"; live.className = "pill off"; });
    source.addEventListener("row", (event) => {
      const row = JSON.parse(event.data);
      upsert(row);
      // A finished request moves the charts: redraw soon, at most every few seconds.
      if (row.outcome !== "working" && !state.chartsDue) {
        state.chartsDue = setTimeout(() => { state.chartsDue = null; loadCharts(); }, 3000);
      }
    });
    source.addEventListener("summary", (event) => summary(JSON.parse(event.data)));
    // A thumbnail written after its row was drawn (they wait while the classifier works).
    source.addEventListener("thumb", (event) => {
      const thumb = JSON.parse(event.data);
      if (typeof thumb.url !== "string" || !thumb.url.startsWith("/thumbs/")) return;
      for (const { row, tr } of state.rowsByKey.values()) {
        if (row.key !== thumb.key || !row.images[thumb.index]) continue;
        row.images[thumb.index].thumb = thumb.url;
        const fresh = rowElement(row);
        tr.replaceWith(fresh);
        state.rowsByKey.set(rowId(row), { row, tr: fresh });
      }
    });
  }

  function start() {
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      state.filters = readFilters();
      state.before = ""; state.pages = [];
      load();
    });
    $("filters").addEventListener("reset", () => {
      state.filters = {}; state.before = ""; state.pages = [];
      setTimeout(load, 0);
    });
    $("older").addEventListener("click", () => {
      if (!state.next) return;
      state.pages.push(state.before);
      state.before = state.next;
      load();
    });
    $("newest").addEventListener("click", () => { state.before = ""; state.pages = []; load(); });
    for (const button of document.querySelectorAll(".window button")) {
      button.addEventListener("click", () => {
        state.window = button.dataset.window;
        for (const other of document.querySelectorAll(".window button")) other.classList.toggle("on", other === button);
        loadCharts();
      });
    }
    load();
    loadCharts();
    setInterval(loadCharts, 30000);
    connect();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
