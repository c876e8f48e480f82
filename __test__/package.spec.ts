import test from 'ava';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from './helpers';

const req = createRequire(__filename);

/** Every declaration file the package publishes: those its package.json `files` names or holds. */
function publishedTypings(): string[] {
  const out: string[] = [];
  const add = (p: string): void => {
    if (fs.statSync(p).isDirectory()) for (const e of fs.readdirSync(p)) add(path.join(p, e));
    else if (p.endsWith('.d.ts')) out.push(p);
  };
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { files: string[] };
  for (const f of pkg.files) add(path.join(packageRoot, f));
  return out;
}

type Ts = typeof import('typescript');

/** Module options of a consumer on Node's resolution (exports map, conditions). */
function node16(ts: Ts): import('typescript').CompilerOptions {
  return { module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16 };
}

/**
 * The declaration file TypeScript gives a consumer importing `specifier` (the package's own name
 * resolves as from node_modules would: through the exports map), as a local path.
 */
function typingsOf(
  ts: Ts,
  specifier: string,
  options: import('typescript').CompilerOptions,
  mode?: import('typescript').ResolutionMode,
): string {
  const from = path.join(packageRoot, 'consumer.ts');
  const r = ts.resolveModuleName(specifier, from, options, ts.sys, undefined, undefined, mode).resolvedModule;
  return r === undefined ? `(${specifier} not resolved)` : path.resolve(r.resolvedFileName);
}

const SUBPATHS: Record<string, string[]> = {
  'kyoto/runtime': ['Runtime'],
  'kyoto/time': [
    'sleep',
    'sleepUntil',
    'timeout',
    'timeoutAt',
    'interval',
    'intervalAt',
    'Instant',
    'Interval',
    'Elapsed',
    'pause',
    'resume',
    'advance',
    'isPaused',
  ],
  'kyoto/task': ['spawn', 'spawnBlocking', 'JoinHandle', 'JoinError', 'JoinSet', 'yieldNow', 'select'],
  'kyoto/console': ['serveConsole', 'ConsoleServer'],
};

test('require() of the package and each subpath exposes every public name', (t) => {
  const root = req('kyoto');
  for (const [sub, names] of Object.entries(SUBPATHS)) {
    const mod = req(sub);
    for (const name of names) {
      t.is(typeof mod[name], 'function', `${sub} ${name}`);
      t.is(root[name], mod[name], `kyoto re-exports ${name} from ${sub}`);
    }
  }
  t.is(req('kyoto/package.json').name, 'kyoto');
});

test('import() of the package and each subpath sees the same named exports as require()', async (t) => {
  // Node's ESM loader reads the CommonJS build's named exports with cjs-module-lexer; run it in a
  // separate ESM process so TypeScript's CommonJS output cannot rewrite the dynamic import.
  const script = `
    const out = {};
    for (const sub of ${JSON.stringify(['kyoto', ...Object.keys(SUBPATHS)])}) {
      const m = await import(sub);
      out[sub] = Object.keys(m).filter((k) => k !== 'default' && typeof m[k] === 'function').sort();
    }
    console.log(JSON.stringify(out));`;
  const stdout = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: packageRoot,
    encoding: 'utf8',
  });
  const esm = JSON.parse(stdout) as Record<string, string[]>;
  for (const [sub, names] of Object.entries(SUBPATHS)) {
    for (const name of names) {
      t.true(esm[sub].includes(name), `import('${sub}').${name}`);
      t.true(esm.kyoto.includes(name), `import('kyoto').${name}`);
    }
  }
});

test('internal modules are not reachable through the exports map', (t) => {
  t.throws(() => req('kyoto/dist/lib/bridge.js'), { code: 'ERR_PACKAGE_PATH_NOT_EXPORTED' });
});

