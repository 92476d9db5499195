// Dashboard: the hardware, the daemon, every service with its live state (following the event stream), and
// what just happened.
import { badge, bytes, clock, debounce, enc, errorBox, fill, fmt, get, h, onEvent, table, touchesServices } from '../app.js';
import { actions, readyBadge, stateBadge } from '../services.js';

export async function render(main, _params, signal) {
  const hw = h('article.card', { 'aria-labelledby': 'hw-title' }, h('h2', { id: 'hw-title' }, 'Hardware'),
    h('p.muted', null, 'Detecting…'));
  const daemon = h('article.card', { 'aria-labelledby': 'daemon-title' }, h('h2', { id: 'daemon-title' }, 'Daemon'),
    h('p.muted', null, 'Loading…'));
  const list = h('div', { id: 'services' }, h('p.muted', null, 'Loading services…'));
  const feed = h('ul.events', { id: 'activity', 'aria-live': 'off' });
  main.append(
    h('h1', { tabindex: '-1' }, 'Dashboard'),
    h('section.card', { 'aria-labelledby': 'svc-title' },
      h('h2', { id: 'svc-title' }, 'Services', h('span.spacer'), h('a.button', { href: '#/models' }, 'New from the catalog')),
      list),
    h('div.grid', null, hw, daemon),
    h('section.card', { 'aria-labelledby': 'act-title' }, h('h2', { id: 'act-title' }, 'Activity'), feed,
      h('p.muted.small', { id: 'activity-empty' }, 'Events show here as they happen.')),
  );

  const refresh = debounce(() => loadServices(list, refresh, signal), 80);
  const refreshStatus = debounce(() => loadStatus(daemon), 400);
  const seen = new Set();
  const note = (ev, atTop) => {
    if (ev.kind === 'model.pull.progress' || seen.has(ev.id)) return;
    seen.add(ev.id);
    main.querySelector('#activity-empty')?.remove();
    const li = h('li', null, h('span.muted', { title: new Date(ev.ts * 1000).toLocaleString() }, clock(ev.ts)),
      h('span.kind', null, ev.kind), h('span.msgtext', null, ev.message));
    if (atTop) feed.prepend(li); else feed.append(li);
    while (feed.children.length > 40) feed.lastChild.remove();
  };
  onEvent((ev) => {
    if (touchesServices(ev)) { refresh(); refreshStatus(); }
    note(ev, true);
  }, signal);
  const recent = get('events/history?limit=15').then((out) => {
    for (const ev of out.events.reverse()) note(ev, false);
  }, () => {});
  await Promise.all([loadServices(list, refresh, signal), loadHardware(hw), loadStatus(daemon), recent]);
}

async function loadServices(list, refresh, signal) {
  let out;
  try {
    out = await get('services');
  } catch (e) {
    list.replaceChildren(errorBox(e));
    return;
  }
  if (signal.aborted) return;
  const services = out.services;
  const shown = () => requestAnimationFrame(() => {
    if (!performance.getEntriesByName('aima:services-shown').length) performance.mark('aima:services-shown');
  });
  if (!services.length) {
    shown();
    list.replaceChildren(h('p', { id: 'no-services' }, 'No services yet. ',
      h('a', { href: '#/models' }, 'Create one from the catalog'), ', or on the command line: ',
      h('code', null, 'aima service create MODEL')));
    return;
  }
  shown();
  list.replaceChildren(table([
    ['Name', (s) => h('a.name', { href: `#/services/${enc(s.name)}` }, s.name)],
    ['State', (s) => stateBadge(s), 'nowrap'],
    ['Ready', (s) => readyBadge(s), 'nowrap'],
    ['Model', (s) => s.model, 'nowrap'],
    ['Engine', (s) => `${s.engine} · ${s.runtime}`, 'nowrap'],
    ['Endpoint', (s) => (s.endpoint ? h('code', null, s.endpoint) : '–')],
    ['Restarts', (s) => String(s.restarts)],
    ['Message', (s) => fmt(s.message), 'msg'],
    ['', (s) => actions(s, refresh), 'actions'],
  ], services, { rowAttrs: (s) => ({ 'data-service': s.name, 'data-state': s.state }) }));
}

async function loadHardware(card) {
  let hw;
  try {
    hw = await get('hardware');
  } catch (e) {
    card.replaceChildren(card.firstChild, errorBox(e));
    return;
  }
  const c = hw.cpu || {};
  const m = hw.memory || {};
  const e = hw.effective || {};
  const gpus = hw.gpus || [];
  fill(card, card.firstChild,
    h('dl.kv', null,
      h('dt', null, 'CPU'), h('dd', null, `${c.model || 'unknown'} — ${fmt(c.cores_logical)} threads / ${fmt(c.cores_physical)} cores`),
      h('dt', null, 'Memory'), h('dd', null, `${bytes(m.total_bytes)} total, ${bytes(m.available_bytes)} available`),
      h('dt', null, 'Usable'), h('dd', null, `${fmt(e.cpu_cores)} cores, ${bytes(e.memory_available_bytes)}`),
      h('dt', null, 'Platform'), h('dd', null, `${hw.platform?.os}/${hw.platform?.arch}`),
      h('dt', null, 'GPUs'), h('dd', { id: 'gpus' }, gpus.length ? `${gpus.length}` : 'none found')),
    gpus.length ? table([
      ['#', (g) => fmt(g.index)], ['GPU', (g) => `${g.vendor || ''} ${g.name || ''}`.trim() || '–'],
      ['Memory', (g) => (g.unified_memory ? 'unified' : bytes(g.memory_total_bytes))],
      ['Free', (g) => bytes(g.memory_free_bytes)],
    ], gpus) : null);
}

async function loadStatus(card) {
  let st;
  try {
    st = await get('status');
  } catch (e) {
    card.replaceChildren(card.firstChild, errorBox(e));
    return;
  }
  const states = Object.entries(st.by_state || {});
  card.replaceChildren(card.firstChild, h('dl.kv', null,
    h('dt', null, 'Version'), h('dd', null, st.version),
    h('dt', null, 'Up'), h('dd', null, uptime(st.uptime_s)),
    h('dt', null, 'Services'), h('dd', null, states.length ? states.map(([k, n]) => [badge(`${n} ${k}`, k), ' ']) : '0'),
    h('dt', null, 'Instances'), h('dd', null, `${st.instances_ready} ready of ${st.instances_running} running`),
    h('dt', null, 'Cluster'), h('dd', null, st.cluster || 'none attached'),
    h('dt', null, 'Home'), h('dd', null, h('code', null, st.home))));
}

function uptime(s) {
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
