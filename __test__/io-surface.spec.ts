// Parts of kyoto/io's surface that users rely on and no other spec pins down: BufReader.read's
// buffering, its argument checks, an aborted readLine, and framed()/copy() on a closed stream.
import test from 'ava';
import { AbortError, BufReader, LengthDelimitedCodec, LinesCodec, copy, copyBidirectional, duplex, framed, type Reader } from 'kyoto';
import { isSettled, tcpPair, withTimeout } from './helpers';


/** A reader handing out `chunks` one per read (cut to the buffer), recording the buffers it was given. */
function scriptedReader(chunks: string[]): Reader & { calls: Uint8Array[] } {
  const queue = chunks.map((c) => Buffer.from(c));
  const calls: Uint8Array[] = [];
  return {
    calls,
    async read(buf: Uint8Array): Promise<number> {
      calls.push(buf);
      const next = queue.shift();
      if (next === undefined) return 0;
      const n = Math.min(next.length, buf.length);
      buf.set(next.subarray(0, n));
      if (n < next.length) queue.unshift(next.subarray(n));
      return n;
    },
  };
}

test('BufReader.read returns buffered bytes before reading again, and a read as large as its buffer goes straight to the inner reader', async (t) => {
  const inner = scriptedReader(['abcdefghij', 'KLMNOPQRST']);
  const br = new BufReader(inner, 8);
  const small = Buffer.alloc(3);
  t.is(await br.read(small), 3);
  t.is(small.toString(), 'abc');
  t.is(inner.calls.length, 1);
  t.is(inner.calls[0].length, 8, 'a small read fills the internal buffer');
  // What is buffered comes first, even for a large read, and without another inner read.
  const large = Buffer.alloc(32);
  t.is(await br.read(large), 5);
  t.is(large.toString('utf8', 0, 5), 'defgh');
  t.is(inner.calls.length, 1);
  // Buffer empty and the read as large as the buffer: the inner reader fills the caller's buffer.
  const direct = Buffer.alloc(8);
  t.is(await br.read(direct), 2);
  t.is(direct.toString('utf8', 0, 2), 'ij');
  t.is(inner.calls.length, 2);
  t.is(inner.calls[1].buffer, direct.buffer, 'the caller’s own buffer went to the inner reader');
  t.is(inner.calls[1].length, 8);
  // Small reads are buffered again.
  const one = Buffer.alloc(1);
  t.is(await br.read(one), 1);
  t.is(one.toString(), 'K');
  t.is(inner.calls[2].length, 8);
  t.is(await br.read(large), 7);
  t.is(large.toString('utf8', 0, 7), 'LMNOPQR');
  t.is(await br.read(large), 2);
  t.is(large.toString('utf8', 0, 2), 'ST');
  t.is(await br.read(large), 0, 'end of stream');
  t.is(await br.read(one), 0);
});

test('BufReader.read over a TCP stream gets every byte in order, whatever the read sizes', async (t) => {
  const { l, c, s } = await tcpPair();
  const br = new BufReader(s, 16);
  const sent = Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff));
  await c.write(sent);
  await c.shutdown();
  const parts: Buffer[] = [];
  const sizes = [1, 5, 16, 3, 40, 7, 16, 100];
  for (let i = 0; ; i++) {
    const buf = Buffer.alloc(sizes[i % sizes.length]);
    const n = await withTimeout(br.read(buf), 5000, 'BufReader.read');
    if (n === 0) break;
    parts.push(buf.subarray(0, n));
  }
  t.true(Buffer.concat(parts).equals(sent));
  c.close();
  s.close();
  l.close();
});

test('a BufReader capacity below 1 or not an integer is a RangeError ERR_OUT_OF_RANGE; reading into a non-buffer is a TypeError', async (t) => {
  const inner = scriptedReader(['x']);
  for (const capacity of [0, -1, 1.5, NaN]) {
    t.throws(() => new BufReader(inner, capacity), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }, `capacity ${capacity}`);
  }
  t.throws(() => new BufReader({} as Reader), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  const br = new BufReader(inner, 1);
  for (const bad of ['buf', 4, null, new ArrayBuffer(4)]) {
    await t.throwsAsync(br.read(bad as never), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, String(bad));
  }
  t.is(inner.calls.length, 0, 'nothing was read');
  const one = Buffer.alloc(1);
  t.is(await br.read(one), 1);
  t.is(one.toString(), 'x');
});

