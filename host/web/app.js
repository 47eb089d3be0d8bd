// The page of mnist_gpu serve and train --serve: a drawing pad that asks /api/predict as you draw,
// and the live view of a training run (polls /api/train). No library, no network but this server.
'use strict';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';

async function getJSON(url, options) {
  const response = await fetch(url, Object.assign({ cache: 'no-store' }, options));
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = { error: `HTTP ${response.status}` };
  }
  if (!response.ok) throw new Error(body && body.error ? body.error : `HTTP ${response.status}`);
  return body;
}

function percent(x) {
  return `${(100 * x).toFixed(x >= 0.9995 || x < 0.0005 ? 1 : 2)}%`;
}

function formatSeconds(s) {
  s = Math.round(s);
  const m = Math.floor(s / 60);
  return m > 0 ? `${m} min ${String(s % 60).padStart(2, '0')} s` : `${s} s`;
}

// --- the model card --------------------------------------------------------------------------

let classes = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

async function showModel() {
  const m = await getJSON('/api/model');
  classes = m.classes;
  const parts = [m.spec, m.dataset, `${m.param_count.toLocaleString('en-US')} parameters`,
                 `${m.epochs} epoch${m.epochs === 1 ? '' : 's'}`];
  if (m.test_accuracy !== null) parts.push(`test accuracy ${percent(m.test_accuracy)}`);
  parts.push(`device ${m.device}`);
  $('model-line').textContent = parts.join(' · ');
  $('model-line').title = m.test_source || '';
  buildBars();
}

// --- the drawing pad -------------------------------------------------------------------------

const pad = { canvas: null, ctx: null, drawing: false, inked: false, last: null };
let inflight = false;
let dirty = false;

function clearPad() {
  pad.ctx.fillStyle = '#000';
  pad.ctx.fillRect(0, 0, pad.canvas.width, pad.canvas.height);
  pad.inked = false;
  $('digit').textContent = '?';
  $('label').textContent = '';
  $('confidence').textContent = '';
  $('message').textContent = '';
  showBars(null);
  $('seen').getContext('2d').clearRect(0, 0, 28, 28);
  $('saliency-figure').hidden = true;
}

function padPoint(event) {
  const r = pad.canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - r.left) * pad.canvas.width) / r.width,
    y: ((event.clientY - r.top) * pad.canvas.height) / r.height,
  };
}

