// kyoto/compat/net behaves like node:net: a slice of Node's own net behaviour, plus parity runs of
// the same scripts against both modules.
import test from 'ava';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter as EventEmitterClass, once, type EventEmitter } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as nodeNet from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as net from 'kyoto/compat/net';
import * as kyoto from 'kyoto';
import { UNIX_SOCKETS, packageRoot, runClusterFixture, runNodeChild, unixTest, uvErrno } from './helpers';

const dir = mkdtempSync(path.join(tmpdir(), 'kyoto-compat-net-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function listen(server: net.Server, ...args: unknown[]): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    (server.listen as (...a: unknown[]) => void)(...args, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

function closeServer(server: { close(cb?: (err?: Error) => void): unknown }): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Records the events of `e` as strings (`'data:…'`, `'close:false'`, `'error:CODE'`). */
function record(e: EventEmitter, names: string[]): string[] {
  const log: string[] = [];
  for (const name of names) {
    e.on(name, (arg: unknown) => {
      if (name === 'data') log.push(`data:${String(arg)}`);
      else if (name === 'close') log.push(arg === undefined ? 'close' : `close:${String(arg)}`);
      else if (name === 'error') log.push(`error:${(arg as { code?: string }).code}`);
      else log.push(name);
    });
  }
  return log;
}

/** An echo server on 127.0.0.1; resolves with it and its port. */
async function echoServer(opts: net.ServerOpts = {}): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer(opts, (s) => s.pipe(s));
  const port = await listen(server, 0, '127.0.0.1');
  return { server, port };
}

// ---------------------------------------------------------------------------------------------

test('an echo server: the client sees connect, ready, data, end, then close(false), with Node-shaped addresses', async (t) => {
  let serverSide: net.Socket | undefined;
  const server = net.createServer((s) => {
    serverSide = s;
    s.pipe(s);
  });
  const port = await listen(server, 0, '127.0.0.1');
  t.deepEqual(server.address(), { address: '127.0.0.1', family: 'IPv4', port });
  t.true(server.listening);

  const c = net.connect(port, '127.0.0.1');
  t.true(c.connecting);
  t.true(c.pending);
  t.is(c.readyState, 'opening');
  const log = record(c, ['connect', 'ready', 'data', 'end', 'finish', 'close']);
  c.setEncoding('utf8');
  await once(c, 'connect');
  t.false(c.connecting);
  t.false(c.pending);
  t.is(c.readyState, 'open');
  t.is(c.remoteAddress, '127.0.0.1');
  t.is(c.remotePort, port);
  t.is(c.remoteFamily, 'IPv4');
  t.is(c.localAddress, '127.0.0.1');
  t.deepEqual(c.address(), { address: '127.0.0.1', family: 'IPv4', port: c.localPort });
  c.end('hello');
  await within(once(c, 'close'), 10_000, 'close');
  // 'finish' (our FIN sent) and 'data' (the echo) race, in node:net too; the rest is ordered.
  t.deepEqual(log.filter((e) => e !== 'finish'), ['connect', 'ready', 'data:hello', 'end', 'close:false']);
  t.true(log.indexOf('finish') > log.indexOf('ready') && log.indexOf('finish') < log.indexOf('close:false'));
  t.is(c.bytesRead, 5);
  t.is(c.bytesWritten, 5);
  t.is(c.readyState, 'closed');
  t.true(c.destroyed);
  t.deepEqual(c.address(), {});
  t.is(c.remoteAddress, '127.0.0.1', 'the peer address stays readable after close, like Node');
  t.true(serverSide instanceof net.Socket);
  t.is(serverSide!.server, server);
  t.is(serverSide!.remotePort, c.localPort);
  await closeServer(server);
  t.false(server.listening);
});

test('new Socket() then socket.connect({ port, host }, listener) works, and write before connect is buffered', async (t) => {
  const { server, port } = await echoServer();
  const s = new net.Socket();
  t.is(s.readyState, 'open', "an unconnected socket is 'open' (readable and writable), as in node:net");
  t.true(s.pending);
  t.false(s.connecting);
  const connected = new Promise<void>((resolve) => s.connect({ port, host: '127.0.0.1' }, resolve));
  t.true(s.write('early '), 'writes while connecting are accepted');
  t.is(s.bytesWritten, 6);
  await connected;
  s.end('late');
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  await within(once(s, 'end'), 10_000, 'end');
  t.is(Buffer.concat(chunks).toString(), 'early late');
  await closeServer(server);
});

test('connect(port) resolves localhost and tries each address (happy eyeballs), like node:net', async (t) => {
  const { server, port } = await echoServer();
  const lookups: string[] = [];
  const c = net.connect(port);
  c.on('lookup', (err: Error | null, address: string) => lookups.push(`${err}:${address}`));
  await within(once(c, 'connect'), 10_000, 'connect');
  t.true(lookups.length >= 1, 'lookup was emitted');
  t.is(c.remotePort, port);
  t.is(c.remoteAddress, '127.0.0.1');
  c.destroy();
  await closeServer(server);
});

test('allowHalfOpen false (default): when the peer ends, our side ends too and both close', async (t) => {
  let serverEvents: string[] = [];
  const server = net.createServer((s) => {
    serverEvents = record(s, ['end', 'finish', 'close']);
    s.resume();
  });
  const port = await listen(server, 0, '127.0.0.1');
  const c = net.connect({ port, host: '127.0.0.1' });
  await once(c, 'connect');
  c.resume();
  c.end();
  // The server never calls end(); it ends by itself, so the client sees 'end'.
  await within(once(c, 'end'), 10_000, 'client end');
  await within(once(c, 'close'), 10_000, 'client close');
  await within(closeServer(server), 10_000, 'server close');
  t.deepEqual(serverEvents, ['end', 'finish', 'close:false']);
});

test('allowHalfOpen true: the server keeps writing after the peer ended, and writes after a FIN fail with EPIPE otherwise', async (t) => {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.resume();
    s.on('end', () => {
      t.true(s.writable, 'still writable after the peer ended');
      s.end('after your FIN');
    });
  });
  const port = await listen(server, 0, '127.0.0.1');
  const c = net.connect(port, '127.0.0.1');
  c.setEncoding('utf8');
  await once(c, 'connect');
  c.end('bye');
  let got = '';
  c.on('data', (d: string) => (got += d));
  await within(once(c, 'close'), 10_000, 'close');
  t.is(got, 'after your FIN');
  await closeServer(server);

  // allowHalfOpen false on the client, a server that half-closes: a write after 'end' is EPIPE.
  const server2 = net.createServer({ allowHalfOpen: true }, (s) => {
    s.resume();
    s.end('fin first');
  });
  const port2 = await listen(server2, 0, '127.0.0.1');
  const c2 = net.connect({ port: port2, host: '127.0.0.1', allowHalfOpen: true });
  c2.resume();
  await within(once(c2, 'end'), 10_000, 'end');
  t.true(c2.writable, 'allowHalfOpen: true keeps our side open');
  c2.end('thanks');
  await within(once(c2, 'close'), 10_000, 'close');

  const c3 = net.connect({ port: port2, host: '127.0.0.1' });
  c3.resume();
  await within(once(c3, 'end'), 10_000, 'end');
  const err = await new Promise<Error & { code?: string }>((resolve) => {
    c3.once('error', resolve);
    c3.write('too late');
  });
  t.is(err.code, 'EPIPE');
  t.is(err.message, 'This socket has been ended by the other party');
  await closeServer(server2);
});

