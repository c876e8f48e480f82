// The `framed()` tests, run by io-framed.spec.ts (default data path, plus the JS fallback) and by
// io-framed-mt.spec.ts (KYOTO_NET_FLAVOR=multi_thread).
import test from 'ava';
import { createRequire } from 'node:module';
import {
  LengthDelimitedCodec,
  LinesCodec,
  Runtime,
  TcpListener,
  TcpStream,
  UnixStream,
  copy,
  duplex,
  framed,
  netFlavor,
  type Framed,
} from 'kyoto';
import { UNIX_SOCKETS, realDelay, runNodeChild, withTimeout } from './helpers';

const req = createRequire(__filename);
const native: { netFrameStats(h: number): number[] } = req('../lib/native.js').native;

/** The raw side of a pair: writes bytes, ends the stream. */
interface RawEnd {
  read(buf: Uint8Array): Promise<number>;
  write(data: Uint8Array | string): Promise<number | void>;
  shutdown(): Promise<void>;
  close(): void;
}

interface Pair {
  /** The peer that writes raw bytes (or reads what the framed side sends). */
  w: RawEnd;
  /** The side that gets framed. */
  r: RawEnd;
  done(): void;
}

interface Transport {
  name: string;
  native: boolean;
  make(): Promise<Pair>;
}

async function tcpPair(runtime?: Runtime): Promise<Pair> {
  const l = await TcpListener.bind('127.0.0.1:0', { runtime });
  const accepted = l.accept();
  const c = await TcpStream.connect(l.localAddr(), { runtime });
  const [s] = await accepted;
  c.setNoDelay(true);
  return {
    w: c,
    r: s,
    done: () => {
      c.close();
      s.close();
      l.close();
    },
  };
}

const unixPair: Transport[] = [
  {
    name: 'a kyoto Unix pair',
    native: true,
    make: async () => {
      const [a, b] = UnixStream.pair();
      return {
        w: a,
        r: b,
        done: () => {
          a.close();
          b.close();
        },
      };
    },
  },
];

const transports: Transport[] = [
  { name: 'a kyoto TCP pair', native: true, make: () => tcpPair() },
  // Windows has no Unix sockets (and its named pipes no half-close, which these tests end with).
  ...(UNIX_SOCKETS ? unixPair : []),
  {
    name: 'a JS duplex() pair',
    native: false,
    make: async () => {
      const [a, b] = duplex(64 * 1024);
      return {
        w: a,
        r: b,
        done: () => {
          a.close();
          b.close();
        },
      };
    },
  },
];

async function collect<T>(f: Framed<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of f) out.push(x);
  return out;
}

function handleOf(s: unknown): number {
  return (s as { _h: number })._h;
}

function ld(bytes: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(bytes);
  if (bytes > 6) h.writeUIntBE(payload.length, bytes - 6, 6);
  else h.writeUIntBE(payload.length, 0, bytes);
  return Buffer.concat([h, payload]);
}

