// P5 — cross-thread channel vs MessagePort.postMessage, side by side (median of ROUNDS rounds):
//   small: a Worker sends N small values (numbers), the main thread receives them all
//   bounded: the same through a bounded(1024) channel (kyoto only has backpressure; informative)
//   bytes: a Worker sends M 64 KiB Buffers (moved: kyoto copies once into native memory and
//          detaches the sender's ArrayBuffer; MessagePort transfers the ArrayBuffer), main receives.
//          Two payloads, the same for both peers: `bytes` writes each Buffer before sending it
//          (`fill(i & 255)`, as a producer of real data does) and the receiver checks its first
//          byte; `bytes-untouched` sends `Buffer.allocUnsafeSlow` memory nobody ever writes or reads
//          (MessagePort then moves pages that were never faulted in on either side, while kyoto's
//          copy has to read them: the row shows that cost, it is not what a real producer sees).
// kyoto side: an unbounded mpsc channel shared with the worker, main drains it with recvMany.
//   Small values: the worker's sender writes numbers into its lock-free ring in native memory (no
//   native call per send; a native call only to wake a waiting receiver or when the ring is full),
//   main takes up to 4096 per native call through typed arrays.
//   64 KiB Buffers: one copy per Buffer on the sending side (N-API cannot take ownership of a V8
//   backing store; MessagePort transfers it without touching its pages), none on the receiving side.
// Usage: node bench/p5_channel.mjs [rounds=5] [scale=1] [cases=small,bounded,bytes,bytes-untouched]
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import os from 'node:os';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const syncPath = path.join(here, '..', 'dist', 'lib', 'sync.js');
const { mpsc } = require(syncPath);

const ROUNDS = Math.max(5, Number(process.argv[2] ?? 5));
const SCALE = Number(process.argv[3] ?? 1);
const N_SMALL = Math.round(1_000_000 * SCALE);
const N_BUF = Math.round(5_000 * SCALE);
const CASES = (process.argv[4] ?? 'small,bounded,bytes,bytes-untouched').split(',');
const BUF = 64 * 1024;

const now = () => Number(process.hrtime.bigint()) / 1e9;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const workerSrc = `
const { parentPort, workerData } = require('node:worker_threads');
const { mpsc, fromShared } = require(${JSON.stringify(syncPath)});
const { mode, kind, n, size, handle } = workerData;
parentPort.once('message', () => {
  if (mode === 'kyoto') {
    const tx = fromShared(handle);
    if (kind === 'small') for (let i = 0; i < n; i++) tx.send(i);
    else if (kind === 'bounded') {
      // Exact capacity: a native call per send; await only when the channel is full.
      (async () => {
        for (let i = 0; i < n; i++) {
          try { tx.trySend(i); } catch { await tx.send(i); }
        }
        tx.close();
      })();
      return;
    } else if (kind === 'bytes') for (let i = 0; i < n; i++) { const b = Buffer.allocUnsafeSlow(size); b.fill(i & 255); tx.send(b); }
    else for (let i = 0; i < n; i++) tx.send(Buffer.allocUnsafeSlow(size));
    tx.close();
  } else {
    if (kind === 'small' || kind === 'bounded') for (let i = 0; i < n; i++) parentPort.postMessage(i);
    else if (kind === 'bytes') for (let i = 0; i < n; i++) { const b = Buffer.allocUnsafeSlow(size); b.fill(i & 255); parentPort.postMessage(b, [b.buffer]); }
    else for (let i = 0; i < n; i++) { const b = Buffer.allocUnsafeSlow(size); parentPort.postMessage(b, [b.buffer]); }
  }
});
parentPort.postMessage('ready');
`;

function startWorker(workerData) {
  const w = new Worker(workerSrc, { eval: true, workerData });
  return new Promise((resolve, reject) => {
    w.once('error', reject);
    w.once('message', () => resolve(w));
  });
}

async function runKyoto(kind, n) {
  const [tx, rx] = kind === 'bounded' ? mpsc.channel(1024) : mpsc.unboundedChannel();
  const handle = tx.share();
  tx.close();
  const w = await startWorker({ mode: 'kyoto', kind, n, size: BUF, handle });
  const t0 = now();
  w.postMessage('go');
  let got = 0;
  let bytes = 0;
  for (;;) {
    const batch = await rx.recvMany(4096);
    if (batch.length === 0) break;
    if (kind === 'bytes') {
      for (const b of batch) {
        if (b[0] !== (got & 255)) throw new Error(`kyoto: wrong payload in message ${got}`);
        bytes += b.length;
        got++;
      }
    } else {
      got += batch.length;
      if (kind === 'bytes-untouched') for (const b of batch) bytes += b.length;
    }
  }
  const s = now() - t0;
  await w.terminate();
  if (got !== n) throw new Error(`kyoto lost messages: ${got}/${n}`);
  return { perSec: n / s, mbPerSec: bytes / s / 1e6 };
}

async function runPort(kind, n) {
  const w = await startWorker({ mode: 'port', kind, n, size: BUF });
  let got = 0;
  let bytes = 0;
  const t0 = now();
  const done = new Promise((resolve) => {
    w.on('message', (m) => {
      if (kind === 'bytes' && m[0] !== (got & 255)) throw new Error(`port: wrong payload in message ${got}`);
      got++;
      if (kind === 'bytes' || kind === 'bytes-untouched') bytes += m.length;
      if (got === n) resolve();
    });
  });
  w.postMessage('go');
  await done;
  const s = now() - t0;
  await w.terminate();
  return { perSec: n / s, mbPerSec: bytes / s / 1e6 };
}

const fmt = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M/s` : `${(x / 1e3).toFixed(1)} k/s`);
console.log(`P5 cross-thread channel — node ${process.version}, ${os.cpus()[0]?.model ?? '?'} x${os.cpus().length}, ${ROUNDS} rounds (median)`);
const rows = [];
for (const [kind, n] of [
  ['small', N_SMALL],
  ['bounded', N_SMALL],
  ['bytes', N_BUF],
  ['bytes-untouched', N_BUF],
].filter(([kind]) => CASES.includes(kind))) {
  const k = [];
  const p = [];
  await runKyoto(kind, Math.min(n, 50_000)); // warm-up
  await runPort(kind, Math.min(n, 50_000));
  for (let r = 0; r < ROUNDS; r++) {
    if (r % 2 === 0) {
      k.push(await runKyoto(kind, n));
      p.push(await runPort(kind, n));
    } else {
      p.push(await runPort(kind, n));
      k.push(await runKyoto(kind, n));
    }
  }
  const km = median(k.map((x) => x.perSec));
  const pm = median(p.map((x) => x.perSec));
  const row = {
    case:
      kind === 'small'
        ? `${n} small values (numbers), unbounded`
        : kind === 'bounded'
          ? `${n} small values, bounded(1024) (MessagePort has no backpressure)`
          : kind === 'bytes'
            ? `${n} x 64 KiB Buffers, written by the producer`
            : `${n} x 64 KiB Buffers, never written (allocUnsafeSlow as is)`,
    kyoto: fmt(km) + (kind.startsWith('bytes') ? ` (${median(k.map((x) => x.mbPerSec)).toFixed(0)} MB/s)` : ''),
    messagePort: fmt(pm) + (kind.startsWith('bytes') ? ` (${median(p.map((x) => x.mbPerSec)).toFixed(0)} MB/s)` : ''),
    ratio: `${(km / pm).toFixed(2)}x`,
    target: kind === 'bounded' ? '-' : '>= 5x',
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}
console.table(rows);
