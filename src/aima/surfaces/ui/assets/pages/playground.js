// Playground: try any ready model through the daemon's OpenAI endpoint (/v1) — chat (streamed token by token,
// with the time to the first token and tokens per second), embeddings (similarity of two texts), speak (an
// audio player with the speech) and transcribe (a file, or a recording from the microphone).
import { errorBox, get, h, ms, send, sse } from '../app.js';

const TABS = [['chat', 'Chat', 'llm'], ['embed', 'Embeddings', 'embedding'], ['speak', 'Speak', 'tts'],
  ['transcribe', 'Transcribe', 'asr']];

export async function render(main, [tab = 'chat'], signal) {
  main.append(h('h1', { tabindex: '-1' }, 'Playground'));
  const [models, types] = await Promise.all([get('/v1/models'), get('catalog?kind=model').catch(() => ({ items: [] }))]);
  const typeOf = new Map(types.items.map((i) => [i.name, i.type]));
  const ready = models.data.map((m) => ({ id: m.id, service: m.service, type: typeOf.get(m.id) || null }));
  const bar = h('div.tabs', { role: 'tablist', 'aria-label': 'What to try' }, TABS.map(([id, label]) =>
    h('button', { type: 'button', role: 'tab', id: `tab-${id}`, 'aria-selected': String(id === tab), 'aria-controls': 'panel',
      tabindex: id === tab ? '0' : '-1', onclick: () => { location.hash = `#/playground/${id}`; } }, label)));
  bar.addEventListener('keydown', (e) => {
    const i = TABS.findIndex(([id]) => id === tab);
    const j = e.key === 'ArrowRight' ? i + 1 : e.key === 'ArrowLeft' ? i - 1 : null;
    if (j == null) return;
    location.hash = `#/playground/${TABS[(j + TABS.length) % TABS.length][0]}`;
  });
  const panel = h('section.card', { id: 'panel', role: 'tabpanel', 'aria-labelledby': `tab-${tab}` });
  main.append(bar, panel);
  const [, , type] = TABS.find(([id]) => id === tab);
  const fitting = ready.filter((m) => !m.type || m.type === type);
  if (!fitting.length) {
    panel.append(h('p', { id: 'no-model' }, `No ready ${type} model. Start one on the `, h('a', { href: '#/' }, 'dashboard'),
      ' or create one from the ', h('a', { href: '#/models' }, 'catalog'), '.'));
    return;
  }
  const picker = h('select', { id: 'model', name: 'model' }, fitting.map((m) =>
    h('option', { value: m.id }, m.service && m.service !== m.id ? `${m.id} (${m.service})` : m.id)));
  const pick = h('label', { for: 'model' }, 'Model', picker);
  ({ chat, embed: embeddings, speak, transcribe })[tab](panel, pick, picker, signal);
  if (document.activeElement === document.body) document.getElementById(`tab-${tab}`).focus();
}

