import test from 'ava';
import { Runtime, Semaphore, fromShared } from 'kyoto';
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import { native, bridge, realDelay, nativeOf, packageRoot } from './helpers';

const owner = { _ownerTag: true as const };

test('a native no-op through the runtime resolves with undefined', async (t) => {
  const rt = Runtime.default();
  const nrt = nativeOf(rt);
  t.is(await bridge.submit(rt, (id) => nrt.noop(id)), undefined);
});

test('string and number values cross the bridge', async (t) => {
  const nrt = nativeOf(Runtime.default());
  t.is(await bridge.submit(owner, (id) => nrt.echo(id, 'héllo ✓')), 'héllo ✓');
  t.is(await bridge.submit(owner, (id) => nrt.echo(id, 4.25)), 4.25);
});

test('a panic in a native task becomes a rejected promise', async (t) => {
  const nrt = nativeOf(Runtime.default());
  const err = await t.throwsAsync(bridge.submit(owner, (id) => nrt.panicOp(id)));
  t.is((err as Error & { code: string }).code, 'ERR_KYOTO_PANIC');
  t.regex(err!.message, /panic requested by panicOp/);
  // the runtime keeps working afterwards
  t.is(await bridge.submit(owner, (id) => nrt.noop(id)), undefined);
});

test('a wait whose signal’s removeEventListener throws rejects with that error; the other completions of its batch still arrive', async (t) => {
  // Waits on shared objects take the caller's signal as given: any object with AbortSignal's methods.
  const sem = fromShared<Semaphore>(new Semaphore(0).share());
  const other = fromShared<Semaphore>(new Semaphore(0).share());
  const boom = new Error('removeEventListener failed');
  const signal = { aborted: false, addEventListener() {}, removeEventListener() { throw boom; } } as unknown as AbortSignal;
  const first = sem.acquire(1, { signal });
  const second = other.acquire(1);
  // Both complete now, natively: one batch.
  sem.addPermits(1);
  other.addPermits(1);
  t.is(await t.throwsAsync(first), boom);
  (await second).release();
  // A signal that lacks removeEventListener is refused at the call, with a code.
  const lacking = { aborted: false, addEventListener() {} } as unknown as AbortSignal;
  await t.throwsAsync(async () => sem.acquire(1, { signal: lacking }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
});

test('a wait whose signal’s addEventListener throws fails without starting: it takes nothing', async (t) => {
  const sem = fromShared<Semaphore>(new Semaphore(0).share());
  const boom = new Error('addEventListener failed');
  const signal = { aborted: false, addEventListener() { throw boom; }, removeEventListener() {} } as unknown as AbortSignal;
  t.is(await t.throwsAsync(async () => sem.acquire(1, { signal })), boom);
  // A wait left queued would be granted this permit at once (natively, within addPermits).
  sem.addPermits(1);
  t.is(sem.availablePermits(), 1, 'the failed acquire holds no permit');
  sem.tryAcquire(1).release();
});

test('completions produced by a plain native thread all arrive, in order', async (t) => {
  const ids: number[] = [];
  const order: number[] = [];
  const ps: Promise<unknown>[] = [];
  for (let i = 0; i < 5000; i++) {
    ps.push(
      bridge
        .submit<string>(owner, (id) => ids.push(id))
        .then((v) => {
          order.push(i);
          return v;
        }),
    );
  }
  native.testCompleteFromThread(ids, 'x');
  const values = await Promise.all(ps);
  t.true(values.every((v) => v === 'x'));
  t.deepEqual(order, [...Array(5000).keys()]);
});

test('a completion callback that throws does not cost the rest of its batch their completions', async (t) => {
  // In a worker, which handles the error the batch rethrows once it is done.
  const lib = path.join(packageRoot, 'dist', 'lib');
  const w = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const bridge = require(workerData.lib + '/bridge.js');
     const { native } = require(workerData.lib + '/native.js');
     const errors = [];
     process.on('uncaughtException', (e) => errors.push(e.message));
     const owner = { _ownerTag: true };
     const ids = [];
     bridge.submitCallbacks(owner, (id) => ids.push(id), () => { throw new Error('a callback threw'); }, () => {});
     const rest = [];
     for (let i = 0; i < 100; i++) rest.push(bridge.submit(owner, (id) => ids.push(id)));
     native.testCompleteFromThread(ids); // in order, from one thread: the first batch holds the throwing one and more
     const bound = new Promise((r) => setTimeout(() => r('some never settled'), 5000));
     Promise.race([Promise.all(rest).then(() => 'all settled'), bound]).then((outcome) => parentPort.postMessage({ outcome, errors }));`,
    { eval: true, workerData: { lib } },
  );
  const got = await new Promise<{ outcome: string; errors: string[] }>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  await w.terminate();
  t.is(got.outcome, 'all settled');
  t.deepEqual(got.errors, ['a callback threw'], 'the error still surfaces, once');
});

test.serial('many concurrent no-ops settle and the event-loop holds return to zero', async (t) => {
  const nrt = nativeOf(Runtime.default());
  const ps = [];
  for (let i = 0; i < 10_000; i++) ps.push(bridge.submit(owner, (id) => nrt.noop(id)));
  t.true(native.bridgeRefs() > 0);
  await Promise.all(ps);
  t.is(native.bridgeRefs(), 0);
  t.is(bridge.pendingCount(), 0);
});

test('completions arrive in batches, not one wake-up per operation', async (t) => {
  // 2000 completions queued by one native call before the JS thread can run: all of them must
  // be settled by the first delivery (one batch), i.e. before a timer of the next loop turn.
  const ps: Promise<unknown>[] = [];
  let settled = 0;
  for (let i = 0; i < 2000; i++) {
    ps.push(bridge.submit(owner, (id) => native.bridgeNoop(id)).then(() => settled++));
  }
  await ps[0];
  t.is(settled, 2000);
});

test.serial('an env that never submits anything does not hold the loop', async (t) => {
  await realDelay(1);
  t.is(native.bridgeRefs(), 0);
});
