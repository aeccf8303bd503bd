/* The Signet dashboard (docs/GATEWAY.md, "The dashboard").
 *
 * A page of the gateway's own console: every figure comes from its JSON API (/api/v1) with
 * the bearer token the user typed in, kept in this tab's sessionStorage and sent with each
 * fetch. No library, nothing fetched from elsewhere: the charts are drawn here as SVG.
 * Figures are shown rounded as `signet report` rounds them (gateway/mcr/display.py: the
 * JSON's digits rounded half away from zero), so a figure here can be checked by hand.
 * Text from the API (names, topics, details) goes in as text nodes and attribute values, never
 * as HTML: a device name cannot run a script in the page that holds the token.
 */
"use strict";

const TOKEN_KEY = "signet.console.token";
const SVG_NS = "http://www.w3.org/2000/svg";
const DAY_MS = 86400000;
// Minor-unit exponents that are not 2: the table of gateway/mcr/display.py (a test compares).
const EXPONENTS = {
  JPY: 0, KRW: 0, VND: 0, CLP: 0, ISK: 0, PYG: 0, UGX: 0, XAF: 0, XOF: 0,
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
};

/* ---- elements ------------------------------------------------------------------------- */

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function show(...nodes) {
  const view = document.getElementById("view");
  view.replaceChildren(...nodes.flat().filter(Boolean));
}

/* ---- numbers as the report writes them -------------------------------------------------- */

// x's shortest decimal digits (JSON's), times 10^shift, rounded half away from zero.
function rounded(x, places, shift = 0) {
  if (x === null || x === undefined) return "n/a";
  let s = String(x);
  const negative = s.startsWith("-");
  if (negative) s = s.slice(1);
  let exp = 0;
  const e = s.search(/e/i);
  if (e >= 0) {
    exp = parseInt(s.slice(e + 1), 10);
    s = s.slice(0, e);
  }
  const dot = s.indexOf(".");
  let digits = s.replace(".", "");
  let point = (dot < 0 ? s.length : dot) + exp + shift;
  if (point < 0) {
    digits = "0".repeat(-point) + digits;
    point = 0;
  }
  const keep = point + places;
  if (digits.length < keep + 1) digits += "0".repeat(keep + 1 - digits.length);
  let whole = BigInt(digits.slice(0, keep) || "0");
  if (digits.charCodeAt(keep) - 48 >= 5) whole += 1n;
  let text = whole.toString().padStart(places + 1, "0");
  if (places) text = text.slice(0, text.length - places) + "." + text.slice(text.length - places);
  if (negative && /[1-9]/.test(text)) text = "-" + text;
  return text;
}

const percent = (x, places = 2) => (x === null || x === undefined ? "n/a" : rounded(x, places, 2) + "%");

function exponentOf(cur) {
  return Object.prototype.hasOwnProperty.call(EXPONENTS, cur) ? EXPONENTS[cur] : 2;
}

// "12.50 EUR" from 1250 minor units: display.money.
function money(amount, cur) {
  const exp = exponentOf(cur);
  const sign = amount < 0 ? "-" : "";
  const abs = BigInt(Math.abs(amount));
  const unit = 10n ** BigInt(exp);
  const whole = abs / unit;
  const frac = (abs % unit).toString().padStart(exp, "0");
  return exp ? `${sign}${whole}.${frac} ${cur}` : `${sign}${whole} ${cur}`;
}

// A (fractional) amount of minor units in major units with the currency's decimals.
function minorAsMajor(minor, cur) {
  if (minor === null || minor === undefined) return "n/a";
  return rounded(minor, exponentOf(cur), -exponentOf(cur)) + " " + cur;
}

function iso(ms) {
  return ms === null || ms === undefined ? "" : new Date(ms).toISOString().replace(".000Z", "Z");
}

function ago(ms) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 2 * 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function duration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 2 * 86400) return `${rounded(s / 3600, 1)} h`;
  return `${rounded(s / 86400, 1)} days`;
}

const counted = (n, noun) => `${n} ${n === 1 ? noun : noun + "s"}`;

const short = (kid) => (kid ? kid.slice(0, 12) + "…" : "");

/* ---- the API ---------------------------------------------------------------------------- */

