// aima's page: the shell (key, router, live events, helpers). Every page module under pages/ exports
// render(main, params, signal); the signal aborts when the person leaves the page. The page holds no
// behaviour: it calls the daemon's REST routes (/api/v1), /v1 and /metrics, like the CLI does.

const KEY = 'aima.key';
const THEME = 'aima.theme';
const state = { key: sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || null, authed: false };

// ------------------------------------------------------------------ DOM helpers
export function h(spec, attrs, ...kids) {
  const [tag, ...cls] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (cls.length) el.className = cls.join(' ');
  setAttrs(el, attrs);
  add(el, kids);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
export function s(spec, attrs, ...kids) {
  const [tag, ...cls] = spec.split('.');
  const el = document.createElementNS(SVG_NS, tag);
  if (cls.length) el.setAttribute('class', cls.join(' '));
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, v);
  add(el, kids);
  return el;
}

const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'multiple', 'open']);
function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function add(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k == null || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);
// replaceChildren that skips null/false (the DOM's would write "null")
export function fill(el, ...kids) {
  el.replaceChildren();
  add(el, kids);
  return el;
}

// ------------------------------------------------------------------ formatting
export function bytes(n) {
  if (n == null) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${u[i]}`;
}
export function ago(ts) {
  if (!ts) return '–';
  const d = Math.max(0, Date.now() / 1000 - ts);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return new Date(ts * 1000).toLocaleDateString();
}
export const clock = (ts) => new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
export const fmt = (v) => (v == null || v === '' ? '–' : typeof v === 'boolean' ? (v ? 'yes' : 'no') :
  Array.isArray(v) ? (v.length ? v.join(', ') : '–') : typeof v === 'object' ? JSON.stringify(v) : String(v));
export function ms(seconds) {
  if (seconds == null || !isFinite(seconds)) return '–';
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(2)} s`;
}
export const badge = (text, cls) => h('span.badge.s-' + String(cls || text).replace(/\W+/g, '-'), { 'data-state': text }, text);

// A table: cols are [label, cell(row) -> node|string, className?]; rows become cards on narrow screens.
export function table(cols, rows, opts = {}) {
  const head = h('thead', null, h('tr', null, cols.map(([label]) => h('th', { scope: 'col' }, label))));
  const body = h('tbody', null, rows.map((r) => {
    const tr = h('tr', opts.rowAttrs ? opts.rowAttrs(r) : null);
    for (const [label, cell, cls] of cols) {
      const td = h('td', { 'data-label': label, class: cls || null });
      add(td, [cell(r)]);
      tr.append(td);
    }
    return tr;
  }));
  return h('div.table-wrap', null, h('table.cards', null, head, body));
}

// ------------------------------------------------------------------ talking to the daemon
export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || (typeof body === 'string' && body) || `HTTP ${status}`);
    this.status = status;
    this.code = err.code;
    this.details = err.details;
  }
}

async function bodyOf(r) {
  const text = await r.text();
  try { return JSON.parse(text); } catch { return text; }
}

export async function send(path, init = {}) {
  const headers = new Headers(init.headers || {});
  if (state.key) headers.set('Authorization', 'Bearer ' + state.key);
  const r = await fetch(path, { ...init, headers, cache: 'no-store', credentials: 'omit' });
  if (!r.ok) {
    const err = new ApiError(r.status, await bodyOf(r));
    if (r.status === 401 && state.authed) {
      gate(state.key ? `The daemon no longer accepts this key: ${err.message}` : 'The daemon now needs an API key.');
    }
    throw err;
  }
  return r;
}

export async function api(method, path, body, init = {}) {
  const opts = { ...init, method };
  if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers = { 'Content-Type': 'application/json', ...(init.headers || {}) };
  }
  const r = await send(path.startsWith('/') ? path : '/api/v1/' + path, opts);
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}
export const get = (path, init) => api('GET', path, undefined, init);
export const post = (path, body = {}, init) => api('POST', path, body, init);
export const del = (path, init) => api('DELETE', path, undefined, init);
export const enc = encodeURIComponent;