test('BufReader.readLine rejects when aborted, and a later readLine still gets the line', async (t) => {
  const { l, c, s } = await tcpPair();
  const br = new BufReader(s);
  await t.throwsAsync(br.readLine({ signal: AbortSignal.abort() }), { instanceOf: AbortError, code: 'ABORT_ERR' });
  const ac = new AbortController();
  const waiting = br.readLine({ signal: ac.signal });
  t.false(await isSettled(waiting));
  const reason = new Error('no more waiting');
  ac.abort(reason);
  t.is(await t.throwsAsync(withTimeout(waiting, 5000, 'readLine')), reason);
  await c.write('first line\nsecond');
  t.is(await withTimeout(br.readLine(), 5000, 'readLine after the abort'), 'first line');
  await c.shutdown();
  t.is(await withTimeout(br.readLine(), 5000, 'last line'), 'second');
  t.is(await withTimeout(br.readLine(), 5000, 'end'), undefined);
  c.close();
  s.close();
  l.close();
});

test('framed() on a closed stream rejects send and next with ERR_SOCKET_CLOSED, whether it was closed after framing or before', async (t) => {
  const { l, c, s } = await tcpPair();
  const lines = framed(c, new LinesCodec());
  const waiting = lines.next();
  t.false(await isSettled(waiting));
  c.close();
  await t.throwsAsync(withTimeout(waiting, 5000, 'pending next'), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(lines.send('late'), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(lines.next(), { code: 'ERR_SOCKET_CLOSED' });
  const { l: l2, c: c2, s: s2 } = await tcpPair();
  c2.close();
  const frames = framed(c2, new LengthDelimitedCodec());
  await t.throwsAsync(frames.send(Buffer.from('late')), { code: 'ERR_SOCKET_CLOSED' });
  await t.throwsAsync(frames.next(), { code: 'ERR_SOCKET_CLOSED' });
  // The peers only see the connections end.
  t.is((await withTimeout(s.readToEnd(), 5000, 'peer EOF')).length, 0);
  t.is((await withTimeout(s2.readToEnd(), 5000, 'peer EOF')).length, 0);
  s.close();
  s2.close();
  l.close();
  l2.close();
});

test('copy() from a closed kyoto stream into another writer rejects with ERR_SOCKET_CLOSED', async (t) => {
  const { l, c, s } = await tcpPair();
  const [w, r] = duplex(64);
  c.close();
  await t.throwsAsync(withTimeout(copy(c, w), 5000, 'copy'), { code: 'ERR_SOCKET_CLOSED' });
  // Nothing was written to the writer.
  await w.shutdown();
  t.is(await r.read(Buffer.alloc(4)), 0);
  s.close();
  l.close();
});

test('closing either stream under a running native copy rejects it with ERR_SOCKET_CLOSED, as under a JS copy', async (t) => {
  for (const which of ['source', 'destination'] as const) {
    for (const bidi of [false, true]) {
      const a = await tcpPair();
      const b = await tcpPair();
      const copying: Promise<unknown> = bidi ? copyBidirectional(a.s, b.s) : copy(a.s, b.s);
      await a.c.write('x');
      const one = Buffer.alloc(1);
      await withTimeout(b.c.readExact(one), 5000, 'the copy running'); // it took the streams over
      (which === 'source' ? a.s : b.s).close();
      await t.throwsAsync(withTimeout(copying, 5000, 'copy'), { code: 'ERR_SOCKET_CLOSED' }, `${which}, bidi: ${bidi}`);
      for (const p of [a, b]) {
        p.c.close();
        p.s.close();
        p.l.close();
      }
    }
  }
});

test('two readLine() calls in flight on a BufReader return the two lines in order', async (t) => {
  const { l, c, s } = await tcpPair();
  const br = new BufReader(s);
  const first = br.readLine();
  const second = br.readLine();
  await c.write('line1\n');
  t.is(await withTimeout(first, 5000, 'the first line'), 'line1');
  t.false(await isSettled(second));
  await c.write('line2\n');
  await c.shutdown();
  t.deepEqual([await second, await br.readLine()], ['line2', undefined]);
  // A call aborted while it waits for its turn rejects at once; the one before it is unaffected.
  const [a, b] = duplex(64);
  const br2 = new BufReader(b);
  const head = br2.readLine();
  const ac = new AbortController();
  const queued = br2.readLine({ signal: ac.signal });
  ac.abort();
  await t.throwsAsync(queued, { name: 'AbortError' });
  await a.write('x\ny\n');
  t.deepEqual([await head, await br2.readLine()], ['x', 'y']);
  for (const e of [l, c, s, a, b]) e.close();
});

test('readLine({ maxLength }) counts a last line\'s unterminated \\r', async (t) => {
  for (const [input, max] of [['abc\r', 3], ['\r', 0]] as const) {
    const [a, b] = duplex(64);
    await a.write(input);
    await a.shutdown();
    const br = new BufReader(b);
    await t.throwsAsync(br.readLine({ maxLength: max }), { code: 'ERR_LINE_TOO_LONG' }, JSON.stringify(input));
    t.is(await br.readLine(), undefined);
    b.close();
  }
  const [a, b] = duplex(64);
  await a.write('abc\r');
  await a.shutdown();
  t.is(await new BufReader(b).readLine({ maxLength: 4 }), 'abc\r', 'within the limit: returned as is');
});

test('copy() to a JS writer: a write resolving with nothing took it all, 0 is ERR_WRITE_ZERO, a count it cannot have taken is ERR_INVALID_RETURN_VALUE', async (t) => {
  const taken: string[] = [];
  const all = { write: async (b: Uint8Array) => void taken.push(Buffer.from(b).toString()) };
  t.is(await copy(scriptedReader(['ab', 'cd']), all), 4);
  t.deepEqual(taken, ['ab', 'cd']);
  for (const [r, code] of [[0, 'ERR_WRITE_ZERO'], [NaN, 'ERR_INVALID_RETURN_VALUE'], [-1, 'ERR_INVALID_RETURN_VALUE'], [3, 'ERR_INVALID_RETURN_VALUE'], [1.5, 'ERR_INVALID_RETURN_VALUE']] as const) {
    const w = { write: async () => r };
    await t.throwsAsync(copy(scriptedReader(['ab']), w), { code }, `write() returning ${r}`);
  }
});

test('a reader whose read() does not resolve with a byte count (a Node stream\'s) fails copy, BufReader and framed with ERR_INVALID_RETURN_VALUE instead of spinning', async (t) => {
  const sink = { write: async () => undefined };
  for (const answer of [null, Buffer.from('chunk'), -1, 1.5, 99_999_999, '3']) {
    const bad = { read: async () => answer as unknown as number };
    const what = `read() answering ${String(answer)}`;
    const code = 'ERR_INVALID_RETURN_VALUE';
    await t.throwsAsync(withTimeout(copy(bad, sink), 5000, what), { code }, `copy: ${what}`);
    await t.throwsAsync(withTimeout(new BufReader(bad).readLine(), 5000, what), { code }, `BufReader: ${what}`);
    await t.throwsAsync(withTimeout(framed(bad, new LinesCodec()).next(), 5000, what), { code }, `framed: ${what}`);
  }
  // A Node Readable itself (read() returns a chunk or null synchronously).
  const { PassThrough } = await import('node:stream');
  const node = new PassThrough();
  node.end('line\n');
  await t.throwsAsync(withTimeout(framed(node as unknown as Reader, new LinesCodec()).next(), 5000, 'a PassThrough'), { code: 'ERR_INVALID_RETURN_VALUE' });
});

test('framed() sends over a JS writer that takes part of a buffer per call go out one frame after another', async (t) => {
  const wire: Buffer[] = [];
  const w = {
    async write(d: Uint8Array): Promise<number> {
      await new Promise((r) => setImmediate(r));
      const k = Math.min(4, d.length);
      wire.push(Buffer.from(d.subarray(0, k)));
      return k;
    },
  };
  const tx = framed(w, new LinesCodec());
  await Promise.all([tx.send('aaaaaaaaaa'), tx.send('bbbbbbbbbb'), tx.send('c')]);
  t.is(Buffer.concat(wire).toString(), 'aaaaaaaaaa\nbbbbbbbbbb\nc\n');
});