class Unauthorized extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, params) {
  const t = token();
  if (!t) throw new Unauthorized("no token");
  const query = params ? "?" + new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== "")
  ) : "";
  const response = await fetch(path + query, { headers: { Authorization: "Bearer " + t } });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw new Unauthorized("the gateway refused the token");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(`${response.status}: ${detail || response.statusText}`);
  }
  return body;
}

const enc = encodeURIComponent;

/* ---- charts (SVG) ------------------------------------------------------------------------ */

// Bars of values by day: points = [{label, value, title}], format(value) for the axis.
function barChart(points, format, opts = {}) {
  const W = 640, H = opts.height || 180, L = 70, R = 10, T = 10, B = 24;
  const max = Math.max(opts.max || 0, ...points.map((p) => p.value), 0);
  const min = Math.min(0, ...points.map((p) => p.value));
  const span = max - min || 1;
  const y = (v) => T + (H - T - B) * (max - v) / span;
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": opts.label || "chart" });
  for (const v of [max, (max + min) / 2, min]) {
    chart.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", text: format(v) }));
  }
  const slot = (W - L - R) / Math.max(points.length, 1);
  points.forEach((p, i) => {
    const top = y(Math.max(p.value, 0)), bottom = y(Math.min(p.value, 0));
    chart.append(svg("rect", {
      class: p.value < 0 ? "bar negative" : "bar", x: L + i * slot + slot * 0.1,
      width: Math.max(slot * 0.8, 1), y: top, height: Math.max(bottom - top, p.value ? 1 : 0),
    }, svg("title", { text: p.title || `${p.label}: ${format(p.value)}` })));
  });
  if (points.length) {
    const last = points.length - 1;
    chart.append(svg("text", { x: L, y: H - 6, text: points[0].label }));
    if (last) chart.append(svg("text", { x: W - R, y: H - 6, "text-anchor": "end", text: points[last].label }));
  }
  return chart;
}

// The observed span as a band: up in green, the listed outages in red.
function outageTimeline(uptime) {
  const W = 640, H = 56, L = 10, R = 10;
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "outage timeline" });
  const from = uptime.observed_from_ms, to = uptime.observed_to_ms;
  if (from === null || to === null || to <= from) {
    chart.append(svg("text", { x: L, y: 30, text: "nothing observed in the period" }));
    return chart;
  }
  const x = (ms) => L + (W - L - R) * (ms - from) / (to - from);
  chart.append(svg("rect", { class: "up", x: L, y: 8, width: W - L - R, height: 22 },
    svg("title", { text: `observed ${iso(from)} .. ${iso(to)}` })));
  for (const o of uptime.outages) {
    chart.append(svg("rect", { class: "down", x: x(o.start_ms), y: 8,
      width: Math.max(x(o.end_ms) - x(o.start_ms), 1), height: 22 },
      svg("title", { text: `outage ${iso(o.start_ms)}, ${duration(o.duration_ms)}` })));
  }
  chart.append(svg("text", { x: L, y: 48, text: iso(from) }),
    svg("text", { x: W - R, y: 48, "text-anchor": "end", text: iso(to) }));
  return chart;
}

/* ---- pages ------------------------------------------------------------------------------- */

function loginPage(message) {
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  const input = el("input", { id: "token", type: "password", autocomplete: "off",
    placeholder: "signet_…", required: true });
  const form = el("form", { class: "card login", id: "login", on: { submit: async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    route();
  } } },
  el("h1", { text: "Sign in" }),
  el("p", { class: "muted", text: "A token of this gateway: signet token create --name NAME --config gateway.toml. It is kept in this tab only (sessionStorage) and sent with each request." }),
  message ? el("p", { class: "error", id: "login-error", text: message }) : null,
  el("p", {}, input),
  el("button", { class: "primary", type: "submit", text: "Sign in" }));
  show(form);
  input.focus();
  done("login");
}

function done(page) {
  document.body.dataset.page = page;
  document.body.dataset.ready = "1";
}

function currentNav(page) {
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = false;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("current", a.dataset.page === page);
}

function badge(text) {
  return el("span", { class: `badge ${text}`, text });
}