/** Registers every framed() test for the transports of this run. */
export function defineFramedTests(opts: { withJsFallback: boolean }): void {
  for (const tr of transports) {
    if (!tr.native && !opts.withJsFallback) continue;
    const on = tr.native ? `${tr.name} (${netFlavor})` : `${tr.name} (JS fallback)`;

    test(`over ${on}, 'hello\\r\\nworld\\n\\n' yields hello, world and '', then iteration ends at EOF`, async (t) => {
      const p = await tr.make();
      const f = framed(p.r, new LinesCodec());
      await p.w.write('hello\r\nworld\n\n');
      await p.w.shutdown();
      t.deepEqual(await collect(f), ['hello', 'world', '']);
      t.is(await f.next(), undefined);
      p.done();
    });

    test(`over ${on}, a last line without a newline is yielded at EOF with a trailing \\r dropped`, async (t) => {
      const p = await tr.make();
      const f = framed(p.r, new LinesCodec());
      await p.w.write('a\nlast\r');
      await p.w.shutdown();
      t.is(await f.next(), 'a');
      t.is(await f.next(), 'last');
      t.is(await f.next(), undefined);
      t.is(await f.next(), undefined);
      p.done();
    });

    test(`over ${on}, lines written one byte at a time (\\r\\n and UTF-8 split too) decode whole`, async (t) => {
      const p = await tr.make();
      const f = framed(p.r, new LinesCodec({ maxLength: 64 }));
      const text = Buffer.from('ab\r\ncd\rx\n日本語\r\n\r\r\n\nend');
      const lines = collect(f);
      for (const b of text) {
        await p.w.write(Buffer.from([b]));
        await realDelay(1);
      }
      await p.w.shutdown();
      t.deepEqual(await lines, ['ab', 'cd\rx', '日本語', '\r', '', 'end']);
      p.done();
    });

    test(`over ${on}, a thousand lines in one write arrive as a thousand frames (ASCII or not)`, async (t) => {
      const p = await tr.make();
      const f = framed(p.r, new LinesCodec());
      const want = Array.from({ length: 1000 }, (_, i) => (i % 2 === 0 ? `line ${i}` : `línea ${i} ✓`));
      await p.w.write(want.map((l) => `${l}\n`).join(''));
      await p.w.shutdown();
      t.deepEqual(await collect(f), want);
      p.done();
    });

    test(`over ${on}, a line over maxLength rejects with ERR_LINE_TOO_LONG and the next line follows`, async (t) => {
      const p = await tr.make();
      const f = framed(p.r, new LinesCodec({ maxLength: 8 }));
      await p.w.write(`12345678\n12345678\r\n${'x'.repeat(9)}\nok\n${'y'.repeat(30)}`);
      await p.w.write('yyy\nafter\n');
      await p.w.shutdown();
      t.is(await f.next(), '12345678');
      t.is(await f.next(), '12345678');
      const e = await t.throwsAsync(f.next(), { code: 'ERR_LINE_TOO_LONG' });
      t.regex(e!.message, /maxLength \(8 bytes\)/);
      t.is(await f.next(), 'ok');
      await t.throwsAsync(f.next(), { code: 'ERR_LINE_TOO_LONG' });
      t.is(await f.next(), 'after');
      t.is(await f.next(), undefined);
      p.done();
    });

    test(`over ${on}, 100 MiB without a newline errors early and nothing buffers it`, async (t) => {
      t.timeout(60_000);
      const p = await tr.make();
      const f = framed(p.r, new LinesCodec({ maxLength: 1024 }));
      const chunk = Buffer.alloc(1 << 20, 0x78);
      let written = 0;
      const writer = (async () => {
        for (let i = 0; i < 100; i++) {
          await p.w.write(chunk);
          written += chunk.length;
        }
        await p.w.write('\nok\n');
        await p.w.shutdown();
      })();
      let maxHeld = 0;
      let maxUndelivered = 0;
      const h = tr.native ? handleOf(p.r) : -1;
      const sample = (): void => {
        if (h < 0) return;
        const st = native.netFrameStats(h);
        if (st.length === 2) {
          maxUndelivered = Math.max(maxUndelivered, st[0]);
          maxHeld = Math.max(maxHeld, st[1]);
        }
      };
      const sampler = setInterval(sample, 2);
      await t.throwsAsync(f.next(), { code: 'ERR_LINE_TOO_LONG' });
      const atError = written;
      t.true(atError < 32 << 20, `${atError} bytes were written before the error`);
      t.is(await f.next(), 'ok');
      t.is(await f.next(), undefined);
      clearInterval(sampler);
      await writer;
      t.is(written, 100 << 20);
      t.true(maxHeld <= 8, `the native framer held ${maxHeld} bytes`);
      t.true(maxUndelivered <= 512 * 1024, `${maxUndelivered} bytes waited for JS`);
      p.done();
    });

    test(`over ${on}, length-delimited frames round-trip with 1- to 8-byte headers, empty and large frames`, async (t) => {
      for (const bytes of [1, 2, 3, 4, 8]) {
        const p = await tr.make();
        const codec = new LengthDelimitedCodec({ lengthFieldBytes: bytes, maxFrameLength: 300_000 });
        const a = framed(p.w, codec);
        const b = framed(p.r, codec);
        const sizes =
          bytes === 1 ? [0, 1, 255, 7] : bytes === 2 ? [0, 1, 255, 65_535, 0, 17_000, 3] : [0, 1, 255, 70_000, 0, 17_000, 300_000, 3];
        const frames = sizes.map((n, i) => Buffer.alloc(n, i + 1));
        const sending = Promise.all(frames.map((fr) => a.send(fr)));
        for (const fr of frames) t.deepEqual(await b.next(), fr, `${bytes}-byte header, ${fr.length}-byte frame`);
        await sending;
        await p.w.shutdown();
        t.is(await b.next(), undefined);
        p.done();
      }
    });

    test(`over ${on}, maxFrameLength is enforced on receive (the frame is skipped) and on send (nothing is written)`, async (t) => {
      const p = await tr.make();
      const codec = new LengthDelimitedCodec({ lengthFieldBytes: 2, maxFrameLength: 100 });
      const a = framed(p.w, codec);
      const b = framed(p.r, codec);
      await t.throwsAsync(a.send(Buffer.alloc(101)), { code: 'ERR_FRAME_TOO_BIG' });
      await t.throwsAsync(a.send('x'.repeat(20_000)), { code: 'ERR_FRAME_TOO_BIG' });
      await p.w.write(ld(2, Buffer.alloc(1000, 7)));
      await a.send('fits');
      const e = await t.throwsAsync(b.next(), { code: 'ERR_FRAME_TOO_BIG' });
      t.regex(e!.message, /1000 bytes/);
      t.is((await b.next())!.toString(), 'fits');
      await p.w.shutdown();
      t.is(await b.next(), undefined);
      p.done();
    });

    test(`over ${on}, a frame whose memory was transferred away is sent empty, not refused with an uncoded TypeError`, async (t) => {
      const p = await tr.make();
      const codec = new LengthDelimitedCodec();
      const a = framed(p.w, codec);
      const b = framed(p.r, codec);
      const gone = new Float32Array(4);
      structuredClone(gone.buffer, { transfer: [gone.buffer] });
      await a.send(gone as unknown as Uint8Array); // any view is taken at run time
      await a.send('after');
      t.is((await b.next())!.length, 0);
      t.is((await b.next())!.toString(), 'after');
      p.done();
    });

    test(`over ${on}, a stream ending inside a header or a payload rejects with ERR_UNEXPECTED_EOF`, async (t) => {
      for (const tail of [Buffer.from([0, 0]), Buffer.from([0, 0, 0, 5, 1, 2])]) {
        const p = await tr.make();
        const f = framed(p.r, new LengthDelimitedCodec());
        await p.w.write(Buffer.concat([ld(4, Buffer.from('whole')), tail]));
        await p.w.shutdown();
        t.is((await f.next())!.toString(), 'whole');
        const e = await t.throwsAsync(f.next(), { code: 'ERR_UNEXPECTED_EOF' });
        t.regex(e!.message, tail.length === 2 ? /header/ : /inside a frame$/);
        t.is(await f.next(), undefined);
        p.done();
      }
    });

    test(`over ${on}, a 10 000-frame stream arrives in order (lines and length-delimited)`, async (t) => {
      const p = await tr.make();
      const a = framed(p.w, new LinesCodec());
      const b = framed(p.r, new LinesCodec());
      const receiving = collect(b);
      const sends: Array<Promise<void>> = [];
      for (let i = 0; i < 10_000; i++) sends.push(a.send(`frame ${i}`));
      await Promise.all(sends);
      await p.w.shutdown();
      const got = await receiving;
      t.is(got.length, 10_000);
      t.true(got.every((l, i) => l === `frame ${i}`));
      p.done();

      const q = await tr.make();
      const codec = new LengthDelimitedCodec({ lengthFieldBytes: 2 });
      const c = framed(q.w, codec);
      const d = framed(q.r, codec);
      const sent = Promise.all(Array.from({ length: 10_000 }, (_, i) => c.send(Buffer.from(String(i)))));
      let n = 0;
      for await (const fr of d) {
        if (fr.toString() !== String(n)) break;
        if (++n === 10_000) break;
      }
      t.is(n, 10_000);
      await sent;
      q.done();
    });

    test(`over ${on}, next() after the framed stream is closed ends cleanly`, async (t) => {
      const p = await tr.make();
      const f = framed(p.r, new LinesCodec());
      await p.w.write('queued\n');
      t.is(await f.next(), 'queued');
      const pending = f.next();
      p.r.close();
      // Like the stream's own read() after close() (a kyoto stream's or a duplex() end's).
      await t.throwsAsync(pending, { code: 'ERR_SOCKET_CLOSED' });
      await t.throwsAsync(f.next(), { code: 'ERR_SOCKET_CLOSED' });
      p.done();
    });

    test(`over ${on}, a peer that closes ends iteration cleanly`, async (t) => {
      const p = await tr.make();
      const f = framed(p.r, new LengthDelimitedCodec({ lengthFieldBytes: 1 }));
      await p.w.write(ld(1, Buffer.from('bye')));
      p.w.close();
      t.deepEqual((await collect(f)).map(String), ['bye']);
      p.done();
    });

    test(`over ${on}, return() of an iterator ends its waiting next() and the frame goes to the next reader`, async (t) => {
      const p = await tr.make();
      const f = framed(p.r, new LinesCodec());
      const it = f[Symbol.asyncIterator]();
      const waiting = it.next();
      await it.return!();
      t.deepEqual(await withTimeout(waiting, 5000, 'the waiting next()'), { done: true, value: undefined });
      t.deepEqual(await it.next(), { done: true, value: undefined });
      await p.w.write('line\n');
      t.is(await withTimeout(f.next(), 5000, 'next() after return()'), 'line');
      p.done();
    });

    test(`over ${on}, misuse throws or rejects with a code`, async (t) => {
      const p = await tr.make();
      t.throws(() => framed(null as never, new LinesCodec()), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
      t.throws(() => framed(p.r, {} as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
      t.throws(() => new LinesCodec({ maxLength: 0 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
      t.throws(() => new LinesCodec({ maxLength: Infinity }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
      t.throws(() => new LengthDelimitedCodec({ lengthFieldBytes: 0 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
      t.throws(() => new LengthDelimitedCodec({ lengthFieldBytes: 9 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
      t.throws(() => new LengthDelimitedCodec({ maxFrameLength: -1 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
      t.is(new LengthDelimitedCodec({ lengthFieldBytes: 1 }).maxFrameLength, 255);
      const f = framed(p.r, new LinesCodec());
      await t.throwsAsync(f.send(42 as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
      await t.throwsAsync(f.next({ signal: 'no' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
      const ac = new AbortController();
      const waiting = f.next({ signal: ac.signal });
      ac.abort();
      await t.throwsAsync(waiting, { name: 'AbortError' });
      await p.w.write('still here\n');
      t.is(await f.next(), 'still here');
      p.done();
    });
  }

  test(`over a kyoto TCP pair (${netFlavor}), a connection reset rejects next() with ECONNRESET, again and again`, async (t) => {
    const p = await tcpPair();
    const f = framed(p.r, new LinesCodec());
    await p.w.write('ok\n');
    t.is(await f.next(), 'ok');
    await p.w.write('partial');
    await realDelay(20);
    (p.w as TcpStream).setLinger(0);
    p.w.close();
    await t.throwsAsync(f.next(), { code: 'ECONNRESET' });
    await t.throwsAsync(f.next(), { code: 'ECONNRESET' });
    p.done();
  });

  test(`a framed stream on a { runtime } that shuts down rejects next() with ERR_RUNTIME_SHUTDOWN (${netFlavor})`, async (t) => {
    for (const when of ['after the switch', 'during the switch']) {
      const rt = new Runtime({ flavor: 'multi_thread', workerThreads: 1 });
      const [a, b] = UNIX_SOCKETS ? UnixStream.pair({ runtime: rt }) : await tcpPair(rt).then((p) => [p.w, p.r] as [TcpStream, TcpStream]);
      const f = framed(b, new LinesCodec());
      if (when === 'after the switch') {
        await a.write('one\n');
        t.is(await f.next(), 'one');
      }
      const pending = f.next();
      await rt.shutdown();
      await t.throwsAsync(pending, { code: 'ERR_RUNTIME_SHUTDOWN' }, when);
      await t.throwsAsync(f.next(), { code: 'ERR_RUNTIME_SHUTDOWN' }, when);
      a.close();
      b.close();
    }
  });

  // Native-only behaviour.
  for (const tr of transports.filter((x) => x.native)) {
    const on = `${tr.name} (${netFlavor})`;

    test(`over ${on}, bytes the stream buffered before framed() are framed first, in order`, async (t) => {
      const p = await tr.make();
      await p.w.write('early\npart');
      const peek = Buffer.alloc(10);
      while ((await (p.r as TcpStream).peek(peek)) < 10) await realDelay(1);
      const f = framed(p.r, new LinesCodec());
      await p.w.write('ial\nafter\n');
      await p.w.shutdown();
      t.deepEqual(await collect(f), ['early', 'partial', 'after']);
      p.done();
    });

    test(`over ${on}, framed() after the stream already reached EOF still yields its buffered lines`, async (t) => {
      const p = await tr.make();
      await p.w.write('a\nb');
      await p.w.shutdown();
      const peek = Buffer.alloc(3);
      while ((await (p.r as TcpStream).peek(peek)) < 3) await realDelay(1);
      await realDelay(30); // the EOF event arrives too
      const f = framed(p.r, new LinesCodec());
      t.deepEqual(await collect(f), ['a', 'b']);
      p.done();
    });

    test(`over ${on}, framed() in the middle of a fast stream loses and reorders nothing`, async (t) => {
      const p = await tr.make();
      const n = 200_000;
      const text = Array.from({ length: n }, (_, i) => `${String(i).padStart(9, '0')}\n`).join('');
      const writing = p.w.write(text).then(() => p.w.shutdown());
      const head = Buffer.alloc(10 * 1000);
      await (p.r as TcpStream).readExact(head);
      t.is(head.subarray(0, 10).toString(), '000000000\n');
      const f = framed(p.r, new LinesCodec());
      let i = 1000;
      let ok = true;
      for await (const l of f) {
        if (Number(l) !== i) {
          ok = false;
          break;
        }
        i++;
      }
      t.true(ok, `line ${i} out of order`);
      t.is(i, n);
      await writing;
      p.done();
    });

    test(`over ${on}, raw reads of a framed stream reject and a second framed() throws, with ERR_STREAM_FRAMED`, async (t) => {
      const p = await tr.make();
      const s = p.r as TcpStream;
      const pendingRead = s.read(Buffer.alloc(4));
      const f = framed(s, new LinesCodec());
      await t.throwsAsync(pendingRead, { code: 'ERR_STREAM_FRAMED' });
      await t.throwsAsync(s.read(Buffer.alloc(4)), { code: 'ERR_STREAM_FRAMED' });
      await t.throwsAsync(s.readChunk(), { code: 'ERR_STREAM_FRAMED' });
      t.throws(() => framed(s, new LinesCodec()), { code: 'ERR_STREAM_FRAMED' });
      await t.throwsAsync(copy(s, p.w), { code: 'ERR_STREAM_FRAMED' });
      // Writes still work and are ordered with send().
      await s.write('raw ');
      await f.send('line');
      const buf = Buffer.alloc(9);
      let got = 0;
      while (got < 9) got += await p.w.read(buf.subarray(got));
      t.is(buf.toString(), 'raw line\n');
      p.done();
    });

    test(`over ${on}, split halves frame separately: the read half receives, the write half sends`, async (t) => {
      const p = await tr.make();
      const [rh, wh] = (p.r as TcpStream).split();
      const rx = framed(rh, new LinesCodec());
      const tx = framed(wh, new LinesCodec());
      await t.throwsAsync(rx.send('x'), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
      await t.throwsAsync(tx.next(), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
      const peer = framed(p.w, new LinesCodec());
      await tx.send('to peer');
      t.is(await peer.next(), 'to peer');
      await peer.send('to half');
      t.is(await rx.next(), 'to half');
      p.done();
    });

    test(`over ${on}, a framed reader that stops calling next() stops reading: the writer is held back`, async (t) => {
      t.timeout(60_000);
      const p = await tr.make();
      const f = framed(p.r, new LinesCodec());
      const line = `${'z'.repeat(99)}\n`;
      const mib = Buffer.from(line.repeat((1 << 20) / 100));
      let written = 0;
      let stop = false;
      const writer = (async () => {
        while (!stop && written < 64 << 20) {
          await p.w.write(mib);
          written += mib.length;
        }
        await p.w.shutdown();
      })();
      t.is(await f.next(), line.slice(0, -1)); // reading starts
      // Wait until the writer stops making progress (at most ~10 s on a loaded machine).
      let stalled = false;
      for (let i = 0; i < 50 && !stalled; i++) {
        const before = written;
        await realDelay(200);
        stalled = written === before && written > 0;
      }
      t.true(stalled, 'the writer is blocked');
      t.true(written < 48 << 20, `${written} bytes were written with nobody reading`);
      stop = true;
      let n = 1;
      let ok = true;
      for await (const l of f) {
        if (l.length !== 99) ok = false;
        n++;
      }
      await writer;
      t.true(ok);
      t.is(n * 100, written);
      p.done();
    });
  }

  test(`over a kyoto TCP pair (${netFlavor}), an abort while a frame over 1 MiB waits for room does not cut it: the peer reads it whole, then the next frame`, async (t) => {
    const p = await tcpPair();
    const tx = framed(p.w as TcpStream, new LengthDelimitedCodec());
    const ac = new AbortController();
    const big = tx.send(Buffer.alloc(4 << 20, 0x41), { signal: ac.signal });
    await realDelay(100);
    ac.abort();
    await realDelay(100);
    const rx = framed(p.r as TcpStream, new LengthDelimitedCodec());
    const sizes: number[] = [];
    const reading = (async () => {
      for await (const f of rx) sizes.push((f as Buffer).length);
    })();
    await big;
    await tx.send(Buffer.from('after'));
    await (p.w as TcpStream).shutdown();
    await reading;
    t.deepEqual(sizes, [4 << 20, 5]);
    p.done();
  });

  test(`over a kyoto TCP pair (${netFlavor}), a peer sending only oversize lines is held back like one sending frames: the errors queued stay bounded`, async (t) => {
    t.timeout(60_000);
    const p = await tcpPair();
    const f = framed(p.r as TcpStream, new LinesCodec({ maxLength: 1 }));
    const chunk = Buffer.from('xx\n'.repeat(64 * 1024));
    let written = 0;
    let stop = false;
    const writer = (async () => {
      while (!stop && written < 256 << 20) {
        await p.w.write(chunk);
        written += chunk.length;
      }
    })().catch(() => {});
    await t.throwsAsync(f.next(), { code: 'ERR_LINE_TOO_LONG' }); // reading starts
    let stalled = false;
    for (let i = 0; i < 50 && !stalled; i++) {
      const before = written;
      await realDelay(200);
      stalled = written === before && written > 0;
    }
    stop = true;
    t.true(stalled, `the writer is held back (${written} bytes written)`);
    t.true(written < 64 << 20, `${written} bytes were taken with nobody calling next()`);
    p.done();
    await writer;
  });

  test(`a framed kyoto stream's pending next() does not keep the process alive once the stream is unref()ed (${netFlavor})`, async (t) => {
    const r = await runNodeChild(
      `process.env.KYOTO_NET_FLAVOR = ${JSON.stringify(netFlavor)};
       const { TcpListener, TcpStream } = require('kyoto/net');
       const { framed, LinesCodec } = require('kyoto/io');
       (async () => {
         const l = await TcpListener.bind('127.0.0.1:0');
         const acc = l.accept();
         const c = await TcpStream.connect(l.localAddr());
         const [s] = await acc;
         l.close();
         c.unref();
         s.unref();
         framed(s, new LinesCodec()).next().catch(() => {});
         console.log('waiting');
       })();`,
      10_000,
      true,
    );
    t.false(r.timedOut, 'the process exited on its own');
    t.is(r.out.trim(), 'waiting');
  });
}
