// export --onnx checked by real runtimes: ONNX's Python checker (full check) accepts the file, and
// ONNX Runtime (onnxruntime-web under Node.js, its bundled WebAssembly) gives the probabilities
// that `mnist_gpu predict` gives, within 1e-5, on a few hundred MNIST test digits, in one dynamic
// batch and one image at a time. The 28x28 input predict fed its engine is read from serve's API,
// which runs the same preprocessing on the same bytes (and is checked to agree with predict).
//   node tests/onnx_runtime.mjs MNIST_GPU DATA_DIR WORK_DIR CHECKPOINT|train:SPEC...
// train:SPEC trains SPEC for one epoch first (a model shape the other checkpoints lack).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  check, finish, mnistTest, nodePackages, pgm, skip, startProcess, stopServer,
} from './serve_util.mjs';

const [bin, dataDir, work, ...models] = process.argv.slice(2);
const DIGITS = 300;
const TOLERANCE = 1e-5;
for (const c of models) {
  if (!c.startsWith('train:') && !fs.existsSync(c)) skip(`no checkpoint at ${c} (the serve fixture did not run)`);
}
const [ort] = nodePackages('onnxruntime-web');
const python = '/usr/bin/python3';
try {
  execFileSync(python, ['-c', 'import onnx']);
} catch (e) {
  skip('python3-onnx is not installed (apt-get install python3-onnx)');
}
ort.env.wasm.numThreads = 1;

fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(path.join(work, 'digits'), { recursive: true });
const mnist = mnistTest(dataDir);
const files = [];
for (let k = 0; k < DIGITS; ++k) {
  const f = path.join(work, 'digits', `${String(k).padStart(4, '0')}.pgm`);
  fs.writeFileSync(f, pgm(mnist.image(k)));
  files.push(f);
}

const checkpoints = models.map((m, k) => {
  if (!m.startsWith('train:')) return m;
  const out = path.join(work, `train-${k}`);
  execFileSync(bin, ['train', '--device', 'cpu', '--data', dataDir, '--model', m.slice(6), '--epochs', '1',
                     '--batch-size', '1024', '--lr', '0.003', '--out', out], { stdio: 'inherit' });
  return path.join(out, 'checkpoint.safetensors');
});

let passed = 0;
const ok = (cond, what) => {
  if (check(cond, what)) passed += 1;
};
const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

for (const [index, checkpoint] of checkpoints.entries()) {
  const onnxFile = path.join(work, `model-${index}.onnx`);
  const said = execFileSync(bin, ['export', checkpoint, '--onnx', onnxFile]).toString();
  console.log(said.trim());

  // ONNX's own checker, full check (with shape inference), and the graph's interface.
  const info = JSON.parse(execFileSync(python, ['-c', `
import json, sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
print(json.dumps({"version": onnx.__version__, "opset": [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")],
                  "inputs": [[i.name, dims(i), i.type.tensor_type.elem_type] for i in m.graph.input],
                  "outputs": [[o.name, dims(o)] for o in m.graph.output],
                  "ops": [n.op_type for n in m.graph.node],
                  "meta": {p.key: p.value for p in m.metadata_props}}))
`, onnxFile]).toString());
  ok(true, `python onnx ${info.version} checker (full_check) accepts ${path.basename(onnxFile)}: ${info.ops.join(' ')}`);
  ok(info.opset.length === 1 && info.opset[0] === 17, `opset ${info.opset}`);
  ok(JSON.stringify(info.inputs) === JSON.stringify([['input', ['N', 1, 28, 28], 1]]),
     `input ${JSON.stringify(info.inputs)}: float32 [N,1,28,28], N dynamic`);
  ok(JSON.stringify(info.outputs) === JSON.stringify([['probabilities', ['N', 10]]]),
     `output ${JSON.stringify(info.outputs)}`);

  // mnist_gpu predict on the digits: the reference probabilities.
  const predicted = JSON.parse(execFileSync(bin, ['predict', checkpoint, '--json', '--device', 'cpu', ...files],
                                            { maxBuffer: 64 << 20 }).toString());
  ok(predicted.length === DIGITS, `predict answered ${predicted.length} digits`);

  // The 28x28 inputs predict fed its engine: serve's API runs the same preprocessing.
  const server = await startProcess(bin, ['serve', checkpoint, '--port', '0', '--device', 'cpu'],
                                    /serving .* on (http:\/\/127\.0\.0\.1:\d+\/)/);
  const inputs = new Float32Array(DIGITS * 784);
  let serveDiff = 0;
  for (let k = 0; k < DIGITS; ++k) {
    const r = await (await fetch(`${server.url}api/predict`, {
      method: 'POST', headers: { 'Content-Type': 'image/x-portable-graymap' }, body: fs.readFileSync(files[k]),
    })).json();
    r.input.forEach((v, i) => { inputs[k * 784 + i] = v / 255; });
    serveDiff = Math.max(serveDiff, maxDiff(r.probabilities, predicted[k].probabilities));
  }
  await stopServer(server);
  passed += 3;
  ok(serveDiff <= TOLERANCE, `serve and predict agree: max |difference| ${serveDiff.toExponential(2)}`);

  const session = await ort.InferenceSession.create(fs.readFileSync(onnxFile));
  const batch = await session.run({ input: new ort.Tensor('float32', inputs, [DIGITS, 1, 28, 28]) });
  const probs = batch.probabilities;
  ok(JSON.stringify(probs.dims) === JSON.stringify([DIGITS, 10]), `ONNX Runtime output dims [${probs.dims}]`);
  let ortDiff = 0, agree = 0, right = 0;
  for (let k = 0; k < DIGITS; ++k) {
    const row = Array.from(probs.data.subarray(k * 10, k * 10 + 10));
    ortDiff = Math.max(ortDiff, maxDiff(row, predicted[k].probabilities));
    const best = row.indexOf(Math.max(...row));
    agree += best === predicted[k].class;
    right += best === mnist.label(k);
  }
  ok(ortDiff <= TOLERANCE,
     `ONNX Runtime ${ort.env.versions?.web ?? ''} vs predict on ${DIGITS} digits in one batch: max |difference| ${ortDiff.toExponential(2)} (<= ${TOLERANCE})`);
  ok(agree === DIGITS, `the same digit for all ${DIGITS} (${agree}); ${right} match MNIST's labels`);
  let singleDiff = 0;
  for (let k = 0; k < 5; ++k) {
    const one = await session.run({ input: new ort.Tensor('float32', inputs.slice(k * 784, (k + 1) * 784), [1, 1, 28, 28]) });
    singleDiff = Math.max(singleDiff, maxDiff(Array.from(one.probabilities.data), predicted[k].probabilities));
  }
  ok(singleDiff <= TOLERANCE, `one image at a time (batch 1): max |difference| ${singleDiff.toExponential(2)}`);
}
finish(passed);
