// Odd arguments from JS never crash or hang the process (kyoto/net, kyoto/io): each seed runs a
// bounded, reproducible sequence of calls in a child process (fixtures/net-fuzz.ts).
import test from 'ava';
import { execFile } from 'node:child_process';
import * as path from 'node:path';

const FIXTURE = path.join(__dirname, 'fixtures', 'net-fuzz.js');

for (const seed of [1, 2, 3, 4, 5, 6]) {
  test(`seed ${seed}: 4 000 calls with odd arguments, on what calls return too, closes among them: no crash, every TypeError/RangeError has a code, the process exits once all is closed`, async (t) => {
    const { code, signal, stdout, stderr } = await new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>(
      (resolve) => {
        const child = execFile(process.execPath, [FIXTURE, String(seed), '4000'], { timeout: 60_000 }, (_err, stdout, stderr) =>
          resolve({ code: child.exitCode, signal: child.signalCode, stdout, stderr }),
        );
      },
    );
    t.is(signal, null, `killed (a hang past 60 s, or a crash): ${stderr}`);
    t.is(code, 0, stderr);
    const last = JSON.parse(stdout.trim().split('\n').pop()!) as { seed: number; problems: string[] };
    t.deepEqual(last, { seed, problems: [] });
  });
}