function machinesOf(fleet, report) {
  const byMachine = new Map();
  for (const d of fleet.devices) {
    if (!byMachine.has(d.machine)) byMachine.set(d.machine, []);
    byMachine.get(d.machine).push(d);
  }
  const figures = new Map(report.devices.map((r) => [r.device, r]));
  return [...byMachine.entries()].map(([machine, keys]) => {
    const newest = keys[keys.length - 1];
    const r = figures.get(machine) || null;
    const seen = keys.map((k) => k.last_received_ms).filter((v) => v !== null);
    return {
      machine, keys, report: r,
      name: (r && r.name) || newest.name || "",
      tier: r ? r.tier : newest.tier,
      status: newest.status,
      flagged: keys.some((k) => k.flagged),
      last: seen.length ? Math.max(...seen) : null,
      // The newest key's last word on its status topic (unsigned, informational).
      online: newest.online, statusMs: newest.status_ms,
    };
  });
}

const FLEET_COLUMNS = [
  { key: "device", title: "Device", sort: (m) => m.machine },
  { key: "name", title: "Name", sort: (m) => m.name },
  { key: "tier", title: "Tier", sort: (m) => m.tier },
  { key: "status", title: "Status", sort: (m) => m.status + (m.flagged ? " flagged" : "") },
  { key: "online", title: "Online", sort: (m) => (m.online === null ? 0 : m.online ? 2 : 1) },
  { key: "last", title: "Last seen", num: true, sort: (m) => m.last ?? -1 },
  { key: "uptime", title: "Uptime", num: true, sort: (m) => m.report?.uptime.ratio ?? -1 },
  { key: "revenue", title: "Revenue", num: true, sort: (m) => m.report?.revenue.currencies[0]?.amount ?? -Infinity },
  { key: "score", title: "Score", num: true, sort: (m) => m.report?.score.score ?? -1 },
  { key: "refused", title: "Refused", num: true, sort: (m) => m.report?.integrity.refused_total ?? -1 },
];

// The period of the figures, from the page's address (#/...?from=YYYY-MM-DD&to=...): none
// is each machine's own history, as `signet report` without --from and --to.
function periodOf(params) {
  return { from: params.get("from") || null, to: params.get("to") || null };
}

function periodQuery(period) {
  const q = new URLSearchParams(Object.entries(period).filter(([, v]) => v)).toString();
  return q ? "?" + q : "";
}

function periodForm(period, base) {
  const from = el("input", { id: "period-from", type: "date", value: period.from || "" });
  const to = el("input", { id: "period-to", type: "date", value: period.to || "" });
  return el("form", { class: "inline", id: "period-form", on: { submit: (ev) => {
    ev.preventDefault();
    location.hash = base + periodQuery({ from: from.value, to: to.value });
  } } }, el("label", {}, "From (UTC day)", from), el("label", {}, "To", to),
  el("button", { class: "primary", type: "submit", text: "Apply" }));
}

function periodText(period) {
  if (!period.from && !period.to) return "each machine's own history";
  return `${period.from || "its first day"} .. ${period.to || "the as-of day"}`;
}

const onlineWord = (online) => (online === null || online === undefined ? "not heard" : online ? "online" : "offline");

function fleetRow(m, period) {
  const r = m.report;
  const cell = (key, ...content) => el("td", { "data-col": key,
    class: FLEET_COLUMNS.find((c) => c.key === key).num ? "num" : null }, ...content);
  return el("tr", { "data-device": m.machine, "data-name": m.name, "data-tier": m.tier,
    "data-status": m.status, "data-flagged": m.flagged ? "1" : "0", "data-records": r ? "1" : "0" },
  cell("device", el("a", { href: `#/device/${m.machine}${periodQuery(period)}`, class: "mono", title: m.machine, text: short(m.machine) })),
  cell("name", m.name),
  cell("tier", badge(m.tier)),
  cell("status", badge(m.status), m.flagged ? [" ", badge("flagged")] : null),
  cell("online", el("span", { class: `badge ${onlineWord(m.online)}`, title: m.statusMs ? `said at ${iso(m.statusMs)}` : "no word on its status topic",
    text: onlineWord(m.online) })),
  cell("last", el("span", { title: iso(m.last), "data-ms": m.last ?? "", text: ago(m.last) })),
  cell("uptime", r ? percent(r.uptime.ratio) : ""),
  cell("revenue", r ? r.revenue.currencies.map((c, i) => [i ? el("br") : null,
    el("span", { "data-currency": c.currency, "data-amount": c.amount, text: money(c.amount, c.currency) })]) : ""),
  cell("score", r ? el("span", { "data-score": r.score.score, "data-letter": r.score.letter,
    text: `${r.score.score} ${r.score.letter}` }) : ""),
  cell("refused", r ? String(r.integrity.refused_total) : ""));
}

