// The paused test clock. Everything here is serial: the clock is shared by the whole thread.
import test from 'ava';
import { pause, resume, advance, isPaused, Instant, interval, sleep, sleepUntil, timeout, timeoutAt, spawn, Runtime, spawnBlocking, yieldNow, type MissedTickBehavior } from 'kyoto';
import { pathToFileURL } from 'node:url';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { bridge, native, packageRoot, realDelay, withTimeout } from './helpers';

const near = (x: number): number => Math.round(x * 1000) / 1000;

test.afterEach.always(() => {
  if (isPaused()) resume();
});

test.serial('pause/resume/isPaused toggle the clock, and a paused clock stands still', async (t) => {
  t.false(isPaused());
  pause();
  t.true(isPaused());
  const a = Instant.now();
  await new Promise((r) => setTimeout(r, 20));
  t.is(Instant.now().valueOf(), a.valueOf());
  resume();
  t.false(isPaused());
  await new Promise((r) => setTimeout(r, 5));
  t.true(Instant.now() > a);
});

test.serial('pausing and resuming the clock again and again keeps one teardown hook for it', (t) => {
  pause();
  resume();
  const before = native.envTeardownHooks();
  for (let i = 0; i < 1000; i++) {
    pause();
    resume();
  }
  t.is(native.envTeardownHooks(), before);
});

test.serial('advance(ms) is exact for Instant', async (t) => {
  pause();
  const a = Instant.now();
  await advance(123.5);
  t.is(near(Instant.now().valueOf() - a.valueOf()), 123.5);
  await advance(0);
  t.is(near(Instant.now().valueOf() - a.valueOf()), 123.5);
});

test.serial('advance rejects when the clock is not paused, and validates ms', async (t) => {
  await t.throwsAsync(advance(10), { code: 'ERR_CLOCK_NOT_PAUSED' });
  t.throws(() => advance(-1), { code: 'ERR_OUT_OF_RANGE' });
});

test.serial('an idle runtime on a paused clock auto-advances to the next timer', async (t) => {
  pause();
  const a = Instant.now();
  const real = Date.now();
  await sleep(3_600_000);
  t.true(Instant.now().valueOf() - a.valueOf() >= 3_600_000);
  // Hours of virtual time in far less real time (loose bound: this is not a speed test, and the
  // CI machine may be loaded); without auto-advance the test would wait the full duration.
  t.true(Date.now() - real < 60_000);
});

test.serial('timers fire in deadline order on the paused clock', async (t) => {
  pause();
  const order: number[] = [];
  await Promise.all([300, 100, 200].map((ms) => sleep(ms).then(() => order.push(ms))));
  t.deepEqual(order, [100, 200, 300]);
});

test.serial('timeout elapses on the paused clock', async (t) => {
  pause();
  await t.throwsAsync(timeout(5000, new Promise(() => {})), { code: 'ERR_ELAPSED' });
});

test.serial('work that settles on the tick of the deadline wins the timeout, as in Tokio', async (t) => {
  // Tokio's Timeout polls the work before the deadline: when both are due on the same tick, the
  // work's value comes out. A sleep of the same length ends on the same tick as the timeout's own.
  pause();
  t.is(await timeout(10, sleep(10).then(() => 'chained')), 'chained');
  t.is(
    await timeout(10, async (signal) => {
      await sleep(10, { signal });
      return 'async fn';
    }),
    'async fn',
  );
  t.is(await timeout(10, spawn(async () => (await sleep(10), 'task'))), 'task');
  const at = Instant.now().add(25);
  t.is(await timeoutAt(at, sleepUntil(at).then(() => 'at')), 'at');
  // One tick later is still too late.
  await t.throwsAsync(timeout(10, sleep(11).then(() => 'late')), { code: 'ERR_ELAPSED' });
});

async function scenario(behavior: MissedTickBehavior): Promise<number[]> {
  pause();
  const start = Instant.now();
  const iv = interval(300, { missedTickBehavior: behavior });
  const rel = async (): Promise<number> => near((await iv.tick()).valueOf() - start.valueOf());
  const out = [await rel(), await rel()]; // 0, then 300 (auto-advanced)
  await advance(650); // the clock is now ~950: the tick at 600 is > 5 ms late
  out.push(await rel(), await rel());
  iv.close();
  return out;
}

test.serial('interval Burst: missed ticks fire at once at their scheduled instants', async (t) => {
  t.deepEqual(await scenario('burst'), [0, 300, 600, 900]);
});

test.serial('interval Delay: after a missed tick the next is one period after it was observed', async (t) => {
  const [a, b, c, d] = await scenario('delay');
  t.deepEqual([a, b, c], [0, 300, 600]);
  // now + period = 950 + 300; Tokio's own test sees 1251 because the sleep rounds up to the next ms.
  t.true(d >= 1250 && d <= 1251, String(d));
});

