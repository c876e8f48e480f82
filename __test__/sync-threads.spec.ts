import test from 'ava';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { setTimeout as delay } from 'node:timers/promises';
import { getEventListeners, setMaxListeners } from 'node:events';
import {
  dropShared,
  fromShared,
  mpsc,
  oneshot,
  broadcast,
  watch,
  Mutex,
  Notify,
  OnceCell,
  Semaphore,
  Barrier,
  RwLock,
  type SyncHandle,
} from 'kyoto/sync';
import { select } from 'kyoto/task';
import { sleep } from 'kyoto/time';

const FIXTURE = path.join(__dirname, 'fixtures', 'sync-worker.js');

interface Spawned {
  worker: Worker;
  messages: unknown[];
  next(): Promise<unknown>;
  exited: Promise<number>;
}

function spawn(workerData: object): Spawned {
  const worker = new Worker(FIXTURE, { workerData });
  const messages: unknown[] = [];
  let waiting: ((m: unknown) => void) | null = null;
  worker.on('message', (m) => {
    if (m && typeof m === 'object' && 'error' in m) {
      // Surface worker failures in the test output.
      console.error('worker error:', (m as { error: string }).error);
    }
    if (waiting !== null) {
      const w = waiting;
      waiting = null;
      w(m);
    } else messages.push(m);
  });
  const exited = new Promise<number>((resolve, reject) => {
    worker.on('exit', resolve);
    worker.on('error', reject);
  });
  return {
    worker,
    messages,
    exited,
    next: () =>
      messages.length > 0 ? Promise.resolve(messages.shift()) : new Promise((resolve) => (waiting = resolve)),
  };
}

/** Rejects after `ms` so a broken cross-thread wait fails the test instead of hanging it. */
function bounded<T>(p: Promise<T>, ms = 20_000, what = 'operation'): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]);
}

test('dropShared() drops the sender a handle carried to a worker terminated before reviving it, so the channel closes', async (t) => {
  const [tx, rx] = mpsc.unboundedChannel<string>();
  // A worker that never handles its messages: the handle posted to it is lost with it.
  const worker = new Worker('setInterval(() => {}, 1000);', { eval: true });
  const h = tx.share();
  worker.postMessage(h);
  await worker.terminate();
  tx.close();
  t.false(await isSettledSoon(rx.recv()), 'the lost handle still counts as a live sender');
  t.true(dropShared(h));
  t.false(dropShared(h), 'dropped once');
  t.is(await bounded(rx.recv(), 10_000, 'recv after dropShared'), undefined);
});

/** Whether `p` settles within a few event-loop turns (and so is not waiting on anything). */
async function isSettledSoon(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < 5 && !settled; i++) await delay(10);
  return settled;
}

test('4 workers hammering one shared Semaphore(3) never exceed 3 holders and the final count is exact', async (t) => {
  const sem = new Semaphore(3);
  const h = sem.share();
  const counters = new Int32Array(new SharedArrayBuffer(12));
  const N = 2000;
  const ws = [0, 1, 2, 3].map((id) => spawn({ task: 'sem-hammer', id, n: N, handles: [h], counters }));
  const results = await bounded(Promise.all(ws.map((w) => w.next())), 60_000, 'semaphore hammer');
  t.deepEqual(results, ['done', 'done', 'done', 'done']);
  t.is(Atomics.load(counters, 0), 0);
  t.true(Atomics.load(counters, 1) <= 3, `max holders ${Atomics.load(counters, 1)}`);
  t.true(Atomics.load(counters, 1) >= 1);
  t.is(Atomics.load(counters, 2), 4 * N);
  await Promise.all(ws.map((w) => w.exited));
  t.is(sem.availablePermits(), 3);
});

test('4 producer workers into one mpsc: every message arrives exactly once and each producer keeps its order', async (t) => {
  const [tx, rx] = mpsc.channel<[number, number] | number>(64);
  const N = 5000;
  const handles = [0, 1, 2, 3].map(() => tx.share());
  tx.close(); // only the workers' clones remain
  const ws = handles.map((h, id) => spawn({ task: 'producer', id, n: N, handles: [h] }));
  const next = [0, 0, 0, 0];
  let count = 0;
  const consume = (async () => {
    for (;;) {
      const batch = await rx.recvMany(256);
      if (batch.length === 0) return;
      for (const v of batch) {
        const [id, i] = typeof v === 'number' ? [Math.floor(v / 1_000_000), v % 1_000_000] : v;
        if (next[id] !== i) throw new Error(`producer ${id}: expected ${next[id]}, got ${i}`);
        next[id]++;
        count++;
      }
    }
  })();
  await bounded(consume, 60_000, 'mpsc fan-in');
  t.is(count, 4 * N);
  t.deepEqual(next, [N, N, N, N]);
  await Promise.all(ws.map((w) => w.exited));
});

test('a worker terminated while holding a Mutex guard and permits: the main thread acquires both afterwards', async (t) => {
  const m = new Mutex(0);
  const sem = new Semaphore(2);
  const [tx, rx] = mpsc.channel<number>(1);
  const w = spawn({ task: 'hold-and-die', id: 0, n: 0, handles: [m.share(), sem.share(), tx.share()] });
  t.is(await bounded(w.next(), 20_000, 'worker start'), 'holding');
  t.throws(() => m.tryLock(), { code: 'ERR_WOULD_BLOCK' });
  t.is(sem.availablePermits(), 0);
  const lock = m.lock();
  const permits = sem.acquire(2);
  await w.worker.terminate();
  const g = await bounded(lock, 10_000, 'mutex after worker death');
  // The guard was never released normally, so its write was not stored back.
  t.is(g.value, 0);
  g.release();
  (await bounded(permits, 10_000, 'permits after worker death')).release();
  t.is(sem.availablePermits(), 2);
  // Its sender clone was dropped too: with ours closed, the channel ends.
  tx.close();
  t.is(await bounded(rx.recv(), 10_000, 'channel end after worker death'), undefined);
});

