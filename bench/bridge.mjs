// Bridge round trips: an awaited native no-op through the runtime (a task on a runtime thread whose
// completion comes back through the batched bridge) vs a plain synchronous napi call vs
// `await Promise.resolve()`; plus N concurrent no-ops (batching) and sleep(0) round trips.
// Usage: node bench/bridge.mjs [iterations]
import { createRequire } from 'node:module';
import os from 'node:os';

const require = createRequire(import.meta.url);
const kyoto = require('../dist/index.js');
const { native } = require('../dist/lib/native.js');
const { submit } = require('../dist/lib/bridge.js');

const N = Number(process.argv[2] ?? 200_000);
const rt = kyoto.Runtime.default();
const nrt = rt._native();
const noop = () => submit(rt, (id) => nrt.noop(id));

async function measure(name, n, fn) {
  for (let i = 0; i < Math.min(n, 10_000); i++) await fn(); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { name, n, opsPerSec: Math.round(n / s), nsPerOp: Math.round((s * 1e9) / n) };
}

function measureSync(name, n, fn) {
  for (let i = 0; i < 10_000; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { name, n, opsPerSec: Math.round(n / s), nsPerOp: Math.round((s * 1e9) / n) };
}

async function concurrent(name, total, width, fn) {
  const t0 = process.hrtime.bigint();
  for (let done = 0; done < total; done += width) {
    const ps = new Array(width);
    for (let i = 0; i < width; i++) ps[i] = fn();
    await Promise.all(ps);
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { name, n: total, opsPerSec: Math.round(total / s), nsPerOp: Math.round((s * 1e9) / total) };
}

const rows = [];
rows.push(measureSync('sync napi call (bridgeRefs)', N * 5, () => native.bridgeRefs()));
rows.push(await measure('await Promise.resolve()', N * 5, () => Promise.resolve()));
rows.push(await measure('await native no-op via runtime (sequential)', N, noop));
const bridgeOnly = () => submit(rt, (id) => native.bridgeNoop(id));
rows.push(await measure('await bridge-only no-op (sequential)', N, bridgeOnly));
rows.push(await concurrent('bridge-only no-op, 1000 in flight', N * 5, 1000, bridgeOnly));
rows.push(await concurrent('native no-op via runtime, 1000 in flight', N * 5, 1000, noop));
rows.push(await measure('await sleep(0) (sequential)', Math.min(N, 50_000), () => kyoto.sleep(0)));
console.log(`node ${process.version}, ${os.cpus().length} cpus (${os.cpus()[0]?.model ?? "?"}), load ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}, runtime: kyoto-rt ${rt.metrics().flavor} with ${rt.metrics().workers} workers`);
console.table(rows);