// Server-sent events over fetch (EventSource cannot send the key as a header): yields {event, data, id}.
export async function* sse(path, init = {}, onOpen = null) {
  const r = await send(path, init);
  if (onOpen) onOpen(r);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      for (let m = buf.match(/\r?\n\r?\n/); m; m = buf.match(/\r?\n\r?\n/)) {
        const block = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        const ev = { event: 'message', data: '', id: null };
        const data = [];
        for (const line of block.split(/\r?\n/)) {
          if (!line || line[0] === ':') continue;
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let v = c < 0 ? '' : line.slice(c + 1);
          if (v[0] === ' ') v = v.slice(1);
          if (field === 'data') data.push(v); else if (field === 'event') ev.event = v; else if (field === 'id') ev.id = v;
        }
        if (!data.length) continue;
        ev.data = data.join('\n');
        yield ev;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// ------------------------------------------------------------------ live events (one stream for the page)
const listeners = new Set();
let lastEvent = null;
export function onEvent(fn, signal) {
  listeners.add(fn);
  if (signal) signal.addEventListener('abort', () => listeners.delete(fn));
  return () => listeners.delete(fn);
}

async function followEvents() {
  const live = $('#live');
  let delay = 500;
  for (;;) {
    try {
      const since = lastEvent != null ? `?since=${lastEvent}` : '';
      const opened = () => { live.classList.add('on'); live.textContent = 'live'; delay = 500; };
      for await (const ev of sse('/api/v1/events' + since, {}, opened)) {
        let d;
        try { d = JSON.parse(ev.data); } catch { continue; }
        if (d.id != null) lastEvent = d.id;
        for (const fn of [...listeners]) {
          try { fn(d); } catch (e) { toast(`a page failed on event ${d.kind}: ${e.message}`, 'bad'); }
        }
      }
    } catch (e) {
      if (e.status === 401) return;
    }
    live.classList.remove('on');
    live.textContent = 'reconnecting';
    await sleep(delay);
    delay = Math.min(delay * 2, 8000);
  }
}
// The service events that change what a service list shows.
export const touchesServices = (ev) => ev.kind.startsWith('service.') || ev.kind.startsWith('instance.');

// ------------------------------------------------------------------ small UI pieces
export const sleep = (t) => new Promise((res) => setTimeout(res, t));

export function toast(text, kind = '') {
  const t = h('div.toast' + (kind ? '.' + kind : ''), null, text);
  $('#toasts').append(t);
  setTimeout(() => t.remove(), kind === 'bad' ? 9000 : 5000);
}

export function errorBox(e) {
  return h('div.error', { role: 'alert' }, e instanceof Error ? e.message : String(e));
}

// A modal question; resolves true when the person confirms. The safe answer has the focus.
export function confirmDialog(title, text, action = 'Delete', danger = true) {
  return new Promise((resolve) => {
    const no = h('button', { type: 'button', autofocus: true }, 'Cancel');
    const yes = h('button' + (danger ? '.danger.solid' : '.primary'), { type: 'button' }, action);
    const d = h('dialog', { 'aria-labelledby': 'dlg-title' }, h('h2', { id: 'dlg-title' }, title), h('p', null, text),
      h('div.row', null, no, yes));
    let answer = false;
    no.addEventListener('click', () => d.close());
    yes.addEventListener('click', () => { answer = true; d.close(); });
    d.addEventListener('close', () => { d.remove(); resolve(answer); });
    document.body.append(d);
    d.showModal();
    no.focus();
  });
}

// Show a dialog with any content; returns the dialog (closed by its buttons).
export function dialog(title, ...content) {
  const close = h('button', { type: 'button' }, 'Close');
  const d = h('dialog', { 'aria-labelledby': 'dlg-title' }, h('h2', { id: 'dlg-title' }, title), content,
    h('div.row', null, close));
  close.addEventListener('click', () => d.close());
  d.addEventListener('close', () => d.remove());
  document.body.append(d);
  d.showModal();
  return d;
}

// Run an action from a button: disabled while it runs, errors shown as a toast.
export async function act(button, fn, done) {
  button.disabled = true;
  try {
    const out = await fn();
    if (done) toast(typeof done === 'function' ? done(out) : done, 'ok');
    return out;
  } catch (e) {
    toast(e.message, 'bad');
    return undefined;
  } finally {
    button.disabled = false;
  }
}

// Call fn now and every `ms` until the signal aborts (never two at once).
export function every(period, fn, signal) {
  let timer = null;
  const tick = async () => {
    if (signal.aborted) return;
    try { await fn(); } catch { /* shown by fn; try again next time */ }
    if (!signal.aborted) timer = setTimeout(tick, period);
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  tick();
}

// Coalesce bursts of calls (events) into one run, at most one in flight.
export function debounce(fn, wait = 120) {
  let timer = null; let running = false; let again = false;
  const run = async () => {
    if (running) { again = true; return; }
    running = true;
    try { await fn(); } catch { /* fn shows its errors */ } finally { running = false; }
    if (again) { again = false; schedule(); }
  };
  const schedule = () => { clearTimeout(timer); timer = setTimeout(run, wait); };
  return schedule;
}

// ------------------------------------------------------------------ metrics sampler (runs while the page is open)
export const samples = [];
const SAMPLE_S = 5;
const KEEP = 180; // 15 minutes
async function sampleMetrics() {
  for (;;) {
    try {
      const r = await send('/metrics');
      samples.push({ t: Date.now() / 1000, text: await r.text() });
      if (samples.length > KEEP) samples.shift();
      for (const fn of [...sampleListeners]) fn();
    } catch (e) {
      if (e.status === 401) return;
    }
    await sleep(SAMPLE_S * 1000);
  }
}
const sampleListeners = new Set();
export function onSample(fn, signal) {
  sampleListeners.add(fn);
  signal.addEventListener('abort', () => sampleListeners.delete(fn));
}

// ------------------------------------------------------------------ router
const PAGES = [
  [/^$/, 'dashboard', 'Dashboard'],
  [/^services\/([^/]+)$/, 'service', 'Service'],
  [/^models$/, 'models', 'Models'],
  [/^playground(?:\/(chat|embed|speak|transcribe))?$/, 'playground', 'Playground'],
  [/^metrics$/, 'metrics', 'Metrics'],
  [/^keys$/, 'keys', 'Keys'],
  [/^agent$/, 'agent', 'Agent'],
];
let current = null;

async function route() {
  if (!state.authed) return;
  const path = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
  const hit = PAGES.map(([re, name, title]) => [path.match(re), name, title]).find(([m]) => m);
  if (current) current.abort();
  const ac = new AbortController();
  current = ac;
  const main = $('#main');
  for (const a of document.querySelectorAll('#nav a')) {
    if (hit && a.dataset.page === hit[1]) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (!hit) {
    main.replaceChildren(h('h1', null, 'Not found'), h('p', null, 'No page at ', h('code', null, path), '. ',
      h('a', { href: '#/' }, 'Back to the dashboard')));
    return;
  }
  const [m, name, title] = hit;
  document.title = `${title} · aima`;
  try {
    const mod = await import(`./pages/${name}.js`);
    if (ac.signal.aborted) return;
    main.replaceChildren();
    await mod.render(main, m.slice(1), ac.signal);
  } catch (e) {
    if (ac.signal.aborted) return;
    main.replaceChildren(h('h1', null, title), errorBox(e));
  }
  if (document.activeElement === document.body || document.activeElement === null) main.focus({ preventScroll: true });
}

// ------------------------------------------------------------------ the key
function remember(key, persist) {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
  if (key) (persist ? localStorage : sessionStorage).setItem(KEY, key);
  state.key = key || null;
}

export const hasKey = () => !!state.key;

// Use a key from now on (e.g. the first one created on the Keys page, which locks the daemon).
export function useKey(key) {
  remember(key, !!localStorage.getItem(KEY));
  $('#forget').hidden = !key;
}

// Nothing with data is shown until the daemon accepts the page's key (or needs none).
function gate(message) {
  state.authed = false;
  if (current) current.abort();
  $('#nav').hidden = true;
  $('#live').hidden = true;
  $('#forget').hidden = true;
  const input = h('input', { type: 'password', id: 'key', name: 'key', autocomplete: 'current-password', required: true,
    placeholder: 'aima-…', 'aria-describedby': 'key-help' });
  const persist = h('input', { type: 'checkbox', id: 'persist' });
  const err = h('div', { role: 'alert' });
  const form = h('form.card.gate.stack', { 'aria-labelledby': 'gate-title' },
    h('h1', { id: 'gate-title' }, 'API key'),
    h('p', { id: 'key-help' }, message || 'This daemon uses API keys. Give one to continue; it is sent as a bearer token and kept in this browser only.'),
    h('label', { for: 'key' }, 'Key', input),
    h('label.check', null, persist, 'Remember on this browser'),
    err,
    h('div.row', null, h('button.primary', { type: 'submit' }, 'Continue')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.replaceChildren();
    const key = input.value.trim();
    const ok = await probe(key);
    if (ok === true) {
      remember(key, persist.checked);
      enter();
    } else {
      err.replaceChildren(errorBox(ok));
      input.select();
    }
  });
  document.title = 'API key · aima';
  $('#main').replaceChildren(form);
  input.focus();
}

// Does the daemon answer this key (or no key)? true, or the error to show.
async function probe(key) {
  const headers = key ? { Authorization: 'Bearer ' + key } : {};
  try {
    const r = await fetch('/api/v1/status', { headers, cache: 'no-store', credentials: 'omit' });
    if (r.ok) return true;
    const body = await bodyOf(r);
    return new ApiError(r.status, body);
  } catch (e) {
    return e;
  }
}

let started = false;
function enter() {
  state.authed = true;
  $('#nav').hidden = false;
  $('#live').hidden = false;
  $('#forget').hidden = !state.key;
  if (!started) {
    started = true;
    followEvents();
    sampleMetrics();
  }
  route();
}

// ------------------------------------------------------------------ theme
const THEMES = [['', '◐', 'follow the system'], ['light', '☀', 'light'], ['dark', '☾', 'dark']];
function applyTheme(name) {
  const [value, icon, words] = THEMES.find(([v]) => v === name) || THEMES[0];
  if (value) document.documentElement.dataset.theme = value; else delete document.documentElement.dataset.theme;
  const b = $('#theme');
  b.textContent = icon;
  b.title = `Theme: ${words}`;
  b.setAttribute('aria-label', b.title);
}

async function boot() {
  applyTheme(localStorage.getItem(THEME) || '');
  $('#theme').addEventListener('click', () => {
    const now = document.documentElement.dataset.theme || '';
    const next = THEMES[(THEMES.findIndex(([v]) => v === now) + 1) % THEMES.length][0];
    if (next) localStorage.setItem(THEME, next); else localStorage.removeItem(THEME);
    applyTheme(next);
  });
  $('#forget').addEventListener('click', () => { remember(null); gate('The key was forgotten by this browser.'); });
  window.addEventListener('hashchange', route);
  const ok = await probe(state.key);
  if (ok === true) enter();
  else if (ok.status === 401) { if (state.key) remember(null); gate(state.key ? 'The saved key is no longer accepted.' : ''); }
  else $('#main').replaceChildren(h('h1', null, 'aima'), errorBox(`the daemon did not answer: ${ok.message}`));
}

boot();
