// P6 — same-thread sync primitives, side by side (median of ROUNDS rounds, ratios printed):
//   Mutex:     100 tasks contending lock/unlock          kyoto Mutex  vs async-mutex Mutex
//   Semaphore: 100 tasks contending Semaphore(4)          kyoto        vs async-sema Sema
//   mpsc:      producer → consumer, N messages            kyoto        vs a plain array queue
// Usage: node bench/p6_sync.mjs [rounds=5] [scale=1]
import { createRequire } from 'node:module';
import os from 'node:os';

const require = createRequire(import.meta.url);
const { Mutex, Semaphore, mpsc } = require('../dist/lib/sync.js');
const { Mutex: AMutex } = require('async-mutex');
const { Sema } = require('async-sema');

const ROUNDS = Math.max(5, Number(process.argv[2] ?? 5));
const SCALE = Number(process.argv[3] ?? 1);
const TASKS = 100;
const LOCK_ITERS = Math.round(2_000 * SCALE); // per task
const MSGS = Math.round(2_000_000 * SCALE);

const now = () => Number(process.hrtime.bigint()) / 1e9;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function contend(lockOnce) {
  const t0 = now();
  await Promise.all(
    Array.from({ length: TASKS }, async () => {
      for (let i = 0; i < LOCK_ITERS; i++) await lockOnce();
    }),
  );
  return (TASKS * LOCK_ITERS) / (now() - t0);
}

const km = new Mutex(0);
const am = new AMutex();
const ks = new Semaphore(4);
const as = new Sema(4);

const cases = {
  'Mutex lock/unlock (100 tasks)': {
    kyoto: () =>
      contend(async () => {
        const g = await km.lock();
        g.release();
      }),
    peer: [
      'async-mutex',
      () =>
        contend(async () => {
          const release = await am.acquire();
          release();
        }),
    ],
    target: 2,
  },
  'Semaphore(4) acquire/release (100 tasks)': {
    kyoto: () =>
      contend(async () => {
        const p = await ks.acquire();
        p.release();
      }),
    peer: [
      'async-sema',
      () =>
        contend(async () => {
          await as.acquire();
          as.release();
        }),
    ],
    target: 1,
  },
  'mpsc bounded(1024): await send / recvMany': {
    kyoto: async () => {
      const [tx, rx] = mpsc.channel(1024);
      const t0 = now();
      const prod = (async () => {
        for (let i = 0; i < MSGS; i++) await tx.send(i);
        tx.close();
      })();
      let n = 0;
      for (;;) {
        const b = await rx.recvMany(1024);
        if (b.length === 0) break;
        n += b.length;
      }
      await prod;
      if (n !== MSGS) throw new Error(`lost messages: ${n}`);
      return MSGS / (now() - t0);
    },
    peer: ['array queue, await per push', () => arrayQueue(true)],
    target: null,
    abs: 10e6,
  },
  'mpsc bounded(1024): trySend (await send only when full) / recvMany': {
    kyoto: async () => {
      const [tx, rx] = mpsc.channel(1024);
      const t0 = now();
      const prod = (async () => {
        for (let i = 0; i < MSGS; i++) {
          try {
            tx.trySend(i);
          } catch {
            await tx.send(i); // full: wait for capacity (FIFO)
          }
        }
        tx.close();
      })();
      let n = 0;
      for (;;) {
        const b = await rx.recvMany(1024);
        if (b.length === 0) break;
        n += b.length;
      }
      await prod;
      if (n !== MSGS) throw new Error(`lost messages: ${n}`);
      return MSGS / (now() - t0);
    },
    peer: ['array queue', () => arrayQueue(false)],
    target: null,
    abs: 10e6,
  },
  'mpsc unbounded: send / recvMany': {
    kyoto: async () => {
      const [tx, rx] = mpsc.unboundedChannel();
      const t0 = now();
      const prod = (async () => {
        for (let i = 0; i < MSGS; i++) {
          tx.send(i);
          if ((i & 1023) === 1023) await null; // let the consumer run, like the peer
        }
        tx.close();
      })();
      let n = 0;
      for (;;) {
        const b = await rx.recvMany(4096);
        if (b.length === 0) break;
        n += b.length;
      }
      await prod;
      if (n !== MSGS) throw new Error(`lost messages: ${n}`);
      return MSGS / (now() - t0);
    },
    peer: ['array queue', () => arrayQueue(false)],
    target: null,
    abs: 10e6,
  },
  'mpsc bounded(1024): await send / await recv (one message per await)': {
    kyoto: async () => {
      const [tx, rx] = mpsc.channel(1024);
      const t0 = now();
      const prod = (async () => {
        for (let i = 0; i < MSGS; i++) await tx.send(i);
        tx.close();
      })();
      let n = 0;
      while ((await rx.recv()) !== undefined) n++;
      await prod;
      if (n !== MSGS) throw new Error(`lost messages: ${n}`);
      return MSGS / (now() - t0);
    },
    peer: ['array queue (await per message)', arrayQueuePerMessage],
    target: null,
  },
};

