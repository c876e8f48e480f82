import test from 'ava';
import {
  BufReader,
  LengthDelimitedCodec,
  LinesCodec,
  TcpListener,
  TcpStream,
  copy,
  copyBidirectional,
  duplex,
  framed,
} from 'kyoto';
import { isSettled, realDelay, tcpPair, withTimeout } from './helpers';


test('copy(s, s) echoes; the client shutdown() makes it return and the client then reads 0', async (t) => {
  const { l, c, s } = await tcpPair();
  const server = copy(s, s);
  await c.write('echo me');
  const buf = Buffer.alloc(7);
  await c.readExact(buf);
  t.is(buf.toString(), 'echo me');
  await c.shutdown();
  t.is(await server, 7);
  s.close();
  t.is(await c.read(Buffer.alloc(4)), 0);
  c.close();
  l.close();
});

test('copy hands over bytes JS had already buffered', async (t) => {
  const { l, c, s } = await tcpPair();
  await c.write('early');
  t.is(await s.peek(Buffer.alloc(5)), 5); // now buffered on the JS side
  const server = copy(s, s);
  const buf = Buffer.alloc(5);
  await c.readExact(buf);
  t.is(buf.toString(), 'early');
  await c.shutdown();
  t.is(await server, 5);
  s.close();
  c.close();
  l.close();
});

test('copy into a stream keeps the bytes that stream had already received for its own reads', async (t) => {
  const src = await tcpPair();
  const dst = await tcpPair();
  await dst.c.write('for dst');
  t.is(await dst.s.peek(Buffer.alloc(7)), 7); // buffered on dst's JS side, unread
  const copying = copy(src.s, dst.s);
  await src.c.write('x');
  await src.c.shutdown();
  t.is(await withTimeout(copying, 5000, 'copy'), 1);
  const got = Buffer.alloc(7);
  await withTimeout(dst.s.readExact(got), 5000, 'the read of what dst had received');
  t.is(got.toString(), 'for dst');
  const one = Buffer.alloc(1);
  await withTimeout(dst.c.readExact(one), 5000, 'the copied byte');
  t.is(one.toString(), 'x');
  for (const p of [src, dst]) {
    p.c.close();
    p.s.close();
    p.l.close();
  }
});

test('a native copy leaves its source writable and its destination readable while it runs', async (t) => {
  // A proxy that pipes an upload natively and still answers on the source connection (acks) and
  // reads the destination's replies in JS: neither may wait for the copy to end.
  const src = await tcpPair();
  const dst = await tcpPair();
  const [srcRead, srcWrite] = src.s.split();
  const [dstRead, dstWrite] = dst.s.split();
  const copying = copy(srcRead, dstWrite);
  await src.c.write('upload');
  const up = Buffer.alloc(6);
  await withTimeout(dst.c.readExact(up), 5000, 'the copied bytes');
  t.is(up.toString(), 'upload');
  await srcWrite.write('ack');
  const ack = Buffer.alloc(3);
  await withTimeout(src.c.readExact(ack), 5000, 'a write to the source during the copy');
  t.is(ack.toString(), 'ack');
  await dst.c.write('reply');
  const reply = Buffer.alloc(5);
  await withTimeout(dstRead.readExact(reply), 5000, 'a read of the destination during the copy');
  t.is(reply.toString(), 'reply');
  t.false(await isSettled(copying));
  await src.c.shutdown();
  t.is(await withTimeout(copying, 5000, 'copy'), 6);
  for (const p of [src, dst]) {
    p.c.close();
    p.s.close();
    p.l.close();
  }
});

test('two one-way native copies in opposite directions each end on their own EOF', async (t) => {
  // The first copy to end must not hand back the streams the other copy still uses.
  const a = await tcpPair();
  const b = await tcpPair();
  const ab = copy(a.s, b.s);
  const ba = copy(b.s, a.s);
  await a.c.write('one');
  await a.c.shutdown();
  t.is(await withTimeout(ab, 5000, 'a to b'), 3);
  await b.c.write('two');
  const got = Buffer.alloc(3);
  await withTimeout(a.c.readExact(got), 5000, 'b to a after a to b ended');
  t.is(got.toString(), 'two');
  await b.c.shutdown();
  t.is(await withTimeout(ba, 5000, 'b to a'), 3);
  const one = Buffer.alloc(3);
  await withTimeout(b.c.readExact(one), 5000, 'a to b');
  t.is(one.toString(), 'one');
  for (const p of [a, b]) {
    p.c.close();
    p.s.close();
    p.l.close();
  }
});