function strokeTo(p) {
  const ctx = pad.ctx;
  ctx.strokeStyle = '#fff';
  ctx.fillStyle = '#fff';
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.lineWidth = 20;
  ctx.beginPath();
  if (pad.last) {
    ctx.moveTo(pad.last.x, pad.last.y);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
  } else {
    ctx.arc(p.x, p.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
  }
  pad.last = p;
  pad.inked = true;
}

function setUpPad() {
  pad.canvas = $('pad');
  pad.ctx = pad.canvas.getContext('2d');
  clearPad();
  pad.canvas.addEventListener('pointerdown', (e) => {
    pad.canvas.setPointerCapture(e.pointerId);
    pad.drawing = true;
    pad.last = null;
    strokeTo(padPoint(e));
    askModel();
  });
  pad.canvas.addEventListener('pointermove', (e) => {
    if (!pad.drawing) return;
    for (const ev of e.getCoalescedEvents ? e.getCoalescedEvents() : [e]) strokeTo(padPoint(ev));
    askModel();
  });
  const end = () => {
    if (!pad.drawing) return;
    pad.drawing = false;
    pad.last = null;
    askModel();
  };
  pad.canvas.addEventListener('pointerup', end);
  pad.canvas.addEventListener('pointercancel', end);
  $('clear').addEventListener('click', clearPad);
  $('upload').addEventListener('change', upload);
}

// One request at a time: strokes drawn meanwhile are sent with the next one.
function askModel() {
  if (!pad.inked) return;
  if (inflight) {
    dirty = true;
    return;
  }
  inflight = true;
  dirty = false;
  pad.canvas.toBlob(async (blob) => {
    try {
      await predict(blob, 'image/png');
    } finally {
      inflight = false;
      if (dirty) askModel();
    }
  }, 'image/png');
}

async function upload() {
  const file = $('upload').files[0];
  if (!file) return;
  $('upload').value = '';
  try {
    const bitmap = await createImageBitmap(file);
    clearPad();
    const scale = Math.min(pad.canvas.width / bitmap.width, pad.canvas.height / bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    pad.ctx.drawImage(bitmap, (pad.canvas.width - w) / 2, (pad.canvas.height - h) / 2, w, h);
    pad.inked = true;
  } catch (e) {
    // The browser cannot show it (a PGM, say); the server may still read it.
  }
  await predict(file, file.type || 'application/octet-stream');
}

async function predict(body, type) {
  try {
    const r = await getJSON('/api/predict', {
      method: 'POST', headers: { 'Content-Type': type }, body,
    });
    showAnswer(r);
    $('message').textContent = '';
  } catch (e) {
    $('message').textContent = e.message;
  }
}

// --- the answer ------------------------------------------------------------------------------

function buildBars() {
  const bars = $('bars');
  bars.replaceChildren();
  classes.forEach((name, k) => {
    const row = document.createElement('div');
    row.className = 'bar-row';
    row.id = `bar-${k}`;
    row.style.display = 'contents';
    const label = document.createElement('span');
    label.textContent = name;
    const bar = document.createElement('div');
    bar.className = 'bar';
    bar.appendChild(document.createElement('div'));
    const value = document.createElement('span');
    value.className = 'value';
    row.append(label, bar, value);
    bars.appendChild(row);
  });
}

function showBars(probabilities) {
  classes.forEach((_, k) => {
    const row = $(`bar-${k}`);
    if (!row) return;
    const p = probabilities ? probabilities[k] : 0;
    row.querySelector('.bar > div').style.width = `${(100 * p).toFixed(1)}%`;
    row.querySelector('.value').textContent = probabilities ? percent(p) : '';
    row.classList.toggle('best', !!probabilities && p === Math.max(...probabilities));
  });
}

function drawGray(canvas, pixels, colour) {
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; ++i) {
    const [r, g, b] = colour(pixels[i]);
    image.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(image, 0, 0);
}

// Black, red, yellow, white: the larger, the hotter.
function heat(v) {
  const t = Math.max(0, Math.min(1, v));
  return [Math.min(255, 765 * t), Math.max(0, Math.min(255, 765 * t - 255)),
          Math.max(0, 765 * t - 510)];
}

function showAnswer(r) {
  $('digit').textContent = r.label.length <= 2 ? r.label : String(r.digit);
  $('label').textContent = r.label.length <= 2 ? '' : r.label;
  $('confidence').textContent = `${percent(r.probabilities[r.digit])} sure · ${r.milliseconds.toFixed(1)} ms`;
  showBars(r.probabilities);
  drawGray($('seen'), r.input, (v) => [v, v, v]);
  // A saliency map, where the API gives one: 784 values, shown relative to their maximum.
  if (Array.isArray(r.saliency) && r.saliency.length === 784) {
    const peak = Math.max(...r.saliency.map(Math.abs)) || 1;
    drawGray($('saliency'), r.saliency, (v) => heat(Math.abs(v) / peak));
    $('saliency-figure').hidden = false;
  } else {
    $('saliency-figure').hidden = true;
  }
}

// --- the live training view ------------------------------------------------------------------

function chart(svg, epochs, series, fixedRange) {
  const W = 420, H = 240, L = 48, R = 12, T = 12, B = 40;
  svg.replaceChildren();
  const values = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  let [lo, hi] = fixedRange || [Math.min(...values), Math.max(...values)];
  if (!values.length) [lo, hi] = [0, 1];
  if (!fixedRange) {
    const pad_ = (hi - lo) * 0.08 || 0.05;
    lo = Math.max(0, lo - pad_);
    hi += pad_;
  }
  const x = (e) => L + ((W - L - R) * (epochs > 1 ? e - 1 : 0)) / Math.max(1, epochs - 1);
  const y = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo || 1));
  const el = (name, attrs, text) => {
    const n = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.appendChild(n);
    return n;
  };
  for (let i = 0; i <= 4; ++i) {
    const v = lo + ((hi - lo) * i) / 4;
    el('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: '#e5e7eb' });
    el('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#6b7280' },
       v.toFixed(hi - lo < 0.05 ? 4 : 3));
  }
  const step = Math.max(1, Math.ceil(epochs / 10));
  for (let e = 1; e <= epochs; e += step) {
    el('text', { x: x(e), y: H - 22, 'text-anchor': 'middle', 'font-size': 11, fill: '#6b7280' }, e);
  }
  el('text', { x: (L + W - R) / 2, y: H - 5, 'text-anchor': 'middle', 'font-size': 11, fill: '#9ca3af' },
     'epoch');
  for (const s of series) {
    const pts = s.values.map((v, i) => [x(i + 1), y(v)]);
    if (pts.length > 1) {
      el('polyline', { points: pts.map((p) => p.join(',')).join(' '), fill: 'none',
                       stroke: s.colour, 'stroke-width': 2.5 });
    }
    pts.forEach((p) => el('circle', { cx: p[0], cy: p[1], r: 3.5, fill: s.colour, class: 'point' }));
  }
}