// ------------------------------------------------------------------ chat
function chat(panel, pick, picker, signal) {
  const log = h('div.chat', { id: 'chat-log', 'aria-live': 'polite' });
  const prompt = h('textarea', { id: 'prompt', rows: '3', placeholder: 'Say something (Enter sends, Shift+Enter: new line)' });
  const system = h('input', { id: 'system', size: 40, placeholder: 'optional system prompt' });
  const maxTokens = h('input', { id: 'max-tokens', type: 'number', min: '1', max: '32768', value: '256' });
  const temperature = h('input', { id: 'temperature', type: 'number', min: '0', max: '2', step: '0.1', value: '0.7' });
  const sendBtn = h('button.primary', { type: 'submit' }, 'Send');
  const stop = h('button', { type: 'button', disabled: true }, 'Stop');
  const clear = h('button', { type: 'button' }, 'New chat');
  const figures = h('div.figures', { id: 'figures', 'aria-live': 'polite' });
  const err = h('div');
  const form = h('form.stack', null, h('div.row', null, pick, h('label', { for: 'system' }, 'System', system),
    h('label', { for: 'max-tokens' }, 'Max tokens', maxTokens), h('label', { for: 'temperature' }, 'Temperature', temperature)),
  log, prompt, h('div.row', null, sendBtn, stop, clear, figures), err);
  panel.append(form);
  let history = [];
  let running = null;
  clear.addEventListener('click', () => { history = []; log.replaceChildren(); figures.replaceChildren(); prompt.focus(); });
  stop.addEventListener('click', () => running?.abort());
  signal.addEventListener('abort', () => running?.abort());
  prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = prompt.value.trim();
    if (!text || running) return;
    err.replaceChildren();
    prompt.value = '';
    history.push({ role: 'user', content: text });
    log.append(h('div.msg.user', null, text));
    const out = h('div.msg.assistant', { 'data-streaming': 'true' });
    log.append(out);
    const messages = system.value.trim() ? [{ role: 'system', content: system.value.trim() }, ...history] : history;
    running = new AbortController();
    sendBtn.disabled = true; stop.disabled = false;
    const t0 = performance.now();
    let first = null; let last = null; let pieces = 0; let usage = null; let answer = '';
    const show = () => {
      const gen = first != null && last > first ? (usage?.completion_tokens || pieces) / ((last - first) / 1000) : null;
      figures.replaceChildren(
        h('span', null, 'first token ', h('b', { id: 'ttft' }, first == null ? '…' : ms((first - t0) / 1000))),
        h('span', null, 'tokens/s ', h('b', { id: 'tps' }, gen == null ? '…' : gen.toFixed(1))),
        h('span', null, 'tokens ', h('b', null, String(usage?.completion_tokens ?? pieces))),
        h('span', null, 'total ', h('b', null, ms(((last ?? performance.now()) - t0) / 1000))));
    };
    try {
      const body = { model: picker.value, messages, stream: true, max_tokens: Number(maxTokens.value) || 256,
        temperature: Number(temperature.value) };
      for await (const ev of sse('/v1/chat/completions', { method: 'POST', signal: running.signal,
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })) {
        if (ev.data === '[DONE]') break;
        const d = JSON.parse(ev.data);
        if (d.error) throw new Error(d.error.message || JSON.stringify(d.error));
        if (d.usage) usage = d.usage;
        const piece = d.choices?.[0]?.delta?.content;
        if (piece) {
          const now = performance.now();
          if (first == null) first = now;
          last = now;
          pieces++;
          answer += piece;
          out.textContent = answer;
          log.scrollTop = log.scrollHeight;
          show();
        }
      }
    } catch (x) {
      if (x.name !== 'AbortError') err.replaceChildren(errorBox(x));
    } finally {
      last = last ?? performance.now();
      show();
      out.removeAttribute('data-streaming');
      if (answer) history.push({ role: 'assistant', content: answer }); else out.remove();
      running = null;
      sendBtn.disabled = false; stop.disabled = true;
      prompt.focus();
    }
  });
  prompt.focus();
}

// ------------------------------------------------------------------ embeddings
function embeddings(panel, pick, picker) {
  const a = h('textarea', { id: 'text-a', rows: '3' }, 'The cat sits on the mat.');
  const b = h('textarea', { id: 'text-b', rows: '3' }, 'A kitten is resting on a rug.');
  const result = h('div', { id: 'similarity', 'aria-live': 'polite' });
  const go = h('button.primary', { type: 'submit' }, 'Compare');
  const form = h('form.stack', null, pick, h('label', { for: 'text-a' }, 'First text', a), h('label', { for: 'text-b' }, 'Second text', b),
    h('div.row', null, go), result);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    go.disabled = true;
    const t0 = performance.now();
    try {
      const r = await send('/v1/embeddings', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: picker.value, input: [a.value, b.value] }) });
      const out = await r.json();
      const [x, y] = out.data.map((d) => d.embedding);
      const cos = x.reduce((acc, v, i) => acc + v * y[i], 0) / (Math.hypot(...x) * Math.hypot(...y));
      result.replaceChildren(h('div.big', { 'data-value': cos.toFixed(4) }, cos.toFixed(3)),
        h('div.figures', null, h('span', null, 'cosine similarity'), h('span', null, 'dimensions ', h('b', null, String(x.length))),
          h('span', null, 'time ', h('b', null, ms((performance.now() - t0) / 1000)))));
    } catch (x) {
      result.replaceChildren(errorBox(x));
    } finally {
      go.disabled = false;
    }
  });
  panel.append(form);
}

