#!/usr/bin/env node
// ONNX Runtime (CPU EP, one thread) runner of the two-phase export of bench/ort/export.py.
//
//   node bench/ort/run_ort.js DIR [--iters N] [--warmup W] [--spin 0|1] [--opt all|basic|...]
//
// DIR holds prefix.onnx, step.onnx, inputs.bin, meta.json (export.py). One inference =
// prefix session run + N step session runs with the host Euler loop of the twin's
// sample_actions (x <- x - v/N at t = 1 - k/N, in float32), then x*std + mean. Timed with
// process.hrtime: prefix (images/tokens in -> K/V out, as JS tensors), every step (x_t, t,
// state, K, V in -> v out; the K/V tensors of the prefix are passed back in each step, as a
// LeRobot-style two-phase export does), the host arithmetic, and the whole inference.
// full_cpu_ms: the process CPU time (process.cpuUsage, every thread) of a full inference.
// W warm-up inferences, then N timed ones; prints one JSON object on stdout.
'use strict';
const fs = require('fs');
const path = require('path');
// ORT_NODE_DIR: an npm prefix holding another onnxruntime-node (compare.sh --ort-version)
const ortPkg = process.env.ORT_NODE_DIR
  ? path.join(path.resolve(process.env.ORT_NODE_DIR), 'node_modules', 'onnxruntime-node')
  : 'onnxruntime-node';
const ort = require(ortPkg);

function arg(name, def) {
  const i = process.argv.indexOf('--' + name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const dir = process.argv[2];
if (!dir || dir.startsWith('--')) {
  process.stderr.write('usage: run_ort.js DIR [--iters N] [--warmup W] [--spin 0|1] [--opt all]\n');
  process.exit(2);
}
const iters = parseInt(arg('iters', '10'), 10);
const warmup = parseInt(arg('warmup', '2'), 10);
const spin = arg('spin', '0'); // ORT's intra-op pool spin-wait; moot with 1 thread
const opt = arg('opt', 'all'); // ORT_ENABLE_ALL is ORT's default

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
};
const rssMb = () => process.memoryUsage().rss / 1048576;

async function main() {
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8'));
  const raw = fs.readFileSync(path.join(dir, 'inputs.bin'));
  const buf = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
  const L = meta.inputs;
  const images = new Uint8Array(buf, L.images.offset, L.images.bytes);
  const tokens = new BigInt64Array(buf.slice(L.tokens.offset, L.tokens.offset + L.tokens.bytes));
  const state = new Float32Array(buf.slice(L.state.offset, L.state.offset + L.state.bytes));
  const noise = new Float32Array(buf.slice(L.noise.offset, L.noise.offset + L.noise.bytes));
  const N = meta.flow_steps, H = meta.chunk_size, A = meta.action_dim;

  const so = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: opt,
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    enableCpuMemArena: true,
    enableMemPattern: true,
    extra: { session: { intra_op: { allow_spinning: spin } } },
  };
  const rss0 = rssMb();
  let t0 = nowMs();
  const sPre = await ort.InferenceSession.create(path.join(dir, 'prefix.onnx'), so);
  const sStep = await ort.InferenceSession.create(path.join(dir, 'step.onnx'), so);
  const loadMs = nowMs() - t0;
  const sNoop = fs.existsSync(path.join(dir, 'noop.onnx'))
    ? await ort.InferenceSession.create(path.join(dir, 'noop.onnx'), so) : null;
  const rssLoaded = rssMb();

  const tImages = new ort.Tensor('uint8', images, L.images.shape);
  const tTokens = new ort.Tensor('int64', tokens, L.tokens.shape);
  const tState = new ort.Tensor('float32', state, L.state.shape);
  const std = meta.action_std, mean = meta.action_mean;

  async function infer(rec) {
    const ca = process.cpuUsage();
    const ta = nowMs();
    const po = await sPre.run({ images: tImages, tokens: tTokens });
    const tb = nowMs();
    const x = new Float32Array(noise); // float32 state of the Euler loop
    const steps = [];
    for (let k = 0; k < N; k++) {
      const s0 = nowMs();
      const o = await sStep.run({
        x_t: new ort.Tensor('float32', x, [1, H, A]),
        t: new ort.Tensor('float64', new Float64Array([1.0 - k / N]), [1]),
        state: tState, K: po.K, V: po.V,
      });
      const v = o.v.data;
      for (let i = 0; i < x.length; i++) x[i] = Math.fround(x[i] - Math.fround(v[i] / N));
      steps.push(nowMs() - s0);
    }
    const out = new Float64Array(H * A);
    for (let i = 0; i < H; i++)
      for (let j = 0; j < A; j++)
        out[i * A + j] = Math.fround(Math.fround(x[i * A + j] * std[j]) + mean[j]);
    const tc = nowMs();
    const cu = process.cpuUsage(ca);
    if (rec) {
      rec.full_cpu.push((cu.user + cu.system) / 1e3);
      rec.prefix.push(tb - ta);
      rec.sample.push(tc - tb);
      rec.full.push(tc - ta);
      rec.step.push((tc - tb) / N);
      rec.step_all.push(...steps);
    }
    return out;
  }

  let actions;
  for (let i = 0; i < warmup; i++) actions = await infer(null);
  const rec = { prefix: [], sample: [], full: [], step: [], step_all: [], full_cpu: [] };
  for (let i = 0; i < iters; i++) actions = await infer(rec);
  // the fixed cost of one run() through the binding (tensor wrap, feed, fetch): a 1-node graph
  let noopMs = null;
  if (sNoop) {
    const tn = [];
    for (let i = 0; i < 220; i++) {
      const a = nowMs();
      await sNoop.run({ x_t: new ort.Tensor('float32', new Float32Array(noise), [1, H, A]) });
      if (i >= 20) tn.push(nowMs() - a);
    }
    noopMs = median(tn);
  }
  const chunk = [];
  for (let i = 0; i < H; i++) chunk.push(Array.from(actions.slice(i * A, (i + 1) * A)));
  const res = {
    runner: 'onnxruntime-node',
    ort_version: require(ortPkg + '/package.json').version,
    node: process.version,
    session_options: { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential',
      graphOptimizationLevel: opt, allow_spinning: spin },
    iters, warmup,
    load_ms: loadMs,
    noop_run_ms: noopMs,
    prefix_ms: median(rec.prefix),
    flow_step_ms: median(rec.step), // sample / N, as the C runner
    flow_step_run_ms: median(rec.step_all), // one step session run + its Euler update
    sample_ms: median(rec.sample),
    full_ms: median(rec.full),
    full_cpu_ms: median(rec.full_cpu), // process CPU time (all threads) of a full inference
    full_ms_all: rec.full, prefix_ms_all: rec.prefix,
    rss_mb: { start: rss0, after_load: rssLoaded, end: rssMb() },
    prefix_len: meta.prefix_len,
    actions: chunk,
  };
  process.stdout.write(JSON.stringify(res) + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
