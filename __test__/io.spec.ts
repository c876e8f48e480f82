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
import { tcpPair } from './helpers';


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