test('a worker that created, locked and filled primitives before sharing them releases all of it when terminated', async (t) => {
  const w = spawn({ task: 'create-hold-share-and-die', id: 0, n: 0, handles: [] });
  const h = (await bounded(w.next(), 20_000, 'worker start')) as Record<string, SyncHandle>;
  const m = fromShared<Mutex<number>>(h.mutex);
  const sem = fromShared<Semaphore>(h.sem);
  const rw = fromShared<RwLock<string>>(h.rw);
  const wl = fromShared<RwLock<string>>(h.wl);
  const rx = fromShared<mpsc.Receiver<number>>(h.rx);
  const tx = fromShared<mpsc.Sender<number>>(h.tx);
  const urx = fromShared<mpsc.Receiver<number>>(h.urx);
  const orx = fromShared<oneshot.Receiver<number>>(h.orx);
  // Everything the worker took before sharing is still held.
  t.throws(() => m.tryLock(), { code: 'ERR_WOULD_BLOCK' });
  t.is(sem.availablePermits(), 0);
  t.throws(() => rw.tryWrite(), { code: 'ERR_WOULD_BLOCK' });
  t.throws(() => wl.tryRead(), { code: 'ERR_WOULD_BLOCK' });
  t.is(tx.capacity(), 0); // one slot buffered, one reserved
  const lock = m.lock();
  const permits = sem.acquire(3);
  const write = rw.write();
  const read = wl.read();
  const orxSettled = orx.then(
    () => 'value',
    (e: unknown) => (e as { code: string }).code,
  );
  await w.worker.terminate();
  const g = await bounded(lock, 10_000, 'mutex after worker death');
  t.is(g.value, 2);
  g.release();
  (await bounded(permits, 10_000, 'semaphore after worker death')).release();
  t.is(sem.availablePermits(), 3);
  (await bounded(write, 10_000, 'rwlock write after worker death')).release();
  t.is((await bounded(read, 10_000, 'rwlock read after worker death')).value, 'w');
  // The reserved slot came back; the buffered message still holds its slot until received.
  t.is(tx.capacity(), 1);
  t.is(await bounded(rx.recv(), 10_000, 'buffered message'), 7);
  t.is(tx.capacity(), 2);
  // The worker's two sender clones are gone: once ours closes, the channel ends.
  t.false(rx.isClosed());
  tx.close();
  t.is(await bounded(rx.recv(), 10_000, 'mpsc end after worker death'), undefined);
  // The unbounded sender it kept is gone too, after what it sent before and after sharing.
  t.deepEqual(await bounded(urx.recvMany(10), 10_000, 'unbounded messages'), [1, 2]);
  t.is(await bounded(urx.recv(), 10_000, 'unbounded end after worker death'), undefined);
  t.is(await bounded(orxSettled, 10_000, 'oneshot after worker death'), 'ERR_CHANNEL_CLOSED');
});

test('a shared Mutex protects an object value across workers', async (t) => {
  const m = new Mutex({ count: 0 });
  const h = m.share();
  const N = 300;
  const ws = [0, 1].map((id) => spawn({ task: 'mutex-counter', id, n: N, handles: [h] }));
  await bounded(Promise.all(ws.map((w) => w.next())), 60_000, 'mutex counters');
  const g = await m.lock();
  t.is(g.value.count, 2 * N);
  g.release();
});

test('Buffers, typed arrays and ArrayBuffers are moved across threads (sender side detached)', async (t) => {
  const [tx, rx] = mpsc.unboundedChannel<Uint8Array | ArrayBuffer | Buffer | Float64Array>();
  const w = spawn({ task: 'buffers', id: 0, n: 0, handles: [tx.share()] });
  tx.close();
  const report = (await bounded(w.next())) as { detached: number[] };
  t.deepEqual(report.detached, [0, 0, 0]);
  const b = await rx.recv();
  t.true(Buffer.isBuffer(b));
  t.is((b as Buffer).length, 65536);
  t.is((b as Buffer)[65535], 7);
  const f = await rx.recv();
  t.true(f instanceof Float64Array);
  t.deepEqual(Array.from(f as Float64Array), [1.5, 2.5]);
  const ab = await rx.recv();
  t.true(ab instanceof ArrayBuffer);
  t.is((ab as ArrayBuffer).byteLength, 16);
  t.is(await rx.recv(), undefined);
});

test('Buffers of many sizes moved in a stream arrive intact, and ones kept alive stay intact while more arrive', async (t) => {
  const [tx, rx] = mpsc.unboundedChannel<Buffer>();
  const N = 600;
  const w = spawn({ task: 'buffer-stream', id: 0, n: N, handles: [tx.share()] });
  tx.close();
  const kept: Buffer[] = [];
  const check = (b: Buffer, i: number): void => {
    if (b.length !== 1000 + ((i * 7919) % 300_000) || b.readUInt32LE(0) !== i || b[b.length - 1] !== (i & 255)) {
      throw new Error(`message ${i} corrupted`);
    }
  };
  let i = 0;
  await bounded(
    (async () => {
      for await (const b of rx) {
        check(b, i);
        if (i % 3 === 0) kept.push(b);
        i++;
      }
    })(),
    60_000,
    'buffer stream',
  );
  t.is(i, N);
  kept.forEach((b, k) => check(b, k * 3));
  await w.exited;
});

test('a shared Notify wakes a waiter in a worker; a shared Barrier elects one leader across threads', async (t) => {
  const n = new Notify();
  const w = spawn({ task: 'notify-wait', id: 0, n: 0, handles: [n.share()] });
  t.is(await bounded(w.next()), 'waiting');
  await delay(50);
  n.notifyOne();
  t.is(await bounded(w.next()), 'done');
  const b = new Barrier(3);
  const h = b.share();
  const ws = [0, 1].map((id) => spawn({ task: 'barrier', id, n: 0, handles: [h] }));
  const mine = await bounded(b.wait());
  const theirs = (await bounded(Promise.all(ws.map((x) => x.next())))) as { leader: boolean }[];
  t.is([mine.isLeader, ...theirs.map((r) => r.leader)].filter(Boolean).length, 1);
});

test('a shared RwLock value is visible to readers in a worker', async (t) => {
  const l = new RwLock('before');
  const h = l.share();
  const wg = await l.write();
  wg.value = 'after';
  const w = spawn({ task: 'rwlock-read', id: 0, n: 0, handles: [h] });
  await delay(30);
  wg.release();
  t.deepEqual(await bounded(w.next()), { value: 'after' });
});

test('a receiver moved to a worker drains the channel; the local object is unusable afterwards', async (t) => {
  const [tx, rx] = mpsc.channel<number>(4);
  await tx.send(1); // buffered before sharing: moves with the state
  const h = rx.share();
  t.throws(() => rx.tryRecv(), { code: 'ERR_INVALID_STATE' });
  const w = spawn({ task: 'consumer', id: 0, n: 0, handles: [h] });
  for (let i = 2; i <= 100; i++) await tx.send(i);
  tx.close();
  t.deepEqual(await bounded(w.next()), { sum: 5050 });
});

test('shared-mode semantics match: Semaphore(5) partial assignment and abort returning permits', async (t) => {
  const sem = new Semaphore(5);
  sem.share();
  const one = await sem.acquire(1);
  const five = sem.acquire(5);
  await delay(10);
  t.is(sem.availablePermits(), 0);
  const three = sem.acquire(3);
  one.release();
  await bounded(five);
  let threeDone = false;
  void three.then(() => (threeDone = true));
  await delay(20);
  t.false(threeDone);
  (await five).release();
  (await bounded(three)).release();
  const s2 = new Semaphore(10);
  s2.share();
  const four = s2.tryAcquire(4);
  const ac = new AbortController();
  const eight = s2.acquire(8, { signal: ac.signal });
  await delay(10);
  ac.abort();
  await t.throwsAsync(eight, { code: 'ABORT_ERR' });
  t.is(s2.availablePermits(), 6);
  four.release();
  t.is(s2.availablePermits(), 10);
});

