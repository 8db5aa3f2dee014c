#!/usr/bin/env node
// Times ONNX Runtime on a model: the yardstick beside `tandem bench`.
//
//   node tools/ort_bench.js --model F [--threads N] [--iterations K] [--batch B] [--warmup W]
//
// Prints one JSON object: {model, threads, batch, p50_ms, min_ms, iterations,
// warmup, load_ms, peak_rss_mb}. intraOpNumThreads = N, interOpNumThreads = 1,
// all graph optimisations on; the input is random data of the model's own
// dtype; warm-up runs (default 3) are not timed. peak_rss_mb is the whole
// Node.js process's peak resident set, the runtime's own ~50 MB included.
'use strict';
const ort = require('onnxruntime-node');

const ARRAYS = {
  float32: Float32Array, uint8: Uint8Array, int8: Int8Array,
  int32: Int32Array, int64: BigInt64Array,
};

function die(msg) {
  process.stderr.write(`ort_bench: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const opt = { model: null, threads: 1, iterations: 50, batch: 1, warmup: 3 };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in opt) || i + 1 >= argv.length) die(`bad argument '${argv[i]}'`);
    const v = argv[++i];
    if (key === 'model') opt.model = v;
    else {
      opt[key] = Number(v);
      if (!Number.isInteger(opt[key]) || opt[key] < (key === 'warmup' ? 0 : 1))
        die(`--${key} needs a positive integer, not '${v}'`);
    }
  }
  if (!opt.model) die('usage: node tools/ort_bench.js --model F [--threads N] [--iterations K] [--batch B]');
  return opt;
}

// Deterministic pseudo-random fill (LCG), values in the dtype's usual range.
function fill(type, count) {
  const a = new ARRAYS[type](count);
  let s = 12345;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const u = (s >>> 8) / 16777216;
    if (type === 'float32') a[i] = u * 4 - 2;
    else if (type === 'uint8') a[i] = Math.floor(u * 256);
    else if (type === 'int8') a[i] = Math.floor(u * 256) - 128;
    else if (type === 'int64') a[i] = BigInt(Math.floor(u * 16));
    else a[i] = Math.floor(u * 16);
  }
  return a;
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  const t0 = process.hrtime.bigint();
  const session = await ort.InferenceSession.create(opt.model, {
    intraOpNumThreads: opt.threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const meta = session.inputMetadata[0];
  if (!meta || !ARRAYS[meta.type]) die(`${opt.model}: unsupported first input`);
  const dims = meta.shape.map((d, i) => {
    if (typeof d === 'number' && d >= 0) return i === 0 && opt.batch !== 1 ? opt.batch : d;
    if (i === 0) return opt.batch;
    die(`${opt.model}: input dim ${i} is symbolic (${d})`);
  });
  if (dims[0] !== opt.batch) die(`${opt.model}: the batch dimension is fixed at ${dims[0]}`);
  const count = dims.reduce((a, b) => a * b, 1);
  const feeds = { [session.inputNames[0]]: new ort.Tensor(meta.type, fill(meta.type, count), dims) };
  for (let i = 0; i < opt.warmup; i++) await session.run(feeds);
  const times = [];
  for (let i = 0; i < opt.iterations; i++) {
    const s = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  times.sort((a, b) => a - b);
  const p50 = times.length % 2 ? times[(times.length - 1) / 2]
    : (times[times.length / 2 - 1] + times[times.length / 2]) / 2;
  const round = (x) => Math.round(x * 1000) / 1000;
  process.stdout.write(JSON.stringify({
    model: opt.model, threads: opt.threads, batch: opt.batch, p50_ms: round(p50),
    min_ms: round(times[0]), iterations: opt.iterations, warmup: opt.warmup,
    load_ms: round(loadMs), peak_rss_mb: round(process.resourceUsage().maxRSS / 1024),
  }) + '\n');
}

main().catch((e) => die(e && e.message ? e.message : String(e)));
