// One service: its definition, the plan the resolver makes for it (every value with where it came from, as
// `aima resolve` prints it), its instances, its log following live, and its recent events.
import {
  ago, bytes, clock, debounce, enc, errorBox, every, fmt, get, h, onEvent, post, table, touchesServices,
} from '../app.js';
import { actions, readyBadge, stateBadge } from '../services.js';

const MAX_LOG_LINES = 3000;

export async function render(main, [name], signal) {
  let svc;
  try {
    svc = await get(`services/${enc(name)}`);
  } catch (e) {
    main.append(h('h1', null, name), errorBox(e), h('p', null, h('a', { href: '#/' }, 'Back to the dashboard')));
    return;
  }
  const head = h('h1', { tabindex: '-1' });
  const definition = h('section.card', { 'aria-labelledby': 'def-title' });
  const instances = h('section.card', { 'aria-labelledby': 'inst-title' });
  const plan = h('section.card', { 'aria-labelledby': 'plan-title' }, h('h2', { id: 'plan-title' }, 'Plan'),
    h('p.muted', null, 'Resolving…'));
  const log = logSection(svc, signal);
  const events = h('section.card', { 'aria-labelledby': 'ev-title' }, h('h2', { id: 'ev-title' }, 'Recent events'));
  main.append(h('p.small', null, h('a', { href: '#/' }, '← Dashboard')), head, definition, instances, log, events, plan);

  const draw = (s) => {
    svc = s;
    head.replaceChildren(s.name, stateBadge(s), readyBadge(s), h('span.spacer'),
      h('span.row.tight', null, actions(s, () => refresh(), () => { location.hash = '#/'; })));
    drawDefinition(definition, s);
    drawInstances(instances, s);
  };
  const refresh = debounce(async () => {
    try {
      draw(await get(`services/${enc(svc.id)}`));
    } catch (e) {
      if (e.status === 404) head.after(errorBox(`service ${svc.name} no longer exists`));
    }
  }, 80);
  draw(svc);

  const list = h('ul.events', { id: 'service-events' });
  events.append(list);
  const addEvent = (ev, first = false) => {
    const li = h('li', null, h('span.muted', { title: new Date(ev.ts * 1000).toLocaleString() }, clock(ev.ts)),
      h('span.kind', null, ev.kind), h('span.msgtext', null, ev.message));
    if (first) list.prepend(li); else list.append(li);
    while (list.children.length > 60) list.lastChild.remove();
  };
  onEvent((ev) => {
    if (ev.service_id !== svc.id) return;
    addEvent(ev, true);
    if (touchesServices(ev)) refresh();
  }, signal);
  get(`events/history?service=${enc(svc.id)}&limit=30`).then((out) => {
    for (const ev of out.events.reverse()) addEvent(ev);
    if (!list.children.length) list.append(h('li.muted', null, 'no events yet'));
  }, (e) => events.append(errorBox(e)));

  drawPlan(plan, svc);
}

function drawDefinition(card, s) {
  const rows = [
    ['id', h('code', null, s.id)], ['model', s.model], ['engine', s.engine],
    ['runtime', s.runtime_reason ? `${s.runtime} — ${s.runtime_reason}` : s.runtime],
    ['endpoint', s.endpoint ? h('code', null, s.endpoint) : '–'], ['desired', s.desired],
    ['replicas', s.replicas], ['ports', fmt(s.ports)], ['restarts', `${s.restarts} (policy ${s.restart_policy})`],
    ['health', `${fmt(s.health)} (wait up to ${fmt(s.health_timeout_s)} s)`],
    ['idle TTL', s.idle_ttl_s ? `${s.idle_ttl_s} s` : 'none'], ['pinned', fmt(s.pinned)],
    ['memory', s.memory_bytes ? `${bytes(s.memory_bytes)} on ${fmt(s.devices)}` : '–'],
    ['config', Object.keys(s.config || {}).length ? Object.entries(s.config).map(([k, v]) => `${k}=${v}`).join(' ') : '–'],
    ['env', Object.keys(s.env || {}).length ? Object.keys(s.env).join(', ') : '–'],
    ['images', s.images?.length ? s.images.join(', ') : null],
    ['message', fmt(s.message)],
    ['created', `${new Date(s.created_at * 1000).toLocaleString()} (${ago(s.created_at)})`],
    ['command', s.command ? h('code', null, s.command) : '–'],
  ].filter(([, v]) => v != null);
  card.replaceChildren(h('h2', { id: 'def-title' }, 'Definition'),
    h('dl.kv', null, rows.map(([k, v]) => [h('dt', null, k), h('dd', { 'data-field': k }, v)])));
}