test('the top-level index.d.ts is the types entry, and every typings entry is published', (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ts = req('typescript') as Ts;
  const index = path.join(packageRoot, 'index.d.ts');
  // A CommonJS and an ES module consumer (node16), a bundler, and TypeScript's node10 resolution,
  // which knows no exports map and reads `types`.
  t.is(typingsOf(ts, 'kyoto', node16(ts), ts.ModuleKind.CommonJS), index, 'node16, require');
  t.is(typingsOf(ts, 'kyoto', node16(ts), ts.ModuleKind.ESNext), index, 'node16, import');
  const bundler = { module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler };
  t.is(typingsOf(ts, 'kyoto', bundler), index, 'bundler');
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as {
    types: string;
    exports: Record<string, unknown>;
  };
  t.is(path.join(packageRoot, pkg.types), index, '`types` (node10)');
  const published = new Set(publishedTypings());
  // node10 reads subpaths through `typesVersions`, and only from node_modules (no self-reference):
  // a consumer directory with the package linked in.
  const consumer = fs.mkdtempSync(path.join(os.tmpdir(), 'kyoto-consumer-'));
  try {
    fs.mkdirSync(path.join(consumer, 'node_modules'));
    fs.symlinkSync(packageRoot, path.join(consumer, 'node_modules', 'kyoto'), 'junction');
    const node10 = { module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10 };
    const fromConsumer = (specifier: string): string => {
      const r = ts.resolveModuleName(specifier, path.join(consumer, 'consumer.ts'), node10, ts.sys).resolvedModule;
      return r === undefined ? `(${specifier} not resolved)` : fs.realpathSync(r.resolvedFileName);
    };
    t.is(fromConsumer('kyoto'), fs.realpathSync(index), 'node10: kyoto');
    for (const sub of Object.keys(pkg.exports).filter((k) => k !== './package.json')) {
      const specifier = path.posix.join('kyoto', sub);
      const file = typingsOf(ts, specifier, node16(ts));
      t.true(published.has(file), `${sub}: ${file} is in package.json files`);
      t.is(fromConsumer(specifier), fs.realpathSync(file), `node10: ${specifier}`);
    }
  } finally {
    fs.rmSync(consumer, { recursive: true, force: true });
  }
});

test('everything the package exports at run time is declared in its public typings', (t) => {
  // Internal helpers shared between modules must not leak through `export *`: the typings
  // (built with stripInternal) are the public surface, and run time must not offer more.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ts = req('typescript') as Ts;
  const entry = typingsOf(ts, 'kyoto', node16(ts));
  t.is(entry, path.join(packageRoot, 'index.d.ts'), 'read from the types entry');
  const program = ts.createProgram([entry], { noEmit: true, skipLibCheck: true, ...node16(ts) });
  const checker = program.getTypeChecker();
  const declared = new Set(
    checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(entry)!)!).map((s) => s.name),
  );
  t.true(declared.has('TcpStream') && declared.has('sleep'), 'the typings were read');
  const undeclared = Object.keys(req('kyoto')).filter((k) => k !== '__esModule' && !declared.has(k));
  t.deepEqual(undeclared, []);
});

test('every public name in the published typings carries a doc comment', (t) => {
  // What an editor shows on hover is the typings' comments: every export, and every public
  // member and static of an exported class or interface (namespaces such as `mpsc` included).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ts = req('typescript') as Ts;
  const entry = typingsOf(ts, 'kyoto', node16(ts));
  const program = ts.createProgram([entry], { noEmit: true, skipLibCheck: true, ...node16(ts) });
  const checker = program.getTypeChecker();
  const ours = (d: import('typescript').Declaration): boolean => {
    const f = path.resolve(d.getSourceFile().fileName);
    return f.startsWith(packageRoot + path.sep) && !f.includes(`${path.sep}node_modules${path.sep}`);
  };
  const hidden = (d: import('typescript').Declaration): boolean =>
    (ts.getCombinedModifierFlags(d) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) !== 0;
  const where = (d: import('typescript').Declaration): string => {
    const f = d.getSourceFile();
    return `${path.relative(packageRoot, f.fileName)}:${f.getLineAndCharacterOfPosition(d.getStart()).line + 1}`;
  };
  const undocumented: string[] = [];
  const seen = new Set<import('typescript').Symbol>();
  let checked = 0;
  const visit = (s: import('typescript').Symbol, label: string): void => {
    const sym = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
    const decls = sym.declarations ?? [];
    if (decls.length === 0 || !decls.some(ours) || decls.some(hidden) || seen.has(sym)) return;
    seen.add(sym);
    checked++;
    const isModule = (sym.flags & ts.SymbolFlags.Module) !== 0;
    if (!isModule && sym.getDocumentationComment(checker).length === 0) undocumented.push(`${label} (${where(decls[0])})`);
    if (isModule) for (const e of checker.getExportsOfModule(sym)) visit(e, `${label}.${e.name}`);
    if (sym.flags & (ts.SymbolFlags.Class | ts.SymbolFlags.Interface)) {
      const members = [...(sym.members?.values() ?? []), ...(sym.exports?.values() ?? [])];
      for (const m of members) {
        const md = m.declarations ?? [];
        if (m.name === '__constructor' || m.name === 'prototype' || m.name.startsWith('#')) continue;
        if (md.length === 0 || md.some(hidden) || m.flags & ts.SymbolFlags.TypeParameter) continue;
        checked++;
        if (m.getDocumentationComment(checker).length === 0) undocumented.push(`${label}.${m.name} (${where(md[0])})`);
      }
    }
  };
  for (const e of checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(entry)!)!)) {
    visit(e, e.name);
  }
  t.true(checked > 500, `the typings were read (${checked} names)`);
  t.deepEqual(undocumented, []);
});