test('copyBidirectional returns [0, 4] after a shuts down and b writes 4 bytes then closes', async (t) => {
  const la = await TcpListener.bind('127.0.0.1:0');
  const lb = await TcpListener.bind('127.0.0.1:0');
  const pa = await TcpStream.connect(la.localAddr());
  const pb = await TcpStream.connect(lb.localAddr());
  const [a] = await la.accept();
  const [b] = await lb.accept();
  const proxy = copyBidirectional(a, b);
  await pa.shutdown();
  t.is(await pb.read(Buffer.alloc(4)), 0); // b's writer was shut down
  await pb.write('four');
  pb.close();
  t.deepEqual(await proxy, [0, 4]);
  t.is((await pa.readToEnd()).toString(), 'four');
  for (const x of [a, b, pa, la, lb]) x.close();
});

test('a native copy that fails reading keeps the error for later reads of that stream; the other stream reads on', async (t) => {
  const one = await tcpPair();
  const two = await tcpPair();
  const copying = copy(one.s, two.s);
  await one.c.write('before the reset');
  t.is((await withTimeout(two.c.readExact(Buffer.alloc(16)), 5000, 'the copied bytes')), 16);
  one.c.setLinger(0);
  one.c.close(); // a reset: the copy's read fails
  await t.throwsAsync(withTimeout(copying, 5000, 'the copy'), { code: 'ECONNRESET', message: /^read/ });
  await t.throwsAsync(one.s.read(Buffer.alloc(8)), { code: 'ECONNRESET' }, 'not a clean end of stream');
  // The destination is untouched: it still carries data both ways.
  await two.c.write('still open');
  const got = Buffer.alloc(10);
  await withTimeout(two.s.readExact(got), 5000, 'reading the destination');
  t.is(got.toString(), 'still open');
  for (const x of [one.l, one.s, two.l, two.c, two.s]) x.close();
});

test('copyBidirectional that fails reading b keeps the error on b, not on a', async (t) => {
  const one = await tcpPair();
  const two = await tcpPair();
  const copying = copyBidirectional(one.s, two.s);
  two.c.setLinger(0);
  two.c.close(); // b's peer resets: the b → a read fails
  await t.throwsAsync(withTimeout(copying, 5000, 'the copy'), { code: 'ECONNRESET', message: /^read/ });
  await t.throwsAsync(two.s.read(Buffer.alloc(8)), { code: 'ECONNRESET' });
  await one.c.write('a reads on');
  const got = Buffer.alloc(10);
  await withTimeout(one.s.readExact(got), 5000, 'reading a');
  t.is(got.toString(), 'a reads on');
  for (const x of [one.l, one.c, one.s, two.l, two.s]) x.close();
});

test('a native copy that fails writing leaves its source readable: later data is read, not a false end of stream', async (t) => {
  const one = await tcpPair();
  const two = await tcpPair();
  const copying = copy(one.s, two.s);
  two.c.setLinger(0);
  two.c.close(); // the destination's peer resets: a write fails
  await realDelay(20);
  for (let i = 0; i < 50 && (await isSettled(copying)) === false; i++) {
    await one.c.write(Buffer.alloc(1024));
    await realDelay(10);
  }
  const e = await t.throwsAsync(withTimeout(copying, 5000, 'the copy'));
  t.regex(e.message, /^write/);
  t.true(['ECONNRESET', 'EPIPE'].includes((e as Error & { code?: string }).code ?? ''));
  await one.c.write('after');
  // Drain what was sent before the copy failed, then the new bytes arrive.
  const want = Buffer.from('after');
  let seen = Buffer.alloc(0);
  while (!seen.subarray(-want.length).equals(want)) {
    const buf = Buffer.alloc(4096);
    const n = await withTimeout(one.s.read(buf), 5000, 'reading the source');
    t.not(n, 0, 'no false end of stream');
    if (n === 0) break;
    seen = Buffer.concat([seen, buf.subarray(0, n)]);
  }
  for (const x of [one.l, one.c, one.s, two.l, two.s]) x.close();
});