test('server.close() stops accepting at once but emits close only after the last connection closed', async (t) => {
  const { server, port } = await echoServer();
  const c = net.connect(port, '127.0.0.1');
  await once(server, 'connection');
  const count = await new Promise<number>((resolve) => server.getConnections((_e, n) => resolve(n)));
  t.is(count, 1);
  let closed = false;
  const closedP = new Promise<void>((resolve) =>
    server.close((err) => {
      t.is(err, undefined);
      closed = true;
      resolve();
    }),
  );
  t.false(server.listening);
  t.is(server.address(), null);
  await new Promise((r) => setTimeout(r, 100));
  t.false(closed, 'an open connection holds the close back');
  const refused = net.connect(port, '127.0.0.1');
  const err = await within(once(refused, 'error'), 10_000, 'refused');
  t.is((err[0] as { code: string }).code, 'ECONNREFUSED');
  c.end();
  c.resume();
  await within(closedP, 10_000, 'server close');
  t.true(closed);
  // close() on a server that is not running: the callback gets ERR_SERVER_NOT_RUNNING.
  const notRunning = await new Promise<Error & { code?: string }>((resolve) => server.close((e) => resolve(e!)));
  t.is(notRunning.code, 'ERR_SERVER_NOT_RUNNING');
  t.is(notRunning.message, 'Server is not running.');
});

test('EADDRINUSE is emitted as an error shaped like node:net (code, errno, syscall listen, address, port)', async (t) => {
  const first = net.createServer();
  const port = await listen(first, 0, '127.0.0.1');
  const second = net.createServer();
  second.listen(port, '127.0.0.1');
  const [err] = (await within(once(second, 'error'), 10_000, 'error')) as [Error & Record<string, unknown>];
  t.is(err.code, 'EADDRINUSE');
  t.is(err.errno, uvErrno('EADDRINUSE'));
  t.is(err.syscall, 'listen');
  t.is(err.address, '127.0.0.1');
  t.is(err.port, port);
  t.is(err.message, `listen EADDRINUSE: address already in use 127.0.0.1:${port}`);
  t.false(second.listening);
  // The same through node:net, for the shape's sake.
  const nodeServer = nodeNet.createServer().listen(port, '127.0.0.1');
  const [nodeErr] = (await once(nodeServer, 'error')) as [Error & Record<string, unknown>];
  for (const k of ['code', 'errno', 'syscall', 'address', 'port', 'message']) t.is(err[k], nodeErr[k], k);
  await closeServer(first);
});

test('ECONNREFUSED on connect is emitted as error, then close(true), and never connect', async (t) => {
  const probe = net.createServer();
  const port = await listen(probe, 0, '127.0.0.1');
  await closeServer(probe);
  const c = net.connect(port, '127.0.0.1');
  const log = record(c, ['connect', 'error', 'close']);
  const [err] = (await within(once(c, 'error'), 10_000, 'error')) as [Error & Record<string, unknown>];
  await once(c, 'close');
  t.deepEqual(log, ['error:ECONNREFUSED', 'close:true']);
  t.is(err.errno, uvErrno('ECONNREFUSED'));
  t.is(err.syscall, 'connect');
  t.is(err.address, '127.0.0.1');
  t.is(err.port, port);
  t.is(err.message, `connect ECONNREFUSED 127.0.0.1:${port}`);
  t.true(c.destroyed);
});

test.serial('setTimeout fires timeout on an idle socket (which stays open); activity postpones it; 0 disables it', async (t) => {
  const { server, port } = await echoServer();
  const c = net.connect(port, '127.0.0.1');
  await once(c, 'connect');
  const start = Date.now();
  let fired = 0;
  c.setTimeout(300, () => fired++);
  t.is(c.timeout, 300);
  // Keep the socket busy for longer than the timeout: the timer must not fire during it.
  for (let i = 0; i < 8; i++) {
    c.write('x');
    await once(c, 'data');
    await new Promise((r) => setTimeout(r, 40));
  }
  t.true(Date.now() - start > 300);
  t.is(fired, 0, 'activity keeps postponing the timeout');
  await within(once(c, 'timeout'), 5_000, 'timeout');
  t.false(c.destroyed, 'a timeout does not close the socket');
  c.setTimeout(0);
  await new Promise((r) => setTimeout(r, 150));
  t.is(fired, 1);
  t.throws(() => c.setTimeout(-1), { code: 'ERR_OUT_OF_RANGE', instanceOf: RangeError });
  t.throws(() => c.setTimeout('1' as unknown as number), { code: 'ERR_INVALID_ARG_TYPE', instanceOf: TypeError });
  c.destroy();
  await closeServer(server);
});

test('write() stays true past the highWaterMark while the socket takes the bytes, as on node:net, from the first turn after accept', async (t) => {
  // node:net hands each write to the kernel at once, so writableLength stays 0 and write()
  // returns true until the socket buffers are full, not after 16 KiB of one synchronous burst.
  for (const m of [nodeNet, net] as Array<typeof net>) {
    let accepted = 0;
    const server = m.createServer((s) => {
      const chunk = Buffer.alloc(1024, 7);
      while (s.write(chunk)) accepted++;
      t.is(s.writableLength, s.writableHighWaterMark, 'only the last highWaterMark waits in the stream');
      s.destroy();
    });
    const port = await listen(server, 0, '127.0.0.1');
    const c = m.connect(port, '127.0.0.1');
    c.on('error', () => {});
    c.resume();
    await once(c, 'close');
    await closeServer(server);
    // kyoto's own backlog alone takes 64 KiB; the kernel far more on Linux. On the multi_thread
    // data path (KYOTO_NET_FLAVOR=multi_thread, Windows' only one) a runtime worker does the
    // send(2)s, so a synchronous burst fills the backlog before the kernel sees a byte of it.
    t.true(accepted > 64, `${accepted} KiB before write() returned false`);
    if (process.platform === 'linux' && ((m as unknown) === nodeNet || kyoto.netFlavor === 'current_thread')) {
      t.true(accepted > 256, `${accepted} KiB before write() returned false`);
    }
  }
});

test('backpressure: with a paused reader, write() returns false and drain only follows once the reader resumes; buffering stays bounded', async (t) => {
  let serverSide: net.Socket | undefined;
  const server = net.createServer((s) => {
    serverSide = s;
    s.pause(); // reads until its buffer is full, then stops (data stays in kyoto/the kernel)
  });
  const port = await listen(server, 0, '127.0.0.1');
  const c = net.connect(port, '127.0.0.1');
  await once(c, 'connect');
  await new Promise((r) => setImmediate(r));
  t.truthy(serverSide);
  const chunk = Buffer.alloc(64 * 1024, 7);
  let written = 0;
  let stalled = false;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && written < 256 << 20) {
    const ok = c.write(chunk);
    written += chunk.length;
    if (!ok) {
      t.false(ok);
      const drained = await Promise.race([
        once(c, 'drain').then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 500)),
      ]);
      if (!drained) {
        stalled = true;
        break;
      }
    }
  }
  t.true(stalled, 'writes stall against a reader that never reads');
  t.true(written < 256 << 20, `wrote ${written} bytes before stalling`);
  const s = serverSide!;
  t.true(s.readableLength <= s.readableHighWaterMark + 64 * 1024, `the paused reader buffers ${s.readableLength} bytes`);
  // Resume the reader: drain follows and every byte arrives.
  let received = 0;
  const drained = once(c, 'drain');
  s.on('data', (d: Buffer) => (received += d.length));
  s.resume();
  await within(drained, 20_000, 'drain');
  c.end();
  await within(once(s, 'end'), 30_000, 'end');
  t.is(received, written);
  c.destroy();
  await closeServer(server);
});

