// mnist_gpu train --serve in a real browser: the page shows the running job (device, epoch and
// step progress, images/s), the curves grow epoch by epoch, and at the end the test accuracy, a
// link to report.html that opens the report, and the drawing pad with the trained model. Then
// SIGTERM stops the server cleanly.
//   node tests/train_serve_browser.mjs MNIST_GPU DATA_DIR WORK_DIR [SCREENSHOT.png]
import fs from 'node:fs';
import path from 'node:path';
import {
  check, finish, launchBrowser, nodePackages, skip, startProcess, stopServer, waitFor,
} from './serve_util.mjs';

const [bin, dataDir, work, screenshotOut] = process.argv.slice(2);
if (!fs.existsSync(path.join(dataDir, 't10k-labels-idx1-ubyte')) &&
    !fs.existsSync(path.join(dataDir, 't10k-labels-idx1-ubyte.gz'))) {
  skip(`no MNIST in ${dataDir} (run tools/get_mnist.sh)`);
}
if (!fs.existsSync('/usr/bin/chromium')) skip('/usr/bin/chromium is not installed (apt-get install chromium)');
const [playwright] = nodePackages('playwright-core');

// Epochs of a few seconds each (a conv layer at batch 128), so that the page, which polls once a
// second, shows the run between epochs on a fast machine too; a dense-only model trains an epoch
// in a fraction of a second and could finish between two polls.
const EPOCHS = 3;
fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });
const runDir = path.join(work, 'run');
const server = await startProcess(bin, [
  'train', '--serve', '0', '--device', 'cpu', '--data', dataDir, '--model', 'conv32,pool,flatten,dense16',
  '--epochs', String(EPOCHS), '--out', runDir,
], /live view: (http:\/\/127\.0\.0\.1:\d+\/)/);
console.log(`live view: ${server.url}`);

const context = await launchBrowser(playwright);
let passed = 0;
const ok = (cond, what) => {
  if (check(cond, what)) passed += 1;
};
try {
  const page = await context.newPage();
  await page.goto(server.url);
  ok(await waitFor(() => page.isVisible('#training'), 15000), 'the training view is shown');

  // Watch until done: what the page shows, every 250 ms.
  const seen = { points: new Set(), epochTexts: new Set(), steps: new Set(), speeds: [], devices: new Set() };
  let shot = false;
  const done = await waitFor(async () => {
    const s = await page.evaluate(() => ({
      status: document.getElementById('train-status').textContent,
      points: document.querySelectorAll('#chart-accuracy .point').length,
      epoch: document.getElementById('epoch-text').textContent,
      step: document.getElementById('step-text').textContent,
      speed: document.getElementById('stat-speed').textContent,
      device: document.getElementById('stat-device').textContent,
    }));
    seen.points.add(s.points);
    seen.epochTexts.add(s.epoch);
    if (s.step) seen.steps.add(s.step);
    if (/^[\d,]+$/.test(s.speed)) seen.speeds.push(Number(s.speed.replace(/,/g, '')));
    seen.devices.add(s.device);
    if (screenshotOut && !shot && s.points >= 4 && s.status === 'training') {
      shot = true;
      fs.mkdirSync(path.dirname(screenshotOut), { recursive: true });
      fs.writeFileSync(screenshotOut, await page.screenshot({ fullPage: true }));
      console.log(`screenshot: ${screenshotOut}`);
    }
    return s.status === 'done';
  }, 900000, 250);
  ok(done, 'the run is shown as done');
  const points = [...seen.points].sort((a, b) => a - b);
  // Two series (training, validation): 2 points per epoch, seen growing from 0 through at least
  // one epoch's worth before the last (2 or 4) to all 6.
  ok(points.some((n) => n > 0 && n < 2 * EPOCHS && n % 2 === 0) && points.includes(2 * EPOCHS),
     `the accuracy curves grew epoch by epoch (points seen: ${points.join(', ')})`);
  ok([...seen.epochTexts].some((t) => new RegExp(`^epoch [12]/${EPOCHS}$`).test(t)),
     `epoch progress shown (${[...seen.epochTexts].join(', ')})`);
  ok([...seen.steps].some((s) => /^step \d+\/383$/.test(s)), `step progress shown (${[...seen.steps].slice(0, 4).join(', ')}, ...)`);
  ok(seen.speeds.length > 0 && Math.max(...seen.speeds) > 100, `images/s shown (up to ${Math.max(0, ...seen.speeds)})`);
  ok([...seen.devices].some((d) => /cpu/i.test(d)), `the device shown (${[...seen.devices].filter((d) => d !== '–').join(', ')})`);
  ok(/%$/.test(await page.textContent('#stat-test')), `the test accuracy shown: ${await page.textContent('#stat-test')}`);

  ok(await page.isVisible('#report-link'), 'the report link is shown');
  const [report] = await Promise.all([context.waitForEvent('page'), page.click('#report-link')]);
  await report.waitForLoadState();
  ok(/training run/.test(await report.title()), `report.html opens from the link: "${await report.title()}"`);
  ok(await report.isVisible('#curves'), 'the report shows its curves');
  // After training, the page also offers the trained model.
  ok(await waitFor(() => page.isVisible('#playground'), 60000), 'the drawing pad appears with the trained model');
  ok(/test accuracy/.test(await page.textContent('#model-line')), `model line: ${await page.textContent('#model-line')}`);
} catch (e) {
  check(false, `browser test: ${e.stack}`);
} finally {
  await context.close();
  await stopServer(server);
}
ok(fs.existsSync(path.join(runDir, 'report.html')) && fs.existsSync(path.join(runDir, 'checkpoint.safetensors')),
   'the run folder holds report.html and the checkpoint');
ok(/^test: loss=[\d.]+ accuracy=[\d.]+$/m.test(server.out.text), 'train printed its test line');
finish(passed + 3);
