// mnist_gpu serve in a real browser (Debian's Chromium driven by playwright-core): digits drawn
// with mouse strokes on the canvas are recognised, the page shows what the network saw and the
// ten probabilities, an upload is classified, a bad upload is reported and the page goes on, and
// a screenshot of the page is not blank. Then SIGTERM stops the server cleanly.
//   node tests/serve_browser.mjs MNIST_GPU CHECKPOINT DATA_DIR [SCREENSHOT.png]
import fs from 'node:fs';
import path from 'node:path';
import {
  check, finish, launchBrowser, mnistTest, nodePackages, pgm, screenshotStats, skip,
  startProcess, stopServer, waitFor,
} from './serve_util.mjs';

const [bin, checkpoint, dataDir, screenshotOut] = process.argv.slice(2);
if (!fs.existsSync(checkpoint || '')) skip(`no checkpoint at ${checkpoint} (the serve fixture did not run)`);
if (!fs.existsSync('/usr/bin/chromium')) skip('/usr/bin/chromium is not installed (apt-get install chromium)');
const [playwright] = nodePackages('playwright-core');

// Strokes in the 280x280 pad's pixels: each a polyline drawn with the mouse button held.
const ellipse = (cx, cy, rx, ry) =>
  Array.from({ length: 41 }, (_, i) => [cx + rx * Math.sin((i / 40) * 2 * Math.PI),
                                        cy - ry * Math.cos((i / 40) * 2 * Math.PI)]);
const DIGITS = [
  { digit: '1', strokes: [[[145, 45], [140, 140], [136, 235]]] },
  { digit: '0', strokes: [ellipse(140, 140, 62, 90)] },
  { digit: '7', strokes: [[[75, 60], [140, 58], [205, 60], [170, 130], [135, 235]]] },
];

const server = await startProcess(bin, ['serve', checkpoint, '--port', '0', '--device', 'cpu'],
                                  /serving .* on (http:\/\/127\.0\.0\.1:\d+\/)/);
