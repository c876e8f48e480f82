import test from 'ava';
import { sleep, sleepUntil, timeout, timeoutAt, Instant, Elapsed, interval, intervalAt, Runtime } from 'kyoto';
import { isSettled, realDelay, native, withTimeout } from './helpers';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

test('sleep(ms) resolves after at least ms', async (t) => {
  const start = Instant.now();
  const real = Date.now();
  await sleep(30);
  t.true(start.elapsed() >= 30);
  t.true(Date.now() - real >= 29);
});

test('sleep(0) and fractional durations resolve', async (t) => {
  await sleep(0);
  await sleep(0.5);
  t.pass();
});

test('many sleeps ending on the same tick, with and without signals, each settle on their own: aborts reject only theirs, a shutdown rejects the rest', async (t) => {
  const rt = new Runtime({ flavor: 'current_thread' });
  const plain = Array.from({ length: 50 }, () => sleep(30, { runtime: rt }));
  const acs = Array.from({ length: 50 }, () => new AbortController());
  const cancellable = acs.map((ac) => sleep(30, { runtime: rt, signal: ac.signal }));
  acs[7].abort();
  await t.throwsAsync(cancellable[7], { name: 'AbortError' });
  await Promise.all([...plain, ...cancellable.filter((_, i) => i !== 7)]);
  t.pass('every other sleep of the tick resolved');

  const late = Array.from({ length: 20 }, () => sleep(60_000, { runtime: rt }));
  const caught = late.map((p) => p.then(() => 'resolved', (e: { code?: string }) => e.code));
  await rt.shutdown();
  t.deepEqual(await Promise.all(caught), Array(20).fill('ERR_RUNTIME_SHUTDOWN'));
});