let modelShown = false;

async function pollTraining() {
  let t;
  try {
    t = await getJSON('/api/train');
  } catch (e) {
    $('train-status').textContent = 'server gone';
    $('train-status').className = 'badge failed';
    return;
  }
  showTraining(t);
  if (t.status === 'done' || t.status === 'failed') {
    if (t.status === 'done' && !modelShown) await waitForModel();
    return;
  }
  setTimeout(pollTraining, 1000);
}

function showTraining(t) {
  const status = $('train-status');
  status.textContent = t.status;
  status.className = `badge ${t.status}`;
  if (t.spec) {
    $('train-spec').textContent =
        `${t.spec} · ${t.dataset} · ${t.param_count.toLocaleString('en-US')} parameters · ` +
        `batch ${t.batch_size} · train ${t.split.train}, val ${t.split.val}, test ${t.split.test}` +
        ` · ${t.run_dir}`;
  }
  if (t.epochs) {
    const done = t.history.length;
    $('epoch-text').textContent = `epoch ${t.epoch}/${t.epochs}`;
    $('step-text').textContent = t.status === 'training' ? `step ${t.step}/${t.steps}` : '';
    $('epoch-bar').style.width = `${(100 * done) / t.epochs}%`;
    $('step-bar').style.width = `${t.steps ? (100 * t.step) / t.steps : 0}%`;
    $('stat-device').textContent = t.device;
    $('stat-speed').textContent = t.images_per_second ? Math.round(t.images_per_second).toLocaleString('en-US') : '–';
    chart($('chart-accuracy'), t.epochs, [
      { values: t.history.map((h) => h.accuracy), colour: '#2563eb' },
      { values: t.history.map((h) => h.val_accuracy), colour: '#ea580c' },
    ]);
    chart($('chart-loss'), t.epochs, [
      { values: t.history.map((h) => h.loss), colour: '#2563eb' },
      { values: t.history.map((h) => h.val_loss), colour: '#ea580c' },
    ]);
  }
  $('stat-elapsed').textContent = formatSeconds(t.elapsed_seconds);
  $('stat-loss').textContent = t.running ? t.running.loss.toFixed(4) : '–';
  $('stat-acc').textContent = t.running ? percent(t.running.accuracy) : '–';
  if (t.test) $('stat-test').textContent = percent(t.test.accuracy);
  if (t.report) {
    $('report-link').href = t.report;
    $('report-link').hidden = false;
  }
  if (t.error) $('train-spec').textContent = t.error;
}

async function waitForModel() {
  for (let i = 0; i < 120 && !modelShown; ++i) {
    try {
      const h = await getJSON('/healthz');
      if (h.model) {
        await showModel();
        $('playground').hidden = false;
        modelShown = true;
        return;
      }
    } catch (e) {
      // the server is busy starting the model: try again shortly
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function start() {
  setUpPad();
  let h;
  try {
    h = await getJSON('/healthz');
  } catch (e) {
    $('model-line').textContent = `cannot reach the server: ${e.message}`;
    return;
  }
  if (h.mode === 'train') {
    $('training').hidden = false;
    $('model-line').textContent = 'watching a training run';
    pollTraining();
  }
  if (h.model) {
    await showModel();
    $('playground').hidden = false;
    modelShown = true;
  }
}

document.addEventListener('DOMContentLoaded', start);