console.log(`server: ${server.url}`);
const context = await launchBrowser(playwright);
let passed = 0;
const ok = (cond, what) => {
  if (check(cond, what)) passed += 1;
};
try {
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  const external = [];
  page.on('request', (r) => !r.url().startsWith(server.url) && !r.url().startsWith('data:') &&
                            !r.url().startsWith('blob:') && external.push(r.url()));
  let pending = 0, answered = 0;
  page.on('request', (r) => r.url().endsWith('/api/predict') && (pending += 1));
  page.on('requestfinished', (r) => r.url().endsWith('/api/predict') && (pending -= 1, answered += 1));
  page.on('requestfailed', (r) => r.url().endsWith('/api/predict') && (pending -= 1));
  // Until no prediction is in flight and none has started for 800 ms.
  const settle = async () => {
    let last = -1, since = Date.now();
    await waitFor(() => {
      if (answered !== last) {
        last = answered;
        since = Date.now();
      }
      return pending === 0 && Date.now() - since > 800;
    }, 30000, 100);
  };

  await page.goto(server.url);
  ok(await waitFor(() => page.isVisible('#playground'), 15000), 'the drawing pad is shown');
  ok(/parameters/.test(await page.textContent('#model-line')), `the model line: ${await page.textContent('#model-line')}`);
  const pad = await page.locator('#pad').boundingBox();
  const scale = pad.width / 280;

  for (const { digit, strokes } of DIGITS) {
    await page.click('#clear');
    for (const stroke of strokes) {
      await page.mouse.move(pad.x + stroke[0][0] * scale, pad.y + stroke[0][1] * scale);
      await page.mouse.down();
      for (let i = 1; i < stroke.length; ++i) {
        await page.mouse.move(pad.x + stroke[i][0] * scale, pad.y + stroke[i][1] * scale, { steps: 6 });
      }
      await page.mouse.up();
    }
    await settle();
    const shown = (await page.textContent('#digit')).trim();
    ok(shown === digit, `a drawn ${digit} is shown as ${shown}`);
    // The page shows the server's answer for exactly what is on the canvas.
    const canvasPng = Buffer.from((await page.evaluate(() => document.getElementById('pad').toDataURL('image/png'))).split(',')[1], 'base64');
    const api = await (await fetch(`${server.url}api/predict`, { method: 'POST', headers: { 'Content-Type': 'image/png' }, body: canvasPng })).json();
    ok(api.label === shown, `the API says ${api.label} for the same canvas`);
    const bars = await page.$$eval('#bars .bar-row', (rows) => rows.map((r) => r.querySelector('.value').textContent));
    ok(bars.length === 10 && bars.every((b) => /%$/.test(b)), `ten probabilities shown (${bars.join(' ')})`);
    const best = await page.$eval('#bars .best', (r) => r.firstChild.textContent);
    ok(best === digit, `the highlighted bar is ${best}`);
    const seen = await page.evaluate(() => {
      const d = document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data;
      let lit = 0;
      for (let i = 0; i < d.length; i += 4) lit += d[i] > 64;
      return lit;
    });
    ok(seen > 30 && seen < 500, `the 28x28 the network saw has ${seen} lit pixels`);
    // The saliency map beside it: the API's field has 784 values in [0, 1], and the page drew it
    // (visible, many distinct non-black pixels, not one flat colour).
    ok(Array.isArray(api.saliency) && api.saliency.length === 784 &&
       api.saliency.every((v) => v >= 0 && v <= 1) && Math.max(...api.saliency) === 1,
       'the API gives a 28x28 saliency in [0, 1]');
    const heat = await page.evaluate(() => {
      const fig = document.getElementById('saliency-figure');
      const d = document.getElementById('saliency').getContext('2d').getImageData(0, 0, 28, 28).data;
      let hot = 0;
      const colours = new Set();
      for (let i = 0; i < d.length; i += 4) {
        hot += d[i] + d[i + 1] + d[i + 2] > 48;
        colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      }
      return { visible: !fig.hidden, hot, colours: colours.size };
    });
    ok(heat.visible && heat.hot > 10 && heat.colours > 5,
       `the saliency canvas is drawn (${heat.hot} hot pixels, ${heat.colours} colours)`);
    if (digit === '7' && screenshotOut) {
      const png = await page.screenshot({ fullPage: true });
      fs.mkdirSync(path.dirname(screenshotOut), { recursive: true });
      fs.writeFileSync(screenshotOut, png);
      console.log(`screenshot: ${screenshotOut}`);
    }
  }

  const png = await page.screenshot({ fullPage: true });
  const stats = await screenshotStats(context, png);
  ok(stats.colours > 50 && stats.ink > 0.05,
     `the screenshot is not blank (${stats.width}x${stats.height}, ${stats.colours} colours, ${(100 * stats.ink).toFixed(1)}% not background)`);

  // Upload: an MNIST test digit as a PGM (the browser cannot show one; the server reads it).
  const mnist = mnistTest(dataDir);
  const k = 0;
  const file = { name: 'digit.pgm', mimeType: 'image/x-portable-graymap', buffer: pgm(mnist.image(k)) };
  const expected = await (await fetch(`${server.url}api/predict`, { method: 'POST', headers: { 'Content-Type': file.mimeType }, body: file.buffer })).json();
  await page.setInputFiles('#upload', file);
  await settle();
  ok((await page.textContent('#digit')).trim() === expected.label,
     `an uploaded MNIST ${mnist.label(k)} is shown as the API's ${expected.label}`);

  // A bad upload: the message says why, and the page goes on working.
  await page.setInputFiles('#upload', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a picture') });
  ok(await waitFor(async () => /Content-Type|not a PNG/.test(await page.textContent('#message')), 10000),
     `a text file is refused: "${await page.textContent('#message')}"`);
  await page.click('#clear');
  const one = DIGITS[0].strokes[0];
  await page.mouse.move(pad.x + one[0][0] * scale, pad.y + one[0][1] * scale);
  await page.mouse.down();
  await page.mouse.move(pad.x + one[2][0] * scale, pad.y + one[2][1] * scale, { steps: 10 });
  await page.mouse.up();
  await settle();
  ok((await page.textContent('#digit')).trim() === '1', 'after it, a drawn 1 is recognised again');
  ok(external.length === 0, `the page loaded nothing from elsewhere (${external.join(', ') || 'none'})`);
  ok(consoleErrors.every((e) => /Failed to load resource.*(400|415)/.test(e)),
     `no script errors (${consoleErrors.join(' | ') || 'none'})`);
} catch (e) {
  check(false, `browser test: ${e.stack}`);
} finally {
  await context.close();
  await stopServer(server);
}
finish(passed + 3);
