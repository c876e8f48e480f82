// The coop budget (`lib/runtime/coop.ts`) over kyoto/sync and kyoto/task: a loop of operations
// that all settle at once still lets the event loop turn, and deferring a settlement loses nothing.
// (The send fast paths of kyoto/net: net-runtime.spec.ts.) Each loop runs in a child process: one
// that starves its loop never ends by itself.
import test, { type ExecutionContext } from 'ava';
import { runNodeChild } from './helpers';

const PRELUDE = `
  const { mpsc, oneshot, broadcast, watch, Mutex, RwLock, Semaphore, Notify, Barrier, OnceCell, fromShared } = require('kyoto/sync');
  const { spawn, JoinSet } = require('kyoto/task');
  const { Worker } = require('node:worker_threads');
  // A watchdog off the JS thread: a starved loop would never run a timer of its own.
  new Worker("setTimeout(() => { require('fs').writeSync(1, 'starved'); process.kill(process.pid, 'SIGKILL'); }, 10000)", { eval: true }).unref();`;

/** Runs each loop (an async function's body) in a child beside a 100 ms timer, which must fire. */
async function timerFiresBeside(t: ExecutionContext, loops: Record<string, string>): Promise<void> {
  for (const [name, loop] of Object.entries(loops)) {
    const code = `${PRELUDE}
      (async () => {
        setTimeout(() => { console.log('timer fired'); process.exit(0); }, 100);
        ${loop}
      })().catch((e) => { console.log('loop failed', e); process.exit(1); });`;
    const r = await runNodeChild(code, 30_000);
    t.is(r.out.trim(), 'timer fired', name);
  }
}

test('a loop of channel operations that all complete at once still lets timers run: mpsc, oneshot, broadcast and watch', async (t) => {
  await timerFiresBeside(t, {
    'mpsc bounded, a sending task and a receiving one': `const [tx, rx] = mpsc.channel(16);
      (async () => { for (;;) await tx.send(1); })();
      for (;;) await rx.recv();`,
    'mpsc unbounded': `const [tx, rx] = mpsc.unboundedChannel(); for (;;) { tx.send(1); await rx.recv(); }`,
    'mpsc recvMany': `const [tx, rx] = mpsc.unboundedChannel(); for (;;) { tx.send(1); await rx.recvMany(8); }`,
    'mpsc for await': `const [tx, rx] = mpsc.unboundedChannel(); tx.send(0); for await (const v of rx) tx.send(v + 1);`,
    'mpsc reserve': `const [tx, rx] = mpsc.channel(1); for (;;) { (await tx.reserve()).send(1); rx.tryRecv(); }`,
    'mpsc send to a closed receiver': `const [tx, rx] = mpsc.channel(1); rx.close(); for (;;) await tx.send(1).catch(() => {});`,
    'mpsc recv once every sender is gone': `const [tx, rx] = mpsc.unboundedChannel(); tx.close(); for (;;) await rx.recv();`,
    oneshot: `for (;;) { const [tx, rx] = oneshot.channel(); tx.send(1); await rx; }`,
    broadcast: `const [tx, rx] = broadcast.channel(16); for (let i = 0; ; i++) { tx.send(i); await rx.recv(); }`,
    'broadcast lagging': `const [tx, rx] = broadcast.channel(1); for (;;) { tx.send(1); tx.send(2); await rx.recv().catch(() => {}); }`,
    watch: `const [tx, rx] = watch.channel(0); for (let i = 0; ; i++) { tx.send(i); await rx.changed(); }`,
    'watch waitFor': `const [, rx] = watch.channel(0); for (;;) await rx.waitFor(() => true);`,
  });
});

test('a loop of channel operations that all complete at once still lets timers run once the channel is shared', async (t) => {
  await timerFiresBeside(t, {
    // (Numbers go through the sender's ring; a send that finds the channel full waits in native
    // code, and that wait's completion comes from a later turn anyway.)
    'mpsc bounded, numbers': `const [tx, rx] = mpsc.channel(16); tx.share(); for (;;) { await tx.send(1); await rx.recv(); }`,
    'mpsc bounded, objects': `const [tx, rx] = mpsc.channel(16); tx.share(); for (;;) { await tx.send({ a: 1 }); await rx.recv(); }`,
    'mpsc unbounded': `const [tx, rx] = mpsc.unboundedChannel(); tx.share(); for (;;) { tx.send(1); await rx.recv(); }`,
    'mpsc recvMany': `const [tx, rx] = mpsc.unboundedChannel(); tx.share(); for (;;) { tx.send(1); await rx.recvMany(8); }`,
    'mpsc reserve': `const [tx, rx] = mpsc.channel(1); tx.share(); for (;;) { (await tx.reserve()).send(1); rx.tryRecv(); }`,
    oneshot: `for (;;) { const [tx, rx] = oneshot.channel(); tx.send(1); await fromShared(rx.share()); }`,
    broadcast: `const [tx, rx] = broadcast.channel(16); tx.share(); for (let i = 0; ; i++) { tx.send(i); await rx.recv(); }`,
    watch: `const [tx, rx] = watch.channel(0); tx.share(); for (let i = 0; ; i++) { tx.send(i); await rx.changed(); }`,
  });
});