async function fleetPage(params) {
  currentNav("fleet");
  const period = periodOf(params);
  const started = performance.now();
  const [fleet, report] = await Promise.all([api("/api/v1/fleet"), api("/api/v1/report/summary", period)]);
  const fetched = performance.now();
  const machines = machinesOf(fleet, report);
  const text = el("input", { id: "filter-text", type: "search", placeholder: "id or name" });
  const tier = el("select", { id: "filter-tier" }, ["", "software", "hardware"].map((v) =>
    el("option", { value: v, text: v || "any" })));
  const status = el("select", { id: "filter-status" }, [["", "any"], ["active", "active"],
    ["rotated", "rotated"], ["revoked", "revoked"], ["flagged", "flagged"],
    ["norecords", "no records"], ["online", "online"], ["offline", "offline"],
    ["notheard", "not heard"]].map(([v, t]) => el("option", { value: v, text: t })));
  const count = el("span", { id: "fleet-count", class: "muted" });
  const tbody = el("tbody");
  let sortKey = "device", ascending = true;
  const headers = FLEET_COLUMNS.map((c) => el("th", { class: `sortable${c.num ? " num" : ""}`,
    "data-col": c.key, text: c.title, on: { click: () => {
      ascending = sortKey === c.key ? !ascending : true;
      sortKey = c.key;
      render();
    } } }));

  function visible(m) {
    const q = text.value.trim().toLowerCase();
    if (q && !m.machine.includes(q) && !m.name.toLowerCase().includes(q)
      && !m.keys.some((k) => k.device.includes(q))) return false;
    if (tier.value && m.tier !== tier.value) return false;
    if (status.value === "flagged") return m.flagged;
    if (status.value === "norecords") return !m.report;
    if (status.value === "online") return m.online === true;
    if (status.value === "offline") return m.online === false;
    if (status.value === "notheard") return m.online === null;
    return !status.value || m.status === status.value;
  }

  function render() {
    const column = FLEET_COLUMNS.find((c) => c.key === sortKey);
    const rows = machines.filter(visible).sort((a, b) => {
      const x = column.sort(a), y = column.sort(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    });
    for (const h of headers) {
      h.classList.toggle("sorted-asc", h.dataset.col === sortKey && ascending);
      h.classList.toggle("sorted-desc", h.dataset.col === sortKey && !ascending);
    }
    tbody.replaceChildren(...rows.map((m) => fleetRow(m, period)));
    count.textContent = `${rows.length} of ${machines.length} machines`;
  }

  text.addEventListener("input", render);
  for (const select of [tier, status]) select.addEventListener("change", render);
  show(
    el("h1", { text: "Fleet" }),
    el("p", { class: "muted", id: "fleet-period" }, `Figures over ${periodText(period)}, as of ${iso(report.as_of_ms) || "no record yet"}; `,
      "uptime, revenue, score and refused are those of signet report. ",
      "Online is the device's own last word on its status topic (unsigned: informational, never uptime); last seen is the receive time of its newest record. ",
      el("span", { text: report.score_label })),
    el("div", { class: "filters" }, periodForm(period, "#/"), el("label", {}, "Search", text),
      el("label", {}, "Tier", tier), el("label", {}, "Status", status), count),
    el("table", { id: "fleet" }, el("thead", {}, el("tr", {}, headers)), tbody),
    fleet.refused_unattributed ? el("p", { class: "muted" },
      `${fleet.refused_unattributed} refused messages named no enrolled device: `, el("a", { href: "#/refusals", text: "refusals" })) : null,
  );
  render();
  const built = performance.now();
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  // Read by the browser test that prints how long 1,000 machines take: the API's answers,
  // building the table, and until the frame with it was laid out and painted.
  window.signetTimings = {
    fleetFetchMs: fetched - started, fleetBuildMs: built - fetched, fleetPaintMs: performance.now() - fetched,
  };
  done("fleet");
}

function kv(pairs) {
  return el("dl", { class: "kv" }, pairs.filter(Boolean).map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
}

function dailyUptime(uptime) {
  // Every day of the observed span, those without up time as 0 (the report leaves them out).
  const byDay = new Map(uptime.daily.map((d) => [d.day, d.up_ms]));
  const points = [];
  if (uptime.observed_from_ms === null) return points;
  for (let t = Math.floor(uptime.observed_from_ms / DAY_MS) * DAY_MS; t < uptime.observed_to_ms; t += DAY_MS) {
    const day = new Date(t).toISOString().slice(0, 10);
    const up = byDay.get(day) || 0;
    const lo = Math.max(t, uptime.observed_from_ms), hi = Math.min(t + DAY_MS, uptime.observed_to_ms);
    points.push({ label: day, value: hi > lo ? up / (hi - lo) : 0, title: `${day}: ${duration(up)} up` });
  }
  return points;
}

async function devicePage(id, params) {
  currentNav("fleet");
  const period = periodOf(params);
  const d = await api(`/api/v1/devices/${enc(id)}`);
  const report = await api("/api/v1/report", { device: d.device, ...period });
  const r = report.devices[0] || null;
  const title = d.name || d.device;
  const parts = [
    el("h1", {}, title, " ", badge(d.tier), " ", badge(d.status), d.flagged ? [" ", badge("flagged")] : null,
      " ", el("span", { class: `badge ${onlineWord(d.online)}`, id: "device-online", text: onlineWord(d.online),
        title: d.status_ms ? `said at ${iso(d.status_ms)}; last record received ${iso(d.last_received_ms)}` : "no word on its status topic" })),
    el("p", { class: "mono muted", text: d.device }),
    el("p", {}, el("a", { href: `#/records/${d.device}`, text: "Record explorer" }), " · ",
      el("a", { href: `#/yield/${d.machine}${periodQuery(period)}`, text: "Yield view" })),
    periodForm(period, `#/device/${d.device}`),
  ];
  if (r) {
    parts.push(el("p", { class: "muted", id: "device-period", text: `Period ${r.period.from} .. ${r.period.to}` +
      `${period.from || period.to ? "" : " (the machine's own history)"}; ${report.score_label}.` }),
      el("div", { class: "cards", id: "device-cards" },
        el("div", { class: "card" }, el("div", { class: "big", id: "device-uptime", text: percent(r.uptime.ratio) }), el("div", { class: "caption", text: "uptime" })),
        el("div", { class: "card" }, el("div", { class: "big", id: "device-score", text: `${r.score.score} ${r.score.letter}` }), el("div", { class: "caption", text: "indicative score" })),
        r.revenue.currencies.map((c) => el("div", { class: "card" }, el("div", { class: "big", text: money(c.amount, c.currency) }),
          el("div", { class: "caption", text: `revenue, ${c.count} records over ${c.days} days` }))),
        el("div", { class: "card" }, el("div", { class: "big", text: String(r.uptime.outage_count) }), el("div", { class: "caption", text: r.uptime.outage_count ? `${r.uptime.outage_count === 1 ? "outage" : "outages"}, longest ${duration(r.uptime.longest_outage_ms)}` : "outages" }))));
    parts.push(el("h2", { text: "Daily revenue" }));
    if (!r.revenue.currencies.length) parts.push(el("p", { class: "muted", text: "No revenue record in the period." }));
    parts.push(el("div", { class: "grid2" }, r.revenue.currencies.map((c) => el("div", {},
      el("h3", { class: "muted", text: c.currency }),
      barChart(c.daily.map((x) => ({ label: x.day, value: x.amount, title: `${x.day}: ${money(x.amount, c.currency)}, ${x.count} records` })),
        (v) => minorAsMajor(v, c.currency), { label: `daily revenue ${c.currency}` })))));
    parts.push(el("div", { class: "grid2" },
      el("div", {}, el("h2", { text: "Uptime per day" }), barChart(dailyUptime(r.uptime), (v) => percent(v, 0), { max: 1, label: "uptime per day" })),
      el("div", {}, el("h2", { text: "Outage timeline" }), outageTimeline(r.uptime),
        el("p", { class: "muted", text: `${counted(r.uptime.outage_count, "outage")}, ${duration(r.uptime.down_ms)} down of ${duration(r.uptime.observed_ms)} observed` +
          (r.uptime.outage_count > r.uptime.outages.length ? `; the ${r.uptime.outages.length} longest are drawn.` : ".") }))));
    const integ = r.integrity;
    parts.push(el("div", { class: "grid2" },
      el("div", {}, el("h2", { text: "Integrity (in the period)" }), el("table", { id: "integrity" }, el("tbody", {},
        [["verified", integ.verified], ["duplicates", integ.duplicates], ["equivocations", integ.equivocations],
          ["chain breaks", integ.chain_breaks], ["late", integ.late], ["future time", integ.future_time],
          ["missing (now)", integ.missing ?? "n/a"], ["integrity ratio", percent(integ.ratio)],
          ...Object.entries(integ.refused).map(([k, v]) => [`refused: ${k}`, v]), ["refused, total", integ.refused_total]]
          .map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { class: "num", text: String(v) })))))),
      el("div", {}, el("h2", { text: "Enrollment and evidence" }), enrollment(d))));
  } else {
    parts.push(el("p", { class: "muted", text: period.from || period.to ? "No stored record in the period." : "No stored record yet." }), el("h2", { text: "Enrollment and evidence" }), enrollment(d));
  }
  show(parts);
  done("device");
}