unixTest('a Unix socket server: listen(path), address() is the path, connect(path) echoes, close() removes the file', async (t) => {
  const p = path.join(dir, 'echo.sock');
  const server = net.createServer((s) => s.pipe(s));
  await new Promise<void>((resolve) => server.listen(p, resolve));
  t.is(server.address(), p);
  t.true(existsSync(p));
  const c = net.connect(p);
  c.setEncoding('utf8');
  await once(c, 'connect');
  t.deepEqual(c.address(), {}, 'Unix sockets report {} like node:net');
  t.is(c.remoteAddress, undefined);
  c.end('over unix');
  let got = '';
  c.on('data', (d: string) => (got += d));
  await within(once(c, 'close'), 10_000, 'close');
  t.is(got, 'over unix');
  await closeServer(server);
  t.false(existsSync(p), 'the socket file is unlinked on close');
  // Listening on an existing path is EADDRINUSE; connecting to a missing one is ENOENT.
  const blocker = net.createServer().listen(p);
  await once(blocker, 'listening');
  const again = net.createServer().listen({ path: p });
  const [inUse] = (await once(again, 'error')) as [Error & Record<string, unknown>];
  t.is(inUse.code, 'EADDRINUSE');
  t.is(inUse.syscall, 'listen');
  t.is(inUse.address, p);
  await closeServer(blocker);
  const missing = net.connect(path.join(dir, 'missing.sock'));
  const [noent] = (await once(missing, 'error')) as [Error & Record<string, unknown>];
  t.is(noent.code, 'ENOENT');
  t.is(noent.syscall, 'connect');
  t.is(noent.address, path.join(dir, 'missing.sock'));
});

if (process.platform === 'win32') {
  test('a named-pipe server on Windows: listen(\\\\.\\pipe\\name) serves several clients at once, like node:net', async (t) => {
    for (const m of [nodeNet, net] as unknown as (typeof nodeNet)[]) {
      const name = `\\\\.\\pipe\\kyoto-compat-${process.pid}-${m === (net as unknown) ? 'kyoto' : 'node'}`;
      const server = m.createServer((s) => s.pipe(s)).listen(name);
      await once(server, 'listening');
      t.is(server.address(), name);
      // Pipes have no half-close (libuv closes a pipe 50 ms after end() instead): each client
      // waits for its echo, then destroys.
      const talk = async (i: number): Promise<string> => {
        const c = m.connect(name);
        c.setEncoding('utf8');
        await once(c, 'connect');
        const msg = `client ${i}`;
        c.write(msg);
        let got = '';
        c.on('data', (d: string) => (got += d));
        await within(
          new Promise<void>((resolve) => c.on('data', () => got.length >= msg.length && resolve())),
          10_000,
          'echo',
        );
        c.destroy();
        await once(c, 'close');
        return got;
      };
      t.deepEqual(await Promise.all([0, 1, 2].map(talk)), ['client 0', 'client 1', 'client 2']);
      const missing = m.connect(`${name}-missing`);
      const [noent] = (await once(missing, 'error')) as [Error & Record<string, unknown>];
      t.is(noent.code, 'ENOENT');
      await closeServer(server);
    }
  });
}

test.serial('the legacy names: socket._connecting follows connecting; _setSimultaneousAccepts() warns DEP0121 once', async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error & { code?: string }): void => {
    warnings.push(`${w.name} ${w.code}`);
  };
  process.on('warning', onWarning);
  net._setSimultaneousAccepts();
  net._setSimultaneousAccepts();
  await new Promise((r) => setImmediate(r));
  process.off('warning', onWarning);
  t.deepEqual(warnings, ['DeprecationWarning DEP0121']);
  const { server, port } = await echoServer();
  const c = net.connect(port, '127.0.0.1');
  t.true(c._connecting);
  await once(c, 'connect');
  t.false(c._connecting);
  c.destroy();
  await closeServer(server);
});

test('Socket, Stream and Server are callable without new, like node:net\'s, and still classes', (t) => {
  type Callable = (...args: unknown[]) => { constructor: { name: string } };
  for (const m of [nodeNet, net] as Array<typeof net>) {
    const s = (m.Socket as unknown as Callable)() as net.Socket;
    const alias = (m.Stream as unknown as Callable)() as net.Socket;
    const server = (m.Server as unknown as Callable)() as net.Server;
    t.true(s instanceof m.Socket && alias instanceof m.Socket && server instanceof m.Server);
    t.deepEqual([s.constructor.name, alias.constructor.name, server.constructor.name], ['Socket', 'Socket', 'Server']);
    class Sub extends m.Socket {}
    const sub = new Sub();
    t.true(sub instanceof m.Socket && sub instanceof Sub);
    for (const x of [s, alias, sub]) x.destroy();
    server.close();
  }
});

/**
 * Runs `script` in a child given, as descriptors 3 and 4, a listening TCP socket and one connected
 * to an echo server (as systemd or a supervisor passes them). The child serves fd 3 with a greeting,
 * talks over fd 4, and sends what it saw over IPC; we then connect to fd 3's port.
 */
