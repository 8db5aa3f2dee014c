#!/usr/bin/env node
// Runs ONNX Runtime once: the mirror of `tandem run-model`.
//
//   node tools/ort_run.js MODEL IN.bin OUT.bin
//
// IN.bin holds the raw bytes of the model's first input at batch 1 in its own
// dtype and layout (dynamic dims other than the batch must be fixed in the
// file); OUT.bin receives the raw bytes of the first output. ONNX Runtime is a
// test yardstick only, never a product dependency.
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
  const [model, inPath, outPath] = process.argv.slice(2);
  if (!model || !inPath || !outPath) {
    process.stderr.write('usage: node tools/ort_run.js MODEL IN.bin OUT.bin\n');
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
  const count = dims.reduce((a, b) => a * b, 1);
  const bytes = fs.readFileSync(inPath);
  if (bytes.length !== count * Ctor.BYTES_PER_ELEMENT)
    die(`${inPath}: ${bytes.length} bytes, the input [${dims}] of ${meta.type} needs ${count * Ctor.BYTES_PER_ELEMENT}`);
  // Copy into an aligned buffer: a Buffer's byteOffset need not be aligned.
  const data = new Ctor(count);
  new Uint8Array(data.buffer).set(bytes);
  const feeds = { [name]: new ort.Tensor(meta.type, data, dims) };
  const results = await session.run(feeds);
  const out = results[session.outputNames[0]];
  const od = out.data;
  fs.writeFileSync(outPath, Buffer.from(od.buffer, od.byteOffset, od.byteLength));
}

main().catch((e) => die(e && e.message ? e.message : String(e)));
