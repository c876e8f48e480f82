// Sockets across worker_threads: several workers each serve TCP (native copy in some, a JS
// read → write loop in others) and UDP while this thread drives checksummed traffic through all of
// them at once, and two workers are terminated mid-stream. The survivors' bytes come back intact;
// the victims' connections end (EOF or a reset) instead of hanging; the process lives on; and once
// every worker is gone its descriptors are back.
import test, { type ExecutionContext } from 'ava';
import { Worker } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { TcpStream, UdpSocket } from 'kyoto';
import { descriptorsOpenedSince, openDescriptors, packageRoot, withTimeout } from './helpers';

const entry = path.join(packageRoot, 'dist', 'index.js');
const WORKERS = 6;
const CONNS = 6; // per worker
const BYTES = 192 * 1024; // per connection

const serverCode = `
const { parentPort, workerData } = require('node:worker_threads');
const k = require(workerData.entry);
(async () => {
  const l = await k.TcpListener.bind('127.0.0.1:0');
  const u = await k.UdpSocket.bind('127.0.0.1:0');
  parentPort.postMessage({ tcp: l.localAddr().port, udp: u.localAddr().port });
  (async () => {
    const buf = Buffer.alloc(2048);
    for (;;) {
      const { bytes, address } = await u.recvFrom(buf);
      await u.sendTo(buf.subarray(0, bytes), address);
    }
  })().catch(() => {});
  for await (const s of l) {
    (async () => {
      if (workerData.native) {
        await k.copy(s, s);
      } else {
        const buf = Buffer.alloc(8192);
        for (;;) {
          const n = await s.read(buf);
          if (n === 0) break;
          await s.write(buf.subarray(0, n));
        }
      }
      await s.shutdown();
    })().catch(() => {}).finally(() => s.close());
  }
})();
`;

interface Pumped {
  /** Bytes echoed back, each checked against `data` as it arrived. */
  received: number;
  mismatch: boolean;
  error?: string;
}

/**
 * Sends `data` in random-sized writes while reading the echo; each chunk is compared with what was
 * sent at its offset as it arrives (so a 32 MiB stream needs no copy of itself). `progress` is
 * called with the running count.
 */
async function pump(port: number, data: Buffer, progress: (n: number) => void = () => {}): Promise<Pumped> {
  const s = await TcpStream.connect({ host: '127.0.0.1', port });
  const r: Pumped = { received: 0, mismatch: false };
  const writer = (async () => {
    for (let off = 0; off < data.length; ) {
      const n = Math.min(data.length - off, 1 + Math.floor(Math.random() * 16384));
      await s.write(data.subarray(off, off + n));
      off += n;
    }
    await s.shutdown();
  })().catch((e: { code?: string }) => {
    r.error ??= e.code ?? String(e);
  });
  try {
    for (;;) {
      const c = await s.readChunk();
      if (c === undefined) break;
      if (!c.equals(data.subarray(r.received, r.received + c.length))) r.mismatch = true;
      r.received += c.length;
      progress(r.received);
    }
  } catch (e) {
    r.error ??= (e as { code?: string }).code ?? String(e);
  }
  await writer;
  s.close();
  return r;
}


/** Linux: waits up to 2 s for the descriptors opened since `before` to close (all but 2), and checks they did. */
async function descriptorsBack(t: ExecutionContext, before: Set<string>): Promise<void> {
  const added = await descriptorsOpenedSince(before, 2000);
  t.true(added.length <= 2, `descriptors left open: ${added.join(', ')}`);
}