function enrollment(d) {
  return kv([
    ["tier", d.tier], ["status", d.status], ["enrolled", iso(d.enrolled_ms)],
    d.revoked_ms !== null ? ["revoked", iso(d.revoked_ms)] : null,
    ["curve", d.curve], ["public key", el("span", { class: "mono", text: d.public_key })],
    ["evidence", d.evidence_kind || "none (software tier)"],
    d.evidence_summary ? ["evidence summary", el("pre", { class: "hex", text: JSON.stringify(d.evidence_summary, null, 2) })] : null,
    ["evidence size", `${d.evidence_bytes} bytes`],
    d.replaces ? ["replaces", el("a", { href: `#/device/${d.replaces}`, class: "mono", text: d.replaces })] : null,
    d.last_n !== null ? ["last valid n", String(d.last_n)] : null,
    ["machine keys", d.machine_keys.map((k, i) => [i ? ", " : "", el("a", { href: `#/device/${k}`, class: "mono", text: short(k) })])],
    ["sequence", `ack ${d.ack}, highest ${d.highest}, stored ${d.stored}, missing ${d.missing}`],
    ["findings (all days)", Object.entries(d.findings).map(([k, v]) => `${k} ${v}`).join(", ") || "none"],
  ]);
}

function hexBlock(hex, size) {
  return el("details", {}, el("summary", { text: `${size ?? hex.length / 2} bytes` }),
    el("pre", { class: "bytes", text: hex.replace(/(..)/g, "$1 ").trim() }));
}