// The peer of the mpsc rows: a plain array queue with a promise wake-up for an empty consumer,
// consumed in batches like recvMany.
async function arrayQueue(awaitEach) {
  const q = [];
  let wake = null;
  let done = false;
  const t0 = now();
  const prod = (async () => {
    for (let i = 0; i < MSGS; i++) {
      q.push(i);
      if (wake) {
        const w = wake;
        wake = null;
        w();
      }
      if (awaitEach || (i & 1023) === 1023) await null;
    }
    done = true;
    if (wake) wake();
  })();
  let n = 0;
  for (;;) {
    if (q.length > 0) {
      n += q.splice(0, 4096).length;
      continue;
    }
    if (done) break;
    await new Promise((r) => (wake = r));
  }
  await prod;
  if (n !== MSGS) throw new Error(`lost messages: ${n}`);
  return MSGS / (now() - t0);
}

async function arrayQueuePerMessage() {
  const q = [];
  let head = 0;
  let wake = null;
  let done = false;
  const t0 = now();
  const prod = (async () => {
    for (let i = 0; i < MSGS; i++) {
      q.push(i);
      if (wake) {
        const w = wake;
        wake = null;
        w();
      }
      await null;
    }
    done = true;
    if (wake) wake();
  })();
  const recv = async () => {
    for (;;) {
      if (head < q.length) return q[head++];
      if (done) return undefined;
      await new Promise((r) => (wake = r));
    }
  };
  let n = 0;
  while ((await recv()) !== undefined) n++;
  await prod;
  if (n !== MSGS) throw new Error(`lost messages: ${n}`);
  return MSGS / (now() - t0);
}

const fmt = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M/s` : `${(x / 1e3).toFixed(0)} k/s`);
console.log(`P6 same-thread sync — node ${process.version}, ${os.cpus()[0]?.model ?? '?'} x${os.cpus().length}, ${ROUNDS} rounds (median), ${TASKS} tasks x ${LOCK_ITERS} iters, ${MSGS} msgs`);
const rows = [];
for (const [name, c] of Object.entries(cases)) {
  const k = [];
  const p = [];
  await c.kyoto(); // warm-up
  await c.peer[1]();
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate the order so neither side always runs on a warmer heap.
    if (r % 2 === 0) {
      k.push(await c.kyoto());
      p.push(await c.peer[1]());
    } else {
      p.push(await c.peer[1]());
      k.push(await c.kyoto());
    }
  }
  const km_ = median(k);
  const pm = median(p);
  const row = {
    case: name,
    kyoto: fmt(km_),
    peer: `${c.peer[0]}: ${fmt(pm)}`,
    ratio: `${(km_ / pm).toFixed(2)}x`,
    target: c.target ? `>= ${c.target}x` : c.abs ? `>= ${fmt(c.abs)}` : '-',
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}
console.table(rows);
