/**
 * `kyoto/net`: TCP and UDP sockets on kyoto's native reactor.
 *
 * Reads are delivered to JavaScript in batches (one call per batch of ready sockets, data in one
 * shared arena), writes are queued in a shared arena and sent by one native pass per turn. By default
 * the reactor is a current-thread kyoto runtime driven from Node's own event loop (no thread hop);
 * `KYOTO_NET_FLAVOR=multi_thread` runs socket I/O on kyoto worker threads instead.
 *
 * One file per socket type under `net/` (`tcp-stream.ts`, `tcp-listener.ts`, `tcp-socket.ts`,
 * `udp.ts`, `unix.ts`, `pipe.ts`); `net/core.ts` is the JS half of the native bridge and
 * `net/common.ts` the helpers and `net/types.ts` the types the socket types share. Everything exported here is public.
 * @module
 */
import { flavor, type SocketAddress, type SystemError } from './net/core';

export type { SocketAddress, SystemError };
export type { AddressLike, SignalOption } from './net/types';

/** The I/O data path in use in this thread: `'current_thread'` or `'multi_thread'`. */
export const netFlavor: string = flavor;

// Named, not `export *`: the files below also export helpers they share with each other.
export { TcpStream, ReadHalf, WriteHalf } from './net/tcp-stream';
export { TcpListener, type BindOptions } from './net/tcp-listener';
export { TcpSocket } from './net/tcp-socket';
export { UdpSocket } from './net/udp';
export { UnixStream, UnixListener, UnixDatagram, type UnixBindOptions, type UnixSocketAddress, type UCred } from './net/unix';
export { NamedPipe, NamedPipeServer, NamedPipeClient, type NamedPipeServerOptions } from './net/pipe';
