// A kyoto TCP proxy — the kyoto side of benchmark P3: a `TcpListener` accept loop; per connection
// `TcpStream.connect(upstream)`, then `copyBidirectional(client, upstream)`, which runs entirely in
// native code between two kyoto streams. The data path is chosen by KYOTO_NET_FLAVOR
// (`current_thread`, the default: Node's own thread; or `multi_thread`: kyoto worker threads, their
// count set by KYOTO_WORKER_THREADS).
//
//   node bench/servers/kyoto-proxy.mjs --upstream 127.0.0.1:7001 [--host 127.0.0.1] [--port 0]
//
// Prints `listening <host>:<port>` once bound; exits cleanly on SIGTERM/SIGINT.
import { createRequire } from 'node:module';
import { host, opt, port } from './cli.mjs';

const require = createRequire(import.meta.url);
const { TcpListener, TcpStream, netFlavor } = require('../../dist/lib/net.js');
const { copyBidirectional } = require('../../dist/lib/io.js');

const upstream = opt('upstream', '');
if (!upstream) {
  console.error('kyoto-proxy: --upstream HOST:PORT is required');
  process.exit(2);
}

const listener = await TcpListener.bind({ host, port }, { backlog: 4096 });
const a = listener.localAddr();
process.stdout.write(`listening ${a.address}:${a.port} (${netFlavor})\n`);

const serve = async (client) => {
  let up;
  try {
    client.setNoDelay(true);
    // A connect that hangs must not pin the connection forever.
    up = await TcpStream.connect(upstream, { noDelay: true, signal: AbortSignal.timeout(10_000) });
    await copyBidirectional(client, up);
  } catch {
    // a reset peer (either side) is not the proxy's problem
  } finally {
    client.close();
    up?.close();
  }
};
for await (const s of listener) serve(s);
