// What the browser and ONNX Runtime tests share: the npm packages from tools/setup_node.sh, the
// server process (started on a free port, stopped with SIGTERM and checked to exit 0 and free the
// port), Chromium through playwright-core, and MNIST's test digits.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

export const SKIP = 77;

export function skip(reason) {
  console.log(`SKIP: ${reason}`);
  process.exit(SKIP);
}

let failures = 0;
export function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures += 1;
  return ok;
}
export function finish(passed) {
  console.log(`${passed} passed, ${failures} failed`);
  process.exit(failures ? 1 : 0);
}
export function failed() {
  return failures;
}

// The packages tools/setup_node.sh put in $MG_NODE_DIR (default <repo>/.node).
export function nodePackages(...names) {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 20) skip(`Node.js ${process.versions.node} is too old for playwright-core (20 or later)`);
  const dir = process.env.MG_NODE_DIR;
  if (!dir || !fs.existsSync(path.join(dir, 'node_modules'))) {
    skip(`npm packages not installed in ${dir || '$MG_NODE_DIR'} (run tools/setup_node.sh)`);
  }
  const require = createRequire(path.join(dir, 'package.json'));
  return names.map((n) => {
    try {
      return require(n);
    } catch (e) {
      skip(`${n} not installed in ${dir} (run tools/setup_node.sh): ${e.message}`);
    }
    return null;
  });
}

export function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// Starts `bin args...` and waits for the line naming its URL (`pattern` captures it).
export function startProcess(bin, args, pattern, timeoutMs = 120000) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = { text: '' };
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${path.basename(bin)} ${args.join(' ')}: no URL within ${timeoutMs} ms:\n${out.text}`));
    }, timeoutMs);
    const onData = (d) => {
      out.text += d.toString();
      const m = out.text.match(pattern);
      if (m && !out.url) {
        out.url = m[1];
        clearTimeout(timer);
        resolve({ proc, url: m[1], out });
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code, signal) => {
      out.exit = { code, signal };
      if (!out.url) {
        clearTimeout(timer);
        reject(new Error(`${path.basename(bin)} exited (${code ?? signal}) before serving:\n${out.text}`));
      }
    });
  });
}

export function waitFor(predicate, timeoutMs, stepMs = 200) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const tick = async () => {
      let ok = false;
      try {
        ok = await predicate();
      } catch (e) {
        ok = false;
      }
      if (ok) return resolve(true);
      if (Date.now() - t0 > timeoutMs) return resolve(false);
      setTimeout(tick, stepMs);
    };
    tick();
  });
}

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', () => resolve(true));
  });
}

// SIGTERM, then: exit status 0 within 30 s, "stopped" printed, the port closed.
export async function stopServer(server) {
  const port = Number(new URL(server.url).port);
  const exited = new Promise((resolve) => {
    if (server.out.exit) return resolve(server.out.exit);
    server.proc.on('exit', (code, signal) => resolve({ code, signal }));
  });
  server.proc.kill('SIGTERM');
  const timeout = new Promise((resolve) => setTimeout(() => resolve(null), 30000));
  const status = await Promise.race([exited, timeout]);
  if (!status) server.proc.kill('SIGKILL');
  check(status && status.code === 0, `SIGTERM stops the server with exit status 0 (${JSON.stringify(status)})`);
  check(/stopped\s*$/.test(server.out.text), 'it says it stopped');
  check(await portFree(port), `port ${port} is released`);
}

export async function launchBrowser(playwright) {
  const profile = tempDir('mg-chromium-');
  return playwright.chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1200, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// A screenshot is "not blank" when it has many colours and a fair share of non-background pixels:
// measured by Chromium itself on a blank page (Node has no PNG decoder).
export async function screenshotStats(context, png) {
  const page = await context.newPage();
  await page.setContent('<canvas id="c"></canvas>');
  const stats = await page.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.getElementById('c');
    c.width = img.width;
    c.height = img.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    const colours = new Set();
    let ink = 0;
    const bg = [d[0], d[1], d[2]];
    for (let i = 0; i < d.length; i += 4) {
      colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      if (Math.abs(d[i] - bg[0]) + Math.abs(d[i + 1] - bg[1]) + Math.abs(d[i + 2] - bg[2]) > 30) ink += 1;
    }
    return { width: c.width, height: c.height, colours: colours.size, ink: ink / (d.length / 4) };
  }, png.toString('base64'));
  await page.close();
  return stats;
}

// MNIST's test images and labels (IDX, raw or .gz) from `dir`.
export function mnistTest(dir) {
  const read = (name) => {
    for (const n of [name, `${name}.gz`]) {
      const p = path.join(dir, n);
      if (fs.existsSync(p)) {
        const b = fs.readFileSync(p);
        return n.endsWith('.gz') ? zlib.gunzipSync(b) : b;
      }
    }
    skip(`no MNIST in ${dir} (run tools/get_mnist.sh)`);
    return null;
  };
  const images = read('t10k-images-idx3-ubyte');
  const labels = read('t10k-labels-idx1-ubyte');
  return {
    count: labels.length - 8,
    image: (k) => images.subarray(16 + 784 * k, 16 + 784 * (k + 1)),
    label: (k) => labels[8 + k],
  };
}

export function pgm(pixels, width = 28, height = 28) {
  return Buffer.concat([Buffer.from(`P5\n${width} ${height}\n255\n`), Buffer.from(pixels)]);
}
