/**
 * The native addon, loaded through the napi-rs generated loader (`native.js` at the package root,
 * which picks `kyoto.<platform>.node` or the matching `@kyoto/<platform>` package).
 * @module
 */
import type * as Native from '../native';

// Every export is @internal, so the emitted dist/lib/native.d.ts keeps no import of the typings:
// '../native' names the top-level native.d.ts from lib/ but dist/native from dist/lib/, and no one
// path is right for both (tsc does not copy native.d.ts into dist). Nothing public exposes the
// binding; package.spec type-checks every shipped .d.ts, so a leak fails there.

/** @internal */
// Compiled to dist/lib/native.js, so the loader is two levels up.
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const native: typeof Native = require('../../native.js');
/** @internal */
export type NativeRuntime = Native.NativeRuntime;
/** @internal */
export type NativeRuntimeMetrics = Native.RuntimeMetrics;

/**
 * @internal For a module that owns per-env native state (the bridge, the socket data path, the sync
 * codec): `moduleExports` if this is the env's first evaluation of module `name`, else the first
 * evaluation's exports, which a later copy must take as its own (`module.exports = first`) — the
 * native side answers only the first copy's callbacks. Later copies come from Jest's per-file
 * module registries or a cleared `require.cache` (see `crates/kyoto-node/src/env_module.rs`).
 */
export function firstCopy<T extends object>(name: string, moduleExports: T): T {
  return native.envModule(name, moduleExports) as T;
}
