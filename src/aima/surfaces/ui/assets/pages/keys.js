// API keys: create (the key is shown once), list, revoke.
import {
  act, ago, badge, confirmDialog, del, dialog, enc, errorBox, fmt, get, h, hasKey, onEvent, post, table, useKey,
} from '../app.js';

export async function render(main, _params, signal) {
  const list = h('div', { id: 'keys' }, h('p.muted', null, 'Loading…'));
  const name = h('input', { id: 'key-name', name: 'name', maxlength: '128', placeholder: 'e.g. laptop' });
  const scope = h('select', { id: 'key-scope', name: 'scope' }, h('option', { value: 'admin' }, 'admin — everything'),
    h('option', { value: 'read' }, 'read — look, change nothing'), h('option', { value: 'inference' }, 'inference — only /v1'));
  const models = h('input', { id: 'key-models', placeholder: 'all', size: 24 });
  const rpm = h('input', { id: 'key-rpm', type: 'number', min: '1', placeholder: 'no limit' });
  const create = h('button.primary', { type: 'submit' }, 'Create key');
  const form = h('form.row', { 'aria-label': 'Create a key' },
    h('label', { for: 'key-name' }, 'Name', name), h('label', { for: 'key-scope' }, 'Scope', scope),
    h('label', { for: 'key-models' }, 'Models (inference keys)', models),
    h('label', { for: 'key-rpm' }, 'Requests/min', rpm), create);
  main.append(h('h1', { tabindex: '-1' }, 'API keys'),
    h('section.card', { 'aria-labelledby': 'new-key' }, h('h2', { id: 'new-key' }, 'New key'), form,
      h('p.small.muted', null, 'While any key is active, every route but /health needs one (the web page too). ',
        'The key is shown once; aima keeps only its hash.')),
    h('section.card', { 'aria-labelledby': 'keys-title' }, h('h2', { id: 'keys-title' }, 'Keys'), list));

  let active = null; // active keys at the last look
  const load = async () => {
    let out;
    try {
      out = await get('keys');
    } catch (e) {
      list.replaceChildren(errorBox(e));
      return;
    }
    active = out.keys.filter((k) => k.active).length;
    if (!out.keys.length) {
      list.replaceChildren(h('p', null, 'No key: the daemon answers anyone who reaches it (it listens on loopback unless told otherwise).'));
      return;
    }
    list.replaceChildren(table([
      ['Id', (k) => h('code.name', null, k.id)], ['Name', (k) => fmt(k.name)], ['Scope', (k) => fmt(k.scope)],
      ['Models', (k) => fmt(k.models)], ['Prefix', (k) => h('code', null, `${k.prefix}…`)],
      ['State', (k) => badge(k.active ? 'active' : 'revoked', k.active ? 'ok' : 'revoked')],
      ['Created', (k) => ago(k.created_at)],
      ['', (k) => (k.active ? revokeButton(k, load) : null), 'actions'],
    ], out.keys, { rowAttrs: (k) => ({ 'data-key': k.id }) }));
  };
  let creating = false; // the key.created event can come before the answer: the first key locks the daemon
  onEvent((ev) => { if (ev.kind.startsWith('key.') && !creating) load(); }, signal);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { scope: scope.value };
    if (name.value.trim()) body.name = name.value.trim();
    const ms = models.value.split(/[\s,]+/).filter(Boolean);
    if (ms.length) body.models = ms;
    if (rpm.value) body.rpm = Number(rpm.value);
    const first = active === 0 && !hasKey(); // the daemon needs no key yet: this one locks it
    creating = true;
    const out = await act(create, () => post('keys', body)).finally(() => { creating = false; });
    if (!out) return;
    name.value = ''; models.value = ''; rpm.value = '';
    const adopted = first && (out.scope || 'admin') === 'admin';
    if (adopted) useKey(out.key);
    const copy = h('button', { type: 'button' }, 'Copy');
    copy.addEventListener('click', async () => {
      try { await navigator.clipboard.writeText(out.key); copy.textContent = 'Copied'; } catch { copy.textContent = 'Select it and copy'; }
    });
    dialog(`Key ${out.id} created`,
      h('p', null, 'Store it now: it is shown only this once.'),
      h('pre.secret', { id: 'new-key-value' }, out.key), h('div.row', null, copy),
      adopted ? h('p.note', null, 'It is the first key, so the daemon now needs a key for everything: this page uses this one from now on.') : null);
    load();
  });
  await load();
}

function revokeButton(k, reload) {
  const btn = h('button.danger', { type: 'button', 'aria-label': `Revoke ${k.name || k.id}` }, 'Revoke');
  btn.addEventListener('click', async () => {
    if (!await confirmDialog(`Revoke key ${k.name || k.id}?`, `Requests with key ${k.id} (${k.prefix}…) are refused at once.`,
      `Revoke ${k.name || k.id}`)) return;
    if (await act(btn, () => del(`keys/${enc(k.id)}`), `${k.id}: revoked`)) reload();
  });
  return btn;
}