test('the published typings type-check on their own, without skipLibCheck', (t) => {
  // A consumer whose tsconfig does not set skipLibCheck type-checks these files; stripInternal
  // must not leave a declaration that no longer holds (say, a class implementing an interface
  // whose member was stripped). Every shipped .d.ts is checked, not only those the entry points
  // reach: an internal module's declarations must not import what exists only beside the sources
  // (lib/native.ts's '../native' is the top-level native.d.ts from lib/, nothing from dist/lib/).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ts = req('typescript') as Ts;
  const files = publishedTypings();
  t.true(files.includes(path.join(packageRoot, 'dist', 'lib', 'native.d.ts')), 'internal modules are among them');
  const program = ts.createProgram(files, {
    noEmit: true,
    strict: true,
    skipLibCheck: false,
    ...node16(ts),
    types: ['node'],
  });
  // Whatever they import from the package is shipped too (say, dist/index.d.ts behind index.d.ts).
  const published = new Set(files);
  const unpublished = program
    .getSourceFiles()
    .map((f) => path.resolve(f.fileName))
    .filter((f) => f.startsWith(packageRoot + path.sep) && !f.includes(`${path.sep}node_modules${path.sep}`))
    .filter((f) => !published.has(f));
  t.deepEqual(unpublished, []);
  const own = ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file === undefined || !d.file.fileName.includes('/node_modules/'))
    .map((d) => `${d.file?.fileName ?? ''}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`);
  t.deepEqual(own, []);
});

test('public classes have no underscore-internal statics', (t) => {
  // An internal factory (such as how fromShared revives a Semaphore, or how a listener opens) lives
  // in module scope: as a static, any caller could build an instance over arbitrary state.
  const found: string[] = [];
  const seen = new Set<unknown>(); // aliases (compatNet's Stream is its Socket) are listed once
  const visit = (mod: Record<string, unknown>, prefix: string): void => {
    for (const [name, v] of Object.entries(mod)) {
      if (seen.has(v)) continue;
      seen.add(v);
      if (typeof v === 'function') {
        for (const key of Object.getOwnPropertyNames(v)) if (key.startsWith('_')) found.push(`${prefix}${name}.${key}`);
      } else if (typeof v === 'object' && v !== null && prefix === '') {
        visit(v as Record<string, unknown>, `${name}.`);
      }
    }
  };
  visit(req('kyoto'), '');
  t.deepEqual(found.sort(), []);
});

test('objects users only receive (permits, guards, channel ends, intervals) cannot be constructed', (t) => {
  // Such a constructor trusts its arguments: a forged SemaphorePermit would release permits it never
  // took. Like Node's `new AbortSignal()`, they throw a coded TypeError instead.
  type Ctor = new (...args: unknown[]) => unknown;
  const k = req('kyoto') as Record<string, Ctor> & Record<'mpsc' | 'oneshot' | 'watch' | 'broadcast', Record<string, Ctor>>;
  const receivedOnly: Record<string, Ctor> = {
    SemaphorePermit: k.SemaphorePermit,
    MutexGuard: k.MutexGuard,
    RwLockReadGuard: k.RwLockReadGuard,
    RwLockWriteGuard: k.RwLockWriteGuard,
    Interval: k.Interval,
    ConsoleServer: k.ConsoleServer,
    DuplexStream: k.DuplexStream,
    DuplexReadHalf: k.DuplexReadHalf,
    DuplexWriteHalf: k.DuplexWriteHalf,
    'mpsc.Sender': k.mpsc.Sender,
    'mpsc.UnboundedSender': k.mpsc.UnboundedSender,
    'mpsc.Receiver': k.mpsc.Receiver,
    'mpsc.Permit': k.mpsc.Permit,
    'oneshot.Sender': k.oneshot.Sender,
    'oneshot.Receiver': k.oneshot.Receiver,
    'watch.Sender': k.watch.Sender,
    'watch.Receiver': k.watch.Receiver,
    'broadcast.Sender': k.broadcast.Sender,
    'broadcast.Receiver': k.broadcast.Receiver,
  };
  for (const [name, C] of Object.entries(receivedOnly)) {
    t.is(typeof C, 'function', name);
    for (const args of [[], [undefined], [{}, 1, 1], [Symbol('kyoto.construct'), {}, 0, 1]]) {
      t.throws(() => new C(...args), { instanceOf: TypeError, code: 'ERR_ILLEGAL_CONSTRUCTOR' }, `new ${name}(…)`);
    }
  }
});
