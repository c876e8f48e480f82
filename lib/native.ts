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
