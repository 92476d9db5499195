// Metrics: requests, errors and latency p50/p99 per model over the last minutes, as charts. The page reads
// the daemon's Prometheus text (/metrics) every few seconds from the moment it opened (app.js keeps the
// last 15 minutes of samples) and draws the differences between samples.
import { h, ms, onSample, s, samples, table } from '../app.js';

const W = 600; const H = 170; const L = 44; const R = 8; const T = 10; const B = 22;

export async function render(main, _params, signal) {
  const body = h('div', { id: 'metrics' });
  main.append(h('h1', { tabindex: '-1' }, 'Metrics'),
    h('p.muted.small', null, 'From the daemon’s ', h('code', null, '/metrics'),
      ', read every 5 s while this page is open (up to the last 15 minutes). Prometheus can scrape the same numbers.'),
    body);
  const draw = () => body.replaceChildren(...view(series(samples)));
  onSample(draw, signal);
  draw();
}

export function parse(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = line.match(/^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    out.push([m[1], labels, Number(m[3])]);
  }
  return out;
}

// Per sample: {t, models: {model: {req, err, buckets: Map(le -> cumulative count)}}}
function digest(sample) {
  const models = {};
  const of = (m) => (models[m] ||= { req: 0, err: 0, buckets: new Map() });
  for (const [name, l, v] of parse(sample.text)) {
    if (name === 'aima_gateway_requests_total') of(l.model).req += v;
    else if (name === 'aima_gateway_errors_total') of(l.model).err += v;
    else if (name === 'aima_gateway_request_seconds_bucket') {
      const b = of(l.model).buckets;
      const le = l.le === '+Inf' ? Infinity : Number(l.le);
      b.set(le, (b.get(le) || 0) + v);
    }
  }
  return { t: sample.t, models };
}

export function quantile(q, buckets) {
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return null;
  const rank = q * total;
  let prevLe = 0; let prevCum = 0;
  for (const [le, cum] of buckets) {
    if (cum >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + (le - prevLe) * ((rank - prevCum) / ((cum - prevCum) || 1));
    }
    prevLe = le; prevCum = cum;
  }
  return prevLe;
}

const delta = (a, b) => (b >= a ? b - a : b); // a counter that went back: the daemon restarted
function bucketDelta(a, b) {
  return [...b.entries()].sort((x, y) => x[0] - y[0]).map(([le, n]) => [le, delta(a?.get(le) || 0, n)]);
}

function series(raw) {
  const ds = raw.map(digest);
  const names = [...new Set(ds.flatMap((d) => Object.keys(d.models)))].sort();
  const per = Object.fromEntries(names.map((m) => [m, { rate: [], err: [], p50: [], p99: [] }]));
  for (let i = 1; i < ds.length; i++) {
    const a = ds[i - 1]; const b = ds[i]; const dt = b.t - a.t;
    for (const m of names) {
      const x = a.models[m]; const y = b.models[m];
      if (!y) continue;
      const bd = bucketDelta(x?.buckets, y.buckets);
      per[m].rate.push([b.t, delta(x?.req || 0, y.req) / dt]);
      per[m].err.push([b.t, delta(x?.err || 0, y.err) / dt]);
      per[m].p50.push([b.t, quantile(0.5, bd)]);
      per[m].p99.push([b.t, quantile(0.99, bd)]);
    }
  }
  const first = ds[0]; const last = ds[ds.length - 1];
  const totals = names.map((m) => {
    const x = first?.models[m]; const y = last?.models[m];
    const bd = bucketDelta(ds.length > 1 ? x?.buckets : undefined, y?.buckets || new Map());
    return { model: m, req: y ? delta(ds.length > 1 ? x?.req || 0 : 0, y.req) : 0,
      err: y ? delta(ds.length > 1 ? x?.err || 0 : 0, y.err) : 0, p50: quantile(0.5, bd), p99: quantile(0.99, bd) };
  });
  return { names, per, totals, t0: first?.t, t1: last?.t, n: ds.length };
}

function view({ names, per, totals, t0, t1, n }) {
  if (n === 0) return [h('p.muted', null, 'Reading /metrics…')];
  if (!names.length) {
    return [h('p', { id: 'no-requests' }, 'No request through the gateway yet. Try one in the ',
      h('a', { href: '#/playground' }, 'playground'), '.')];
  }
  const legend = h('div.legend.card', null, names.map((m, i) => h('span', null, h('i.c' + (i % 6)), m)));
  const span = t1 - t0;
  return [
    h('section.card', { 'aria-labelledby': 'sum-title' }, h('h2', { id: 'sum-title' },
      n > 1 ? `The last ${span < 90 ? `${Math.round(span)} s` : `${Math.round(span / 60)} min`}` : 'Since the daemon started'),
    table([
      ['Model', (r) => h('span.name', null, r.model)], ['Requests', (r) => String(Math.round(r.req))],
      ['Errors', (r) => String(Math.round(r.err))], ['p50', (r) => ms(r.p50)], ['p99', (r) => ms(r.p99)],
    ], totals, { rowAttrs: (r) => ({ 'data-metrics-model': r.model }) })),
    legend,
    n < 2 ? h('p.muted', null, 'The charts fill in from the next reading (every 5 s).') : h('div.charts', null,
      chart('Requests per second', names, (m) => [per[m].rate], t0, t1, (v) => v.toFixed(v < 10 ? 2 : 0)),
      chart('Errors per second', names, (m) => [per[m].err], t0, t1, (v) => v.toFixed(v < 10 ? 2 : 0)),
      chart('Latency p50 (solid) and p99 (dashed)', names, (m) => [per[m].p50, per[m].p99], t0, t1, (v) => ms(v))),
  ];
}

function chart(title, names, lines, t0, t1, label) {
  const all = names.flatMap((m) => lines(m).flat()).map(([, v]) => v).filter((v) => v != null && isFinite(v));
  const max = Math.max(...all, 0) || 1;
  const x = (t) => L + ((t - t0) / ((t1 - t0) || 1)) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const svg = s('svg.chart', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title },
    s('line.axis', { x1: L, y1: H - B, x2: W - R, y2: H - B }), s('line.axis', { x1: L, y1: T, x2: L, y2: H - B }),
    s('text', { x: L - 4, y: T + 8, 'text-anchor': 'end' }, label(max)), s('text', { x: L - 4, y: H - B, 'text-anchor': 'end' }, '0'),
    s('text', { x: L, y: H - 6 }, `−${Math.round((t1 - t0) / 60 * 10) / 10} min`), s('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, 'now'));
  names.forEach((m, i) => lines(m).forEach((pts, j) => {
    // a gap (no request in an interval: no latency) splits the line
    let run = [];
    const flush = () => {
      if (run.length === 1) run.push(run[0]);
      if (run.length) svg.append(s(`polyline.c${i % 6}${j ? '.dash' : ''}`, { points: run.join(' ') }));
      run = [];
    };
    for (const [t, v] of pts) {
      if (v == null || !isFinite(v)) { flush(); continue; }
      run.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    }
    flush();
  }));
  return h('figure.card', null, h('h2', null, title), svg);
}