async function throughDescriptors(modulePath: string): Promise<unknown[]> {
  const listener = nodeNet.createServer();
  const echo = nodeNet.createServer((s) => s.on('data', (d) => s.end(`echo ${d}`)));
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const port = (listener.address() as net.AddressInfo).port;
  const toEcho = nodeNet.connect((echo.address() as net.AddressInfo).port, '127.0.0.1');
  await once(toEcho, 'connect');
  const fds = (x: object): number => (x as { _handle: { fd: number } })._handle.fd;
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const m = require(${JSON.stringify(modulePath)});
      const out = [];
      for (const bad of [-1, 'foo', 1.5, 99999]) {
        try { new m.Socket({ fd: bad }); out.push('no throw'); } catch (e) { out.push(e.code + ': ' + e.message); }
      }
      const bad = m.createServer().on('error', (e) => out.push('listen on a file: ' + e.code + ' ' + e.syscall));
      bad.listen({ fd: require('fs').openSync(__filename === '[eval]' ? process.execPath : __filename, 'r') });
      const srv = m.createServer((s) => s.end('hello'));
      srv.listen({ fd: 3 }, () => {
        out.push('listening on ' + srv.address().address);
        const s = new m.Socket({ fd: 4 });
        let back = '';
        s.on('data', (d) => (back += d)).on('end', () => {
          out.push('fd 4 answered ' + back + ' from ' + s.remoteAddress);
          s.destroy();
          process.send(out);
          process.on('disconnect', () => srv.close());
        });
        s.write('ping');
      });`,
    ],
    { cwd: packageRoot, stdio: ['ignore', 'inherit', 'inherit', fds(listener), fds(toEcho), 'ipc'] },
  );
  // The child serves the port now; ours closes (the descriptor stays open in the child).
  listener.close();
  toEcho.destroy();
  const [out] = (await within(once(child, 'message'), 20_000, 'the child')) as [string[]];
  const c = nodeNet.connect(port, '127.0.0.1');
  let greeting = '';
  c.on('data', (d) => (greeting += d));
  await once(c, 'end');
  child.disconnect();
  const [code] = (await once(child, 'exit')) as [number];
  await closeServer(echo);
  return [...out, `greeting ${greeting}`, `exit ${code}`];
}

unixTest('listen({ fd }) and new Socket({ fd }) serve and talk through inherited descriptors, as node:net does', async (t) => {
  const viaNode = await throughDescriptors('node:net');
  const viaKyoto = await throughDescriptors(path.join(packageRoot, 'dist', 'lib', 'compat', 'net.js'));
  t.deepEqual(viaKyoto, viaNode);
  t.true(viaKyoto.includes('fd 4 answered echo ping from 127.0.0.1'));
  t.true(viaKyoto.includes('greeting hello'));
});

test('isIP, isIPv4, isIPv6, BlockList and SocketAddress are node:net\'s', (t) => {
  t.is(net.isIP('127.0.0.1'), 4);
  t.is(net.isIP('::1'), 6);
  t.is(net.isIP('localhost'), 0);
  t.true(net.isIPv4('10.0.0.1'));
  t.false(net.isIPv6('10.0.0.1'));
  t.true(net.isIPv6('fe80::1'));
  t.is(net.BlockList, nodeNet.BlockList);
  t.is(net.SocketAddress, nodeNet.SocketAddress);
  t.is(net.Stream, net.Socket);
  t.is(net.createConnection, net.connect);
  const bl = new net.BlockList();
  bl.addAddress('10.0.0.1');
  t.true(bl.check('10.0.0.1'));
  t.is(kyoto.compatNet.createServer, net.createServer, 'the package root exposes it as compatNet');
});

test('a large checksummed payload survives a round trip through an echo server', async (t) => {
  const { server, port } = await echoServer();
  const c = net.connect(port, '127.0.0.1');
  await once(c, 'connect');
  const chunks = Array.from({ length: 128 }, () => randomBytes(64 * 1024)); // 8 MiB
  const sent = createHash('sha256');
  chunks.forEach((ch) => sent.update(ch));
  const got = createHash('sha256');
  let n = 0;
  const receiving = (async () => {
    for await (const d of c) {
      got.update(d as Buffer);
      n += (d as Buffer).length;
    }
  })();
  await within(pipeline(Readable.from(chunks), c), 60_000, 'sending');
  await within(receiving, 60_000, 'receiving');
  t.is(n, 8 << 20);
  t.is(got.digest('hex'), sent.digest('hex'));
  await closeServer(server);
});

test("node:http serves real requests over compat sockets (server.on('connection', s => httpServer.emit('connection', s)))", async (t) => {
  const httpServer = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => res.end(`${req.method} ${req.url} ${body}`));
  });
  const server = net.createServer((s) => httpServer.emit('connection', s));
  const port = await listen(server, 0, '127.0.0.1');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const request = (i: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: `/${i}`, method: i % 2 ? 'POST' : 'GET', agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end(i % 2 ? `body${i}` : undefined);
    });
  const bodies = await within(Promise.all(Array.from({ length: 40 }, (_, i) => request(i))), 30_000, 'requests');
  bodies.forEach((b, i) => t.is(b, i % 2 ? `POST /${i} body${i}` : `GET /${i} `));
  const plain = await new Promise<string>((resolve, reject) =>
    http
      .get({ host: '127.0.0.1', port, path: '/plain' }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
      })
      .on('error', reject),
  );
  t.is(plain, 'GET /plain ');
  agent.destroy();
  httpServer.closeAllConnections();
  await within(closeServer(server), 10_000, 'server close');
});

test('resetAndDestroy() sends an RST: the peer sees ECONNRESET', async (t) => {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.resetAndDestroy();
  });
  const port = await listen(server, 0, '127.0.0.1');
  const c = net.connect(port, '127.0.0.1');
  c.resume();
  const [err] = (await within(once(c, 'error'), 10_000, 'error')) as [Error & { code: string }];
  t.is(err.code, 'ECONNRESET');
  await closeServer(server);
});

test('maxConnections drops extra connections with a drop event', async (t) => {
  const server = net.createServer((s) => s.resume());
  server.maxConnections = 1;
  const port = await listen(server, 0, '127.0.0.1');
  const a = net.connect(port, '127.0.0.1');
  await once(server, 'connection');
  const b = net.connect(port, '127.0.0.1');
  b.on('error', () => {});
  b.resume();
  const [data] = (await within(once(server, 'drop'), 10_000, 'drop')) as [Record<string, unknown>];
  t.is(data.localPort, port);
  t.is(data.remoteAddress, '127.0.0.1');
  t.is(data.remoteFamily, 'IPv4');
  await within(once(b, 'close'), 10_000, 'dropped client close');
  a.destroy();
  await closeServer(server);
});

test('an aborted signal destroys a connecting socket with an AbortError', async (t) => {
  const { server, port } = await echoServer();
  const ac = new AbortController();
  const c = net.connect({ port, host: '127.0.0.1', signal: ac.signal });
  ac.abort();
  const [err] = (await within(once(c, 'error'), 10_000, 'error')) as [Error & { code: string; name: string }];
  t.is(err.name, 'AbortError');
  t.is(err.code, 'ABORT_ERR');
  await once(c, 'close');
  t.false(c.connecting);
  await closeServer(server);
});

test('bad arguments throw like node:net (TypeError/RangeError with code); unsupported features throw ERR_NOT_SUPPORTED', async (t) => {
  for (const mod of [net, nodeNet] as const) {
    const m = mod as typeof net;
    t.throws(() => m.connect({} as net.NetConnectOpts), { code: 'ERR_MISSING_ARGS', instanceOf: TypeError });
    t.throws(() => m.connect(70000, '127.0.0.1'), {
      code: 'ERR_SOCKET_BAD_PORT',
      instanceOf: RangeError,
      message: 'Port should be >= 0 and < 65536. Received type number (70000).',
    });
    t.throws(() => m.connect({ port: true } as unknown as net.NetConnectOpts), { code: 'ERR_INVALID_ARG_TYPE', instanceOf: TypeError });
    t.throws(() => m.connect({ port: 80, localAddress: 'nope' }), { code: 'ERR_INVALID_IP_ADDRESS', instanceOf: TypeError });
    t.throws(() => m.createServer().listen(-1), { code: 'ERR_SOCKET_BAD_PORT', instanceOf: RangeError });
    t.throws(() => m.createServer().listen({ backlog: 1 } as net.ListenOptions), { code: 'ERR_INVALID_ARG_VALUE', instanceOf: TypeError });
    t.throws(() => new m.Socket({ objectMode: true } as net.SocketConstructorOpts), { code: 'ERR_INVALID_ARG_VALUE' });
    const s = m.createServer();
    s.listen(0); // binds at once (with a host, both modules look it up first)
    t.throws(() => s.listen(0), { code: 'ERR_SERVER_ALREADY_LISTEN' });
    await closeServer(s);
  }
  if (!UNIX_SOCKETS) {
    // Descriptors are adopted on unix only (see the inherited-descriptor test).
    t.throws(() => new net.Socket({ fd: 0 }), { code: 'ERR_NOT_SUPPORTED' });
    t.throws(() => net.createServer().listen({ fd: 3 }), { code: 'ERR_NOT_SUPPORTED' });
  }
  if (UNIX_SOCKETS) {
    const unixSock = net.connect(path.join(dir, 'nothing-here.sock'));
    unixSock.on('error', () => {});
    t.throws(() => unixSock.resetAndDestroy(), { code: 'ERR_INVALID_HANDLE_TYPE', instanceOf: TypeError });
    unixSock.destroy();
  }
});

// ---------------------------------------------------------------------------------------------
// Parity: the same scripts against node:net and kyoto/compat/net.

type NetLike = typeof net;

async function scriptEcho(m: NetLike): Promise<Record<string, unknown>> {
  let socketLog: string[] = [];
  let socketClosed!: Promise<unknown>;
  const server = m.createServer((s) => {
    socketLog = record(s, ['data', 'end', 'finish', 'close']);
    socketClosed = once(s, 'close');
    s.setEncoding('utf8');
    s.once('data', () => s.end('pong'));
  });
  const serverLog = record(server, ['listening', 'connection', 'close']);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const c = m.connect({ port, host: '127.0.0.1' });
  const states: string[] = [c.readyState];
  const clientLog = record(c, ['lookup', 'connect', 'ready', 'data', 'end', 'finish', 'close', 'error']);
  c.setEncoding('utf8');
  c.on('connect', () => {
    states.push(c.readyState);
    c.write('ping');
  });
  c.on('end', () => states.push(c.readyState));
  await once(c, 'close');
  states.push(c.readyState);
  await socketClosed;
  await new Promise<void>((r) => server.close(() => r()));
  return {
    serverLog,
    socketLog,
    clientLog,
    states,
    bytes: [c.bytesRead, c.bytesWritten],
    destroyed: c.destroyed,
    addressAfterClose: c.address(),
  };
}

async function scriptErrors(m: NetLike): Promise<Record<string, unknown>> {
  const probe = m.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as net.AddressInfo).port;
  const inUse = m.createServer();
  inUse.listen(port, '127.0.0.1');
  const [listenErr] = (await once(inUse, 'error')) as [Error & Record<string, unknown>];
  await new Promise<void>((r) => probe.close(() => r()));
  const c = m.connect(port, '127.0.0.1');
  const log = record(c, ['connect', 'error', 'close']);
  await new Promise((r) => c.on('close', r));
  const pick = (e: Error & Record<string, unknown>): unknown[] => [e.name, e.code, e.errno, e.syscall, e.address, e.port === port];
  return { listen: pick(listenErr), log, listening: inUse.listening };
}

async function scriptTimeoutAndHalfOpen(m: NetLike): Promise<Record<string, unknown>> {
  const socketLog: string[][] = [];
  const socketClosed: Array<Promise<unknown>> = [];
  const server = m.createServer({ allowHalfOpen: true }, (s) => {
    const log = record(s, ['data', 'end', 'finish', 'close']);
    socketLog.push(log);
    socketClosed.push(once(s, 'close'));
    s.setEncoding('utf8');
    s.on('end', () => {
      log.push(`writable:${s.writable}`);
      s.end('late');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const c = m.connect(port, '127.0.0.1');
  const log = record(c, ['connect', 'timeout', 'data', 'end', 'finish', 'close']);
  c.setEncoding('utf8');
  await once(c, 'connect');
  c.setTimeout(50);
  await once(c, 'timeout');
  c.setTimeout(0);
  c.end('bye');
  await once(c, 'close');
  await Promise.all(socketClosed);
  await new Promise<void>((r) => server.close(() => r()));
  return { log, socketLog };
}

async function scriptUnreadSockets(m: NetLike): Promise<Record<string, unknown>> {
  // Nobody reads these sockets: the peer's FIN must still end them, and (no allowHalfOpen) close
  // them; once as the client ending, once as the server ending.
  const serverSide: string[][] = [];
  const server = m.createServer((s) => {
    serverSide.push(record(s, ['end', 'finish', 'close']));
    if (serverSide.length === 2) s.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const clientSide: string[][] = [];
  for (let i = 0; i < 2; i++) {
    const c = m.connect(port, '127.0.0.1', () => {
      if (i === 0) c.end();
    });
    clientSide.push(record(c, ['connect', 'end', 'finish', 'close']));
    await once(c, 'close');
  }
  await new Promise<void>((r) => server.close(() => r()));
  // One Socket object connected twice counts the bytes of each connection on its own.
  const echo = m.createServer((s) => {
    s.resume();
    s.end('xyz');
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const c = new m.Socket();
  c.resume();
  const counts: Array<Array<number | undefined>> = [];
  for (let i = 0; i < 2; i++) {
    const closed = once(c, 'close');
    c.connect((echo.address() as net.AddressInfo).port, '127.0.0.1', () => c.end('foobar'));
    await closed;
    counts.push([c.bytesRead, c.bytesWritten]);
  }
  await new Promise<void>((r) => echo.close(() => r()));
  return { serverSide, clientSide, counts };
}

async function scriptErrorDetails(m: NetLike): Promise<Record<string, unknown>> {
  const probe = m.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const deadPort = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const out: Record<string, unknown> = {};
  // A refused connect from a bound local port names that port.
  const localProbe = m.createServer();
  await new Promise<void>((r) => localProbe.listen(0, '127.0.0.1', r));
  const localPort = (localProbe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => localProbe.close(() => r()));
  const c = m.connect({ port: deadPort, host: '127.0.0.1', localAddress: '127.0.0.1', localPort });
  const [e] = (await once(c, 'error')) as [Error & Record<string, unknown>];
  out.local = [
    e.code,
    e.message.replace(String(deadPort), 'PORT').replace(String(localPort), 'LOCAL'),
    e.localAddress,
    e.localPort === localPort,
  ];
  // A local port that is taken: the bind step fails, and says so.
  const taken = m.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  const takenPort = (taken.address() as net.AddressInfo).port;
  const b = m.connect({ port: deadPort, host: '127.0.0.1', localAddress: '127.0.0.1', localPort: takenPort });
  const [be] = (await once(b, 'error')) as [Error & Record<string, unknown>];
  out.bind = [be.code, be.syscall, be.message.replace(String(takenPort), 'TAKEN'), be.address, be.port === takenPort, be.localPort];
  await new Promise<void>((r) => taken.close(() => r()));
  // A lookup that answers with an impossible family.
  const bad = m.connect({
    host: 'example.invalid',
    port: 9,
    lookup: ((_h: string, o: { all?: boolean }, cb: (...a: unknown[]) => void) =>
      o.all ? cb(null, [{ address: '127.0.0.1', family: 100 }]) : cb(null, '127.0.0.1', 100)) as never,
  });
  const [fe] = (await once(bad, 'error')) as [Error & Record<string, unknown>];
  out.family = [fe.name, fe.code, fe.message, fe.host, fe.port];
  // ERR_INVALID_ARG_VALUE shows the value itself.
  const messages: string[] = [];
  for (const f of [
    () => m.connect({ port: 9, objectMode: true } as net.NetConnectOpts),
    () => m.createServer().listen({ foo: 1 } as net.ListenOptions),
  ]) {
    try {
      f();
    } catch (err) {
      messages.push(`${(err as Error & { code: string }).code}: ${(err as Error).message}`);
    }
  }
  out.messages = messages;
  return out;
}

async function scriptCapturedRejection(m: NetLike): Promise<Record<string, unknown>> {
  const log: string[] = [];
  // Read when an emitter is made: only this server captures rejections.
  EventEmitterClass.captureRejections = true;
  const server = m.createServer(async (s: net.Socket) => {
    s.on('error', (err) => log.push(`socket error: ${err.message}`));
    throw new Error('kaboom');
  });
  EventEmitterClass.captureRejections = false;
  server.on('error', (err) => log.push(`server error: ${err.message}`));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c = m.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  c.on('error', () => {});
  c.resume();
  await once(c, 'close');
  await new Promise<void>((r) => server.close(() => r()));
  return { log };
}

async function scriptOnread(m: NetLike): Promise<Record<string, unknown>> {
  // The server sends 11 bytes; the client reads them into 4-byte buffers through onread: a
  // static one, then buffers made per read, pausing (callback returns false) after the first read.
  const message = Buffer.from('hello world');
  const out: Record<string, unknown> = {};
  for (const mode of ['static', 'made per read']) {
    const server = m.createServer((s) => {
      server.close();
      s.end(message);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const reads: string[] = [];
    const stat = Buffer.alloc(4);
    let made = 0;
    let paused = false;
    const c = m.connect({
      port: (server.address() as net.AddressInfo).port,
      host: '127.0.0.1',
      onread: {
        buffer: mode === 'static' ? stat : () => (made++, Buffer.alloc(4)),
        callback(this: net.Socket, n: number, buf: Uint8Array) {
          reads.push(`${n}:${Buffer.from(buf.subarray(0, n)).toString()}${buf === stat ? ':static' : ''}${paused ? ':while paused' : ''}`);
          if (reads.length === 1) {
            paused = true;
            setTimeout(() => {
              paused = false;
              c.resume();
            }, 50);
            return false;
          }
          return undefined;
        },
      },
    } as net.NetConnectOpts);
    let data = 0;
    c.on('data', () => data++);
    await once(c, 'end');
    out[mode] = { reads, data, bytesRead: c.bytesRead, made: made > 0 };
    c.destroy();
  }
  // An onread without a callback is ignored: 'data' events as usual.
  const server = m.createServer((s) => {
    server.close();
    s.end('plain');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c = m.connect({
    port: (server.address() as net.AddressInfo).port,
    host: '127.0.0.1',
    onread: { buffer: Buffer.alloc(4) },
  } as unknown as net.NetConnectOpts);
  let text = '';
  c.on('data', (d: Buffer) => (text += d));
  await once(c, 'end');
  out.ignored = text;
  return out;
}

async function scriptWriteBookkeeping(m: NetLike): Promise<Record<string, unknown>> {
  // A 64 KiB write on an idle connection is taken at once; then, with the peer not reading, a
  // write left waiting when the socket is destroyed calls back without an error before Node 22.9,
  // and from 22.9 with `write ECANCELED`, which the socket then holds as `errored`.
  const server = m.createServer({ pauseOnConnect: true }, () => server.close());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c = m.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await once(c, 'connect');
  const first = c.write(Buffer.alloc(64 * 1024));
  const firstLength = c.writableLength;
  let waiting = 0;
  let pendingCb: unknown = 'not called';
  for (let i = 0; i < 2000; i++) {
    if (!c.write(Buffer.alloc(64 * 1024), (err) => (pendingCb = err === null || err === undefined ? null : describeErr(err)))) {
      waiting = c.writableLength;
      break;
    }
    await new Promise((r) => setImmediate(r));
  }
  c.destroy();
  await once(c, 'close');
  const errored = c.errored === null ? null : describeErr(c.errored);
  return { first, firstLength, waited: waiting > 0, pendingCb, errored };
}

function describeErr(err: Error): string {
  const e = err as Error & { code?: string; errno?: number; syscall?: string };
  return `${e.constructor.name} ${e.code} ${e.errno} ${e.syscall} ${e.message}`;
}

async function scriptSlowReader(m: NetLike): Promise<Record<string, unknown>> {
  // The server writes 16 MiB at once (more than the kernel's buffers hold) with a 500 ms idle
  // timeout; the client takes it slowly (a pause after every chunk). Bytes moving out of a pending
  // write are activity: no 'timeout' while it is pending.
  let timeouts = 0;
  let written = false;
  const server = m.createServer((s) => {
    server.close();
    s.setTimeout(500, () => {
      if (!written) timeouts++; // once the write completed, the connection may well be idle
    });
    s.end(Buffer.alloc(16 << 20, 7), () => (written = true));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c = m.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  let got = 0;
  c.on('data', (d: Buffer) => {
    got += d.length;
    c.pause();
    setTimeout(() => c.resume(), 10);
  });
  await once(c, 'close');
  return { got, timeouts, written };
}

async function scriptBacklogValues(m: NetLike): Promise<Record<string, unknown>> {
  // node:net takes listen()'s backlog option as its handle does, as an int32 (a string from an
  // environment variable included): every one of these listens.
  const out: string[] = [];
  let n = 0;
  for (const backlog of ['5', 'x', true, {}, [], '']) {
    const forms: Array<[string, (s: net.Server) => void]> = [
      ['port and host', (s) => s.listen({ port: 0, host: '127.0.0.1', backlog } as net.ListenOptions)],
      ['port', (s) => s.listen({ port: 0, backlog } as net.ListenOptions)],
    ];
    if (UNIX_SOCKETS) forms.push(['path', (s) => s.listen({ path: path.join(dir, `backlog-${n++}.sock`), backlog } as net.ListenOptions)]);
    for (const [form, listenIt] of forms) {
      const server = m.createServer();
      let outcome: string;
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          listenIt(server);
          server.once('listening', resolve);
        });
        outcome = 'listening';
      } catch (e) {
        outcome = `${(e as Error).name} ${(e as { code?: string }).code}`;
      }
      out.push(`${JSON.stringify(backlog)} (${form}): ${outcome}`);
      if (server.listening) await new Promise<void>((r) => server.close(() => r()));
    }
  }
  return { out };
}

async function scriptLocalAddressOfOtherFamily(m: NetLike): Promise<Record<string, unknown>> {
  // node:net binds localAddress as an address of the peer's family, which fails with `bind EINVAL`
  // naming the local address (and its port only when one was given) before any connect.
  const out: unknown[] = [];
  for (const [host, localAddress, localPort] of [
    ['127.0.0.1', '::1', undefined],
    ['127.0.0.1', '::1', 0],
    ['::1', '127.0.0.1', undefined],
  ] as const) {
    const server = m.createServer((s) => s.end());
    await new Promise<void>((r) => server.listen(0, host, r));
    const c = m.connect({ port: (server.address() as net.AddressInfo).port, host, localAddress, localPort } as net.NetConnectOpts);
    const log = record(c, ['connect', 'close']);
    const [e] = (await once(c, 'error')) as [Error & Record<string, unknown>];
    await once(c, 'close');
    out.push([log, e.code, e.errno, e.syscall, e.address, e.port, e.message]);
    await new Promise<void>((r) => server.close(() => r()));
  }
  return { out };
}

/** A connection from `m`'s client to a node:net server: node's reset (resetAndDestroy) is synchronous. */
async function nodePeerPair(
  m: NetLike,
  opts: { allowHalfOpen?: boolean } = {},
): Promise<{ c: net.Socket; peer: nodeNet.Socket; log: string[]; closed: Promise<unknown> }> {
  let peer: nodeNet.Socket | undefined;
  const server = nodeNet.createServer(opts, (s) => {
    server.close();
    peer = s;
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c = m.connect({ port: (server.address() as nodeNet.AddressInfo).port, host: '127.0.0.1', ...opts });
  const log = record(c, ['end', 'finish', 'error', 'close']);
  const closed = new Promise((r) => c.once('close', r)); // (once() would reject on 'error')
  await once(c, 'connect');
  while (peer === undefined) await new Promise((r) => setImmediate(r));
  return { c, peer, log, closed };
}

/** A reset is reported as ECONNRESET or EPIPE, depending on which of a read or a write met it first. */
function resetCode(err: Error | null | undefined): string {
  if (err === null || err === undefined) return 'ok';
  const code = (err as { code?: string }).code;
  return code === 'ECONNRESET' || code === 'EPIPE' ? 'reset' : String(code);
}

async function scriptWritesAcrossReset(m: NetLike): Promise<Record<string, unknown>> {
  // Writes made once the peer reset the connection never reach it: their callbacks get the reset
  // (before the socket's 'error'), never a success, while a write the peer took still succeeds.
  const { c, peer, log, closed } = await nodePeerPair(m);
  c.write('before', (err) => log.push(`before:${resetCode(err)}`));
  await new Promise((r) => setTimeout(r, 10));
  peer.resetAndDestroy();
  c.write('after', (err) => log.push(`after:${resetCode(err)}`));
  c.write('after2', (err) => log.push(`after2:${resetCode(err)}`));
  await closed;
  return { log: log.map((l) => l.replace(/^error:(ECONNRESET|EPIPE)$/, 'error:reset')), errored: resetCode(c.errored) };
}

async function scriptDestroyWithErrorDuringWrite(m: NetLike): Promise<Record<string, unknown>> {
  // destroy(err) while a write waits for room (the peer reads nothing): 'error' comes first, then
  // the callback of the write buffered behind it (with err), then 'close'.
  const { c, peer, log, closed } = await nodePeerPair(m);
  peer.pause();
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; i < 2000 && c.write(chunk); i++) await new Promise((r) => setImmediate(r));
  c.write('x', (err) => log.push(`cb:${err?.message}`));
  c.destroy(Object.assign(new Error('boom'), { code: 'BOOM' }));
  await closed;
  peer.destroy();
  return { log, errored: c.errored?.message };
}

for (const [name, script] of [
  ['writes made after the peer reset the connection', scriptWritesAcrossReset],
  ['destroy(err) while a write waits for room', scriptDestroyWithErrorDuringWrite],
  ['listen() with a backlog that is not a number', scriptBacklogValues],
  ['a local address of the other family', scriptLocalAddressOfOtherFamily],
  ['reads into the caller\'s buffer (onread), with a pause', scriptOnread],
  ['sockets nobody reads, and a reused socket', scriptUnreadSockets],
  ['error details (local end, a taken local port, lookup family, argument values)', scriptErrorDetails],
  ['a rejected async connection listener (captureRejections)', scriptCapturedRejection],
  ['an echo exchange', scriptEcho],
  ['EADDRINUSE and ECONNREFUSED', scriptErrors],
  ['a timeout then a half-open exchange', scriptTimeoutAndHalfOpen],
  ['large writes taken at once, a waiting write destroyed', scriptWriteBookkeeping],
  ['a slow reader of a large write, beside an idle timeout', scriptSlowReader],
] as const) {
  test.serial(`parity with node:net: ${name} gives the same events, states and errors`, async (t) => {
    const viaNode = await within(script(nodeNet as unknown as NetLike), 20_000, 'node:net run');
    const viaKyoto = await within(script(net), 20_000, 'kyoto/compat/net run');
    t.deepEqual(viaKyoto, viaNode);
  });
}

// ---------------------------------------------------------------------------------------------
// Event-loop citizenship (child processes)

test('a child process exits on its own once its servers and sockets are closed, or unref()ed', async (t) => {
  const closed = await runNodeChild(
    `const net = require('kyoto/compat/net');
     const server = net.createServer((s) => s.pipe(s)).listen(0, '127.0.0.1', () => {
       const c = net.connect(server.address().port, '127.0.0.1', () => c.end('x'));
       c.resume();
       c.on('close', () => server.close(() => console.log('closed')));
     });`,
    15_000,
  );
  t.false(closed.timedOut, 'exits after close');
  t.is(closed.code, 0);
  t.is(closed.out.trim(), 'closed');

  const unrefd = await runNodeChild(
    `const net = require('kyoto/compat/net');
     const server = net.createServer((s) => { s.resume(); s.unref(); }).listen(0, '127.0.0.1', () => {
       const c = net.connect(server.address().port, '127.0.0.1', () => {
         server.unref();
         c.unref();
         // Not 50 ms: a child descheduled that long on a loaded machine runs its due timers first.
         setTimeout(() => console.log('still here'), 2_000).unref();
         console.log('unrefd');
       });
     });`,
    15_000,
  );
  t.false(unrefd.timedOut, 'an unref()ed server and socket do not hold the process');
  t.is(unrefd.code, 0);
  t.is(unrefd.out.trim(), 'unrefd');

  const held = await runNodeChild(
    `const net = require('kyoto/compat/net');
     net.createServer().listen(0, '127.0.0.1', () => console.log('listening'));`,
    1_500,
    true,
  );
  t.true(held.timedOut, 'a listening server keeps the process alive, like node:net');
  t.is(held.out.trim(), 'listening');
});

test("a throwing 'data' listener is an uncaught exception and the socket goes on reading, as with node:net", async (t) => {
  // Both modules run the same script in a child (an uncaught exception is the point); node:net is
  // the reference.
  const script = (mod: string): string => `
    const net = require(${JSON.stringify(mod)});
    let caught = 0;
    process.on('uncaughtException', () => caught++);
    const server = net.createServer((s) => {
      let n = 0;
      s.on('data', (d) => { if (++n === 1) throw new Error('a bug in the handler'); s.write(d); });
    }).listen(0, '127.0.0.1', () => {
      const c = net.connect(server.address().port, '127.0.0.1', () => {
        c.write('a');
        setTimeout(() => c.write('b'), 100);
      });
      c.once('data', (d) => {
        console.log(JSON.stringify({ echoed: d.toString(), caught }));
        c.destroy();
        server.close();
      });
    });`;
  for (const mod of ['node:net', 'kyoto/compat/net']) {
    const r = await runNodeChild(script(mod), 15_000);
    t.false(r.timedOut, `${mod}: the second write is echoed`);
    t.deepEqual(JSON.parse(r.out.trim() || 'null'), { echoed: 'b', caught: 1 }, mod);
  }
});

test('listeners that throw in connect, an async write callback or onread are uncaught exceptions and the socket goes on, as with node:net', async (t) => {
  const script = (mod: string): string => `
    const net = require(${JSON.stringify(mod)});
    const caught = [];
    process.on('uncaughtException', (e) => caught.push(e.message));
    const server = net.createServer((s) => s.on('data', (d) => {
      const text = d.toString('latin1').replace(/\\0/g, ''); // the large write's zeros are not echoed
      if (text.length > 0) s.write(text);
    })).listen(0, '127.0.0.1', () => {
      const got = [];
      const c = net.connect({
        port: server.address().port,
        host: '127.0.0.1',
        onread: {
          buffer: Buffer.alloc(16),
          callback(n, buf) {
            const text = buf.toString('latin1', 0, n);
            got.push(text);
            if (text === 'one') {
              setTimeout(() => c.write('two'), 20);
              throw new Error('in onread');
            }
            if (text === 'two') {
              console.log(JSON.stringify({ caught, got }));
              c.destroy();
              server.close();
            }
          },
        },
      });
      c.once('connect', () => {
        // Larger than a write that is taken at once: its callback comes when the write completes.
        c.write(Buffer.alloc(4 << 20), () => {
          setTimeout(() => c.write('one'), 20);
          throw new Error('in write callback');
        });
        setTimeout(() => c.read(0), 10); // the throw skips the read(0) that starts reading
        throw new Error('in connect');
      });
    });`;
  for (const mod of ['node:net', 'kyoto/compat/net']) {
    const r = await runNodeChild(script(mod), 20_000);
    t.false(r.timedOut, `${mod}: the socket went on`);
    t.deepEqual(JSON.parse(r.out.trim() || 'null'), { caught: ['in connect', 'in write callback', 'in onread'], got: ['one', 'two'] }, mod);
  }
});

test('a write made just before process.exit() reaches the peer, as with node:net', async (t) => {
  for (const mod of ['node:net', 'kyoto/compat/net']) {
    const server = nodeNet.createServer();
    const received = new Promise<string>((resolve) =>
      server.once('connection', (s) => {
        let got = '';
        s.on('data', (d) => (got += d));
        s.on('error', () => {});
        s.on('close', () => resolve(got));
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const r = await runNodeChild(
      `const net = require(${JSON.stringify(mod)});
       const c = net.connect(${(server.address() as net.AddressInfo).port}, '127.0.0.1', () => {
         c.write('last words');
         process.exit(0);
       });`,
      15_000,
    );
    t.false(r.timedOut, mod);
    t.is(await within(received, 10_000, `${mod}: the peer's close`), 'last words', mod);
    server.close();
  }
});

