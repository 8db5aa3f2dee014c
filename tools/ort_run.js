#!/usr/bin/env node
// Runs ONNX Runtime once: the mirror of `tandem run-model`.
//
//   node tools/ort_run.js MODEL IN.bin OUT.bin [IN2.bin OUT2.bin ...]
//
// IN.bin holds the raw bytes of the model's first input in its own dtype and
// layout, at batch 1 or, when the model's batch dim is dynamic, at the batch
// its size implies (other dims must be fixed in the file); OUT.bin receives the raw bytes of the first output. More IN/OUT pairs
// run the same loaded session again, which spares the test suites a process
// start and a model load per input. ONNX Runtime is a test yardstick only,
// never a product dependency.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

const ARRAYS = {
  float32: Float32Array, uint8: Uint8Array, int8: Int8Array,
  int32: Int32Array, int64: BigInt64Array, bool: Uint8Array,
};

function die(msg) {
  process.stderr.write(`ort_run: ${msg}\n`);
  process.exit(1);
}

async function main() {
  const [model, ...pairs] = process.argv.slice(2);
  if (!model || pairs.length === 0 || pairs.length % 2) {
    process.stderr.write('usage: node tools/ort_run.js MODEL IN.bin OUT.bin [IN2.bin OUT2.bin ...]\n');
    process.exit(2);
  }
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all',
  });
  const meta = session.inputMetadata[0];
  const name = session.inputNames[0];
  if (!meta || !meta.isTensor) die(`${model}: first input is not a tensor`);
  const Ctor = ARRAYS[meta.type];
  if (!Ctor) die(`${model}: input type ${meta.type} is not supported here`);
  const dims = meta.shape.map((d, i) => {
    if (typeof d === 'number' && d >= 0) return d;
    if (i === 0) return 1;
    die(`${model}: input dim ${i} is symbolic (${d})`);
  });
  for (let p = 0; p < pairs.length; p += 2)
    await runOne(session, name, meta.type, Ctor, dims, pairs[p], pairs[p + 1], meta.shape[0]);
}

async function runOne(session, name, type, Ctor, dims1, inPath, outPath, dim0) {
  const bytes = fs.readFileSync(inPath);
  const per = dims1.reduce((a, b) => a * b, 1) * Ctor.BYTES_PER_ELEMENT;
  const dynamic = !(typeof dim0 === 'number' && dim0 >= 0);
  const batch = per > 0 && dynamic && bytes.length % per === 0 ? bytes.length / per : 1;
  const dims = [batch, ...dims1.slice(1)];
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== count * Ctor.BYTES_PER_ELEMENT || batch < 1)
    die(`${inPath}: ${bytes.length} bytes, the input [${dims1}] of ${type} needs ${per}${dynamic ? ' per batch item' : ''}`);
  // Copy into an aligned buffer: a Buffer's byteOffset need not be aligned.
  const data = new Ctor(count);
  new Uint8Array(data.buffer).set(bytes);
  const feeds = { [name]: new ort.Tensor(type, data, dims) };
  const results = await session.run(feeds);
  const out = results[session.outputNames[0]];
  const od = out.data;
  fs.writeFileSync(outPath, Buffer.from(od.buffer, od.byteOffset, od.byteLength));
}

main().catch((e) => die(e && e.message ? e.message : String(e)));