function drawInstances(card, s) {
  const title = h('h2', { id: 'inst-title' }, 'Instances');
  if (!s.instances?.length) {
    card.replaceChildren(title, h('p.muted', null, 'No instance: the service is not running.'));
    return;
  }
  card.replaceChildren(title, table([
    ['Instance', (i) => h('code', null, i.id)], ['Replica', (i) => String(i.replica)],
    ['State', (i) => stateBadge(i)], ['Ready', (i) => readyBadge(i)], ['Runtime', (i) => i.runtime],
    ['Where', (i) => `${i.node || i.host}:${fmt(i.port)}`], ['PID', (i) => fmt(i.pid ?? i.container)],
    ['Exit', (i) => fmt(i.exit_code)], ['Since', (i) => ago(i.created_at)], ['Message', (i) => fmt(i.message), 'msg'],
  ], s.instances));
}

async function drawPlan(card, s) {
  const title = card.firstChild;
  if (s.engine === 'custom') {
    card.replaceChildren(title, h('p.muted', null, 'A custom command: no catalog plan. It runs exactly the command above.'));
    return;
  }
  let p;
  try {
    p = await post('catalog/resolve', { model: s.model, engine: s.engine, config: s.config || {} });
  } catch (e) {
    card.replaceChildren(title, errorBox(e));
    return;
  }
  card.replaceChildren(title, ...planView(p));
}

export function planView(p) {
  const fit = p.fit || {};
  const out = [
    h('p', null, h('b', null, p.model), ` (${p.model_type}) → variant `, h('b', null, p.variant), ' on ',
      h('b', null, p.engine), ` (${p.device}, ${p.format})`),
    h('dl.kv', null,
      h('dt', null, 'why'), h('dd', null, p.reason),
      fit.message ? [h('dt', null, 'fit'), h('dd', null, `${fit.status} — ${fit.message}`)] : null,
      (fit.adjustments || []).map((a) => [h('dt', null, 'lowered'), h('dd', null, a)]),
      h('dt', null, 'weights'), h('dd', null, h('code', null, p.model_path), p.model_path_exists ? ' — present' :
        ` — missing (source ${p.source_spec})`),
      h('dt', null, 'profile'), h('dd', null, fmt(p.hardware_profile)),
      h('dt', null, 'command'), h('dd', null, h('code', null, p.command))),
    h('h3', null, 'Config, with where each value came from'),
    table([
      ['Key', ([k]) => h('code', null, k)], ['Value', ([, c]) => fmt(c.value)], ['From', ([, c]) => c.source],
      ['Why', ([, c]) => [c.reason || '', (c.overrides || []).length ?
        ` (over ${c.overrides.map((o) => `${o.source}=${fmt(o.value)}`).join(', ')})` : ''], 'msg'],
    ], Object.entries(p.config || {})),
  ];
  if (p.rejected?.length) {
    out.push(h('h3', null, 'Variants not chosen'), table([
      ['Variant', (r) => r.variant], ['Engine', (r) => r.engine], ['Why not', (r) => r.reason, 'msg'],
    ], p.rejected));
  }
  for (const n of p.notes || []) out.push(h('p.note', null, n));
  return out;
}

function logSection(svc, signal) {
  const pre = h('pre.log', { id: 'log', tabindex: '0', 'aria-label': `log of ${svc.name}`, 'aria-live': 'off' });
  const follow = h('input', { type: 'checkbox', checked: true });
  const replica = h('select', { 'aria-label': 'replica' },
    Array.from({ length: svc.replicas }, (_, i) => h('option', { value: String(i) }, `replica ${i}`)));
  const where = h('span.muted.small');
  const card = h('section.card', { 'aria-labelledby': 'log-title' },
    h('h2', { id: 'log-title' }, 'Log', h('span.spacer'), svc.replicas > 1 ? replica : null,
      h('label.check', null, follow, 'follow')), pre, where);
  let offset = null;
  let gen = 0;
  const write = (lines) => {
    if (!lines.length) return;
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 24;
    pre.append(lines.join('\n') + '\n');
    while (pre.childNodes.length > 200) pre.firstChild.remove();
    if (pre.textContent.length > MAX_LOG_LINES * 200) pre.textContent = pre.textContent.slice(-MAX_LOG_LINES * 100);
    if (follow.checked && atEnd) pre.scrollTop = pre.scrollHeight;
  };
  const poll = async () => {
    const mine = gen;
    const r = replica.value || '0';
    const q = offset == null ? `lines=200&replica=${r}` : `offset=${offset}&replica=${r}`;
    let out;
    try {
      out = await get(`services/${enc(svc.id)}/logs?${q}`);
    } catch (e) {
      where.textContent = e.message;
      return;
    }
    if (mine !== gen) return;
    if (offset == null) { pre.textContent = ''; where.textContent = out.path; }
    offset = out.offset;
    write(out.lines);
    if (offset != null && follow.checked) pre.scrollTop = pre.scrollHeight;
  };
  replica.addEventListener('change', () => { gen++; offset = null; pre.textContent = ''; });
  every(1000, () => (follow.checked || offset == null ? poll() : null), signal);
  return card;
}