test('a loop of lock operations that all complete at once still lets timers run: Mutex, RwLock, Semaphore, Notify, Barrier and OnceCell', async (t) => {
  await timerFiresBeside(t, {
    Mutex: `const m = new Mutex(0); for (;;) { const g = await m.lock(); g[Symbol.dispose](); }`,
    'Mutex runExclusive': `const m = new Mutex(0); for (;;) await m.runExclusive((g) => { g.value++; });`,
    RwLock: `const l = new RwLock(0); for (;;) { (await l.read()).release(); (await l.write()).release(); }`,
    Semaphore: `const s = new Semaphore(1); for (;;) { const p = await s.acquire(); p.release(); }`,
    'a closed Semaphore': `const s = new Semaphore(1); s.close(); for (;;) await s.acquire().catch(() => {});`,
    Notify: `const n = new Notify(); for (;;) { n.notifyOne(); await n.notified(); }`,
    'Barrier(1)': `const b = new Barrier(1); for (;;) await b.wait();`,
    'OnceCell, set': `const c = new OnceCell(1); for (;;) await c.getOrInit(() => 2);`,
    'OnceCell, initialised by each': `for (;;) await new OnceCell().getOrInit(() => 1);`,
  });
});

test('a loop of lock operations that all complete at once still lets timers run once the lock is shared', async (t) => {
  await timerFiresBeside(t, {
    Mutex: `const m = new Mutex(0); m.share(); for (;;) { const g = await m.lock(); g[Symbol.dispose](); }`,
    RwLock: `const l = new RwLock(0); l.share(); for (;;) { (await l.read()).release(); (await l.write()).release(); }`,
    Semaphore: `const s = new Semaphore(1); s.share(); for (;;) { const p = await s.acquire(); p.release(); }`,
    Notify: `const n = new Notify(); n.share(); for (;;) { n.notifyOne(); await n.notified(); }`,
    'OnceCell, set': `const c = new OnceCell(1); c.share(); for (;;) await c.getOrInit(() => 2);`,
  });
});

test('a loop of joins of tasks that finish without waiting still lets timers run: spawn and JoinSet', async (t) => {
  await timerFiresBeside(t, {
    spawn: `for (;;) await spawn(() => 1);`,
    'spawn, async body': `for (;;) await spawn(async () => 1);`,
    'spawn, failing task': `for (;;) await spawn(() => { throw new Error('x'); }).catch(() => {});`,
    'a handle joined again': `const h = spawn(() => 1); for (;;) await h;`,
    'JoinSet joinNext': `const s = new JoinSet(); for (;;) { s.spawn(() => 1); await s.joinNext(); }`,
    'JoinSet joinNext, empty': `const s = new JoinSet(); for (;;) await s.joinNext();`,
    'JoinSet joinAll': `for (;;) { const s = new JoinSet(); s.spawn(() => 1); s.spawn(async () => 2); await s.joinAll(); }`,
  });
});

test('a settlement that waits for the coop budget keeps what its call took: values in call order, a lock held at once, an abort too late to matter', async (t) => {
  const code = `${PRELUDE}
    // From a timer callback: a turn that has spent no budget yet.
    setTimeout(async () => {
      const [tx, rx] = mpsc.unboundedChannel();
      for (let i = 0; i < 300; i++) tx.send(i);
      let settled = 0;
      let settledThisTurn = -1;
      setImmediate(() => { settledThisTurn = settled; });
      const ac = new AbortController();
      const order = [];
      const recvs = [];
      for (let i = 0; i < 300; i++) recvs.push(rx.recv({ signal: ac.signal }).then((v) => { settled++; order.push('recv'); return v; }));
      const left = rx.len;
      const m = new Mutex(0);
      const locked = m.lock({ signal: ac.signal }).then((g) => { order.push('lock'); return g; });
      const lockedAtOnce = m.isLocked();
      const s = new Semaphore(1);
      s.close();
      const closed = s.acquire().then(() => 'acquired', (e) => { order.push('closed'); return e.code; });
      ac.abort();
      const values = await Promise.all(recvs);
      const g = await locked;
      console.log(JSON.stringify({
        left, lockedAtOnce, settledThisTurn,
        inOrder: values.every((v, i) => v === i),
        guardHeld: g.held,
        closed: await closed,
        order: order.slice(-3),
      }));
      process.exit(0);
    }, 1);`;
  const r = await runNodeChild(code, 30_000);
  t.deepEqual(JSON.parse(r.out), {
    left: 0, // every receive took its message at the call
    lockedAtOnce: true, // the lock was taken at the call
    settledThisTurn: 128, // the budget: the rest settled after a turn of the loop
    inOrder: true,
    guardHeld: true, // the abort came after the call took the lock: it does not undo it
    closed: 'ERR_SEMAPHORE_CLOSED', // failures wait their turn too
    order: ['recv', 'lock', 'closed'],
  });
});

test('a paused clock does not auto-advance while settlements wait for the coop budget', async (t) => {
  // A tokio task that yielded for its budget is runnable: the runtime is not idle, and the clock
  // stays. Here the loop's settlements wait for the refill's setImmediate, which is when an
  // auto-advance would look for an idle moment.
  const code = `${PRELUDE}
    const { pause, sleep } = require('kyoto/time');
    (async () => {
      pause();
      let fired = false;
      sleep(1000).then(() => { fired = true; });
      const m = new Mutex(0);
      for (let i = 0; i < 2000; i++) { const g = await m.lock(); g.release(); }
      const during = fired;
      await sleep(1000);
      console.log(JSON.stringify({ during, after: fired }));
      process.exit(0);
    })();`;
  const r = await runNodeChild(code, 30_000);
  t.deepEqual(JSON.parse(r.out), { during: false, after: true });
});
