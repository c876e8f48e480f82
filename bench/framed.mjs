// framed() receive throughput: native framing (framed() on a kyoto TcpStream) vs the JS splitter
// (framed() on a plain { read, write } wrapper around the same kyoto stream, which takes the JS
// fallback path), on 64-byte lines (63 bytes + '\n'). A separate node:net process sends LINES lines
// in 64 KiB writes as fast as the receiver takes them; this process counts frames with
// `for await (const line of framed(...))`. Reports frames per wall-clock second and per CPU second of
// this process (user + system; with multi_thread that includes the kyoto worker threads). Median of
// ROUNDS rounds, modes alternating.
// Bounded: LINES lines per round (default 500 000 = 32 MB). Not run by the tests.
// Usage: node bench/framed.mjs [rounds=3] [lines=500000]   (KYOTO_NET_FLAVOR selects the data path)
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import os from 'node:os';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const { TcpListener, framed, LinesCodec, netFlavor } = require(path.join(here, '..', 'dist', 'index.js'));

const ROUNDS = Math.max(1, Number(process.argv[2] ?? 3));
const LINES = Math.max(1024, Number(process.argv[3] ?? 500_000));
const CHUNKS = Math.ceil(LINES / 1024);

const senderSrc = `
const net = require('node:net');
const [port, chunks] = process.argv.slice(1).map(Number);
const line = 'x'.repeat(63) + '\\n';
const chunk = Buffer.from(line.repeat(1024));
const s = net.connect(port, '127.0.0.1', () => {
  let i = 0;
  const pump = () => {
    while (i < chunks) {
      i++;
      if (!s.write(chunk)) return s.once('drain', pump);
    }
    s.end();
  };
  pump();
});
`;

async function round(mode) {
  const l = await TcpListener.bind('127.0.0.1:0');
  const child = spawn(process.execPath, ['-e', senderSrc, String(l.localAddr().port), String(CHUNKS)], {
    stdio: 'inherit',
  });
  const [s] = await l.accept();
  const target = mode === 'native' ? s : { read: (b) => s.read(b), write: (d) => s.write(d) };
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  let n = 0;
  for await (const line of framed(target, new LinesCodec())) {
    if (line.length !== 63) throw new Error(`bad line of ${line.length}`);
    n++;
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(c0);
  const cpuSecs = (cpu.user + cpu.system) / 1e6;
  s.close();
  l.close();
  await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
  if (n !== CHUNKS * 1024) throw new Error(`got ${n} lines, want ${CHUNKS * 1024}`);
  return [n / secs, n / cpuSecs];
}

const results = { native: [], js: [] };
const perCpu = { native: [], js: [] };
for (let r = 0; r < ROUNDS; r++) {
  for (const mode of r % 2 === 0 ? ['native', 'js'] : ['js', 'native']) {
    const [wall, cpu] = await round(mode);
    results[mode].push(wall);
    perCpu[mode].push(cpu);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (x) => `${(x / 1e6).toFixed(2)} M frames/s`;
console.log(`framed() receive, ${CHUNKS * 1024} × 64 B lines, ${netFlavor}, load ${os.loadavg()[0].toFixed(1)}`);
for (const mode of ['native', 'js']) {
  console.log(
    `  ${mode.padEnd(6)} median ${fmt(median(results[mode]))} (${results[mode].map(fmt).join(', ')}); ` +
      `${fmt(median(perCpu[mode]))} per CPU second`,
  );
}
console.log(
  `  native / js: ${(median(results.native) / median(results.js)).toFixed(2)}× wall clock, ` +
    `${(median(perCpu.native) / median(perCpu.js)).toFixed(2)}× per CPU second`,
);
