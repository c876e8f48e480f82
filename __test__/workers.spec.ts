// worker_threads: every thread can use the package, and workers terminated in the middle of
// operations neither crash the process nor leak descriptors.
import test from 'ava';
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import { Runtime, sleep } from 'kyoto';
import { descriptorsOpenedSince, openDescriptors, packageRoot, realDelay } from './helpers';

const entry = path.join(packageRoot, 'dist', 'index.js');
const WORKERS = Number(process.env.KYOTO_STRESS_WORKERS ?? 200);
const WAVE = 10;


const workerCode = `
const { parentPort, workerData } = require('node:worker_threads');
const k = require(workerData.entry);
(async () => {
  const rt = workerData.ownRuntime ? new k.Runtime({ workerThreads: 1 }) : undefined;
  const opts = rt ? { runtime: rt } : {};
  const iv = k.interval(3, opts);
  const set = new k.JoinSet();
  for (let i = 0; i < 20; i++) set.spawn(async (signal) => { await k.sleep(i % 7, { ...opts, signal }); return i; });
  const forever = k.sleep(60_000, opts);
  parentPort.postMessage('started');
  for (let round = 0; ; round++) {
    await iv.tick();
    await k.timeout(5, k.sleep(round % 10, opts)).catch(() => {});
    if (round === 3) parentPort.postMessage('running');
  }
})();
`;

test('the package works inside a worker thread', async (t) => {
  const w = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const k = require(workerData.entry);
     k.sleep(5).then(() => k.spawn(() => 7)).then((v) => parentPort.postMessage(v));`,
    { eval: true, workerData: { entry } },
  );
  const v = await new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  t.is(v, 7);
  await w.terminate();
});

test.serial(`${WORKERS} workers terminated at random moments: the process survives and descriptors return`, async (t) => {
  t.timeout(120_000);
  // Warm up this thread's bridge and the shared default runtime, so their descriptors are counted.
  await sleep(1);
  Runtime.default();
  const before = openDescriptors();
  let started = 0;
  for (let base = 0; base < WORKERS; base += WAVE) {
    const wave: Promise<void>[] = [];
    for (let i = base; i < Math.min(WORKERS, base + WAVE); i++) {
      wave.push(
        (async () => {
          const w = new Worker(workerCode, { eval: true, workerData: { entry, ownRuntime: i % 4 === 0 } });
          w.on('error', () => {});
          w.on('message', (m) => {
            if (m === 'started') started++;
          });
          const mode = i % 3;
          if (mode === 0) await realDelay(Math.random() * 40); // maybe before the module loads
          else await new Promise((r) => w.once('message', r)).then(() => realDelay(Math.random() * 30));
          await w.terminate();
        })(),
      );
    }
    await Promise.all(wave);
  }
  t.true(started > 0);
  // The main thread still works.
  await sleep(2);
  // Owned runtimes of terminated workers stop on background threads: give them a moment.
  t.deepEqual(await descriptorsOpenedSince(before), []);
});