function refusedRow(item, withDevice) {
  return el("tr", { class: "refused", "data-reason": item.reason, "data-id": item.id },
    el("td", { text: item.received }),
    withDevice ? el("td", {}, item.device ? el("a", { href: `#/device/${item.device}`, class: "mono", text: short(item.device) }) : "none") : null,
    el("td", { class: "mono", text: item.topic }),
    el("td", {}, el("code", { text: item.reason })),
    el("td", { class: "reason-text", text: item.reason_text || "(no description for this code)" }),
    el("td", { text: item.detail }),
    el("td", {}, hexBlock(item.raw_hex, item.size)));
}

// A record's signed fields, one per line: t also as a UTC time, am also in major units.
function fieldList(fields) {
  return kv(Object.entries(fields).map(([k, v]) => {
    let shown = typeof v === "object" ? JSON.stringify(v) : String(v);
    if (k === "t" && typeof v === "number") shown += ` (${iso(v)})`;
    if (k === "am" && typeof fields.cur === "string" && Number.isSafeInteger(v)) shown += ` (${money(v, fields.cur)})`;
    return [k, el("span", { class: "mono", text: shown })];
  }));
}

async function recordsPage(id) {
  currentNav("fleet");
  const page = await api(`/api/v1/devices/${enc(id)}/records`, { limit: 200 });
  const storedBody = el("tbody");
  const more = el("button", { class: "primary", type: "button", text: "More records" });
  const addStored = (items) => storedBody.append(...items.map((s) => el("tr", { "data-n": s.n },
    el("td", { class: "num", text: String(s.n) }), el("td", { text: s.kind }),
    el("td", { text: "stored" + (s.late ? ", late" : "") + (s.future ? ", future time" : "") + (s.chain_break ? ", chain break" : "") }),
    el("td", { text: s.received }),
    el("td", { class: "fields" }, fieldList(s.fields)),
    el("td", {}, hexBlock(s.raw_hex)))));
  addStored(page.stored);
  let next = page.next_after_n;
  more.hidden = next === null;
  more.addEventListener("click", async () => {
    const p = await api(`/api/v1/devices/${enc(id)}/records`, { limit: 200, after_n: next });
    addStored(p.stored);
    next = p.next_after_n;
    more.hidden = next === null;
  });
  show(
    el("h1", {}, "Records of ", el("a", { href: `#/device/${page.device}`, class: "mono", text: page.device })),
    el("h2", { text: `Refused (${page.refused.length}${page.next_refused_before_id !== null ? "+" : ""}, newest first)` }),
    page.refused.length ? el("table", { id: "refused" }, el("thead", {}, el("tr", {},
      ["Received", "Topic", "Reason", "In words", "Detail", "Raw bytes (as kept)"].map((t) => el("th", { text: t })))),
    el("tbody", {}, page.refused.map((i) => refusedRow(i, false)))) : el("p", { class: "muted", text: "Nothing refused on its topic is in the quarantine." }),
    el("h2", { text: "Stored records" }),
    el("table", { id: "stored" }, el("thead", {}, el("tr", {}, ["n", "Kind", "Verdict", "Received", "Signed fields (decoded)", "Raw bytes"].map((t) => el("th", { text: t })))), storedBody),
    more,
  );
  done("records");
}

