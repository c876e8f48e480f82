// A node:net echo server — the peer of benchmarks P1/P2: every chunk read is written straight back
// (`'data'` → `write`), Nagle off, as a typical Node service would do it. `--udp` serves node:dgram.
// `--await` writes the handler in kyoto's shape instead — `for await (const chunk of socket)`, awaiting
// `'drain'` when `write` says so — to show what that style costs on node:net itself (P1's RSS row).
// `--compat` runs this very server with its import swapped for kyoto/compat/net (or compat/dgram):
// what a service gets from changing one line.
//
//   node bench/servers/node-echo.mjs [--host 127.0.0.1] [--port 0] [--udp | --await] [--compat]
//
// Prints `listening <host>:<port>` once bound. On SIGTERM/SIGINT it exits cleanly.
import { once } from 'node:events';
import { flag, host, port } from './cli.mjs';

const compat = flag('compat');
const { default: net } = await import(compat ? '../../dist/lib/compat/net.js' : 'node:net');
const { default: dgram } = await import(compat ? '../../dist/lib/compat/dgram.js' : 'node:dgram');
const udp = flag('udp');
const awaitStyle = flag('await');

if (udp) {
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
  sock.on('error', (e) => {
    console.error(`node-echo: ${e.message}`);
  });
  sock.bind(port, host, () => {
    const a = sock.address();
    process.stdout.write(`listening ${a.address}:${a.port}\n`);
  });
} else {
  const server = net.createServer({ noDelay: true }, (socket) => {
    // A reset peer is not the server's problem; keep serving the others.
    socket.on('error', () => socket.destroy());
    if (awaitStyle) {
      (async () => {
        for await (const chunk of socket) if (!socket.write(chunk)) await once(socket, 'drain');
      })().catch(() => socket.destroy());
    } else {
      socket.on('data', (chunk) => socket.write(chunk));
    }
  });
  server.on('error', (e) => {
    console.error(`node-echo: ${e.message}`);
    process.exit(1);
  });
  server.listen({ host, port, backlog: 4096 }, () => {
    const a = server.address();
    process.stdout.write(`listening ${a.address}:${a.port}\n`);
  });
}