test.serial('workers serving TCP and UDP at once, two terminated mid-stream: survivors intact, victims end, descriptors return', async (t) => {
  t.timeout(120_000);
  // Warm up this thread's data path so its descriptors are in the baseline.
  (await UdpSocket.bind('127.0.0.1:0')).close();
  const before = openDescriptors();
  const workers = Array.from({ length: WORKERS }, (_, i) => new Worker(serverCode, { eval: true, workerData: { entry, native: i % 2 === 0 } }));
  for (const w of workers) w.on('error', () => {});
  const ports = await withTimeout(
    Promise.all(workers.map((w) => new Promise<{ tcp: number; udp: number }>((r) => w.once('message', r)))),
    20_000,
    'the workers to listen',
  );
  const victims = new Set([1, 4]);
  // A victim's connections stream far more than they can move before it is terminated.
  const long = randomBytes(32 << 20);
  let victimsFlowing = 0;
  let allFlowing: () => void = () => {};
  const flowing = new Promise<void>((r) => (allFlowing = r));
  const runs: Array<Promise<void>> = [];
  const outcome = { intact: 0, ended: 0, udp: 0 };
  for (let i = 0; i < WORKERS; i++) {
    for (let c = 0; c < CONNS; c++) {
      const victim = victims.has(i);
      const data = victim ? long : randomBytes(BYTES);
      let counted = false;
      const progress = (n: number): void => {
        if (victim && !counted && n >= 64 * 1024) {
          counted = true;
          if (++victimsFlowing === victims.size * CONNS) allFlowing();
        }
      };
      runs.push(
        pump(ports[i].tcp, data, progress).then(
          ({ received, mismatch, error }) => {
            const what = `worker ${i} conn ${c}: ${received} of ${data.length} bytes back, ${error ?? 'no error'}`;
            t.false(mismatch, what);
            if (victim) {
              t.true(received < data.length, `${what}: cut off mid-stream`);
              outcome.ended++;
            } else {
              t.is(error, undefined, what);
              t.is(received, data.length, what);
              outcome.intact++;
            }
          },
          (e: { code?: string }) => t.fail(`worker ${i} conn ${c}: ${e.code ?? String(e)}`),
        ),
      );
    }
    // A few datagrams to each worker's UDP echo as well.
    runs.push(
      (async () => {
        if (victims.has(i)) return;
        const u = await UdpSocket.bind('127.0.0.1:0');
        await u.connect({ host: '127.0.0.1', port: ports[i].udp });
        const buf = Buffer.alloc(64);
        for (let k = 0; k < 20; k++) {
          const msg = Buffer.from(`w${i}-d${k}`);
          await u.send(msg);
          const n = await withTimeout(u.recv(buf), 10_000, `worker ${i} datagram ${k}`);
          t.is(buf.subarray(0, n).toString(), msg.toString());
          outcome.udp++;
        }
        u.close();
      })(),
    );
  }
  // Terminate the victims once every one of their connections is in full flow.
  await withTimeout(flowing, 30_000, "the victims' connections to flow");
  await Promise.all([...victims].map((i) => workers[i].terminate()));
  await withTimeout(Promise.all(runs), 90_000, 'every connection to finish or end');
  t.is(outcome.intact, (WORKERS - victims.size) * CONNS);
  t.is(outcome.ended, victims.size * CONNS);
  t.is(outcome.udp, (WORKERS - victims.size) * 20);
  await Promise.all(workers.map((w) => w.terminate()));
  await descriptorsBack(t, before);
});

test.serial('a worker terminated while its datagram sends wait for room, its duplex() writes wait and its closed streams linger ends cleanly, and its descriptors return', async (t) => {
  // What this session's waits added (blocked datagram sends holding the loop, duplex() waiters,
  // lingering closes that read and wait for the peer's FIN) must all end with the worker.
  const code = `
const { parentPort, workerData } = require('node:worker_threads');
const k = require(workerData.entry);
(async () => {
  const waits = [];
  if (process.platform !== 'win32') {
    const [a] = k.UnixDatagram.pair();
    const big = Buffer.alloc(8192);
    for (let i = 0; i < 4000; i++) waits.push(a.send(big).catch(() => {}));
  }
  const [d] = k.duplex(4);
  waits.push(d.write('more than four bytes').catch(() => {}));
  // A stream closed with bytes its peer never reads: it lingers.
  const l = await k.TcpListener.bind('127.0.0.1:0');
  const c = await k.TcpStream.connect(l.localAddr());
  const [s] = await l.accept();
  const chunk = Buffer.alloc(256 * 1024);
  for (let i = 0; i < 64; i++) {
    const r = await Promise.race([c.write(chunk).then(() => true), new Promise((res) => setTimeout(res, 100, false))]);
    if (!r) break;
  }
  c.close();
  parentPort.postMessage('waiting');
  await Promise.all(waits);
  s.close();
})();
`;
  const before = openDescriptors();
  for (let round = 0; round < 3; round++) {
    const w = new Worker(code, { eval: true, workerData: { entry } });
    const waiting = new Promise<unknown>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    t.is(await withTimeout(waiting, 20_000, 'the worker to be waiting'), 'waiting');
    await withTimeout(w.terminate(), 10_000, 'terminate');
  }
  await descriptorsBack(t, before);
});