test('permits, guards, reserved slots and senders taken before share() keep exact counts after it', async (t) => {
  const sem = new Semaphore(5);
  const p = await sem.acquire(3);
  sem.share();
  const q = p.split(1)!;
  q.release();
  t.is(sem.availablePermits(), 3);
  const r = sem.tryAcquire(1); // a holding made after sharing, merged into one from before
  p.merge(r);
  t.is(p.permits, 3);
  p.forget(); // gone for good
  t.is(sem.availablePermits(), 2);
  t.throws(() => sem.tryAcquire(3), { code: 'ERR_NO_PERMITS' });
  sem.tryAcquire(2).release();

  const rw = new RwLock(0, { maxReaders: 3 });
  const w = await rw.write();
  rw.share();
  const rg = w.downgrade();
  const rg2 = rw.tryRead(); // the downgraded guard lets readers in, not writers
  t.throws(() => rw.tryWrite(), { code: 'ERR_WOULD_BLOCK' });
  rg2.release();
  rg.release();
  (await bounded(rw.write())).release();

  const [tx, rx] = mpsc.channel<number>(2);
  const permit = await tx.reserveMany(2);
  const tx2 = tx.clone();
  fromShared<mpsc.Sender<number>>(tx.share()).close();
  t.is(tx.capacity(), 0);
  permit.send(5);
  permit.release();
  t.is(tx.capacity(), 1);
  t.is(await bounded(rx.recv()), 5);
  t.is(tx.capacity(), 2);
  tx.close();
  t.false(rx.isClosed());
  tx2.close();
  t.true(rx.isClosed());
  t.is(await bounded(rx.recv()), undefined);
});

test('shared-mode mpsc channel(1): the freed slot goes to the waiting reserve and trySend fails full', async (t) => {
  const [tx, rx] = mpsc.channel<number>(1);
  tx.share();
  const p1 = await tx.reserve();
  p1.send(1);
  const second = tx.reserve();
  t.is(await bounded(rx.recv()), 1);
  t.is(t.throws(() => tx.trySend(2))!.message, 'channel full');
  (await bounded(second)).send(3);
  t.is(await bounded(rx.recv()), 3);
  rx.close();
  await t.throwsAsync(tx.send(4), { code: 'ERR_CHANNEL_CLOSED' });
});

test('a shared channel\'s recv() that loses a select() to a sleep ending in the same batch leaves its message in the channel', async (t) => {
  for (const [tx, rx] of [mpsc.channel<number>(4), mpsc.unboundedChannel<number>()] as const) {
    tx.share(); // native mode, as when an end is posted to a worker
    for (let i = 0; i < 30; i++) {
      const raced = select({ m: (signal) => rx.recv({ signal }), t: (signal) => sleep(1, { signal }) });
      // The send wakes the receive before or after the sleep comes due: both settle in one batch,
      // in that order.
      const wakeFirst = i % 2 === 1;
      if (wakeFirst) void tx.send(i);
      const until = Date.now() + 3;
      while (Date.now() < until);
      if (!wakeFirst) void tx.send(i);
      const r = await bounded(raced);
      // Whichever branch won, the message is received exactly once.
      t.is(r.key === 'm' ? r.value : rx.tryRecv(), i);
    }
  }
});

test('a shared channel\'s send() that loses a select() to a sleep ending in the same batch as its freed slot never sends', async (t) => {
  const [tx, rx] = mpsc.channel<number>(1);
  tx.share();
  for (let i = 0; i < 30; i++) {
    await bounded(tx.send(-1)); // full
    const raced = select({ s: (signal) => tx.send(i, { signal }), t: (signal) => sleep(1, { signal }) });
    const until = Date.now() + 3; // the sleep comes due before the receive frees the slot
    while (Date.now() < until);
    t.is(await bounded(rx.recv()), -1);
    const r = await bounded(raced);
    await delay(1);
    // As Tokio's send() in a select!: a branch that lost has sent nothing (and freed its slot).
    if (r.key === 't') t.is(t.throws(() => rx.tryRecv())!.message, 'channel empty');
    else t.is(rx.tryRecv(), i);
  }
  t.is(tx.capacity(), 1);
});

test('a shared broadcast recv() woken just before a sleep that wins its select() leaves the value to the next recv()', async (t) => {
  const [tx, rx] = broadcast.channel<number>(16);
  tx.share();
  for (let i = 0; i < 30; i++) {
    const raced = select({ m: (signal) => rx.recv({ signal }), t: (signal) => sleep(1, { signal }) });
    tx.send(i); // the wake-up is queued first, then the sleep comes due: one batch, in that order
    const until = Date.now() + 3;
    while (Date.now() < until);
    const r = await bounded(raced);
    t.is(r.key === 'm' ? r.value : rx.tryRecv(), i);
  }
});

test('a shared Notify\'s notified() that loses a select() to a sleep ending in the same batch passes its notifyOne() on', async (t) => {
  const n = new Notify();
  n.share();
  for (let i = 0; i < 30; i++) {
    const raced = select({ n: (signal) => n.notified({ signal }), t: (signal) => sleep(1, { signal }) });
    // The notification wakes the waiter before or after the sleep comes due (one batch).
    const wakeFirst = i % 2 === 1;
    if (wakeFirst) n.notifyOne();
    const until = Date.now() + 3;
    while (Date.now() < until);
    if (!wakeFirst) n.notifyOne();
    if ((await bounded(raced)).key === 'n') continue;
    // As a Tokio Notified dropped after notify_one picked it: the permit is stored for the next.
    await bounded(n.notified(), 5_000, 'the passed-on notification');
  }
  // notifyWaiters() stores nothing, also for a waiter that lost its race.
  const raced = select({ n: (signal) => n.notified({ signal }), t: (signal) => sleep(1, { signal }) });
  const until = Date.now() + 3;
  while (Date.now() < until);
  n.notifyWaiters();
  await bounded(raced);
  await delay(10);
  const later = select({ n: (signal) => n.notified({ signal }).then(() => 'notified'), t: (signal) => sleep(20, { signal }).then(() => 'none') });
  t.is((await bounded(later)).value, 'none');
});