test.serial('interval Skip: after a missed tick the next is the next multiple of the period', async (t) => {
  t.deepEqual(await scenario('skip'), [0, 300, 600, 1200]);
});

test.serial('interval Skip: late by a whole number of periods, the next tick is a full period ahead', async (t) => {
  // Tokio computes `(now - missed) % period` in nanoseconds: 0 here, so the next tick is at
  // now + period. In float milliseconds the remainder often came out a hair under a period and
  // the next tick was due at once.
  pause();
  await realDelay(5); // let the auto-advance check scheduled by pause() pass
  const wrong: string[] = [];
  for (const period of [0.1, 0.3, 0.7, 1.1, 16.7, 33.3]) {
    for (let periods = 10; periods < 40; periods += 3) {
      const iv = interval(period, { missedTickBehavior: 'skip' });
      await iv.tick();
      await advance(period * (periods + 1)); // the tick at `period` is `periods` periods late
      const missed = await iv.tick();
      const now = Instant.now();
      const next = await iv.tick();
      iv.close();
      if (now.valueOf() - missed.valueOf() <= 5) continue; // not missed: nothing to check
      const ahead = near(next.valueOf() - now.valueOf());
      if (Math.abs(ahead - period) > 1e-3) wrong.push(`period ${period}, ${periods} late: next tick ${ahead} ms ahead`);
    }
  }
  t.deepEqual(wrong, []);
});

test.serial('a tick less than 5 ms late is not missed', async (t) => {
  pause();
  const start = Instant.now();
  const iv = interval(100, { missedTickBehavior: 'delay' });
  await iv.tick();
  await advance(104); // the tick at 100 is observed 4 ms late
  t.is(near((await iv.tick()).valueOf() - start.valueOf()), 100);
  t.is(near((await iv.tick()).valueOf() - start.valueOf()), 200); // not 204 + 100
  iv.close();
});

test.serial('native timers (runtime tasks in kyoto_rt::time::sleep) follow the paused clock', async (t) => {
  pause();
  await realDelay(5); // let the auto-advance check scheduled by pause() pass
  const rt = Runtime.default();
  const nrt = (rt as unknown as { _native(): { spawnSleepers(id: number, n: number, ms: number): void } })._native();
  let done = false;
  const p = bridge.submit(rt, (id) => nrt.spawnSleepers(id, 3, 10 * 60_000)).then(() => (done = true));
  await realDelay(30); // the tasks register their sleeps on the runtime's threads
  t.false(done);
  const real = Date.now();
  await advance(10 * 60_000);
  await p;
  t.true(done);
  // Hours of virtual time in far less real time (loose bound: this is not a speed test, and the
  // CI machine may be loaded); without auto-advance the test would wait the full duration.
  t.true(Date.now() - real < 60_000);
});

test.serial('an idle runtime auto-advances to native timers too', async (t) => {
  pause();
  const rt = Runtime.default();
  const nrt = (rt as unknown as { _native(): { spawnSleepers(id: number, n: number, ms: number): void } })._native();
  const a = Instant.now();
  const real = Date.now();
  // A JS sleep keeps the auto-advance going until the native ones (registered meanwhile) fire.
  await Promise.all([bridge.submit(rt, (id) => nrt.spawnSleepers(id, 3, 3_600_000)), sleep(7_200_000)]);
  t.true(Instant.now().valueOf() - a.valueOf() >= 7_200_000);
  // Hours of virtual time in far less real time (loose bound: this is not a speed test, and the
  // CI machine may be loaded); without auto-advance the test would wait the full duration.
  t.true(Date.now() - real < 60_000);
});

test.serial('sleeps ending on the same tick share a wheel entry but get their own promises, in order', async (t) => {
  pause();
  const order: number[] = [];
  const ps = [];
  for (let i = 0; i < 1000; i++) ps.push(sleep(250).then(() => order.push(i)));
  t.not(ps[0], ps[1]);
  const a = Instant.now();
  await advance(251);
  await Promise.all(ps);
  t.deepEqual(order, [...Array(1000).keys()]);
  t.true(Instant.now().valueOf() - a.valueOf() >= 250);
});

test.serial('auto-advance on a paused clock never fires a sleep early', async (t) => {
  pause();
  const start = Instant.now();
  const seen: number[] = [];
  await Promise.all(
    [1, 2.5, 17, 64, 65, 4096, 262_144].map((ms) =>
      sleep(ms).then(() => {
        const el = Instant.now().valueOf() - start.valueOf();
        t.true(el >= ms, `${ms} fired at ${el}`);
        t.true(el < ms + 1.001, `${ms} fired late at ${el}`);
        seen.push(ms);
      }),
    ),
  );
  t.is(seen.length, 7);
});

