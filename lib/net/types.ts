/**
 * The public types `kyoto/net`'s socket classes share in their signatures. Apart from
 * `net/common.ts` (the shared helpers) so that the published typings of the classes refer only to
 * these.
 * @module
 */

/** An address: `"host:port"`, `{ host, port }` or `{ address, port }`. */
export type AddressLike = string | { host: string; port: number } | { address: string; port: number };

/** Options of every waiting call. */
export interface SignalOption {
  /** Aborts the wait. */
  signal?: AbortSignal;
}