test('shared bounded channel, values sent without a native call: full at capacity, a freed slot goes to the waiting send before a racing trySend', async (t) => {
  const [tx, rx] = mpsc.channel<number | { n: number }>(2);
  fromShared<mpsc.Sender<number>>(tx.share()).close();
  tx.trySend(1); // through the sender's ring
  tx.trySend({ n: 2 }); // through native code, after what the ring holds
  t.is(tx.capacity(), 0);
  t.is(t.throws(() => tx.trySend(3))!.message, 'channel full');
  const waiting = tx.send(4);
  t.is(await bounded(rx.recv()), 1);
  t.is(tx.capacity(), 0); // the freed slot went to the waiting send
  t.is(t.throws(() => tx.trySend(5))!.message, 'channel full');
  await bounded(waiting);
  t.deepEqual(await bounded(rx.recv()), { n: 2 });
  t.is(await bounded(rx.recv()), 4);
  t.is(tx.capacity(), 2);
  for (let i = 0; i < 10; i++) {
    tx.trySend(i);
    t.is(await bounded(rx.recv()), i);
  }
  t.is(tx.capacity(), 2);
  rx.close();
  t.throws(() => tx.trySend(6), { code: 'ERR_CHANNEL_CLOSED' });
  await t.throwsAsync(tx.send(7), { code: 'ERR_CHANNEL_CLOSED' });
});

test('shared bounded channel(3) with two producer workers: never more than 3 buffered, every message once and in order per producer, capacity back to 3', async (t) => {
  const [tx, rx] = mpsc.channel<[number, number] | number>(3);
  const N = 3000;
  const ws = [0, 1].map((id) => spawn({ task: 'producer', id, n: N, handles: [tx.share()] }));
  const next = [0, 0];
  let count = 0;
  let capacityAtEnd = -1;
  await bounded(
    (async () => {
      for (;;) {
        if (rx.len > 3) throw new Error(`${rx.len} buffered in a channel of 3`);
        const v = await rx.recv();
        if (v === undefined) break;
        const [id, i] = typeof v === 'number' ? [Math.floor(v / 1_000_000), v % 1_000_000] : v;
        if (next[id] !== i) throw new Error(`producer ${id}: expected ${next[id]}, got ${i}`);
        next[id]++;
        count++;
        if (count % 64 === 0) await delay(0);
        if (count === 2 * N) {
          capacityAtEnd = tx.capacity();
          tx.close(); // ours, kept until now to check the capacity
        }
      }
    })(),
    60_000,
    'bounded fan-in',
  );
  t.is(capacityAtEnd, 3);
  t.is(count, 2 * N);
  t.deepEqual(next, [N, N]);
  await Promise.all(ws.map((w) => w.exited));
});

test('shared Notify: notifyOne before any waiter lets exactly one later notified() through', async (t) => {
  const n = new Notify();
  n.share();
  n.notifyOne();
  n.notifyOne();
  await bounded(n.notified());
  let second = false;
  void n.notified().then(() => (second = true));
  await delay(20);
  t.false(second);
  n.notifyOne();
  await delay(20);
  t.true(second);
});

test('fromShared rejects forged, stale and malformed handles with ERR_INVALID_HANDLE', async (t) => {
  const sem = new Semaphore(1);
  const good = sem.share();
  t.true(fromShared<Semaphore>(good) instanceof Semaphore);
  const bad: unknown[] = [
    undefined,
    null,
    42,
    'handle',
    {},
    [],
    { ...good, kyotoSync: 2 },
    { ...good, type: 'Nope' },
    { ...good, type: 'Mutex' }, // right slot, wrong kind
    { ...good, index: -1 },
    { ...good, index: 2 ** 32 },
    { ...good, index: 1.5 },
    { ...good, gen: good.gen + 1 },
    { ...good, secret: 'zz' },
    { ...good, secret: '0'.repeat(16) },
    { ...good, secret: good.secret.slice(0, 15) + (good.secret[15] === '0' ? '1' : '0') },
    {
      get kyotoSync(): never {
        throw new Error('getter');
      },
    },
  ];
  // Fuzz: random slots, generations and secrets for every type.
  const types = ['Semaphore', 'Mutex', 'RwLock', 'Notify', 'Barrier', 'OnceCell', 'mpsc.Sender', 'mpsc.Receiver', 'mpsc.UnboundedSender', 'mpsc.UnboundedReceiver', 'oneshot.Sender', 'oneshot.Receiver', 'broadcast.Sender', 'broadcast.Receiver', 'watch.Sender', 'watch.Receiver'];
  for (let i = 0; i < 2000; i++) {
    const hex = Array.from({ length: 16 }, () => '0123456789abcdef'[Math.floor(Math.random() * 16)]).join('');
    bad.push({
      kyotoSync: 1,
      type: types[i % types.length],
      index: i % 3 === 0 ? Math.floor(Math.random() * 2 ** 32) : Math.floor(Math.random() * 64),
      gen: i % 5 === 0 ? good.gen : Math.floor(Math.random() * 2 ** 32),
      secret: hex,
    });
  }
  for (const h of bad) {
    const e = t.throws(() => fromShared(h as SyncHandle), { instanceOf: TypeError });
    if ((e as { code?: string } | undefined)?.code !== 'ERR_INVALID_HANDLE') t.fail(`wrong code for ${JSON.stringify(h)}`);
  }
  // Stale: a sender handle is revivable once.
  const [tx] = mpsc.channel<number>(1);
  const once = tx.share();
  fromShared<mpsc.Sender<number>>(once).close();
  t.throws(() => fromShared(once), { code: 'ERR_INVALID_HANDLE' });
  t.true(fromShared<Semaphore>(good) instanceof Semaphore);
});

test('shared unbounded channel: simple values and objects interleaved past the ring size keep their order', async (t) => {
  const [tx, rx] = mpsc.unboundedChannel<unknown>();
  fromShared<mpsc.UnboundedSender<unknown>>(tx.share()).close(); // into shared mode; drop the handle's clone
  const sent: unknown[] = [];
  for (let i = 0; i < 5000; i++) {
    const v = i % 97 === 0 ? { i } : i % 89 === 0 ? `s${i}` : i % 5 === 0 ? null : i % 7 === 0 ? undefined : i % 11 === 0 ? i % 2 === 0 : i;
    sent.push(v);
    tx.send(v);
  }
  t.is(rx.len, 5000);
  const got: unknown[] = [rx.tryRecv()];
  got.push(...(await rx.recvMany(1000)));
  while (got.length < 5000) got.push(await rx.recv());
  t.deepEqual(got, sent);
  t.throws(() => rx.tryRecv(), { code: 'ERR_CHANNEL_EMPTY' });
  tx.close();
  t.is(await rx.recv(), undefined);
});

test('shared unbounded channel: a send after the receiver closed throws, what was sent before still drains', async (t) => {
  const [tx, rx] = mpsc.unboundedChannel<number>();
  fromShared<mpsc.UnboundedSender<unknown>>(tx.share()).close(); // into shared mode; drop the handle's clone
  tx.send(1);
  tx.send(2);
  rx.close();
  t.throws(() => tx.send(3), { code: 'ERR_CHANNEL_CLOSED' });
  t.is(await rx.recv(), 1);
  t.is(await rx.recv(), 2);
  tx.close();
  t.is(await rx.recv(), undefined);
});