async function refusalsPage(reason) {
  currentNav("refusals");
  const data = await api("/api/v1/refusals", { limit: 500, reason: reason || null });
  show(
    el("h1", { text: "Refusals" }),
    el("p", { class: "muted", text: "Counts are every refusal the gateway made (all days); the items are those still in the quarantine (a ring: the oldest go)." }),
    el("table", { id: "by-reason" }, el("thead", {}, el("tr", {}, ["Reason", "In words", "Count"].map((t) => el("th", { text: t })))),
      el("tbody", {}, data.by_reason.map((b) => el("tr", { "data-reason": b.reason },
        el("td", {}, el("a", { href: `#/refusals/${b.reason}`, text: b.reason })),
        el("td", { text: b.reason_text || "" }), el("td", { class: "num", text: String(b.count) }))))),
    el("h2", {}, reason ? [`Quarantined: ${reason} `, el("a", { href: "#/refusals", text: "(all reasons)" })] : "Quarantined, newest first"),
    el("table", { id: "refusal-items" }, el("thead", {}, el("tr", {},
      ["Received", "Device", "Topic", "Reason", "In words", "Detail", "Raw bytes (as kept)"].map((t) => el("th", { text: t })))),
    el("tbody", {}, data.items.map((i) => refusedRow(i, true)))),
  );
  done("refusals");
}

