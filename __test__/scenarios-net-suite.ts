// Adversarial scenarios for kyoto/net and kyoto/io, run by scenarios-net.spec.ts (default data
// path) and scenarios-net-mt.spec.ts (KYOTO_NET_FLAVOR=multi_thread): waits aborted at seeded
// random points lose and duplicate nothing, aborted connects and accepts leak nothing, and a
// Runtime shutting down under mixed traffic settles every wait on its sockets. Each is bounded in
// rounds and bytes, loopback only.
import test from 'ava';
import { LengthDelimitedCodec, Runtime, TcpListener, TcpStream, copy, copyBidirectional, framed } from 'kyoto';
import { descriptorsOpenedSince, openDescriptors, tcpPair, withTimeout } from './helpers';

/** A seeded linear congruential generator: numbers in [0, 1), the same run for the same seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Aborts `ac` now, after the current microtasks, after an immediate, or not at all. */
function abortSometime(ac: AbortController, r: number): void {
  if (r < 0.2) ac.abort();
  else if (r < 0.35) queueMicrotask(() => ac.abort());
  else if (r < 0.45) setImmediate(() => ac.abort());
}

function isAbort(e: unknown): boolean {
  return (e as { code?: string }).code === 'ABORT_ERR';
}

export function defineScenarioTests(): void {
  test('reads, readExact and readToEnd aborted at random points lose and duplicate no byte of a stream', async (t) => {
    for (let seed = 1; seed <= 6; seed++) {
      const r = rng(seed);
      const { l, c, s } = await tcpPair();
      const N = 150_000;
      const data = Buffer.alloc(N);
      for (let i = 0; i < N; i++) data[i] = (i * 7 + (i >> 8)) & 255;
      const writer = (async () => {
        for (let off = 0; off < N; ) {
          const n = Math.min(N - off, 1 + Math.floor(r() * 20_000));
          await c.write(data.subarray(off, off + n));
          off += n;
          if (r() < 0.3) await new Promise((res) => setImmediate(res));
        }
        await c.shutdown();
      })();
      const got: Buffer[] = [];
      let received = 0;
      for (let eof = false; !eof; ) {
        const ac = new AbortController();
        const kind = r();
        const buf = Buffer.alloc(1 + Math.floor(r() * 30_000));
        // readExact never asks for more than is still to come (it would end in ERR_UNEXPECTED_EOF).
        const exact = Math.min(buf.length, 2000, N - received);
        const p: Promise<Buffer | undefined> =
          kind < 0.6 || exact === 0
            ? s.read(buf, { signal: ac.signal }).then((n) => (n === 0 ? undefined : Buffer.from(buf.subarray(0, n))))
            : kind < 0.8
              ? s.readExact(buf.subarray(0, exact), { signal: ac.signal }).then(() => Buffer.from(buf.subarray(0, exact)))
              : s.readToEnd({ signal: ac.signal });
        abortSometime(ac, r());
        try {
          const b = await withTimeout(p, 10_000, `seed ${seed}: a read`);
          if (b === undefined) eof = true;
          else {
            got.push(b);
            received += b.length;
            if (kind >= 0.8 && exact !== 0) eof = true; // readToEnd returned: the stream ended
          }
        } catch (e) {
          if (!isAbort(e)) throw e;
        }
      }
      await writer;
      const all = Buffer.concat(got);
      t.is(all.length, N, `seed ${seed}: bytes`);
      t.true(all.equals(data), `seed ${seed}: the bytes, in order`);
      for (const x of [c, s, l]) x.close();
    }
  });

  test('frames read with next() aborted at random points arrive each once, in order', async (t) => {
    for (let seed = 1; seed <= 4; seed++) {
      const r = rng(seed);
      const { l, c, s } = await tcpPair();
      const N = 1500;
      const out = framed(c, new LengthDelimitedCodec());
      const sender = (async () => {
        for (let i = 0; i < N; i++) {
          const body = Buffer.alloc(4 + Math.floor(r() * (r() < 0.05 ? 40_000 : 200)), 1);
          body.writeUInt32BE(i, 0);
          await out.send(body);
        }
        await c.shutdown();
      })();
      const f = framed(s, new LengthDelimitedCodec());
      let next = 0;
      for (;;) {
        const ac = new AbortController();
        const p = f.next({ signal: ac.signal });
        abortSometime(ac, r());
        let frame: Buffer | undefined;
        try {
          frame = await withTimeout(p, 10_000, `seed ${seed}: frame ${next}`);
        } catch (e) {
          if (isAbort(e)) continue;
          throw e;
        }
        if (frame === undefined) break;
        if (frame.readUInt32BE(0) !== next) {
          t.fail(`seed ${seed}: frame ${frame.readUInt32BE(0)} where ${next} was due`);
          break;
        }
        next++;
      }
      await sender;
      t.is(next, N, `seed ${seed}`);
      for (const x of [c, s, l]) x.close();
    }
  });

  // Serial: it compares this process's descriptors before and after.
  test.serial('connects and accepts aborted at random points: every connection that was made is accepted once, and no descriptor stays open', async (t) => {
    // Warm up the data path so its own descriptors are in the baseline.
    {
      const { l, c, s } = await tcpPair();
      for (const x of [c, s, l]) x.close();
    }
    const before = openDescriptors();
    for (let seed = 1; seed <= 4; seed++) {
      const r = rng(seed);
      const l = await TcpListener.bind('127.0.0.1:0');
      const made: TcpStream[] = [];
      const connects: Array<Promise<void>> = [];
      for (let i = 0; i < 40; i++) {
        const ac = new AbortController();
        connects.push(
          TcpStream.connect(l.localAddr(), { signal: ac.signal }).then(
            (c) => {
              made.push(c);
              void c.write(Buffer.from([i])).catch(() => {});
            },
            (e: unknown) => {
              if (!isAbort(e)) throw e;
            },
          ),
        );
        abortSometime(ac, r() * 0.6);
      }
      await Promise.all(connects);
      const accepted: TcpStream[] = [];
      // Accept with aborts until several waits in a row find nothing more.
      for (let idle = 0; idle < 4; ) {
        const ac = new AbortController();
        const p = l.accept({ signal: ac.signal });
        const x = r();
        if (x < 0.3) abortSometime(ac, x);
        else setTimeout(() => ac.abort(), 30);
        try {
          accepted.push((await p)[0]);
          idle = 0;
        } catch (e) {
          if (!isAbort(e)) throw e;
          if (x >= 0.3) idle++;
        }
      }
      // Each connection made shows up once, with its byte; an aborted one ends (EOF or reset).
      const seen = new Set<number>();
      let ended = 0;
      for (const s of accepted) {
        const b = Buffer.alloc(1);
        const n = await withTimeout(s.read(b).catch(() => 0), 5000, `seed ${seed}: an accepted stream`);
        if (n === 0) ended++;
        else {
          t.false(seen.has(b[0]), `seed ${seed}: connection ${b[0]} accepted twice`);
          seen.add(b[0]);
        }
      }
      t.is(seen.size, made.length, `seed ${seed}: ${ended} ended`);
      for (const x of [...accepted, ...made, l]) x.close();
    }
    t.deepEqual(await descriptorsOpenedSince(before, 3000), []);
  });

  test('a Runtime shutting down under copies, framed traffic and blocked writes settles every wait on its sockets', async (t) => {
    for (let seed = 1; seed <= 4; seed++) {
      const r = rng(seed);
      const flavor = seed % 2 === 1 ? 'multi_thread' : 'current_thread';
      const rt = new Runtime({ flavor, workerThreads: flavor === 'multi_thread' ? 1 : undefined });
      const own = await TcpListener.bind('127.0.0.1:0', { runtime: rt });
      const other = await TcpListener.bind('127.0.0.1:0');
      const toClose: Array<{ close(): void }> = [own, other];
      const waits: Array<Promise<unknown>> = [];
      const pairOn = async (): Promise<[TcpStream, TcpStream]> => {
        const accepted = own.accept();
        const c = await TcpStream.connect(own.localAddr(), { runtime: rt });
        const [s] = await accepted;
        toClose.push(c, s);
        return [c, s];
      };
      const defaultPair = async (): Promise<[TcpStream, TcpStream]> => {
        const accepted = other.accept();
        const c = await TcpStream.connect(other.localAddr());
        const [s] = await accepted;
        toClose.push(c, s);
        return [c, s];
      };
      for (let i = 0; i < 6; i++) {
        const [c, s] = await pairOn();
        const kind = Math.floor(r() * 4);
        if (kind === 0) {
          waits.push(copy(s, s), c.writeAll(Buffer.alloc(4 << 20)), c.readToEnd());
        } else if (kind === 1) {
          const f = framed(s, new LengthDelimitedCodec());
          const g = framed(c, new LengthDelimitedCodec());
          waits.push((async () => { for (;;) { const x = await f.next(); if (x === undefined) return; await f.send(x); } })());
          waits.push((async () => { for (;;) { await g.send(Buffer.alloc(100)); await g.next(); } })());
        } else if (kind === 2) {
          // A proxy between a stream of this runtime and one of the default runtime.
          // (The default side's client stays open and silent.)
          const [, ds] = await defaultPair();
          waits.push(r() < 0.5 ? copy(ds, c) : copyBidirectional(s, ds));
        } else {
          const [rh, wh] = s.split();
          waits.push(rh.readToEnd(), wh.writeAll(Buffer.alloc(8 << 20)));
        }
      }
      waits.push(own.accept());
      for (const w of waits) w.catch(() => {});
      await new Promise((res) => setTimeout(res, Math.floor(r() * 20)));
      await rt.shutdown();
      const outcomes = await withTimeout(
        Promise.allSettled(waits),
        10_000,
        `seed ${seed} (${flavor}): the waits on the runtime's sockets to settle`,
      );
      for (const o of outcomes) {
        if (o.status === 'rejected') {
          const code = (o.reason as { code?: string }).code;
          t.true(typeof code === 'string', `seed ${seed}: a rejection without a code: ${String(o.reason)}`);
        }
      }
      for (const x of toClose) x.close();
    }
  });
}