test('shared unbounded channel: a receiver moved away keeps the messages it had already pulled', async (t) => {
  const [tx, rx] = mpsc.unboundedChannel<number>();
  fromShared<mpsc.UnboundedSender<unknown>>(tx.share()).close(); // into shared mode; drop the handle's clone
  for (let i = 1; i <= 10; i++) tx.send(i);
  t.is(await rx.recv(), 1); // pulls the batch into the receiver's JS buffer
  const rx2 = fromShared<mpsc.Receiver<number>>(rx.share());
  t.is(rx2.len, 9);
  t.deepEqual(await rx2.recvMany(100), [2, 3, 4, 5, 6, 7, 8, 9, 10]);
  tx.close();
  t.is(await rx2.recv(), undefined);
});

test('a worker sending numbers through its ring and exiting: every value arrives, then the end', async (t) => {
  const [tx, rx] = mpsc.unboundedChannel<number>();
  const w = spawn({ task: 'ring-producer', id: 0, n: 100_000, handles: [tx.share()] });
  tx.close();
  let sum = 0;
  let count = 0;
  for await (const v of rx) {
    if (v !== count) throw new Error(`expected ${count}, got ${v}`);
    sum += v;
    count++;
  }
  t.is(count, 100_000);
  t.is(sum, (100_000 * 99_999) / 2);
  await w.exited;
});

// Tokio's mpsc order: a send that completes before another starts (here: the first worker sends,
// then hands the turn to the second through Atomics, which sends) is received first, whatever
// path each value takes (numbers go through the sender's ring, objects through the native queue).
// The receiver pauses now and then so both paths hold messages when it takes them.
for (const isBounded of [false, true]) {
  for (const [ka, kb] of [
    ['num', 'obj'],
    ['obj', 'num'],
    ['num', 'num'],
    ['obj', 'obj'],
  ] as const) {
    const chan = isBounded ? 'bounded(16)' : 'unbounded';
    test(`${chan} channel: sends that two workers take turns at (${ka} then ${kb}) arrive in turn order`, async (t) => {
      const ROUNDS = 2000;
      const [tx, rx] = isBounded ? mpsc.channel<unknown>(16) : mpsc.unboundedChannel<unknown>();
      const turn = new Int32Array(new SharedArrayBuffer(4));
      const ws = [ka, kb].map((kind, id) =>
        spawn({ task: 'causal', id, n: ROUNDS, kind, bounded: isBounded, ms: 2000, counters: turn, handles: [tx.share()] }),
      );
      tx.close();
      let next = 0;
      let batches = 0;
      for (;;) {
        const batch = await bounded(rx.recvMany(64), 20_000, 'recvMany');
        if (batch.length === 0) break;
        for (const v of batch) {
          const got = typeof v === 'number' ? v : (v as { t: number }).t;
          if (got !== next) {
            t.fail(`expected turn ${next}, received turn ${got} first`);
            Atomics.store(turn, 0, -1);
            Atomics.notify(turn, 0);
            for (const w of ws) await w.worker.terminate();
            return;
          }
          next++;
        }
        if (++batches % 4 === 0) await delay(1); // let both senders run ahead of the receiver
      }
      for (const w of ws) t.is(await bounded(w.next(), 20_000, 'worker'), 'done');
      t.true(next >= 2, `only ${next} turns ran`);
      t.log(`${next} turns in order`);
    });
  }
}

// Tokio's close: after `rx.close()` the receiver still gets every message whose send succeeded,
// and `recv()` returns `undefined` only when none can still arrive. A worker sends as fast as it
// can while the main thread receives, closes after a random number of messages and drains (the
// worker's sender still open): it must receive exactly the sends that succeeded — including one
// that took its number (and saw the channel open) just before the close and published just after.
for (const cap of [0, 64]) {
  for (const kind of ['num', 'obj'] as const) {
    const chan = cap === 0 ? 'unbounded' : `bounded(${cap})`;
    const path = kind === 'num' ? 'numbers through the ring' : 'objects through the native queue';
    test(`${chan} channel, ${path}: a receiver closed while a worker sends receives exactly the sends that succeeded`, async (t) => {
      const w = spawn({ task: 'close-race', id: 0, n: 0, handles: [] });
      // One round: received vs successful sends.
      const round = async (): Promise<[number, number]> => {
        const [tx, rx] = cap === 0 ? mpsc.unboundedChannel<unknown>() : mpsc.channel<unknown>(cap);
        w.worker.postMessage({ handle: tx.share(), kind, bounded: cap > 0, max: 200_000 });
        tx.close();
        const closeAt = Math.floor(Math.random() * (cap === 0 ? 2000 : cap));
        let got = 0;
        while (got < closeAt && (await rx.recv()) !== undefined) got++;
        // Then a pause half the time: the sender runs on alone (and may be preempted anywhere).
        if (Math.random() < 0.5) await delay(Math.random() * 3);
        rx.close();
        while ((await rx.recv()) !== undefined) got++;
        t.true(rx.isClosed());
        const { sent } = (await w.next()) as { sent: number };
        return [got, sent];
      };
      let rounds = 0;
      let slowest = 0;
      let most = 0;
      try {
        t.is(await bounded(w.next(), 60_000, 'worker start'), 'ready');
        // The bounds are for a busy machine (every cross-thread wake can take milliseconds).
        const deadline = Date.now() + 5000;
        while (rounds < 50 && Date.now() < deadline) {
          const t0 = Date.now();
          const [got, sent] = await bounded(round(), 60_000, 'a round');
          slowest = Math.max(slowest, Date.now() - t0);
          most = Math.max(most, got);
          rounds++;
          if (got !== sent) {
            t.fail(`round ${rounds}: received ${got} messages, ${sent} sends succeeded`);
            return;
          }
        }
      } finally {
        w.worker.postMessage('stop');
        await w.exited;
      }
      t.log(`${rounds} rounds, the slowest ${slowest} ms, ${most} messages at most`);
    });
  }
}