async function yieldPage(id, params) {
  currentNav("yield");
  const [fleet, report] = await Promise.all([api("/api/v1/fleet"), api("/api/v1/report/summary")]);
  const machines = machinesOf(fleet, report).filter((m) => m.report);
  const device = el("select", { id: "yield-device", name: "device" }, machines.map((m) =>
    el("option", { value: m.machine, text: m.name ? `${m.name} (${short(m.machine)})` : m.machine, selected: m.machine === id })));
  const capital = el("input", { id: "yield-capital", name: "capital", inputmode: "decimal", required: true,
    value: params.get("capital") || "", placeholder: "5000" });
  const currency = el("select", { id: "yield-currency", name: "currency" });
  const dayFrom = el("input", { id: "yield-from", type: "date", value: params.get("from") || "" });
  const dayTo = el("input", { id: "yield-to", type: "date", value: params.get("to") || "" });
  const output = el("div", { id: "yield-output" });
  function currencies() {
    const m = machines.find((x) => x.machine === device.value);
    const list = m ? m.report.revenue.currencies.map((c) => c.currency) : [];
    const wanted = params.get("currency") || (m && m.report.revenue.primary_currency);
    currency.replaceChildren(...list.map((c) => el("option", { value: c, text: c, selected: c === wanted })));
  }
  device.addEventListener("change", currencies);
  currencies();
  const form = el("form", { class: "inline card", id: "yield-form", on: { submit: (ev) => {
    ev.preventDefault();
    const wanted = { capital: capital.value.trim(), currency: currency.value, from: dayFrom.value, to: dayTo.value };
    location.hash = `#/yield/${device.value}?` + new URLSearchParams(Object.entries(wanted).filter(([, v]) => v));
  } } },
  el("label", {}, "Machine", device), el("label", {}, "Capital (major units)", capital),
  el("label", {}, "Currency", currency),
  el("label", {}, "From (UTC day, optional)", dayFrom), el("label", {}, "To", dayTo),
  el("button", { class: "primary", type: "submit", text: "Compute" }));
  show(el("h1", { text: "Yield" }),
    el("p", { class: "label-banner", id: "yield-label", text: "Signet's arithmetic on verified records: not a peaq figure, not a forecast, not advice." }),
    machines.length ? form : el("p", { class: "muted", text: "No machine has a stored record yet." }), output);
  if (id && params.get("capital") && machines.length) {
    try {
      const y = await api(`/api/v1/devices/${enc(id)}/yield`, { capital: params.get("capital"),
        currency: params.get("currency"), from: params.get("from"), to: params.get("to") });
      document.getElementById("yield-label").textContent = y.label;
      output.replaceChildren(yieldResult(y));
    } catch (err) {
      if (err instanceof Unauthorized) throw err;
      output.replaceChildren(el("p", { class: "error", id: "yield-error", text: err.message }));
    }
  }
  done("yield");
}

function yieldResult(y) {
  const cur = y.currency;
  return el("div", {},
    el("div", { class: "cards wide" },
      el("div", { class: "card" }, el("div", { class: "yield-figure", id: "yield-annual", text: percent(y.annualized_yield) }),
        el("div", { class: "caption", text: "realized annualized revenue yield" })),
      el("div", { class: "card" }, el("div", { class: "big", id: "yield-range",
        text: y.range ? `${percent(y.range.low)} .. ${percent(y.range.high)}` : "n/a" }),
        el("div", { class: "caption", text: "range: a typical day, annualized" })),
      el("div", { class: "card" }, el("div", { class: "big", id: "yield-uptime", text: percent(y.uptime_ratio) }),
        el("div", { class: "caption", text: "uptime in the period" })),
      el("div", { class: "card" }, el("div", { class: "big", id: "yield-advertised",
        text: y.advertised_yield === null ? "not set" : percent(y.advertised_yield) }),
        el("div", { class: "caption", text: "advertised by the operator (gateway.toml), not verified" }))),
    el("h2", { text: "The arithmetic" }),
    kv([
      ["period", `${y.period.from} .. ${y.period.to}: ${y.days ?? "n/a"} days of the daily series`],
      ["verified revenue", y.revenue_minor === null ? `none in ${cur}` : money(y.revenue_minor, cur)],
      ["capital", `${y.capital} ${cur}`],
      ["yield", `revenue / capital × 365 / days = ${percent(y.annualized_yield)}`],
      ["mean daily revenue", minorAsMajor(y.mean_daily_minor, cur)],
      ["volatility", y.volatility === null ? "n/a" : `${rounded(y.volatility, 4)} (standard deviation / mean of the daily revenue)`],
      ["range", y.range ? `${y.range.basis}: ${percent(y.range.low)} .. ${percent(y.range.high)}` : "n/a (no positive mean daily revenue)"],
    ]));
}

/* ---- routing ------------------------------------------------------------------------------ */

async function route() {
  document.body.dataset.ready = "0";
  if (!token()) {
    loginPage();
    return;
  }
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  try {
    if (parts[0] === "device" && parts[1]) await devicePage(parts[1], params);
    else if (parts[0] === "records" && parts[1]) await recordsPage(parts[1]);
    else if (parts[0] === "refusals") await refusalsPage(parts[1]);
    else if (parts[0] === "yield") await yieldPage(parts[1], params);
    else await fleetPage(params);
  } catch (err) {
    if (err instanceof Unauthorized) {
      loginPage("The gateway refused the token: sign in with a token in force.");
      return;
    }
    show(el("p", { class: "error", id: "page-error", text: String(err.message || err) }));
    done("error");
  }
}

document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", route);
route();