test('copy and copyBidirectional work in JS for non-kyoto streams', async (t) => {
  const [x, y] = duplex(64);
  const [p, q] = duplex(64);
  const copying = copy(y, p);
  await x.write('through two pipes');
  await x.shutdown();
  t.is(await copying, 17);
  await p.shutdown();
  const buf = Buffer.alloc(64);
  let got = '';
  for (;;) {
    const n = await q.read(buf);
    if (n === 0) break;
    got += buf.subarray(0, n).toString();
  }
  t.is(got, 'through two pipes');
  const [a1, a2] = duplex(16);
  const [b1, b2] = duplex(16);
  const both = copyBidirectional(a2, b1);
  await a1.write('abc');
  await a1.shutdown();
  await b2.write('de');
  await b2.shutdown();
  t.deepEqual(await both, [3, 2]);
  await t.throwsAsync(copy({} as never, y), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.throwsAsync(copyBidirectional(null as never, b1), { code: 'ERR_INVALID_ARG_TYPE', instanceOf: TypeError });
  await t.throwsAsync(copyBidirectional(a2, { read: () => 0 } as never), { code: 'ERR_INVALID_ARG_TYPE', instanceOf: TypeError });
});

test("lines() over 'hello\\r\\nworld\\n\\n' yields hello, world, ''", async (t) => {
  const { l, c, s } = await tcpPair();
  await c.write('hello\r\nworld\n\n');
  await c.shutdown();
  const lines: string[] = [];
  for await (const line of new BufReader(s).lines()) lines.push(line);
  t.deepEqual(lines, ['hello', 'world', '']);
  c.close();
  s.close();
  l.close();
});

test('BufReader.readLine splits across reads and returns a last line without newline', async (t) => {
  const [a, b] = duplex(4);
  const r = new BufReader(b, 2);
  const w = (async () => {
    await a.write('abc\ndefgh');
    await a.write('ij\nlast');
    await a.shutdown();
  })();
  t.is(await r.readLine(), 'abc');
  t.is(await r.readLine(), 'defghij');
  t.is(await r.readLine(), 'last');
  t.is(await r.readLine(), undefined);
  await w;
  t.throws(() => new BufReader({} as never), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('duplex(maxBuf) bounds each direction and reports EOF after shutdown', async (t) => {
  t.throws(() => duplex(0), { code: 'ERR_OUT_OF_RANGE' });
  const [a, b] = duplex(4);
  const w = a.write('0123456789');
  const buf = Buffer.alloc(3);
  let got = '';
  while (got.length < 10) got += buf.subarray(0, await b.read(buf)).toString();
  await w;
  t.is(got, '0123456789');
  a.close();
  t.is(await b.read(buf), 0);
  await t.throwsAsync(b.write('x'), { code: 'EPIPE' });
});

test('framed with LinesCodec over TCP sends and receives lines; maxLength is enforced', async (t) => {
  const { l, c, s } = await tcpPair();
  const fc = framed(c, new LinesCodec({ maxLength: 16 }));
  const fs = framed(s, new LinesCodec({ maxLength: 16 }));
  await fc.send('one');
  await fc.send('two');
  t.is(await fs.next(), 'one');
  t.is(await fs.next(), 'two');
  await c.write(`${'x'.repeat(40)}\n`);
  await t.throwsAsync(fs.next(), { code: 'ERR_LINE_TOO_LONG' });
  c.close();
  s.close();
  l.close();
});

test('framed with LengthDelimitedCodec round-trips frames; maxFrameLength is enforced', async (t) => {
  const { l, c, s } = await tcpPair();
  const codec = new LengthDelimitedCodec({ lengthFieldBytes: 2, maxFrameLength: 1000 });
  const fc = framed(c, codec);
  const fs = framed(s, codec);
  await fc.send(Buffer.from('frame-1'));
  await fc.send('frame-2');
  t.is((await fs.next())!.toString(), 'frame-1');
  t.is((await fs.next())!.toString(), 'frame-2');
  await t.throwsAsync(fc.send(Buffer.alloc(1001)), { code: 'ERR_FRAME_TOO_BIG' });
  await c.write(Buffer.from([0x10, 0x00]));
  await t.throwsAsync(fs.next(), { code: 'ERR_FRAME_TOO_BIG' });
  t.throws(() => new LengthDelimitedCodec({ lengthFieldBytes: 9 }), { code: 'ERR_OUT_OF_RANGE' });
  c.close();
  s.close();
  l.close();
});
