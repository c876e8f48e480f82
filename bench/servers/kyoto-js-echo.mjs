// A kyoto echo server with the handler in JS — the kyoto side of benchmarks P1 and P4: per connection
// `read(buf)` → `write(chunk)` (TCP), per datagram `recvFrom` → `sendTo` (`--udp`), or batches of
// `recvMany` → `sendMany` (`--udp --batch`). The data path is chosen by KYOTO_NET_FLAVOR
// (`current_thread`, the default, or `multi_thread`).
//
//   node bench/servers/kyoto-js-echo.mjs [--host 127.0.0.1] [--port 0] [--udp [--batch]] [--copy | --chunks]
//
// `--copy` serves TCP with the native `copy(s, s)` instead of the JS loop (benchmark P2's JS API);
// `--chunks` iterates the stream (`for await (const chunk of s)`) instead of reading into a buffer.
// Prints `listening <host>:<port>` once bound; exits cleanly on SIGTERM/SIGINT.
import { createRequire } from 'node:module';
import { flag, host, port } from './cli.mjs';

const require = createRequire(import.meta.url);
const { TcpListener, UdpSocket, netFlavor } = require('../../dist/lib/net.js');
const { copy } = require('../../dist/lib/io.js');

const udp = flag('udp');
const batch = flag('batch');
const useCopy = flag('copy');
const chunked = flag('chunks');

if (udp) {
  const sock = await UdpSocket.bind({ host, port });
  const a = sock.localAddr();
  process.stdout.write(`listening ${a.address}:${a.port} (${netFlavor})\n`);
  if (batch) {
    for (;;) {
      const msgs = await sock.recvMany(64);
      await sock.sendMany(msgs);
    }
  } else {
    const buf = Buffer.allocUnsafe(65536);
    for (;;) {
      const { bytes, address } = await sock.recvFrom(buf);
      await sock.sendTo(buf.subarray(0, bytes), address);
    }
  }
} else {
  const listener = await TcpListener.bind({ host, port }, { backlog: 4096 });
  const a = listener.localAddr();
  process.stdout.write(`listening ${a.address}:${a.port} (${netFlavor})\n`);
  const serve = async (s) => {
    try {
      s.setNoDelay(true);
      if (useCopy) {
        await copy(s, s);
      } else if (chunked) {
        for await (const c of s) await s.write(c);
      } else {
        // 2 KiB (from Node's shared Buffer pool): 16× the largest P1 message, and 10 000 idle
        // connections do not each pin a private page-sized buffer.
        const buf = Buffer.allocUnsafe(2048);
        for (;;) {
          const n = await s.read(buf);
          if (n === 0) break;
          await s.write(buf.subarray(0, n));
        }
      }
    } catch {
      // a reset peer is not the server's problem
    } finally {
      s.close();
    }
  };
  for await (const s of listener) serve(s);
}
