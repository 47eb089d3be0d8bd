// mnist_gpu compare end to end: trains eight tiny runs on real MNIST (dense models, two epochs, the
// CPU; different seeds, widths, dropout and augmentation), compares two and then all eight, and
// opens each compare.html in headless Chromium: every picture is there, drawn, with one curve per
// run and a legend naming each run; the table ranks the runs by test accuracy and marks the best.
// Also: a folder that is not a run and an existing --out are refused with nothing written.
//   node tests/compare_browser.mjs MNIST_GPU DATA_DIR WORK_DIR [SCREENSHOT.png]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { check, finish, launchBrowser, nodePackages, screenshotStats, skip } from './serve_util.mjs';

const [bin, dataDir, work, screenshotOut] = process.argv.slice(2);
if (!fs.existsSync(path.join(dataDir, 't10k-labels-idx1-ubyte')) &&
    !fs.existsSync(path.join(dataDir, 't10k-labels-idx1-ubyte.gz'))) {
  skip(`no MNIST in ${dataDir} (run tools/get_mnist.sh)`);
}
if (!fs.existsSync('/usr/bin/chromium')) skip('/usr/bin/chromium is not installed (apt-get install chromium)');
const [playwright] = nodePackages('playwright-core');

let passed = 0;
const ok = (cond, what) => {
  if (check(cond, what)) passed += 1;
};
// One BLAS/OpenMP thread: tiny models train several times faster so on a busy machine.
const env = { ...process.env, OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: '1' };
const mnist = (args) => spawnSync(bin, args, { encoding: 'utf8', timeout: 300000, env });

fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });
const RUNS = [
  ['seed1', ['--model', 'dense16', '--seed', '1']],
  ['seed2', ['--model', 'dense16', '--seed', '2']],
  ['wide', ['--model', 'dense64']],
  ['narrow', ['--model', 'dense8']],
  ['dropout', ['--model', 'dense16,drop0.5']],
  ['deeper', ['--model', 'dense16,dense16']],
  ['dense32', ['--model', 'dense32']],
  ['augmented', ['--model', 'dense16', '--augment']],
];
const t0 = Date.now();
const dirs = [];
for (const [name, args] of RUNS) {
  const dir = path.join(work, name);
  const r = mnist(['train', '--device', 'cpu', '--data', dataDir, '--epochs', '2', '--batch-size', '512',
                   '--lr', '0.003', '--no-download', '--out', dir, ...args]);
  if (r.status !== 0) {
    console.log(r.stdout, r.stderr);
    check(false, `train ${name} exits 0`);
    finish(passed);
  }
  dirs.push(dir);
}
console.log(`trained ${RUNS.length} runs in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

// Refusals: nothing written.
const notRun = mnist(['compare', dirs[0], dataDir, '--out', path.join(work, 'refused')]);
ok(notRun.status !== 0 && notRun.stderr.includes(`${dataDir}: not a run folder`),
   `a folder that is not a run is refused, naming it (${notRun.stderr.trim()})`);
ok(!fs.existsSync(path.join(work, 'refused')), 'a refused comparison writes nothing');

const browser = await launchBrowser(playwright);
const FILES = ['accuracy.svg', 'loss.svg', 'generalization_gap.svg', 'per_class_f1.svg', 'confusion_diff.svg'];
try {
  for (const count of [2, 8]) {
    const out = path.join(work, `compare${count}`);
    const given = dirs.slice(0, count);
    const r = mnist(['compare', ...given, '--out', out]);
    ok(r.status === 0, `compare of ${count} runs exits 0 ${r.status === 0 ? '' : r.stderr}`);
    for (const f of [...FILES, 'compare.html']) ok(fs.existsSync(path.join(out, f)), `${count} runs: ${f} written`);

    // The ranking compare prints must be the test accuracies of metrics.json, best first.
    const acc = given.map((d) => JSON.parse(fs.readFileSync(path.join(d, 'metrics.json'))).test.accuracy);
    const best = Math.max(...acc);
    const page = await browser.newPage();
    await page.goto(pathToFileURL(path.join(out, 'compare.html')).href);
    const s = await page.evaluate(() => {
      const svgs = [...document.querySelectorAll('figure svg')].map((e) => {
        const b = e.getBoundingClientRect();
        return { w: b.width, h: b.height, lines: e.querySelectorAll('polyline').length,
                 rects: e.querySelectorAll('rect').length, text: e.textContent };
      });
      const rows = [...document.querySelectorAll('#runs tr')].slice(1).map((tr) => ({
        cls: tr.className, cells: [...tr.children].map((td) => td.textContent),
      }));
      const links = [...document.querySelectorAll('figcaption a')].map((a) => a.getAttribute('href'));
      return { svgs, rows, links };
    });
    ok(s.svgs.length === FILES.length, `${count} runs: ${s.svgs.length} pictures on the page`);
    ok(s.svgs.every((v) => v.w > 300 && v.h > 200), `${count} runs: every picture drawn at a readable size`);
    ok(JSON.stringify(s.links) === JSON.stringify(FILES), `${count} runs: each picture links its SVG file`);
    // accuracy and loss: a training and a validation curve per run; the gap one per run
    ok(s.svgs[0].lines === 2 * count && s.svgs[1].lines === 2 * count && s.svgs[2].lines === count,
       `${count} runs: one curve per run in each panel (${s.svgs.slice(0, 3).map((v) => v.lines)})`);
    const names = RUNS.slice(0, count).map(([n]) => n);
    ok(names.every((n) => s.svgs[0].text.includes(`${n}: `)), `${count} runs: the legend names every run and its spec`);
    ok(s.svgs[3].rects >= 10 * count, `${count} runs: ten F1 bars per run`);
    ok(s.rows.length === count, `${count} runs: a table row per run`);
    const shown = s.rows.map((row) => Number(row.cells[7].replace('%', '')) / 100);
    ok(shown.every((v, i) => i === 0 || v <= shown[i - 1] + 1e-12), `${count} runs: rows sorted by test accuracy (${shown})`);
    ok(Math.abs(shown[0] - best) < 1e-4 && s.rows[0].cls === 'best' && s.rows[0].cells[1].includes('best'),
       `${count} runs: the best run (${(100 * best).toFixed(2)}%) is first and marked`);

    // Each SVG file opens on its own, too.
    for (const f of FILES) {
      await page.goto(pathToFileURL(path.join(out, f)).href);
      const size = await page.evaluate(() => {
        const b = document.documentElement.getBoundingClientRect();
        return { w: b.width, h: b.height, root: document.documentElement.tagName };
      });
      ok(size.root === 'svg' && size.w > 300 && size.h > 200, `${count} runs: ${f} renders alone`);
    }
    await page.goto(pathToFileURL(path.join(out, 'compare.html')).href);
    const png = await page.screenshot({ fullPage: true });
    const st = await screenshotStats(browser, png);
    ok(st.colours > 50 && st.ink > 0.05, `${count} runs: the page is not blank (${st.colours} colours)`);
    if (screenshotOut && count === 8) {
      fs.mkdirSync(path.dirname(screenshotOut), { recursive: true });
      fs.writeFileSync(screenshotOut, png);
    }
    await page.close();
  }
  const again = mnist(['compare', dirs[0], dirs[1], '--out', path.join(work, 'compare2')]);
  ok(again.status !== 0 && again.stderr.includes('already exists'), 'an existing --out is refused');
} finally {
  await browser.close();
}
finish(passed);
