// A node:net echo server — the peer of benchmarks P1/P2: every chunk read is written straight back
// (`'data'` → `write`), Nagle off, as a typical Node service would do it. `--udp` serves node:dgram.
//
//   node bench/servers/node-echo.mjs [--host 127.0.0.1] [--port 0] [--udp]
//
// Prints `listening <host>:<port>` once bound. On SIGTERM/SIGINT it exits cleanly.
import net from 'node:net';
import dgram from 'node:dgram';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const host = opt('host', '127.0.0.1');
const port = Number(opt('port', '0'));
const udp = args.includes('--udp');

const quit = () => process.exit(0);
process.on('SIGTERM', quit);
process.on('SIGINT', quit);

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
    socket.on('data', (chunk) => socket.write(chunk));
    // A reset peer is not the server's problem; keep serving the others.
    socket.on('error', () => socket.destroy());
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
