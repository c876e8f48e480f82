// A node:net TCP proxy — the Node peer of benchmark P3: per accepted connection
// `net.connect(upstream)`, then `client.pipe(upstream)` and `upstream.pipe(client)`, Nagle off on both
// sides, as a typical Node service would write it.
//
//   node bench/servers/node-proxy.mjs --upstream 127.0.0.1:7001 [--host 127.0.0.1] [--port 0]
//
// Prints `listening <host>:<port>` once bound; exits cleanly on SIGTERM/SIGINT.
import net from 'node:net';
import { host, opt, port } from './cli.mjs';

const upstream = opt('upstream', '');
const m = /^(.*):(\d+)$/.exec(upstream);
if (!m) {
  console.error('node-proxy: --upstream HOST:PORT is required');
  process.exit(2);
}
const [upHost, upPort] = [m[1].replace(/^\[|\]$/g, ''), Number(m[2])];

const server = net.createServer({ noDelay: true }, (client) => {
  const up = net.connect({ host: upHost, port: upPort, noDelay: true, timeout: 10_000 });
  up.once('connect', () => up.setTimeout(0));
  up.once('timeout', () => up.destroy());
  client.pipe(up);
  up.pipe(client);
  // A reset peer (either side) is not the proxy's problem: drop both ends, keep serving the others.
  const drop = () => {
    client.destroy();
    up.destroy();
  };
  client.on('error', drop);
  up.on('error', drop);
  client.on('close', () => up.destroy());
  up.on('close', () => client.destroy());
});
server.on('error', (e) => {
  console.error(`node-proxy: ${e.message}`);
  process.exit(1);
});
server.listen({ host, port, backlog: 4096 }, () => {
  const a = server.address();
  process.stdout.write(`listening ${a.address}:${a.port}\n`);
});
