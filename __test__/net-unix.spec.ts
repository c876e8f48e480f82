import test from 'ava';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { UnixDatagram, UnixListener, UnixStream, copy } from 'kyoto';
import { UNIX_SOCKETS, descriptorsOpenedSince, linuxTest, openDescriptors, unixTest, withTimeout } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'kyoto-unix-'));
let n = 0;
const sockPath = (): string => path.join(dir, `s${n++}.sock`);
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

unixTest('UnixListener accepts a UnixStream; bytes flow both ways; addresses are paths', async (t) => {
  const p = sockPath();
  const l = await UnixListener.bind(p);
  const acc = l.accept();
  const c = await UnixStream.connect(p);
  const [s, peer] = await acc;
  t.true(s instanceof UnixStream);
  t.is(peer.path, '');
  t.is(c.peerAddr().path, p);
  await c.write('over unix');
  const b = Buffer.alloc(9);
  await s.readExact(b);
  t.is(b.toString(), 'over unix');
  await c.shutdown();
  t.is(await s.read(b), 0);
  c.close();
  s.close();
  l.close();
});

unixTest('UnixListener.bind takes a signal as TcpListener.bind does: an aborted one rejects with ABORT_ERR and binds nothing', async (t) => {
  const p = sockPath();
  const before = openDescriptors();
  const ac = new AbortController();
  ac.abort();
  await t.throwsAsync(UnixListener.bind(p, { signal: ac.signal }), { code: 'ABORT_ERR' });
  const why = new Error('why');
  await t.throwsAsync(UnixListener.bind(p, { signal: AbortSignal.abort(why) }), { is: why });
  await t.throwsAsync(UnixListener.bind(p, { signal: 'x' as unknown as AbortSignal }), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  t.false(existsSync(p), 'no socket file');
  t.deepEqual(await descriptorsOpenedSince(before), [], 'no descriptor');
  // A live signal binds as usual.
  const l = await UnixListener.bind(p, { signal: new AbortController().signal });
  t.true(existsSync(p));
  l.close();
});

unixTest('UnixStream.pair() is connected and peerCred() names this process', async (t) => {
  const [a, b] = UnixStream.pair();
  await a.write('x');
  const buf = Buffer.alloc(1);
  await b.readExact(buf);
  t.is(buf.toString(), 'x');
  const cred = a.peerCred();
  t.is(cred.pid, process.pid);
  t.is(cred.uid, process.getuid!());
  t.is(cred.gid, process.getgid!());
  a.close();
  b.close();
});

unixTest('copy(s, s) echoes over a Unix stream natively', async (t) => {
  const [a, b] = UnixStream.pair();
  const echo = copy(b, b);
  await a.write('echo');
  const buf = Buffer.alloc(4);
  await a.readExact(buf);
  t.is(buf.toString(), 'echo');
  await a.shutdown();
  t.is(await echo, 4);
  a.close();
  b.close();
});

unixTest('connecting to a missing path and binding an existing one are Node-shaped errors', async (t) => {
  const missing = path.join(dir, 'missing.sock');
  await t.throwsAsync(UnixStream.connect(missing), { code: 'ENOENT' });
  const p = sockPath();
  const l = await UnixListener.bind(p);
  const err = await t.throwsAsync(UnixListener.bind(p));
  t.is((err as unknown as { code: string }).code, 'EADDRINUSE');
  await t.throwsAsync(UnixStream.connect(42 as never), { code: 'ERR_INVALID_ARG_TYPE' });
  l.close();
});

unixTest('UnixDatagram: bind, sendTo, recvFrom with the sender path; pair; connect', async (t) => {
  const pa = sockPath();
  const pb = sockPath();
  const a = UnixDatagram.bind(pa);
  const b = UnixDatagram.bind(pb);
  t.is(a.localAddr().path, pa);
  await a.sendTo('dgram', pb);
  const buf = Buffer.alloc(16);
  const r = await b.recvFrom(buf);
  t.is(buf.subarray(0, r.bytes).toString(), 'dgram');
  t.is(r.address.path, pa);
  b.connect(pa);
  await b.send('back');
  t.is(buf.subarray(0, await a.recv(buf)).toString(), 'back');
  const [x, y] = UnixDatagram.pair();
  await x.send('paired');
  t.is(buf.subarray(0, await y.recv(buf)).toString(), 'paired');
  // b is connected to a: it ignores other senders; a fresh socket hears the unbound one.
  const pc = sockPath();
  const c = UnixDatagram.bind(pc);
  const u = UnixDatagram.unbound();
  await u.sendTo('from unbound', pc);
  const r2 = await c.recvFrom(buf);
  t.is(buf.subarray(0, r2.bytes).toString(), 'from unbound');
  t.is(r2.address.path, '');
  for (const s of [a, b, c, x, y, u]) s.close();
  await t.throwsAsync(a.recv(buf), { code: 'ERR_SOCKET_CLOSED' });
});

unixTest('a closed UnixDatagram refuses datagrams as soon as close() returns', async (t) => {
  // close() closes the descriptor there and then (not when the socket's task next runs): a
  // datagram sent to its path right after is refused, and the pair's other end sees it gone.
  const p = sockPath();
  const gone = UnixDatagram.bind(p);
  gone.close();
  const u = UnixDatagram.unbound();
  await t.throwsAsync(u.sendTo('anyone?', p), { code: 'ECONNREFUSED' });
  const [x, y] = UnixDatagram.pair();
  y.close();
  await t.throwsAsync(x.send('anyone?'), { code: 'ECONNREFUSED' });
  u.close();
  x.close();
});

unixTest('Unix socket addresses keep the whole path, "|" characters included', async (t) => {
  const sub = mkdtempSync(path.join(dir, 'a|b-'));
  const p = path.join(sub, 'svc|v2.sock');
  const l = await UnixListener.bind(p);
  const acc = l.accept();
  const c = await UnixStream.connect(p);
  const [s] = await withTimeout(acc, 5000, 'accept');
  const pd = path.join(sub, 'dg|1|.sock');
  const d = UnixDatagram.bind(pd);
  const e = UnixDatagram.bind(path.join(sub, '|e'));
  t.teardown(() => [c, s, l, d, e].forEach((x) => x.close()));
  t.is(l.localAddr().path, p);
  t.is(c.peerAddr().path, p);
  t.is(s.localAddr().path, p);
  t.is(d.localAddr().path, pd);
  e.connect(pd);
  t.is(e.peerAddr().path, pd);
  await e.send('x');
  const r = await withTimeout(d.recvFrom(Buffer.alloc(4)), 5000, 'recvFrom');
  t.is(r.address.path, path.join(sub, '|e'));
});

unixTest('a path with a NUL byte after its start is refused with ERR_INVALID_ARG_VALUE everywhere, and nothing is created', async (t) => {
  const sub = mkdtempSync(path.join(dir, 'nul-'));
  const bad = path.join(sub, 'real.sock\0suffix');
  const code = 'ERR_INVALID_ARG_VALUE';
  const made: Array<{ close(): void }> = [];
  t.teardown(() => made.forEach((x) => x.close()));
  // Before the fix a listener bound, and a stream connected to, the path cut at the NUL: close them.
  const keep = <T extends { close(): void }>(x: T): T => (made.push(x), x);
  await t.throwsAsync(UnixListener.bind(bad).then(keep), { instanceOf: TypeError, code });
  await t.throwsAsync(UnixStream.connect(bad).then(keep), { instanceOf: TypeError, code });
  t.throws(() => keep(UnixDatagram.bind(bad)), { instanceOf: TypeError, code });
  t.deepEqual(readdirSync(sub), [], 'no socket file was made from the part before the NUL');
  // A listener on the part before the NUL is not reached through the longer path either.
  keep(await UnixListener.bind(path.join(sub, 'real.sock')));
  await t.throwsAsync(UnixStream.connect(bad).then(keep), { instanceOf: TypeError, code });
  const u = keep(UnixDatagram.unbound());
  await t.throwsAsync(u.sendTo('x', bad), { instanceOf: TypeError, code });
  await t.throwsAsync(u.sendMany([{ data: 'x', address: { path: bad } }]), { instanceOf: TypeError, code });
  t.throws(() => u.connect(bad), { instanceOf: TypeError, code });
});

linuxTest('abstract names (a leading NUL) work for listeners, streams and datagrams, and addresses give them as node:net does', async (t) => {
  const name = `\0kyoto-test-${process.pid}-`;
  const ln = `${name}listener`;
  const made: Array<{ close(): void }> = [];
  t.teardown(() => made.forEach((x) => x.close()));
  const keep = <T extends { close(): void }>(x: T): T => (made.push(x), x);
  const l = keep(await UnixListener.bind(ln));
  t.is(l.localAddr().path, ln);
  const acc = l.accept();
  const c = keep(await UnixStream.connect(ln));
  const [s] = await withTimeout(acc, 5000, 'accept');
  keep(s);
  t.is(c.peerAddr().path, ln);
  t.is(s.localAddr().path, ln);
  await c.write('abstract');
  const b = Buffer.alloc(8);
  await withTimeout(s.readExact(b), 5000, 'read');
  t.is(b.toString(), 'abstract');
  const na = `${name}dgram-a`;
  const nb = `${name}dgram-b`;
  const a = keep(UnixDatagram.bind(na));
  const d = keep(UnixDatagram.bind(nb));
  t.is(a.localAddr().path, na);
  await a.sendTo('to b', nb);
  const r = await withTimeout(d.recvFrom(b), 5000, 'recvFrom');
  t.is(b.subarray(0, r.bytes).toString(), 'to b');
  t.is(r.address.path, na);
  d.connect(na);
  t.is(d.peerAddr().path, na);
  await d.send('to a');
  t.is(b.subarray(0, await withTimeout(a.recv(b), 5000, 'recv')).toString(), 'to a');
});

if (!UNIX_SOCKETS) {
  test('Unix socket classes refuse with ERR_FEATURE_UNAVAILABLE_ON_PLATFORM on Windows', async (t) => {
    const code = 'ERR_FEATURE_UNAVAILABLE_ON_PLATFORM';
    await t.throwsAsync(UnixListener.bind(sockPath()), { code });
    await t.throwsAsync(UnixStream.connect(sockPath()), { code });
    t.throws(() => UnixStream.pair(), { code });
    t.throws(() => UnixDatagram.bind(sockPath()), { code });
    t.throws(() => UnixDatagram.unbound(), { code });
    t.throws(() => UnixDatagram.pair(), { code });
  });
}
