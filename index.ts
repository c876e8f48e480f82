/**
 * kyoto — Tokio's design brought to Node.js.
 *
 * Everything exported by the subpaths (`kyoto/runtime`, `kyoto/time`, `kyoto/task`, `kyoto/sync`,
 * `kyoto/net`, `kyoto/io`, `kyoto/console`) is re-exported here; `kyoto/compat/net` and
 * `kyoto/compat/dgram` as the namespaces `compatNet` and `compatDgram`.
 * @packageDocumentation
 */
export * from './lib/runtime';
export * from './lib/time';
export * from './lib/task';
export * from './lib/sync';
export * from './lib/net';
export * from './lib/io';
export * from './lib/console';
export { AbortError, type CodedError } from './lib/errors';
/** `kyoto/compat/net` (its names, such as `Socket`, clash with `kyoto/compat/dgram`'s). */
export * as compatNet from './lib/compat/net';
/** `kyoto/compat/dgram`. */
export * as compatDgram from './lib/compat/dgram';