// ------------------------------------------------------------------ speak
function speak(panel, pick, picker) {
  const text = h('textarea', { id: 'speak-text', rows: '3' }, 'Hello from aima. This speech was made on this machine.');
  const voice = h('select', { id: 'voice' }, h('option', { value: '' }, 'default'));
  const go = h('button.primary', { type: 'submit' }, 'Speak');
  const result = h('div.stack', { id: 'speech', 'aria-live': 'polite' });
  const form = h('form.stack', null, h('div.row', null, pick, h('label', { for: 'voice' }, 'Voice', voice)),
    h('label', { for: 'speak-text' }, 'Text', text), h('div.row', null, go), result);
  let url = null;
  const voices = async () => {
    voice.replaceChildren(h('option', { value: '' }, 'default'));
    try {
      const r = await send(`/v1/audio/voices?model=${encodeURIComponent(picker.value)}`);
      const out = await r.json();
      for (const v of out.data || []) {
        const id = typeof v === 'string' ? v : v.id || v.name;
        if (id) voice.append(h('option', { value: id }, id));
      }
    } catch { /* an engine without voices: the default one */ }
  };
  picker.addEventListener('change', voices);
  voices();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    go.disabled = true;
    const t0 = performance.now();
    try {
      const body = { model: picker.value, input: text.value, response_format: 'wav' };
      if (voice.value) body.voice = voice.value;
      const r = await send('/v1/audio/speech', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body) });
      const blob = await r.blob();
      const took = (performance.now() - t0) / 1000;
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(blob);
      const audio = h('audio', { id: 'speech-audio', controls: true, src: url, preload: 'auto' });
      const facts = h('div.figures', null, h('span', null, 'made in ', h('b', null, ms(took))),
        h('span', null, 'size ', h('b', null, `${Math.round(blob.size / 1024)} KiB`)));
      audio.addEventListener('loadedmetadata', () => {
        facts.append(h('span', null, 'length ', h('b', { id: 'speech-length' }, `${audio.duration.toFixed(2)} s`)),
          h('span', null, 'real-time factor ', h('b', null, (took / audio.duration).toFixed(2))));
      });
      result.replaceChildren(audio, facts);
    } catch (x) {
      result.replaceChildren(errorBox(x));
    } finally {
      go.disabled = false;
    }
  });
  panel.append(form);
}

// ------------------------------------------------------------------ transcribe
function transcribe(panel, pick, picker, signal) {
  const file = h('input', { id: 'audio-file', type: 'file', accept: 'audio/*,.wav,.mp3,.ogg,.flac,.webm,.m4a' });
  const go = h('button.primary', { type: 'submit' }, 'Transcribe');
  const rec = h('button', { type: 'button', id: 'record', 'aria-pressed': 'false' }, '● Record');
  const result = h('div.stack', { id: 'transcript', 'aria-live': 'polite' });
  const form = h('form.stack', null, pick, h('div.row', null, h('label', { for: 'audio-file' }, 'Audio file', file), go,
    h('span.muted', null, 'or'), rec), result);
  const run = async (blob, name) => {
    go.disabled = true;
    result.replaceChildren(h('p.muted', null, `Transcribing ${name}…`));
    const t0 = performance.now();
    try {
      const fd = new FormData();
      fd.append('file', blob, name);
      fd.append('model', picker.value);
      const r = await send('/v1/audio/transcriptions', { method: 'POST', body: fd });
      const out = await r.json();
      result.replaceChildren(h('blockquote', { id: 'transcript-text' }, out.text ?? JSON.stringify(out)),
        h('div.figures', null, h('span', null, 'file ', h('b', null, name)), h('span', null, 'time ', h('b', null, ms((performance.now() - t0) / 1000))),
          out.duration ? h('span', null, 'audio ', h('b', null, `${Number(out.duration).toFixed(2)} s`)) : null));
    } catch (x) {
      result.replaceChildren(errorBox(x));
    } finally {
      go.disabled = false;
    }
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = file.files[0];
    if (!f) { result.replaceChildren(errorBox('choose an audio file first, or record')); return; }
    run(f, f.name);
  });
  let recorder = null;
  rec.addEventListener('click', async () => {
    if (recorder) { recorder.stop(); return; }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (x) {
      result.replaceChildren(errorBox(`the microphone is not available: ${x.message}`));
      return;
    }
    const chunks = [];
    recorder = new MediaRecorder(stream);
    recorder.addEventListener('dataavailable', (e) => chunks.push(e.data));
    recorder.addEventListener('stop', () => {
      stream.getTracks().forEach((t) => t.stop());
      rec.textContent = '● Record';
      rec.setAttribute('aria-pressed', 'false');
      const type = recorder.mimeType || 'audio/webm';
      recorder = null;
      if (!signal.aborted) run(new Blob(chunks, { type }), `recording.${type.includes('ogg') ? 'ogg' : 'webm'}`);
    });
    signal.addEventListener('abort', () => recorder?.stop());
    recorder.start();
    rec.textContent = '■ Stop recording';
    rec.setAttribute('aria-pressed', 'true');
  });
  panel.append(form);
}
