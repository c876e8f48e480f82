import test from 'ava';
import { spawn, spawnBlocking, JoinHandle, JoinError, JoinSet, yieldNow, select, sleep, timeout, mpsc, Mutex, Runtime, Semaphore } from 'kyoto';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { isSettled, realDelay, packageRoot } from './helpers';

const never = (signal: AbortSignal): Promise<never> =>
  new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));

test('spawn runs the task and the handle resolves with its value', async (t) => {
  const h = spawn(async () => 42);
  t.true(h instanceof JoinHandle);
  t.is(typeof h.id, 'number');
  t.is(await h, 42);
  t.true(h.isFinished());
});

test('a task starts at spawn even if its handle is never awaited', async (t) => {
  let ran = false;
  spawn(() => {
    ran = true;
  });
  await yieldNow();
  t.true(ran);
});

test('spawn accepts a sync function and a name; validates its arguments', async (t) => {
  const h = spawn(() => 'sync', { name: 'worker' });
  t.is(h.name, 'worker');
  t.is(await h, 'sync');
  t.throws(() => spawn(42 as unknown as () => void), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => spawn(() => 1, { name: 5 as unknown as string }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => spawn(() => 1, 'x' as unknown as object), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('a task that throws rejects its handle with a panic JoinError', async (t) => {
  const boom = new Error('boom');
  const h = spawn(async () => {
    throw boom;
  });
  const err = await t.throwsAsync(h);
  t.true(err instanceof JoinError);
  const je = err as JoinError;
  t.true(je.isPanic());
  t.false(je.isCancelled());
  t.is(je.cause, boom);
  t.is(je.id, h.id);
  t.is(je.message, `task ${h.id} panicked with message "boom"`);
  t.is(je.code, 'ERR_TASK_PANICKED');
});

test('a failing task whose handle is not awaited is not an unhandled rejection', async (t) => {
  let unhandled = 0;
  const onUnhandled = (): void => {
    unhandled++;
  };
  process.on('unhandledRejection', onUnhandled);
  spawn(() => {
    throw new Error('ignored');
  });
  spawn(async () => Promise.reject(new Error('ignored too')));
  await realDelay(20);
  process.off('unhandledRejection', onUnhandled);
  t.is(unhandled, 0);
});

test('abort() fires the task’s signal and the handle rejects with a cancelled JoinError', async (t) => {
  let signal: AbortSignal | undefined;
  const h = spawn((s) => {
    signal = s;
    return never(s);
  });
  await yieldNow();
  h.abort();
  const err = (await t.throwsAsync(h)) as JoinError;
  t.true(signal!.aborted);
  t.true(err.isCancelled());
  t.is(err.message, `task ${h.id} was cancelled`);
  t.is(err.code, 'ERR_TASK_CANCELLED');
});

test('a task aborted before it first runs never runs', async (t) => {
  let ran = false;
  const h = spawn(() => {
    ran = true;
  });
  h.abort();
  t.true(((await t.throwsAsync(h)) as JoinError).isCancelled());
  t.false(ran);
});

test('a task that finishes before noticing the abort resolves normally', async (t) => {
  const h = spawn(async () => {
    await sleep(5);
    return 'done';
  });
  await yieldNow();
  h.abort();
  t.is(await h, 'done');
  h.abort(); // no-op once finished
});

test('JoinHandle is PromiseLike with catch and finally', async (t) => {
  let fin = false;
  t.is(await spawn(() => 1).finally(() => (fin = true)), 1);
  t.true(fin);
  t.true((await spawn(() => Promise.reject(new Error('x'))).catch((e) => e)) instanceof JoinError);
});

test('yieldNow lets timers and I/O run before continuing', async (t) => {
  let immediate = false;
  setImmediate(() => (immediate = true));
  await yieldNow();
  t.true(immediate);
  await t.throwsAsync(yieldNow({ signal: AbortSignal.abort() }), { name: 'AbortError' });
  t.throws(() => yieldNow({ signal: 1 as unknown as AbortSignal }), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('JoinSet joins in completion order and is empty afterwards', async (t) => {
  // Each task finishes when the test opens its gate, so completion order does not depend on
  // timers firing apart on a loaded machine (sleeps of 10, 20 and 30 ms once came back 3 before 2).
  const gates = [0, 1, 2].map(() => {
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    return { open, opened };
  });
  const set = new JoinSet<number>();
  for (const i of [0, 1, 2]) set.spawn(async () => (await gates[i].opened, i));
  t.is(set.size, 3);
  for (const i of [1, 2, 0]) {
    gates[i].open();
    t.is(await set.joinNext(), i);
  }
  t.is(await set.joinNext(), undefined);
  t.true(set.isEmpty());
});

test('JoinSet.tryJoinNext returns finished values without waiting', async (t) => {
  const set = new JoinSet<string>();
  t.is(set.tryJoinNext(), undefined);
  set.spawn(() => 'a');
  await yieldNow();
  t.is(set.tryJoinNext(), 'a');
  set.spawn(() => {
    throw new Error('bad');
  });
  await yieldNow();
  t.throws(() => set.tryJoinNext(), { instanceOf: JoinError });
});

test('JoinSet.abortAll keeps tasks until joined and yields cancelled JoinErrors', async (t) => {
  const set = new JoinSet<void>();
  set.spawn(never);
  set.spawn(never);
  await yieldNow();
  set.abortAll();
  t.is(set.size, 2);
  for (let i = 0; i < 2; i++) {
    const err = (await t.throwsAsync(set.joinNext())) as JoinError;
    t.true(err.isCancelled());
  }
  t.is(set.size, 0);
  t.is(await set.joinNext(), undefined);
});

test('JoinSet.joinAll returns every value in completion order', async (t) => {
  const set = new JoinSet<number>();
  set.spawn(async () => (await sleep(20), 2));
  set.spawn(async () => 1);
  t.deepEqual(await set.joinAll(), [1, 2]);
});

test('JoinSet.joinAll rejects on the first failure and aborts the rest', async (t) => {
  const set = new JoinSet<number>();
  const signals: AbortSignal[] = [];
  set.spawn((s) => (signals.push(s), never(s)));
  set.spawn((s) => (signals.push(s), never(s)));
  set.spawn(async () => {
    await sleep(5);
    throw new Error('first failure');
  });
  const err = (await t.throwsAsync(set.joinAll())) as JoinError;
  t.true(err.isPanic());
  t.is((err.cause as Error).message, 'first failure');
  t.true(signals.every((s) => s.aborted));
  t.is(set.size, 0);
});

test('JoinSet.detachAll empties the set without aborting', async (t) => {
  const set = new JoinSet<void>();
  let signal: AbortSignal | undefined;
  set.spawn(async (s) => {
    signal = s;
    await sleep(5);
  });
  await yieldNow();
  set.detachAll();
  t.is(set.size, 0);
  t.false(signal!.aborted);
});

test('JoinSet.shutdown and asyncDispose abort and drain everything', async (t) => {
  const set = new JoinSet<void>();
  const signals: AbortSignal[] = [];
  set.spawn((s) => (signals.push(s), never(s)));
  set.spawn((s) => (signals.push(s), never(s)));
  await set[Symbol.asyncDispose]();
  t.is(set.size, 0);
  t.true(signals.every((s) => s.aborted));
  await set.shutdown();
});

test('JoinSet is async-iterable in completion order', async (t) => {
  const set = new JoinSet<number>();
  set.spawn(async () => (await sleep(10), 2));
  set.spawn(() => 1);
  const seen: number[] = [];
  for await (const v of set) seen.push(v);
  t.deepEqual(seen, [1, 2]);
});

test('a JoinSet emptied by detachAll while it is iterated or joined ends the loop without a phantom value', async (t) => {
  const set = new JoinSet<number>();
  set.spawn(never);
  const seen: number[] = [];
  const loop = (async () => {
    for await (const v of set) seen.push(v);
  })();
  const all = set.joinAll();
  await yieldNow();
  set.detachAll();
  await loop;
  t.deepEqual(seen, []);
  t.deepEqual(await all, []);
  // A task that returns undefined is still a value.
  const set2 = new JoinSet<undefined>();
  set2.spawn(() => undefined);
  const vals: unknown[] = [];
  for await (const v of set2) vals.push(v);
  t.deepEqual(vals, [undefined]);
});

test('JoinSet.joinAll and shutdown take a signal, like every wait', async (t) => {
  const set = new JoinSet<number>();
  set.spawn(async () => 1);
  let stubborn: AbortSignal | undefined;
  let release!: () => void;
  set.spawn((s) => ((stubborn = s), new Promise<number>((resolve) => (release = () => resolve(2)))));
  const ac = new AbortController();
  const all = set.joinAll({ signal: ac.signal });
  await yieldNow();
  ac.abort();
  await t.throwsAsync(all, { name: 'AbortError' });
  t.is(set.size, 1, 'the task not joined yet stays in the set');
  t.false(stubborn!.aborted);
  // shutdown aborts the task, which ignores it; giving up the wait leaves the task in the set.
  const ac2 = new AbortController();
  const down = set.shutdown({ signal: ac2.signal });
  await yieldNow();
  t.true(stubborn!.aborted);
  ac2.abort(new Error('enough'));
  t.is((await t.throwsAsync(down))!.message, 'enough');
  t.is(set.size, 1);
  await t.throwsAsync(set.shutdown({ signal: AbortSignal.abort() }), { name: 'AbortError' });
  await t.throwsAsync(set.joinAll({ signal: 'no' as unknown as AbortSignal }), { code: 'ERR_INVALID_ARG_TYPE' });
  release();
  await set.shutdown();
  t.is(set.size, 0);
});

test('JoinSet.joinNext can be aborted', async (t) => {
  const set = new JoinSet<void>();
  set.spawn(never);
  const ac = new AbortController();
  const p = set.joinNext({ signal: ac.signal });
  ac.abort();
  await t.throwsAsync(p, { name: 'AbortError' });
  await set.shutdown();
});

test('select resolves with the first branch to settle and aborts the losers’ signals', async (t) => {
  const signals: Record<string, AbortSignal> = {};
  const r = await select({
    slow: (s) => ((signals.slow = s), never(s)),
    fast: async (s) => {
      signals.fast = s;
      await sleep(5);
      return 'fast';
    },
    slower: (s) => ((signals.slower = s), sleep(10_000, { signal: s })),
  });
  t.deepEqual(r, { key: 'fast', value: 'fast' });
  t.true(signals.slow.aborted);
  t.true(signals.slower.aborted);
  t.false(signals.fast.aborted);
});

test('select rejects when the first branch to settle rejects', async (t) => {
  const boom = new Error('boom');
  let other: AbortSignal | undefined;
  const err = await t.throwsAsync(
    select({
      a: () => Promise.reject(boom),
      b: (s) => ((other = s), never(s)),
    }),
  );
  t.is(err, boom);
  t.true(other!.aborted);
});

test('aborting select from outside tells every branch the caller’s reason', async (t) => {
  const ac = new AbortController();
  const why = new Error('caller gave up');
  const seen: unknown[] = [];
  const p = select(
    {
      a: (s) => new Promise((_, reject) => s.addEventListener('abort', () => (seen.push(s.reason), reject(s.reason)), { once: true })),
      b: (s) => sleep(60_000, { signal: s }).catch((e: unknown) => (seen.push(e), Promise.reject(e))),
    },
    { signal: ac.signal },
  );
  ac.abort(why);
  t.is(await t.throwsAsync(p), why);
  await yieldNow();
  t.deepEqual(seen, [why, why]);
});

test('select validates branches and honours an outer signal', async (t) => {
  t.throws(() => select({}), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => select(null as unknown as Record<string, never>), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => select({ a: 1 as unknown as () => void }), { code: 'ERR_INVALID_ARG_TYPE' });
  const ac = new AbortController();
  let inner: AbortSignal | undefined;
  const p = select({ a: (s) => ((inner = s), never(s)) }, { signal: ac.signal });
  ac.abort();
  await t.throwsAsync(p, { name: 'AbortError' });
  t.true(inner!.aborted);
  t.false(await isSettled(new Promise(() => {})));
});

// ---------------------------------------------------------------------------------------------
// spawnBlocking

const fixture = pathToFileURL(path.join(__dirname, 'fixtures', 'blocking.js'));

test('spawnBlocking runs an exported function on a worker thread and returns its value', async (t) => {
  t.is(await spawnBlocking<number>(fixture, 'add', 2, 3), 5);
  const where = await spawnBlocking<number>(fixture.href, 'whereAmI');
  t.not(where, 0);
  t.is(await spawnBlocking<string>(fileURLToPath(fixture), 'later', 5, 'async'), 'async');
  const h = spawnBlocking(fixture, 'add', 1, 1);
  t.is(typeof h.id, 'number');
  await h;
  t.true(h.isFinished());
});

test('spawnBlocking: many small tasks all complete, on more than one thread, in any order', async (t) => {
  const rt = new Runtime({ maxBlockingThreads: 2 });
  const hs = [];
  for (let i = 0; i < 5000; i++) hs.push(rt.spawnBlocking<number>(fixture, 'add', i, 1));
  const out = await Promise.all(hs);
  t.deepEqual(out, [...Array(5000).keys()].map((i) => i + 1));
  await rt.shutdown();
});

test('spawnBlocking: a throw or a rejection becomes a JoinError (panic) with the error as cause', async (t) => {
  const e1 = await t.throwsAsync(spawnBlocking(fixture, 'fail', 'boom'));
  t.true(e1 instanceof JoinError);
  t.true((e1 as JoinError).isPanic());
  t.regex(e1!.message, /panicked with message "boom"/);
  t.true((e1 as JoinError).cause instanceof RangeError);
  const e2 = await t.throwsAsync(spawnBlocking(fixture, 'rejectLater', 'later boom'));
  t.true((e2 as JoinError).isPanic());
  t.regex(e2!.message, /later boom/);
  const e3 = await t.throwsAsync(spawnBlocking(fixture, 'noSuchExport'));
  t.true((e3 as JoinError).isPanic());
  t.regex(e3!.message, /no exported function .*noSuchExport/);
  const e4 = await t.throwsAsync(spawnBlocking(pathToFileURL('/no/such/module.mjs'), 'x'));
  t.true((e4 as JoinError).isPanic());
  const e5 = await t.throwsAsync(spawnBlocking(fixture, 'uncloneable'));
  t.regex(e5!.message, /could not be cloned/);
  const e6 = await t.throwsAsync(spawnBlocking(fixture, 'add', () => 1, 2));
  t.true((e6 as JoinError).isPanic());
  // the pool keeps working
  t.is(await spawnBlocking(fixture, 'add', 1, 2), 3);
});

test('spawnBlocking: abort before start prevents the task; a started task cannot be aborted', async (t) => {
  const rt = new Runtime({ maxBlockingThreads: 1 });
  await rt.spawnBlocking(fixture, 'add', 0, 0); // the worker is up and the module loaded
  const flags = new Int32Array(new SharedArrayBuffer(8)); // [started, released]
  const running = rt.spawnBlocking<string>(fixture, 'holdUntilReleased', flags, 'ran');
  const queued = rt.spawnBlocking<string>(fixture, 'spin', 1, 'should not run');
  const later = rt.spawnBlocking<string>(fixture, 'add', 'a', 'b');
  // `running` has started; `queued` waits behind it.
  for (let i = 0; i < 2000 && Atomics.load(flags, 0) === 0; i++) await realDelay(5);
  t.is(Atomics.load(flags, 0), 1, 'the first task started');
  running.abort();
  queued.abort();
  const err = await t.throwsAsync(queued);
  t.true((err as JoinError).isCancelled());
  t.true(queued.isFinished());
  Atomics.store(flags, 1, 1);
  Atomics.notify(flags, 1);
  t.is(await running, 'ran');
  t.is(await later, 'ab');
  // aborted synchronously, before dispatch
  const never = rt.spawnBlocking(fixture, 'fail', 'must not run');
  never.abort();
  t.true((await t.throwsAsync(never) as JoinError).isCancelled());
  await rt.shutdown();
});

test('spawnBlocking runs two blocking tasks at once when two threads are allowed, not one after the other', async (t) => {
  const rt = new Runtime({ maxBlockingThreads: 2 });
  const flags = new Int32Array(new SharedArrayBuffer(8));
  // Each waits for the other to start: only concurrent tasks both see the other.
  const both = await Promise.all([rt.spawnBlocking<boolean>(fixture, 'meetOther', flags, 0), rt.spawnBlocking<boolean>(fixture, 'meetOther', flags, 1)]);
  t.deepEqual(both, [true, true]);
  await rt.shutdown();
});

test('spawnBlocking validates its arguments', (t) => {
  t.throws(() => spawnBlocking(5 as unknown as string, 'x'), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => spawnBlocking('relative/path.js', 'x'), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => spawnBlocking(fixture, 7 as unknown as string), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
});

test('spawnBlocking: shutting the runtime down cancels its blocking tasks', async (t) => {
  const rt = new Runtime({ maxBlockingThreads: 1 });
  const a = rt.spawnBlocking(fixture, 'later', 5000, 1);
  const b = rt.spawnBlocking(fixture, 'add', 1, 1);
  await realDelay(50);
  await rt.shutdown();
  t.true((await t.throwsAsync(a) as JoinError).isCancelled());
  t.true((await t.throwsAsync(b) as JoinError).isCancelled());
  t.throws(() => rt.spawnBlocking(fixture, 'add', 1, 1), { code: 'ERR_RUNTIME_SHUTDOWN' });
});

test('an idle blocking pool does not keep the process alive', (t) => {
  const out = execFileSync(
    process.execPath,
    [
      '-e',
      `const k = require('kyoto'); k.spawnBlocking(${JSON.stringify(fixture.href)}, 'add', 20, 22).then((v) => console.log(v));`,
    ],
    { cwd: packageRoot, encoding: 'utf8', timeout: 10_000 },
  );
  t.is(out.trim(), '42');
});

test('a blocking task whose arguments cannot be cloned does not keep the process alive', (t) => {
  // The task fails at dispatch, before any worker answers: the worker it was meant for must be
  // released like one that answered (it was kept ref'd, so the process never exited).
  const out = execFileSync(
    process.execPath,
    [
      '-e',
      `const k = require('kyoto'); k.spawnBlocking(${JSON.stringify(fixture.href)}, 'add', () => 1, 2).then(` +
        `() => console.log('resolved'), (e) => console.log(e.isPanic() ? 'panic' : 'other'));`,
    ],
    { cwd: packageRoot, encoding: 'utf8', timeout: 10_000 },
  );
  t.is(out.trim(), 'panic');
});

test('a receive or a lock that completes at the call is never lost to select() or timeout(), however busy the turn was', async (t) => {
  // Guards any coop budget for kyoto/sync: a fast path that took a message or a lock at the call
  // but settled later lost the race to a timer delivered meanwhile, and with it the message (or
  // the lock, for good). Either branch may win; what the loser took must be back.
  const out = await new Promise<{ recv: string; lock: string }>((resolve, reject) => {
    setTimeout(() => {
      (async () => {
        const [t0, r0] = mpsc.unboundedChannel<number>();
        for (let i = 0; i < 1000; i++) {
          t0.send(i);
          void r0.recv();
        }
        const [tx, rx] = mpsc.unboundedChannel<string>();
        tx.send('msg');
        const m = new Mutex(0);
        const r = await select({ a: (signal) => rx.recv({ signal }), b: (signal) => sleep(0, { signal }) });
        let recv: string;
        if (r.key === 'a') recv = r.value === 'msg' ? 'received' : `a got ${String(r.value)}`;
        else {
          try {
            recv = rx.tryRecv() === 'msg' ? 'still queued' : 'something else queued';
          } catch {
            recv = 'lost'; // tryRecv throws on an empty channel
          }
        }
        let lock: string;
        try {
          const g = await timeout(0, (signal) => m.lock({ signal }));
          lock = g.held ? 'acquired' : 'a guard not held';
          g.release();
          if (m.isLocked()) lock = 'locked after release';
        } catch (e) {
          lock = (e as { code?: string }).code !== 'ERR_ELAPSED' ? String(e) : m.isLocked() ? 'elapsed, left locked' : 'elapsed, unlocked';
        }
        resolve({ recv, lock });
      })().catch(reject);
    }, 1);
  });
  t.true(out.recv === 'received' || out.recv === 'still queued', out.recv);
  t.true(out.lock === 'acquired' || out.lock === 'elapsed, unlocked', out.lock);
});

test('select() releases the lock or permit a losing branch acquired in the same tick', async (t) => {
  // Both branches are handed their lock when it frees, in one tick; select() can return only one.
  // The other's guard, which no caller can ever reach, is dropped as Rust drops a losing output.
  const m1 = new Mutex(0);
  const m2 = new Mutex(0);
  const g1 = await m1.lock();
  const g2 = await m2.lock();
  const p = select({ a: (s) => m1.lock({ signal: s }), b: (s) => m2.lock({ signal: s }) });
  g1.release();
  g2.release();
  const won = await p;
  won.value.release();
  await sleep(1);
  t.false(m1.isLocked(), 'm1');
  t.false(m2.isLocked(), 'm2 (the loser)');

  const sem = new Semaphore(2);
  const held = await sem.acquire(2);
  const q = select({ a: (s) => sem.acquire(1, { signal: s }), b: (s) => sem.acquire(1, { signal: s }) });
  held.release();
  (await q).value.release();
  await sleep(1);
  t.is(sem.availablePermits(), 2);
});

test('timeout() releases the lock its own work acquired after the deadline, but not a value the caller can still reach', async (t) => {
  const m = new Mutex(0);
  // Work that takes the lock only once told the deadline passed: timeout() has rejected by then.
  const late = timeout(1, async (signal) => {
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    return m.lock();
  });
  await t.throwsAsync(late, { code: 'ERR_ELAPSED' });
  await sleep(5);
  t.false(m.isLocked(), 'the unclaimed guard was released');

  // A promise the caller passed in is still theirs: its value is not touched.
  let go!: () => void;
  const mine = new Promise<void>((resolve) => (go = resolve)).then(() => m.lock());
  await t.throwsAsync(timeout(1, mine), { code: 'ERR_ELAPSED' });
  go();
  const guard = await mine;
  await sleep(5);
  t.true(guard.held);
  guard.release();
});
