/**
 * The native addon, loaded through the napi-rs generated loader (`native.js` at the package root,
 * which picks `kyoto.<platform>.node` or the matching `@kyoto/<platform>` package).
 * @module
 */
import type * as Native from '../native';

// Compiled to dist/lib/native.js, so the loader is two levels up.
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const native: typeof Native = require('../../native.js');
export type NativeRuntime = Native.NativeRuntime;
export type NativeRuntimeMetrics = Native.RuntimeMetrics;
