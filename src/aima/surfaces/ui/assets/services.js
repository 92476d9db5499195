// What the dashboard and the service page share: a service's state badge and its actions.
import { act, badge, confirmDialog, del, enc, h, post } from './app.js';

export function stateBadge(svc) {
  return badge(svc.state);
}

export function readyBadge(svc) {
  return badge(svc.ready ? 'ready' : 'not ready', svc.ready ? 'yes' : 'no');
}

// Start, stop, restart, delete: each through the REST route the CLI uses. `after` runs once it is done.
export function actions(svc, after, onDeleted) {
  const name = svc.name;
  const up = ['running', 'starting'].includes(svc.state);
  const wanted = up || svc.desired === 'running'; // a failed service that is still wanted: Start retries, Stop gives up
  const b = (label, cls, fn, done) => {
    const btn = h('button' + cls, { type: 'button', 'aria-label': `${label} ${name}`, 'data-action': label.toLowerCase() }, label);
    btn.addEventListener('click', async () => {
      const out = await act(btn, fn, done);
      if (out !== undefined && after) after(out);
    });
    return btn;
  };
  return [
    up ? null : b('Start', '', () => post(`services/${enc(name)}/start`, { wait: false }), `${name}: starting`),
    wanted ? b('Stop', '', () => post(`services/${enc(name)}/stop`), `${name}: stopped`) : null,
    b('Restart', '', () => post(`services/${enc(name)}/restart`, { wait: false }), `${name}: restarting`),
    b('Delete', '.danger', async () => {
      if (!await confirmDialog(`Delete service ${name}?`,
        `Service ${name} (${svc.model}) is stopped and forgotten: its record, instances and routes are removed. ` +
        'This cannot be undone.', `Delete ${name}`)) return undefined;
      const out = await del(`services/${enc(name)}`);
      if (onDeleted) onDeleted(out);
      return out;
    }, (out) => out && `${name}: deleted`),
  ];
}