test('sleep validates its arguments', (t) => {
  t.throws(() => sleep(-1), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => sleep(NaN), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => sleep(Infinity), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => sleep('5' as unknown as number), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => sleep(5, 'x' as unknown as object), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => sleep(5, { signal: {} as AbortSignal }), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('an aborted sleep rejects with the signal’s reason and releases the loop', async (t) => {
  const ac = new AbortController();
  const p = sleep(60_000, { signal: ac.signal });
  const reason = new Error('stop');
  ac.abort(reason);
  t.is(await t.throwsAsync(p), reason);
});

test('a sleep aborted without a reason rejects with an AbortError', async (t) => {
  const ac = new AbortController();
  const p = sleep(60_000, { signal: ac.signal });
  ac.abort();
  await t.throwsAsync(p, { name: 'AbortError' });
});

test('a sleep with an already-aborted signal rejects at once', async (t) => {
  await t.throwsAsync(sleep(10, { signal: AbortSignal.abort() }), { name: 'AbortError' });
});

test('sleepUntil(instant) resolves at the instant; a past instant resolves at once', async (t) => {
  const deadline = Instant.now().add(20);
  await sleepUntil(deadline);
  t.true(Instant.now() >= deadline);
  await sleepUntil(Instant.now().sub(1000));
  t.throws(() => sleepUntil(5 as unknown as Instant), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
});

test('sleepUntil can be aborted', async (t) => {
  const ac = new AbortController();
  const p = sleepUntil(Instant.now().add(60_000), { signal: ac.signal });
  ac.abort();
  await t.throwsAsync(p, { name: 'AbortError' });
});

test('Instant arithmetic: add, sub, durationSince saturates, valueOf is monotonic', (t) => {
  const a = Instant.now();
  const b = a.add(10);
  const near = (x: number): number => Math.round(x * 1e6) / 1e6;
  t.is(near(b.valueOf() - a.valueOf()), 10);
  t.is(near(b.durationSince(a)), 10);
  t.is(a.durationSince(b), 0);
  t.is(near(b.sub(10).valueOf()), near(a.valueOf()));
  t.true(Instant.now() >= a);
  t.true(a.elapsed() >= 0);
  t.regex(String(a), /^Instant\(/);
  t.throws(() => a.add('1' as unknown as number), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => a.durationSince(1 as unknown as Instant), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('timeout resolves with the work’s value when it is fast enough', async (t) => {
  t.is(await timeout(1000, Promise.resolve(7)), 7);
  t.is(await timeout(1000, async () => 'fn'), 'fn');
});

test('timeout of an already-settled promise at a 0 deadline resolves', async (t) => {
  t.is(await timeout(0, Promise.resolve('ready')), 'ready');
  const settled = Promise.resolve(1);
  await settled;
  t.is(await timeoutAt(Instant.now().sub(5), settled), 1);
});

test('timeout rejects with Elapsed and aborts the work’s signal', async (t) => {
  let seen: AbortSignal | undefined;
  const err = await t.throwsAsync(
    timeout(10, (signal) => {
      seen = signal;
      return new Promise(() => {});
    }),
  );
  t.true(err instanceof Elapsed);
  t.is((err as Elapsed).code, 'ERR_ELAPSED');
  t.true(seen!.aborted);
  t.true(seen!.reason instanceof Elapsed);
});

test('timeout passes the work’s rejection through', async (t) => {
  const boom = new Error('boom');
  t.is(await t.throwsAsync(timeout(1000, Promise.reject(boom))), boom);
  t.is(
    await t.throwsAsync(
      timeout(1000, () => {
        throw boom;
      }),
    ),
    boom,
  );
});

test('timeout can be cancelled with an outer signal', async (t) => {
  const ac = new AbortController();
  let inner: AbortSignal | undefined;
  const p = timeout(60_000, (s) => ((inner = s), new Promise(() => {})), { signal: ac.signal });
  ac.abort();
  await t.throwsAsync(p, { name: 'AbortError' });
  t.true(inner!.aborted);
});

test('timeout and timeoutAt validate their arguments', (t) => {
  t.throws(() => timeout(-1, Promise.resolve()), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => timeoutAt(1 as unknown as Instant, Promise.resolve()), { code: 'ERR_INVALID_ARG_TYPE' });
});

test.serial('a timeout whose work won does not keep the process waiting for the timer', async (t) => {
  await timeout(60_000, Promise.resolve());
  await realDelay(20);
  t.is(native.bridgeRefs(), 0);
});

test('interval: first tick is immediate, then every period', async (t) => {
  const iv = interval(20);
  t.teardown(() => iv.close());
  const t0 = await iv.tick();
  const t1 = await iv.tick();
  const t2 = await iv.tick();
  // Instants are fractional milliseconds: (t0 + 20) - t0 can differ from 20 in the last bit.
  t.true(Math.abs(t1.valueOf() - t0.valueOf() - 20) < 1e-6, `${t1.valueOf() - t0.valueOf()}`);
  t.true(Math.abs(t2.valueOf() - t1.valueOf() - 20) < 1e-6, `${t2.valueOf() - t1.valueOf()}`);
  t.is(iv.period, 20);
  t.is(iv.missedTickBehavior, 'burst');
  iv.close();
});

test('interval rejects a zero or negative period with RangeError', (t) => {
  t.throws(() => interval(0), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => interval(-5), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => interval('1' as unknown as number), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => interval(10, { missedTickBehavior: 'later' as 'burst' }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => intervalAt(3 as unknown as Instant, 10), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('intervalAt starts at the given instant', async (t) => {
  const start = Instant.now().add(15);
  const iv = intervalAt(start, 10);
  t.is((await iv.tick()).valueOf(), start.valueOf());
  t.true(Instant.now() >= start);
  iv.close();
});

test('a pending tick rejects when the interval is disposed, and the iterator ends', async (t) => {
  const iv = interval(60_000);
  await iv.tick();
  const p = iv.tick();
  iv[Symbol.dispose]();
  await t.throwsAsync(p, { code: 'ERR_INTERVAL_CLOSED' });
  await t.throwsAsync(iv.tick(), { code: 'ERR_INTERVAL_CLOSED' });
  const seen = [];
  for await (const x of iv) seen.push(x);
  t.is(seen.length, 0);
});

test('a tick can be aborted with a signal', async (t) => {
  const iv = interval(60_000);
  await iv.tick();
  const ac = new AbortController();
  const p = iv.tick({ signal: ac.signal });
  ac.abort();
  await t.throwsAsync(p, { name: 'AbortError' });
  iv.close();
});

test('interval reset* move the next tick', async (t) => {
  const iv = interval(60_000);
  await iv.tick();
  const pending = iv.tick();
  iv.resetAfter(10); // a tick already waiting sees the new deadline
  const before = Instant.now();
  const at = await pending;
  t.true(at.valueOf() - before.valueOf() <= 60);
  iv.resetImmediately();
  const now = Instant.now();
  t.true((await iv.tick()).valueOf() <= now.valueOf() + 1);
  iv.resetAt(Instant.now().add(5));
  await iv.tick();
  iv.reset();
  t.false(await isSettled(iv.tick()));
  t.throws(() => iv.resetAfter(-1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => iv.resetAt(1 as unknown as Instant), { code: 'ERR_INVALID_ARG_TYPE' });
  iv.close();
});

test('interval as an async iterator yields ticks until closed', async (t) => {
  const iv = interval(5);
  const seen: Instant[] = [];
  for await (const at of iv) {
    seen.push(at);
    if (seen.length === 3) iv.close();
  }
  t.is(seen.length, 3);
});

test('interval ref/unref/hasRef', (t) => {
  const iv = interval(1000);
  t.true(iv.hasRef());
  iv.unref();
  t.false(iv.hasRef());
  iv.ref();
  t.true(iv.hasRef());
  iv.close();
  t.false(iv.hasRef());
});

test('time functions run on an explicit runtime', async (t) => {
  const rt = new Runtime({ workerThreads: 1 });
  await sleep(1, { runtime: rt });
  t.is(await timeout(100, Promise.resolve(3), { runtime: rt }), 3);
  await rt.shutdown();
});

test('timeout and timeoutAt reject with ERR_RUNTIME_SHUTDOWN when their runtime shuts down, aborting the work', async (t) => {
  const rt = new Runtime({ flavor: 'current_thread' });
  let workSignal: AbortSignal | undefined;
  const p1 = timeout(
    60_000,
    (signal) => {
      workSignal = signal;
      return new Promise(() => {});
    },
    { runtime: rt },
  );
  const p2 = timeoutAt(Instant.now().add(60_000), new Promise(() => {}), { runtime: rt });
  await rt.shutdown(1000);
  await t.throwsAsync(withTimeout(p1, 5000, 'timeout'), { code: 'ERR_RUNTIME_SHUTDOWN' });
  await t.throwsAsync(withTimeout(p2, 5000, 'timeoutAt'), { code: 'ERR_RUNTIME_SHUTDOWN' });
  t.true(workSignal!.aborted);
  t.is((workSignal!.reason as { code?: string }).code, 'ERR_RUNTIME_SHUTDOWN');
});

test('Instant cannot be constructed directly, so no bogus instant reaches the timers', async (t) => {
  t.throws(() => new (Instant as unknown as new (ms: unknown) => Instant)(NaN), { instanceOf: TypeError, code: 'ERR_ILLEGAL_CONSTRUCTOR' });
  t.throws(() => new (Instant as unknown as new (ms: unknown) => Instant)('x'), { instanceOf: TypeError, code: 'ERR_ILLEGAL_CONSTRUCTOR' });
  await sleepUntil(Instant.now().add(1));
});

test('a sleep whose native registration threw leaves no timer group behind for later sleeps', async (t) => {
  // Internal: the runtime's timer table (a NaN deadline is what the native side refuses).
  const rt = Runtime.default();
  await sleep(0);
  const table = (rt as unknown as { _timers: { sleepUntil(d: number, s: undefined, refed: boolean): Promise<void> } })._timers;
  t.throws(() => table.sleepUntil(NaN, undefined, true));
  // Before the fix the second call joined the failed group and never settled.
  t.throws(() => table.sleepUntil(NaN, undefined, true));
});

test('a tick queued behind another rejects as soon as its signal aborts, without taking a tick', async (t) => {
  const iv = interval(60_000);
  const first0 = await iv.tick();
  const first = iv.tick(); // waits a whole period
  const ac = new AbortController();
  const queued = iv.tick({ signal: ac.signal });
  const next = iv.tick();
  ac.abort();
  await t.throwsAsync(withTimeout(queued, 5000, 'the aborted queued tick'), { name: 'AbortError' });
  t.false(await isSettled(first));
  iv.resetImmediately();
  await first;
  t.false(await isSettled(next), 'the aborted call did not use up a tick: the one after waits a period');
  iv.close();
  await t.throwsAsync(next, { code: 'ERR_INTERVAL_CLOSED' });
  t.true(first0 instanceof Instant);
});

/** `global.gc` without `--expose-gc` on the command line (the flag applies to new contexts). */
const gc: () => void = (() => {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
})();

test('sleeps aborted before a far deadline they share with another sleep are released at once', async (t) => {
  // Sleeps ending on one tick share a wheel entry; here a long sleep keeps the entry alive for an
  // hour. Each sleep aborted meanwhile (a timeoutAt(d, work) whose work won, a select() loser)
  // used to stay in the entry, with its signal, until the deadline: memory grew with every call.
  const d = Instant.now().add(3_600_000);
  const holder = new AbortController();
  const held = sleepUntil(d, { signal: holder.signal }).catch(() => 'aborted');
  for (let i = 0; i < 100; i++) t.is(await timeoutAt(d, async () => i), i);
  const refs: WeakRef<AbortSignal>[] = [];
  // In a function of its own, so that no frame of the test holds the last signal.
  const abortOne = async (): Promise<unknown> => {
    const ac = new AbortController();
    const p = sleepUntil(d, { signal: ac.signal }).catch(() => 'aborted');
    refs.push(new WeakRef(ac.signal));
    ac.abort();
    return p;
  };
  for (let i = 0; i < 20; i++) t.is(await abortOne(), 'aborted');
  const alive = (): number => refs.filter((r) => r.deref() !== undefined).length;
  for (let i = 0; i < 10 && alive() > 0; i++) {
    await realDelay(1); // a WeakRef keeps its target alive until the end of the job that read it
    gc();
  }
  t.is(alive(), 0, 'the signals of the aborted sleeps are collected');
  t.false(await isSettled(held));
  holder.abort();
  t.is(await held, 'aborted');
});

test('an interval behind schedule lets the event loop run while it catches up', async (t) => {
  // Ticks already due resolve without a timer. A consumer that never catches up (a burst of
  // missed ticks, or work slower than the period) used to get them through microtasks alone and
  // starved every timer, I/O and setImmediate callback for as long as it looped. Tokio's coop
  // budget makes such a task yield every 128 ready ticks.
  const start = Instant.now().sub(10_000);
  const iv = intervalAt(start, 1); // 10,000 missed ticks: burst
  let turns = 0;
  let stop = false;
  const spin = (): void => {
    turns++;
    if (!stop) setImmediate(spin);
  };
  setImmediate(spin);
  let n = 0;
  let last = -1;
  let inOrder = true;
  for await (const tick of iv) {
    const rel = tick.valueOf() - start.valueOf();
    if (Math.round(rel - last) !== 1 && last >= 0) inOrder = false;
    last = rel;
    if (++n === 1000) break;
  }
  stop = true;
  iv.close();
  t.true(inOrder, 'the ticks are still the scheduled instants, one period apart');
  t.true(turns >= 2, `the event loop turned ${turns} times during 1000 ready ticks`);
});

test("a sleep whose signal's removeEventListener throws rejects with that error; the sleeps of its group still fire", async (t) => {
  const boom = new Error('removeEventListener threw');
  const odd = { aborted: false, addEventListener() {}, removeEventListener() { throw boom; } } as unknown as AbortSignal;
  const others = [sleep(5), sleep(5)];
  const mine = sleep(5, { signal: odd });
  const outcome = await Promise.race([
    Promise.allSettled([mine, ...others]),
    new Promise((resolve) => setTimeout(() => resolve('hung'), 2_000)),
  ]);
  t.not(outcome, 'hung');
  const [m, a, b] = outcome as PromiseSettledResult<void>[];
  t.is(m.status, 'rejected');
  t.is((m as PromiseRejectedResult).reason, boom);
  t.is(a.status, 'fulfilled');
  t.is(b.status, 'fulfilled');
});