test('two sending wrappers on one thread (and a clone): interleaved sends arrive in program order', async (t) => {
  for (const cap of [0, 8192]) {
    const [tx, rx] = cap === 0 ? mpsc.unboundedChannel<unknown>() : mpsc.channel<unknown>(cap);
    const tx1 = fromShared<mpsc.UnboundedSender<unknown>>(tx.share());
    const tx2 = fromShared<mpsc.UnboundedSender<unknown>>(tx.share());
    const senders = [tx, tx1, tx2, tx1.clone()] as mpsc.UnboundedSender<unknown>[];
    const send = (s: mpsc.UnboundedSender<unknown>, v: unknown): void => {
      if (cap === 0) s.send(v);
      else (s as unknown as mpsc.Sender<unknown>).trySend(v);
    };
    // The smallest case: one value each through two rings.
    send(tx1, 1);
    send(tx2, 2);
    t.deepEqual(await bounded(rx.recvMany(10)), [1, 2]);
    // Past the ring size, mixing the ring and the native queue on every wrapper.
    const sent: unknown[] = [];
    for (let i = 0; i < 5000; i++) {
      const v = i % 13 === 0 ? { i } : i % 7 === 0 ? null : i % 11 === 0 ? `s${i}` : i;
      sent.push(v);
      send(senders[(i * 7 + (i >> 3)) % senders.length], v);
    }
    const got: unknown[] = [];
    while (got.length < sent.length) got.push(...(await bounded(rx.recvMany(333))));
    // The first difference only (a deepEqual diff of two long arrays overflows the stack).
    const i = got.findIndex((v, j) => JSON.stringify(v) !== JSON.stringify(sent[j]));
    t.is(i, -1, `message ${i}: expected ${JSON.stringify(sent[i])}, got ${JSON.stringify(got[i])}`);
    t.is(got.length, sent.length);
    for (const s of senders) s.close();
    t.is(await bounded(rx.recv()), undefined);
  }
});

test('oneshot across threads: a sender moved to a worker delivers a structured clone; a receiver moved there gets ours', async (t) => {
  const [tx, rx] = oneshot.channel<{ hello: string; n: number; buf: Buffer }>();
  const pending = rx.then((v) => v); // awaited before the sender moves: the wait follows it
  const w = spawn({ task: 'oneshot-send', id: 0, n: 0, handles: [tx.share()] });
  t.throws(() => tx.send({ hello: '', n: 0, buf: Buffer.alloc(0) }), { code: 'ERR_INVALID_STATE' });
  t.deepEqual(await bounded(w.next()), { sent: true });
  const v = await bounded(pending);
  t.is(v.hello, 'world');
  t.is(v.n, 42);
  t.is(Buffer.from(v.buf).toString(), 'abc');
  t.throws(() => rx.tryRecv(), { code: 'ERR_CHANNEL_CLOSED' });

  const [tx2, rx2] = oneshot.channel<string>();
  const w2 = spawn({ task: 'oneshot-recv', id: 0, n: 0, handles: [rx2.share()] });
  await delay(20);
  t.false(tx2.isClosed());
  t.true(tx2.send('over there'));
  t.deepEqual(await bounded(w2.next()), { got: 'over there' });
  await bounded(tx2.closed()); // receiving closed the receiver
});

test('oneshot across threads: a worker terminated holding the sender makes the receiver reject with RecvError', async (t) => {
  const [tx, rx] = oneshot.channel<number>();
  const w = spawn({ task: 'hold-oneshot-and-die', id: 0, n: 0, handles: [tx.share()] });
  t.is(await bounded(w.next()), 'holding');
  t.throws(() => rx.tryRecv(), { code: 'ERR_CHANNEL_EMPTY' });
  const r = rx.then(
    () => 'value',
    (e: unknown) => `${(e as { code: string }).code}:${(e as { kind: string }).kind}`,
  );
  await w.worker.terminate();
  t.is(await bounded(r, 10_000, 'oneshot after worker death'), 'ERR_CHANNEL_CLOSED:closed');
});

test('shared broadcast capacity 4 (5 rounds up to 8 too): lagged with the skipped count, then the oldest retained', async (t) => {
  const [tx, rx] = broadcast.channel<number>(4);
  tx.send(1);
  fromShared<broadcast.Sender<number>>(tx.share()).close(); // into shared mode with a retained value
  for (const v of [2, 3, 4]) tx.send(v);
  t.is(await rx.recv(), 1);
  for (const v of [5, 6, 7, 8]) tx.send(v);
  const e = await t.throwsAsync(rx.recv(), { code: 'ERR_LAGGED' });
  t.is((e as unknown as { skipped: number }).skipped, 3);
  t.deepEqual([await rx.recv(), await rx.recv(), await rx.recv(), await rx.recv()], [5, 6, 7, 8]);
  t.throws(() => rx.tryRecv(), { code: 'ERR_CHANNEL_EMPTY' });
  const [tx8, rx8] = broadcast.channel<number>(5);
  tx8.share();
  for (let i = 1; i <= 9; i++) tx8.send(i);
  t.throws(() => rx8.tryRecv(), { code: 'ERR_LAGGED', message: /1 values/ });
  t.is(rx8.tryRecv(), 2);
});

test('broadcast across threads: a receiver moved to a worker sees every value in order (cloned per receiver), then the close', async (t) => {
  const [tx, rx] = broadcast.channel<number | { k: number }>(16);
  const mine = tx.subscribe();
  const w = spawn({ task: 'bcast-recv', id: 0, n: 0, handles: [rx.share()] });
  t.is(await bounded(w.next()), 'ready');
  t.is(tx.receiverCount(), 2);
  for (let i = 0; i < 10; i++) t.is(tx.send(i % 2 === 0 ? i : { k: i }), 2);
  t.is(mine.len, 10);
  for (let i = 0; i < 10; i++) t.deepEqual(await mine.recv(), i % 2 === 0 ? i : { k: i });
  mine.close();
  tx.close();
  const { got } = (await bounded(w.next())) as { got: unknown[] };
  t.deepEqual(got.slice(0, 10), [0, { k: 1 }, 2, { k: 3 }, 4, { k: 5 }, 6, { k: 7 }, 8, { k: 9 }]);
});

test('broadcast across threads: a worker terminated while subscribed stops counting as a receiver', async (t) => {
  const [tx, rx] = broadcast.channel<number>(2);
  const extra = tx.subscribe();
  const w = spawn({ task: 'hold-bcast-rx-and-die', id: 0, n: 0, handles: [rx.share()] });
  t.is(await bounded(w.next()), 'holding');
  t.is(tx.receiverCount(), 2);
  extra.close();
  const closed = tx.closed();
  await w.worker.terminate();
  await bounded(closed, 10_000, 'broadcast closed() after the last receiver died');
  t.is(tx.receiverCount(), 0);
  t.throws(() => tx.send(1), { code: 'ERR_CHANNEL_CLOSED' });
});

test('watch across threads: sendModify from two workers is atomic, a worker receiver sees changes and the close', async (t) => {
  const [tx, rx] = watch.channel<{ count: number }>({ count: 0 });
  const h = tx.share();
  const N = 200;
  const ws = [0, 1].map((id) => spawn({ task: 'watch-modify', id, n: N, handles: [id === 0 ? h : tx.share()] }));
  await bounded(Promise.all(ws.map((w) => w.next())), 60_000, 'watch modifiers');
  t.is(rx.borrow().count, 2 * N);
  t.true(rx.hasChanged());
  await rx.changed();
  t.false(rx.hasChanged());

  const [stx, srx] = watch.channel<string>('a');
  const w = spawn({ task: 'watch-changed', id: 0, n: 0, handles: [srx.share()] });
  srx.close();
  t.is(await bounded(w.next()), 'ready');
  t.is(stx.receiverCount(), 1);
  stx.send('b');
  t.is(await bounded(w.next()), 'seen');
  t.is(stx.sendReplace('c'), 'b');
  t.is(await bounded(w.next()), 'seen');
  stx.close();
  const { seen } = (await bounded(w.next())) as { seen: string[] };
  t.deepEqual(seen, ['a', 'b', 'c', 'closed:ERR_CHANNEL_CLOSED']);
});