test.serial('after pause() and a shutdown of the default runtime, sleeps on the fresh default handle still auto-advance', async (t) => {
  pause();
  await Runtime.default().shutdown();
  t.true(isPaused(), 'the default runtime (and its clock) is shared: only this handle was shut down');
  await withTimeout(sleep(60_000), 10_000, 'a sleep on the paused clock');
  t.pass();
});

/** A worker thread that pauses the default clock, reports it, and stays alive until terminated. */
async function pausingWorker(): Promise<Worker> {
  const entry = path.join(packageRoot, 'dist', 'index.js');
  const w = new Worker(
    `const k = require(${JSON.stringify(entry)});
     k.pause();
     require('node:worker_threads').parentPort.postMessage('paused');
     setInterval(() => {}, 1000);`,
    { eval: true },
  );
  await withTimeout(new Promise((r) => w.once('message', r)), 20_000, 'the worker pausing the clock');
  return w;
}

test.serial('a sleep on the default runtime auto-advances when a worker thread paused the clock', async (t) => {
  const w = await pausingWorker();
  try {
    t.true(isPaused());
    await withTimeout(sleep(60_000), 10_000, 'a sleep on the clock paused by the worker');
    t.pass();
  } finally {
    await w.terminate();
  }
});

test.serial('the clock a worker thread paused runs again once that worker is terminated', async (t) => {
  const w = await pausingWorker();
  await w.terminate();
  t.false(isPaused());
  const before = Instant.now();
  await withTimeout(sleep(10), 10_000, 'a sleep after the worker is gone');
  t.true(Instant.now().valueOf() - before.valueOf() >= 10);
});

test.serial('once advance() resolves, the callbacks of the sleeps it fired have run', async (t) => {
  pause();
  await realDelay(5); // let the auto-advance check scheduled by pause() pass
  const ran: string[] = [];
  void sleep(10).then(() => ran.push('plain'));
  void sleep(10, { signal: new AbortController().signal }).then(() => ran.push('cancellable'));
  void sleep(10)
    .then(() => undefined)
    .then(() => ran.push('chained'));
  const later = sleep(1000); // what an auto-advance would jump to
  const a = Instant.now();
  await advance(11);
  t.deepEqual(ran.sort(), ['cancellable', 'chained', 'plain']);
  t.is(near(Instant.now().valueOf() - a.valueOf()), 11, 'and the clock did not auto-advance meanwhile');
  await later;
});

test.serial('a running spawnBlocking task keeps the paused clock from auto-advancing', async (t) => {
  const fixture = pathToFileURL(path.join(__dirname, 'fixtures', 'blocking.js'));
  await spawnBlocking(fixture, 'add', 1, 2); // a warm pool: this is not about worker start-up
  pause();
  const a = Instant.now();
  // 200 real ms in the worker; the runtime is not idle meanwhile, so the 60 s timeout never elapses.
  t.is(await timeout(60_000, spawnBlocking(fixture, 'later', 200, 'done')), 'done');
  t.is(near(Instant.now().valueOf() - a.valueOf()), 0);
});

test.serial('a task looping on yieldNow() keeps the paused clock from auto-advancing', async (t) => {
  pause();
  await realDelay(5); // let the auto-advance check scheduled by pause() pass
  const a = Instant.now();
  const work = async (): Promise<string> => {
    for (let i = 0; i < 50; i++) await yieldNow();
    return 'done';
  };
  t.is(await timeout(1000, work), 'done');
  t.is(near(Instant.now().valueOf() - a.valueOf()), 0);
});

// The last tests: they move this process's default clock by decades for good.

test.serial('advance() refuses what the clock cannot represent with a RangeError instead of clamping', async (t) => {
  pause();
  const a = Instant.now();
  t.throws(() => advance(2e12), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => advance(Number.MAX_SAFE_INTEGER), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.is(Instant.now().valueOf(), a.valueOf());
  await advance(1e12);
  t.is(near(Instant.now().valueOf() - a.valueOf()), 1e12, 'the largest advance is exact');
  // Decades later, sleeps still wait their whole duration.
  const b = Instant.now();
  await withTimeout(sleep(60_000), 10_000, 'a sleep after a huge advance');
  t.true(Instant.now().valueOf() - b.valueOf() >= 60_000);
});

test.serial('a sleep beyond the far-future limit does not make later sleeps fire at once', async (t) => {
  pause();
  await realDelay(5); // let the auto-advance check scheduled by pause() pass
  // Clamped to 1e12 ms ahead of the clock; auto-advance jumps there.
  const a = Instant.now();
  await withTimeout(sleep(1e13), 10_000, 'a far-future sleep on the paused clock');
  t.true(Instant.now().valueOf() - a.valueOf() >= 1e12 - 1);
  const b = Instant.now();
  await withTimeout(sleep(5000), 10_000, 'a sleep after it');
  t.true(Instant.now().valueOf() - b.valueOf() >= 5000);
});
