// Node's own http.Server answering every request with a 12-byte body (`writeHead` then `end`, so
// the body goes out chunked, as most handlers' does) — the servers of the HTTP benchmark
// (`bench/http.mjs`). Only the transport differs:
//   (default)   `http.createServer().listen()`: node:net;
//   --compat    the same server on connections from kyoto/compat/net (`server.emit('connection')`),
//               what a service gets by swapping one import;
//   --stream    the same server on kyoto `TcpListener` streams through `toNodeStream()`.
//
//   node bench/servers/http-hello.mjs [--host 127.0.0.1] [--port 0] [--compat | --stream]
//
// Prints `listening <host>:<port>` once bound; exits cleanly on SIGTERM/SIGINT.
import { createRequire } from 'node:module';
import * as http from 'node:http';
import { flag, host, port } from './cli.mjs';

const require = createRequire(import.meta.url);

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('hello world\n');
});
const ready = (a) => process.stdout.write(`listening ${a.address}:${a.port}\n`);

if (flag('compat')) {
  const net = require('../../dist/lib/compat/net.js');
  const front = net.createServer((s) => server.emit('connection', s));
  front.listen(port, host, () => ready(front.address()));
} else if (flag('stream')) {
  const { TcpListener } = require('../../dist/lib/net.js');
  const listener = await TcpListener.bind({ host, port }, { backlog: 4096 });
  ready(listener.localAddr());
  for await (const s of listener) server.emit('connection', s.toNodeStream());
} else {
  server.listen(port, host, () => ready(server.address()));
}