test('OnceCell across threads: one initialiser at a time, a failed one lets another retry, all see one value', async (t) => {
  const cell = new OnceCell<string>();
  const h = cell.share();
  const counters = new Int32Array(new SharedArrayBuffer(4));
  const ws = [0, 1, 2].map((id) => spawn({ task: 'once-init', id, n: 0, handles: [h], counters }));
  const mine = cell.getOrInit(async () => {
    Atomics.add(counters, 0, 1);
    await delay(30);
    return 'main';
  });
  const results = (await bounded(Promise.all(ws.map((w) => w.next())), 30_000, 'once-init')) as { v?: string; failed?: string }[];
  const v = await bounded(mine);
  const failures = results.filter((r) => r.failed !== undefined);
  t.true(failures.every((r, i) => r.failed === 'the first initialiser fails' && (i === 0 || failures.length <= 1)));
  for (const r of results) if (r.v !== undefined) t.is(r.v, v);
  t.not(v, 'w0');
  t.is(Atomics.load(counters, 0), 1 + failures.length);
  t.is(cell.get(), v);
  t.true(cell.initialized());
  t.throws(() => cell.set('x'), { code: 'ERR_ONCE_CELL_SET' });
});

test('OnceCell across threads: a worker terminated while initialising lets a waiting caller retry', async (t) => {
  const cell = new OnceCell<string>();
  const w = spawn({ task: 'once-init-and-die', id: 0, n: 0, handles: [cell.share()] });
  t.is(await bounded(w.next()), 'initializing');
  t.throws(() => cell.set('x'), { code: 'ERR_ONCE_CELL_SET', message: /being initialised/ });
  let ran = false;
  const v = cell.getOrInit(() => {
    ran = true;
    return 'mine';
  });
  await delay(30);
  t.false(ran);
  await w.worker.terminate();
  t.is(await bounded(v, 10_000, 'OnceCell retry after worker death'), 'mine');
  t.true(ran);
});

test('cross-thread: 10 000 waits settled or aborted leave no listeners on a long-lived signal', async (t) => {
  const long = new AbortController();
  setMaxListeners(20_000, long.signal);
  const sem = new Semaphore(0);
  const m = new Mutex(0);
  const n = new Notify();
  const [tx, rx] = mpsc.channel<number>(1);
  const N = 2500;
  const w = spawn({ task: 'release-all', id: 0, n: N, handles: [sem.share(), m.share(), n.share(), tx.share()] });
  tx.close();
  t.is(await bounded(w.next()), 'locked');
  const waits: Promise<unknown>[] = [];
  for (let i = 0; i < N; i++) {
    // Shared-mode waits on the long-lived signal, settled by the worker: each removes its listener.
    waits.push(sem.acquire(1, { signal: long.signal }));
    waits.push(m.lock({ signal: long.signal }));
    waits.push(n.notified({ signal: long.signal }));
    waits.push(rx.recv({ signal: long.signal }));
  }
  t.is(getEventListeners(long.signal, 'abort').length, 4 * N);
  w.worker.postMessage('go');
  for (let i = 0; i < N; i++) {
    const g = (await bounded(waits[i * 4 + 1] as Promise<{ release(): void }>, 20_000, 'shared mutex waiter')) as { release(): void };
    g.release();
  }
  const settled = await bounded(Promise.all(waits), 30_000, 'shared waits');
  t.is(settled.filter((v, i) => i % 4 === 3).length, N);
  t.is(getEventListeners(long.signal, 'abort').length, 0);
  for (let i = 0; i < N; i++) (settled[i * 4] as { release(): void }).release();
  t.is(sem.availablePermits(), N);
  // Aborted cross-thread waits: each leaves the native queue and removes its listener.
  const ac = new AbortController();
  setMaxListeners(20_000, ac.signal);
  const many: Promise<unknown>[] = [];
  for (let i = 0; i < 10_000; i++) many.push(sem.acquire(N + 1, { signal: ac.signal }).catch((e: { code?: string }) => e.code));
  t.is(sem.availablePermits(), 0); // the head waiter holds the partial assignment
  ac.abort();
  const codes = await bounded(Promise.all(many), 20_000, 'aborted shared waits');
  t.true(codes.every((c) => c === 'ABORT_ERR'));
  t.is(getEventListeners(ac.signal, 'abort').length, 0);
  t.is(sem.availablePermits(), N); // partial assignments returned, no waiter left in native memory
  sem.tryAcquire(N).release();
  long.abort();
  await w.exited;
});

test('a send at the edge of the stack either fails before publishing or delivers and wakes the waiting receiver', async (t) => {
  const [tx, rx] = mpsc.unboundedChannel<number>();
  const w = spawn({ task: 'send-at-stack-edge', id: 0, n: 0, handles: [tx.share()] });
  tx.close();
  const first = rx.recv(); // waits natively: the worker's ring send must kick it
  w.worker.postMessage('go');
  const got = [await bounded(first, 10_000, 'the receiver woken by the send')];
  for (let v = await bounded(rx.recv(), 10_000, 'end'); v !== undefined; v = await bounded(rx.recv(), 10_000, 'end')) got.push(v);
  const report = (await bounded(w.next(), 10_000, 'report')) as { ok: number[]; threw: number };
  t.true(report.threw > 0, 'some attempts hit the stack limit');
  // Each value went out once, by the send that returned: none that threw delivered it too.
  t.deepEqual(report.ok, Array.from({ length: 160 }, (_, k) => k));
  t.deepEqual(got, report.ok);
  await w.exited;
});

test('shared permits, guards and channel ends collected without release() or close() give back what they held', async (t) => {
  const { execFile } = await import('node:child_process');
  const out = await bounded(
    new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['--expose-gc', path.join(__dirname, 'fixtures', 'sync-gc.js')], { timeout: 30_000 }, (err, stdout) =>
        err ? reject(new Error(`${err.message}\n${stdout}`)) : resolve(stdout),
      ),
    ),
    40_000,
    'gc child',
  );
  t.deepEqual(JSON.parse(out.trim().split('\n').pop()!), {
    permits: true,
    mutex: true,
    mpsc: true,
    sender: true,
    oneshot: 'ERR_CHANNEL_CLOSED',
    broadcast: true,
    watch: true,
  });
});

