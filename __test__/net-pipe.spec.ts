// Windows named pipes (kyoto/net NamedPipeServer / NamedPipeClient). The behaviour tests run where
// pipes exist (the Windows CI job); every platform checks argument validation, and elsewhere that
// both constructors refuse with ERR_FEATURE_UNAVAILABLE_ON_PLATFORM.
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { NamedPipeClient, NamedPipeServer, copy } from 'kyoto';

const WINDOWS = process.platform === 'win32';
let n = 0;
const pipeName = (): string => `\\\\.\\pipe\\kyoto-test-${process.pid}-${n++}`;

test('NamedPipeServer.create validates its arguments with coded errors', (t) => {
  t.throws(() => NamedPipeServer.create(42 as unknown as string), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => NamedPipeServer.create(''), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => NamedPipeServer.create('a\0b'), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => NamedPipeServer.create(pipeName(), { maxInstances: 0 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => NamedPipeServer.create(pipeName(), { maxInstances: 256 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => NamedPipeServer.create(pipeName(), { inBufferSize: -1 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => NamedPipeServer.create(pipeName(), { firstPipeInstance: 'yes' as unknown as boolean }), {
    instanceOf: TypeError,
    code: 'ERR_INVALID_ARG_TYPE',
  });
});

test('NamedPipeClient.open validates its path with a coded TypeError', async (t) => {
  await t.throwsAsync(NamedPipeClient.open(undefined as unknown as string), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
});

test('the pipe classes do not inherit TcpStream.connect: it rejects and points to open/create', async (t) => {
  for (const C of [NamedPipeClient, NamedPipeServer]) {
    const connect = C.connect as unknown as (addr: string) => Promise<never>; // no parameters in its typing
    const e = await t.throwsAsync(connect.call(C, '127.0.0.1:1'), { code: 'ERR_METHOD_NOT_IMPLEMENTED' });
    t.regex(e!.message, /NamedPipeClient\.open/);
  }
});

test('NamedPipeServer#connect rejects bad arguments with a coded error, never throws, like every other wait', async (t) => {
  // Off Windows no instance can be created; the arguments are checked before the instance is
  // touched, so a bare object of the class reaches the same checks.
  const server = WINDOWS ? NamedPipeServer.create(pipeName()) : (Object.create(NamedPipeServer.prototype) as NamedPipeServer);
  try {
    for (const options of [{ signal: 'x' }, { signal: {} }, 5, 'x']) {
      let p: Promise<void> | undefined;
      t.notThrows(() => {
        p = server.connect(options as unknown as { signal?: AbortSignal });
      });
      await t.throwsAsync(p!, { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
    }
  } finally {
    if (WINDOWS) server.close();
  }
});

if (!WINDOWS) {
  test('named pipes refuse with ERR_FEATURE_UNAVAILABLE_ON_PLATFORM off Windows', async (t) => {
    t.throws(() => NamedPipeServer.create(pipeName()), { code: 'ERR_FEATURE_UNAVAILABLE_ON_PLATFORM' });
    await t.throwsAsync(NamedPipeClient.open(pipeName()), { code: 'ERR_FEATURE_UNAVAILABLE_ON_PLATFORM' });
  });
}

if (WINDOWS) {
  test('a client opens a server instance; connect() resolves and bytes flow both ways', async (t) => {
    const name = pipeName();
    const server = NamedPipeServer.create(name);
    const client = await NamedPipeClient.open(name);
    await server.connect();
    t.is(server.path, name);
    t.deepEqual(client.localAddr(), { path: name });
    await client.write('ping');
    const b = Buffer.alloc(4);
    await server.readExact(b);
    t.is(b.toString(), 'ping');
    await server.write('pong');
    await client.readExact(b);
    t.is(b.toString(), 'pong');
    client.close();
    server.close();
  });

  test('connect() resolves when the client opened the instance before it was called', async (t) => {
    const name = pipeName();
    const server = NamedPipeServer.create(name);
    const client = await NamedPipeClient.open(name);
    await new Promise((r) => setTimeout(r, 20));
    await server.connect();
    await server.connect(); // again: still connected
    t.pass();
    client.close();
    server.close();
  });

  test('closing one end makes the other read end of stream', async (t) => {
    const name = pipeName();
    const server = NamedPipeServer.create(name);
    const client = await NamedPipeClient.open(name);
    await server.connect();
    await client.write('last words');
    client.close();
    t.is((await server.readToEnd()).toString(), 'last words');
    server.close();
  });

  test('opening a name with no instance rejects ENOENT; a busy single instance rejects EBUSY', async (t) => {
    const missing = await t.throwsAsync(NamedPipeClient.open(pipeName()), { code: 'ENOENT' });
    t.is((missing as Error & { syscall?: string }).syscall, 'open');
    const name = pipeName();
    const server = NamedPipeServer.create(name, { maxInstances: 1 });
    const client = await NamedPipeClient.open(name);
    await server.connect();
    await t.throwsAsync(NamedPipeClient.open(name), { code: 'EBUSY' });
    t.throws(() => NamedPipeServer.create(name), { code: 'EBUSY' });
    client.close();
    server.close();
  });

  test('firstPipeInstance refuses a name that already has an instance', (t) => {
    const name = pipeName();
    const first = NamedPipeServer.create(name, { firstPipeInstance: true });
    const e = t.throws(() => NamedPipeServer.create(name, { firstPipeInstance: true }), { code: 'EACCES' });
    t.is((e as Error & { syscall?: string }).syscall, 'listen');
    const second = NamedPipeServer.create(name);
    first.close();
    second.close();
  });

  test('an aborted connect() rejects with the reason and the instance still takes a client', async (t) => {
    const name = pipeName();
    const server = NamedPipeServer.create(name);
    const ac = new AbortController();
    const waiting = server.connect({ signal: ac.signal });
    ac.abort();
    await t.throwsAsync(waiting, { name: 'AbortError' });
    const client = await NamedPipeClient.open(name);
    await server.connect();
    await client.write('x');
    const b = Buffer.alloc(1);
    await server.readExact(b);
    t.is(b.toString(), 'x');
    client.close();
    server.close();
  });

  test('closing an instance that waits for its client rejects connect() with ERR_SOCKET_CLOSED', async (t) => {
    const server = NamedPipeServer.create(pipeName());
    const waiting = server.connect();
    server.close();
    await t.throwsAsync(waiting, { code: 'ERR_SOCKET_CLOSED' });
  });

  test('socket options on a pipe throw a coded system error', async (t) => {
    const name = pipeName();
    const server = NamedPipeServer.create(name);
    const client = await NamedPipeClient.open(name);
    await server.connect();
    t.throws(() => client.setNoDelay(true), { code: 'ENOTSOCK' });
    client.close();
    server.close();
  });

  test('4 MiB through a pipe and a native copy back arrive intact and in order', async (t) => {
    const name = pipeName();
    const server = NamedPipeServer.create(name);
    const client = await NamedPipeClient.open(name);
    await server.connect();
    const data = randomBytes(4 << 20);
    const echo = copy(server, server); // echoes until the client's end closes
    const writer = client.writeAll(data);
    const got: Buffer[] = [];
    let len = 0;
    while (len < data.length) {
      const c = await client.readChunk();
      if (c === undefined) break;
      got.push(c);
      len += c.length;
    }
    await writer;
    const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    t.is(len, data.length);
    t.is(digest(Buffer.concat(got)), digest(data));
    client.close();
    await echo.catch(() => 0);
    server.close();
  });
}
