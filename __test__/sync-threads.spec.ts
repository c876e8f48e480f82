import test from 'ava';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { setTimeout as delay } from 'node:timers/promises';
import { fromShared, mpsc, Mutex, Notify, Semaphore, Barrier, RwLock, type SyncHandle } from 'kyoto/sync';

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
  const types = ['Semaphore', 'Mutex', 'RwLock', 'Notify', 'Barrier', 'mpsc.Sender', 'mpsc.Receiver', 'mpsc.UnboundedSender', 'mpsc.UnboundedReceiver'];
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