test('share() leaves the bytes a reader already has intact: a broadcast value received, a watch value borrowed, a OnceCell value read', (t) => {
  // Each of these values is its own ArrayBuffer (not a slice of Node's Buffer pool): moving it
  // into native memory would detach it, emptying what the reader holds.
  const [tx, rx] = broadcast.channel<Buffer>(4);
  const later = tx.subscribe();
  tx.send(Buffer.alloc(64, 7));
  const got = rx.tryRecv();
  const h = tx.share();
  t.is(got.byteLength, 64, 'the receiver that had read it keeps it');
  t.deepEqual([...got], Array<number>(64).fill(7));
  t.deepEqual([...later.tryRecv()], Array<number>(64).fill(7), 'the one that had not still gets it');
  fromShared<broadcast.Sender<Buffer>>(h).close();

  const [wtx, wrx] = watch.channel(new Uint8Array([1, 2, 3, 4]));
  const seen = wrx.borrowAndUpdate();
  const hw = wtx.share();
  t.is(seen.byteLength, 4, 'the borrowed watch value stays');
  t.deepEqual([...seen], [1, 2, 3, 4]);
  t.deepEqual([...wrx.borrow()], [1, 2, 3, 4]);
  fromShared<watch.Sender<Uint8Array>>(hw).close();

  const cell = new OnceCell<ArrayBuffer>();
  cell.set(new Float64Array([1.5, 2.5]).buffer);
  const v = cell.get()!;
  cell.share();
  t.is(v.byteLength, 16, 'the value read from the OnceCell stays');
  t.deepEqual([...new Float64Array(cell.get()!)], [1.5, 2.5]);
});

test('getOrInit() then share() in the same tick: the initialisation still runs and every thread gets its value', async (t) => {
  // The caller's turn is granted at once, but init runs a microtask later: share() in between
  // must not leave the initialisation claimed by nobody (every getOrInit would wait forever).
  const cell = new OnceCell<number>();
  let runs = 0;
  const first = cell.getOrInit(() => ++runs * 10);
  const h = cell.share();
  t.is(await bounded(first, 10_000, 'getOrInit'), 10);
  t.is(cell.get(), 10);
  const counters = new Int32Array(new SharedArrayBuffer(4));
  const w = spawn({ task: 'once-init', id: 1, n: 0, handles: [h], counters });
  t.deepEqual(await bounded(w.next(), 10_000, 'worker'), { v: 10 }, 'a worker sees the value, not an endless initialisation');
  await bounded(w.exited, 10_000, 'worker exit');
  t.is(runs, 1);
  t.is(Atomics.load(counters, 0), 0, 'the worker did not initialise again');

  // Two callers queued before the share: one initialises, both get its value.
  const cell2 = new OnceCell<string>();
  const a = cell2.getOrInit(() => 'a');
  const b = cell2.getOrInit(() => 'b');
  cell2.share();
  t.deepEqual(await bounded(Promise.all([a, b]), 10_000, 'both callers'), ['a', 'a']);
});

test('getOrInit() on a shared OnceCell returns the initialiser\'s bytes intact to its caller, as to every other', async (t) => {
  const cell = new OnceCell<Uint8Array>();
  const other = fromShared<OnceCell<Uint8Array>>(cell.share());
  const v = await cell.getOrInit(() => new Uint8Array([9, 8, 7]));
  t.is(v.byteLength, 3, 'the caller that initialised gets the value');
  t.deepEqual([...v], [9, 8, 7]);
  t.deepEqual([...(await other.getOrInit(() => new Uint8Array(0)))], [9, 8, 7]);

  // Shared while the initialisation runs: it finishes natively, with the same result.
  const cell2 = new OnceCell<DataView>();
  let go!: () => void;
  let started!: () => void;
  const gate = new Promise<void>((resolve) => (go = resolve));
  const running = new Promise<void>((resolve) => (started = resolve));
  const init = cell2.getOrInit(async () => {
    started();
    await gate;
    return new DataView(new Uint8Array([5, 6]).buffer);
  });
  await bounded(running);
  const h2 = cell2.share();
  go();
  const dv = await bounded(init);
  t.is(dv.byteLength, 2);
  t.is(dv.getUint8(1), 6);
  t.is(fromShared<OnceCell<DataView>>(h2).get()!.getUint8(0), 5);
});

test('a lock guard taken before share() keeps working on the value it gave out: writes through it are stored on release', async (t) => {
  // As with Arc<Mutex<T>> in Tokio: sharing the lock while a guard is held does not change what
  // that guard protects. Code that read the value before share() and writes to it afterwards
  // must not write to an object the lock no longer has.
  const m = new Mutex({ items: [1] });
  const g = await m.lock();
  const state = g.value;
  const h = m.share();
  state.items.push(2);
  t.is(g.value, state, 'the guard still gives out the object it gave out before');
  g.release();
  const other = fromShared<Mutex<{ items: number[] }>>(h);
  const g2 = await bounded(other.lock());
  t.deepEqual(g2.value, { items: [1, 2] });
  g2.release();

  // RwLock: a write guard from before share() (then downgraded), and readers from before it.
  const l = new RwLock({ n: 1 });
  const w = await l.write();
  const obj = w.value;
  l.share();
  obj.n = 2;
  const r = w.downgrade();
  t.is(r.value, obj);
  r.release();
  t.deepEqual((await bounded(l.read())).value, { n: 2 });

  const l2 = new RwLock(new Uint8Array([1, 2, 3]));
  const r1 = await l2.read();
  const bytes = r1.value;
  const r2 = l2.tryRead();
  l2.share();
  t.is(bytes.byteLength, 3, 'the bytes a reader holds are not moved out from under it');
  t.is(r2.value, bytes);
  r1.release();
  r2.release();
  const wg = await bounded(l2.write());
  t.deepEqual([...wg.value], [1, 2, 3]);
  wg.release();
});

test('set() on a shared OnceCell that fails (initialising elsewhere) leaves the caller\'s bytes intact, as in one thread', async (t) => {
  const cell = new OnceCell<Uint8Array>();
  const h = cell.share();
  let done!: (v: Uint8Array) => void;
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  const init = cell.getOrInit(
    () =>
      new Promise<Uint8Array>((resolve) => {
        started();
        done = resolve;
      }),
  );
  await bounded(running);
  const mine = new Uint8Array([1, 2, 3, 4]);
  t.throws(() => fromShared<OnceCell<Uint8Array>>(h).set(mine), { code: 'ERR_ONCE_CELL_SET', message: /initiali/ });
  t.is(mine.byteLength, 4, 'nothing was stored, so nothing was taken');
  done(new Uint8Array([9]));
  t.deepEqual([...(await bounded(init))], [9]);
  t.throws(() => cell.set(mine), { code: 'ERR_ONCE_CELL_SET' });
  t.deepEqual([...mine], [1, 2, 3, 4]);
});
