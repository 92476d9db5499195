// Agent: ask the operator agent (POST /api/v1/agent/ask, server-sent events), watch its steps stream, and
// approve or deny the destructive calls it wants to make (POST /api/v1/agent/approvals/{id}).
import { act, enc, errorBox, h, post, sse } from '../app.js';

let session = sessionStorage.getItem('aima.agent.session') || '';

export async function render(main, _params, signal) {
  const prompt = h('textarea', { id: 'ask', rows: '3', placeholder: 'e.g. which services are running? why did chat fail?' });
  const profile = h('select', { id: 'profile' }, h('option', { value: 'read-only' }, 'read-only — looks only'),
    h('option', { value: 'operator', selected: true }, 'operator — also creates, starts, stops'),
    h('option', { value: 'admin' }, 'admin — everything (deletes ask you first)'));
  const sess = h('input', { id: 'session', value: session, placeholder: 'new', size: 18, pattern: '[A-Za-z0-9][A-Za-z0-9._:-]*' });
  const go = h('button.primary', { type: 'submit' }, 'Ask');
  const stop = h('button', { type: 'button', disabled: true }, 'Stop');
  const fresh = h('button', { type: 'button' }, 'New conversation');
  const steps = h('ol.steps', { id: 'steps', 'aria-live': 'polite' });
  const form = h('form.stack', null, h('label', { for: 'ask' }, 'Ask aima', prompt),
    h('div.row', null, h('label', { for: 'profile' }, 'Profile', profile), h('label', { for: 'session' }, 'Conversation', sess),
      go, stop, fresh));
  main.append(h('h1', { tabindex: '-1' }, 'Agent'),
    h('section.card', null, form, h('p.small.muted', null,
      'The operator agent drives aima through its own operations, each step shown as it happens; ',
      'every call it makes is in the audit (aima agent log).')),
    h('section.card', { 'aria-labelledby': 'steps-title' }, h('h2', { id: 'steps-title' }, 'Steps'), steps));
  let running = null;
  stop.addEventListener('click', () => running?.abort());
  signal.addEventListener('abort', () => running?.abort());
  fresh.addEventListener('click', () => { session = ''; sess.value = ''; sessionStorage.removeItem('aima.agent.session'); steps.replaceChildren(); });
  prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = prompt.value.trim();
    if (!text || running) return;
    running = new AbortController();
    go.disabled = true; stop.disabled = false;
    steps.append(h('li', null, h('b', null, 'you: '), text));
    const body = { prompt: text, profile: profile.value, interactive: true };
    if (sess.value.trim()) body.session = sess.value.trim();
    const open = new Map(); // step round+tool -> li
    try {
      for await (const ev of sse('/api/v1/agent/ask', { method: 'POST', signal: running.signal,
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })) {
        const d = JSON.parse(ev.data);
        step(steps, ev.event, d, open);
        if (d.session) { session = d.session; sess.value = session; sessionStorage.setItem('aima.agent.session', session); }
      }
      prompt.value = '';
    } catch (x) {
      if (x.name !== 'AbortError') steps.append(h('li.error', null, errorBox(x)));
    } finally {
      running = null;
      go.disabled = false; stop.disabled = true;
      prompt.focus();
    }
  });
  prompt.focus();
}

const args = (a) => Object.entries(a || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ');

function step(list, event, d, open) {
  const key = `${d.round}:${d.tool}`;
  if (event === 'session') {
    list.append(h('li.muted.small', null, `conversation ${d.session} (${d.profile}${d.resumed ? ', resumed' : ''})`));
  } else if (event === 'progress') {
    list.append(h('li.muted.small', null, d.message));
  } else if (event === 'step') {
    const li = h('li', { 'data-tool': d.tool }, h('code', null, `${d.tool}(${args(d.arguments)})`), h('span.muted', null, ' …'));
    open.set(key, li);
    list.append(li);
  } else if (event === 'result') {
    const li = open.get(key) || list.appendChild(h('li'));
    li.className = `result-${d.outcome}`;
    li.replaceChildren(h('code', null, `${d.tool}(${args(d.arguments)})`), ` → ${d.outcome}: ${d.summary}`,
      h('span.muted.small', null, ` (${d.seconds} s${d.approval ? `, ${d.approval}` : ''})`));
  } else if (event === 'needs_approval') {
    const yes = h('button.danger.solid', { type: 'button' }, 'Approve');
    const no = h('button', { type: 'button' }, 'Deny');
    const li = h('li.approval', { 'data-approval': d.id }, h('b', null, 'Needs your approval: '),
      h('code', null, `${d.tool}(${args(d.arguments)})`), ` — ${d.reason}`, h('div.row', null, no, yes));
    const answer = (approve, btn) => act(btn, () => post(`agent/approvals/${enc(d.id)}`, { approve }),
      approve ? 'approved' : 'denied').then((out) => {
      if (out) li.replaceChildren(`${approve ? 'Approved' : 'Denied'}: `, h('code', null, d.tool));
    });
    yes.addEventListener('click', () => answer(true, yes));
    no.addEventListener('click', () => answer(false, no));
    list.append(li);
    no.focus();
  } else if (event === 'answer') {
    list.append(h('li.answer', { id: 'answer' }, d.answer));
  } else if (event === 'error') {
    list.append(h('li.error', null, d.message));
  }
}