unixTest('listening on a path in a missing directory fails as node:net does: EACCES with port -1', async (t) => {
  const where = path.join(dir, 'no-such-dir', 'x.sock');
  const errs: Array<Record<string, unknown>> = [];
  for (const m of [nodeNet as unknown as NetLike, net]) {
    const server = m.createServer();
    server.listen(where);
    const [e] = (await once(server, 'error')) as [Error & Record<string, unknown>];
    errs.push({ message: e.message, code: e.code, errno: e.errno, syscall: e.syscall, address: e.address, port: e.port });
  }
  t.deepEqual(errs[1], errs[0]);
  t.is(errs[1].code, 'EACCES');
});

unixTest('parity with node:net: cluster workers share a port or a Unix path (round-robin or SCHED_NONE, fixed or 0), and the primary hears of each', async (t) => {
  const probe = nodeNet.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const free = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const compat = path.join(packageRoot, 'dist', 'lib', 'compat', 'net.js');
  for (const [policy, port] of [['rr', free], ['none', free], ['rr', 0]] as const) {
    const env = { NODE_CLUSTER_SCHED_POLICY: policy };
    const { workers: nodeWorkers, ...viaNode } = await runClusterFixture('net', 'node:net', port, env);
    const { workers, ...viaKyoto } = await runClusterFixture('net', compat, port, env);
    t.deepEqual(viaKyoto, viaNode, `${policy}, port ${port}`);
    t.like(viaKyoto, { ports: 1, served: 40 }, `${policy}, port ${port}`);
    // Round-robin deals the sequential connections to both; with a shared socket whichever worker
    // wakes first takes one, for node:net as for kyoto.
    if (policy === 'rr') t.deepEqual([workers, nodeWorkers], [2, 2], 'both workers took connections');
  }
  // A Unix socket path, which the primary binds (and removes) as well.
  const dir = mkdtempSync(path.join(tmpdir(), 'kyoto-cluster-'));
  try {
    const { workers: nodeWorkers, ...viaNode } = await runClusterFixture('pipe', 'node:net', path.join(dir, 'node.sock'));
    const { workers, ...viaKyoto } = await runClusterFixture('pipe', compat, path.join(dir, 'kyoto.sock'));
    t.deepEqual(viaKyoto, viaNode, 'a Unix socket path');
    t.deepEqual([workers, nodeWorkers], [2, 2]);
    t.false(existsSync(path.join(dir, 'kyoto.sock')), 'the primary removed the path');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('listen({ reusePort }) shares a port between servers on Linux and is ENOTSUP elsewhere, as libuv has it', async (t) => {
  const listen = (server: net.Server, port: number): Promise<string> =>
    new Promise((resolve) => {
      server.once('error', (e: NodeJS.ErrnoException) => resolve(`${e.code} ${e.syscall}`));
      server.listen({ port, host: '127.0.0.1', reusePort: true } as net.ListenOptions, () => resolve('listening'));
    });
  const a = net.createServer();
  const first = await listen(a, 0);
  if (process.platform !== 'linux') {
    t.is(first, 'ENOTSUP listen');
    return;
  }
  t.is(first, 'listening');
  const b = net.createServer();
  t.is(await listen(b, (a.address() as net.AddressInfo).port), 'listening', 'a second server on the same port');
  for (const s of [a, b]) await new Promise<void>((r) => s.close(() => r()));
});


test('awaiting connect, connection and end of two sockets one after the other works as on node:net', async (t) => {
  // node emits each from a libuv callback of its own, with promise jobs run in between; events
  // that one native batch brought used to be emitted back to back, so the second was emitted
  // before the code awaiting the first could listen for it, and the await hung.
  const timers = new Set<NodeJS.Timeout>();
  const within = <T>(p: Promise<T>, what: string): Promise<T> =>
    Promise.race([
      p,
      new Promise<T>((_, reject) => {
        const tm = setTimeout(() => reject(new Error(`${what} never came`)), 3000);
        timers.add(tm);
      }),
    ]);
  const open: Array<{ destroy(): void } | net.Server> = [];
  t.teardown(() => {
    for (const tm of timers) clearTimeout(tm);
    for (const o of open) if ('listening' in o) o.close(); else o.destroy();
  });
  // On the multi_thread data path (Windows' only one) runtime workers deliver the two sockets'
  // events in whichever order they come: there the test awaits both at once (order is not
  // promised across sockets, on node either); on current_thread, one after the other.
  const inTurn = kyoto.netFlavor === 'current_thread';
  const both = async <A, B>(first: () => Promise<A>, second: () => Promise<B>): Promise<[A, B]> => {
    if (!inTurn) return Promise.all([first(), second()]);
    const x = await first();
    return [x, await second()];
  };
  for (const m of [nodeNet, net] as Array<typeof net>) {
    const name = m === net ? 'compat' : 'node';
    for (let round = 0; round < 5; round++) {
      // Accepts: two clients (node's own) connect at once; the server awaits one, then the other.
      const server = m.createServer();
      open.push(server);
      const port = await listen(server, 0, '127.0.0.1');
      const c1 = nodeNet.connect(port, '127.0.0.1');
      const c2 = nodeNet.connect(port, '127.0.0.1');
      open.push(c1, c2);
      // (Accepts of one listener do come in order on both paths.)
      const [a] = (await within(once(server, 'connection'), `${name}: the first connection`)) as [net.Socket];
      const [b] = (await within(once(server, 'connection'), `${name}: the second connection`)) as [net.Socket];
      open.push(a, b);
      // Connects: two clients of the module under test, awaited one after the other.
      const accepted: net.Socket[] = [];
      server.on('connection', (x: net.Socket) => accepted.push(x));
      const d1 = m.connect(port, '127.0.0.1');
      const d2 = m.connect(port, '127.0.0.1');
      open.push(d1, d2);
      d1.resume();
      d2.resume();
      const onBoth = (event: string): Promise<unknown> =>
        both(
          () => within(once(d1, event), `${name}: the first ${event}`),
          () => within(once(d2, event), `${name}: the second ${event}`),
        );
      await onBoth('connect');
      // Ends: both peers end at once; the clients' ends are awaited one after the other.
      for (let i = 0; accepted.length < 2 && i < 3000; i++) await new Promise((r) => setTimeout(r, 1));
      t.is(accepted.length, 2, `${name}: both connects accepted`);
      const [e1, e2] = accepted;
      open.push(e1, e2);
      e1.end();
      e2.end();
      await onBoth('end');
      for (const x of [a, b, c1, c2, d1, d2, e1, e2]) x.destroy();
      await closeServer(server);
    }
    t.pass(name);
  }
});
