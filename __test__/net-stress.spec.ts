import test from 'ava';
import { createHash } from 'node:crypto';
import { TcpListener, TcpStream, copy, copyBidirectional } from 'kyoto';

const CONNS = 1000;
const BYTES = 1 << 20;

function payload(seed: number): Buffer {
  // A cheap deterministic pseudo-random MiB per connection.
  const b = Buffer.allocUnsafe(BYTES);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < BYTES; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}

test('1 000 connections each send 1 MiB through copyBidirectional: nothing lost, duplicated or reordered', async (t) => {
  t.timeout(90_000);
  // Echo server: native copy(s, s).
  const echo = await TcpListener.bind('127.0.0.1:0');
  (async () => {
    for await (const s of echo) copy(s, s).catch(() => {}).finally(() => s.close());
  })().catch(() => {});
  // Proxy: copyBidirectional(client side, echo side).
  const proxy = await TcpListener.bind('127.0.0.1:0');
  const proxied: Array<Promise<[number, number]>> = [];
  (async () => {
    for await (const a of proxy) {
      proxied.push(
        TcpStream.connect(echo.localAddr()).then(async (b) => {
          try {
            return await copyBidirectional(a, b);
          } finally {
            a.close();
            b.close();
          }
        }),
      );
    }
  })().catch(() => {});
  const expected = Array.from({ length: 8 }, (_, i) => payload(i + 1));
  const digests = expected.map((b) => createHash('sha256').update(b).digest('hex'));
  const started = Date.now();
  let active = 0;
  let maxActive = 0;
  const one = async (i: number): Promise<void> => {
    const data = expected[i % expected.length];
    const c = await TcpStream.connect(proxy.localAddr());
    active++;
    maxActive = Math.max(maxActive, active);
    const h = createHash('sha256');
    let got = 0;
    const reader = (async () => {
      for await (const chunk of c) {
        h.update(chunk);
        got += chunk.length;
      }
    })();
    for (let off = 0; off < BYTES; off += 64 * 1024) await c.write(data.subarray(off, off + 64 * 1024));
    await c.shutdown();
    await reader;
    c.close();
    active--;
    t.is(got, BYTES);
    t.is(h.digest('hex'), digests[i % expected.length], `connection ${i}`);
  };
  await Promise.all(Array.from({ length: CONNS }, (_, i) => one(i)));
  const results = await Promise.all(proxied);
  t.is(results.length, CONNS);
  for (const [ab, ba] of results) {
    t.is(ab, BYTES);
    t.is(ba, BYTES);
  }
  t.log(`${CONNS} × 1 MiB in ${Date.now() - started} ms, ${maxActive} connections open at once`);
  echo.close();
  proxy.close();
});
