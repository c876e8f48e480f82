/**
 * Error helpers shared by every kyoto module: Node-style argument errors, `AbortError`, and the
 * runtime's own error codes.
 * @module
 */

/** An `Error` carrying a stable Node-style `code`. */
export interface CodedError extends Error {
  /** Stable machine-readable code, e.g. `'ERR_RUNTIME_SHUTDOWN'`. */
  code: string;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return `function ${(value as { name?: string }).name || '<anonymous>'}`;
  if (typeof value === 'object') {
    const ctor = (value as object).constructor;
    return ctor && ctor.name ? `an instance of ${ctor.name}` : 'an object';
  }
  let shown = String(value);
  if (typeof value === 'string') shown = `'${shown.length > 28 ? `${shown.slice(0, 25)}...` : shown}'`;
  return `type ${typeof value} (${shown})`;
}

function withCode<E extends Error>(err: E, code: string): E & CodedError {
  Object.defineProperty(err, 'code', { value: code, enumerable: true, writable: true, configurable: true });
  return err as E & CodedError;
}

/** `TypeError` with `code: 'ERR_INVALID_ARG_TYPE'`, worded like Node's. */
export function invalidArgType(name: string, expected: string, actual: unknown): TypeError & CodedError {
  return withCode(
    new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`),
    'ERR_INVALID_ARG_TYPE',
  );
}

/** `TypeError` with `code: 'ERR_INVALID_ARG_VALUE'`. */
export function invalidArgValue(name: string, reason: string, actual: unknown): TypeError & CodedError {
  return withCode(
    new TypeError(`The argument '${name}' ${reason}. Received ${describe(actual)}`),
    'ERR_INVALID_ARG_VALUE',
  );
}

/** `RangeError` with `code: 'ERR_OUT_OF_RANGE'`, worded like Node's. */
export function outOfRange(name: string, range: string, actual: unknown): RangeError & CodedError {
  return withCode(
    new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${String(actual)}`),
    'ERR_OUT_OF_RANGE',
  );
}

/**
 * The first argument kyoto's own modules pass to constructors of objects users only receive (a
 * permit, a guard, an interval): without it they throw {@link illegalConstructor}, so nobody can
 * forge, say, a permit that releases permits it never took.
 */
export const kConstruct: unique symbol = Symbol('kyoto.construct');

/** `TypeError` with `code: 'ERR_ILLEGAL_CONSTRUCTOR'`, as Node's for `new AbortSignal()`. */
export function illegalConstructor(): TypeError & CodedError {
  return withCode(new TypeError('Illegal constructor'), 'ERR_ILLEGAL_CONSTRUCTOR');
}

/**
 * `TypeError` with `code: 'ERR_DATA_CLONE'`: a value that must cross threads (shared `kyoto/sync`
 * state) cannot be structured-cloned, e.g. a function or a symbol. V8's message is kept.
 */
export function dataCloneError(message: string): TypeError & CodedError {
  return withCode(new TypeError(message), 'ERR_DATA_CLONE');
}

/** A coded `Error`. */
export function codedError(code: string, message: string, cause?: unknown): Error & CodedError {
  const err = cause === undefined ? new Error(message) : new Error(message, { cause });
  return withCode(err, code);
}

/** `AbortError` as Node makes it: `name: 'AbortError'`, `code: 'ABORT_ERR'`, `cause` = the reason. */
export class AbortError extends Error {
  /** Always `'ABORT_ERR'`. */
  readonly code = 'ABORT_ERR';
  /**
   * @param message - defaults to Node's `'The operation was aborted'`.
   * @param options - `cause`: usually the signal's reason.
   */
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AbortError';
  }
}

/**
 * What an aborted wait rejects with: the signal's reason when one was given, else (no reason, or
 * the platform's default `DOMException` reason) an {@link AbortError} whose `cause` is that reason.
 */
export function abortReason(signal: AbortSignal): unknown {
  const reason: unknown = signal.reason;
  if (
    reason === undefined ||
    (typeof DOMException !== 'undefined' && reason instanceof DOMException && reason.name === 'AbortError')
  ) {
    return new AbortError(undefined, { cause: reason });
  }
  return reason;
}

/** The rejection of operations pending on a runtime that shuts down. */
export function runtimeShutdownError(): Error & CodedError {
  return codedError('ERR_RUNTIME_SHUTDOWN', 'the runtime was shut down');
}

// ---------------------------------------------------------------------------------------------
// Validators (throw the errors above)

/** @internal */
export function validateNumber(
  value: unknown,
  name: string,
  min = -Infinity,
  max = Infinity,
): asserts value is number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!(value >= min && value <= max)) {
    const range =
      min === -Infinity ? `<= ${max}` : max === Infinity ? `>= ${min}` : `>= ${min} && <= ${max}`;
    throw outOfRange(name, range, value);
  }
}

/** @internal */
export function validateInteger(value: unknown, name: string, min: number, max: number): asserts value is number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value);
  if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value);
  if (value < min || value > max) throw outOfRange(name, `>= ${min} && <= ${max}`, value);
}

/** A duration in ms: a finite number >= 0. @internal */
export function validateDuration(value: unknown, name: string): asserts value is number {
  validateNumber(value, name, 0, Number.MAX_SAFE_INTEGER);
}

/** @internal */
export function validateFunction(value: unknown, name: string): asserts value is (...args: never[]) => unknown {
  if (typeof value !== 'function') throw invalidArgType(name, 'of type function', value);
}

/** @internal */
export function validateString(value: unknown, name: string): asserts value is string {
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value);
}

/** @internal */
export function validateObject(value: unknown, name: string): asserts value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgType(name, 'of type object', value);
  }
}

/** Validates an optional options bag and returns it (or an empty one). @internal */
export function optionsBag<T extends object>(value: unknown, name = 'options'): Partial<T> {
  if (value === undefined) return {};
  validateObject(value, name);
  return value as Partial<T>;
}

/** @internal */
export function validateSignal(value: unknown, name = 'options.signal'): asserts value is AbortSignal | undefined {
  if (value === undefined) return;
  if (
    value === null ||
    typeof value !== 'object' ||
    typeof (value as AbortSignal).aborted !== 'boolean' ||
    typeof (value as AbortSignal).addEventListener !== 'function' ||
    // Called when the wait ends: a signal without it would fail the completion, not the call.
    typeof (value as AbortSignal).removeEventListener !== 'function'
  ) {
    throw invalidArgType(name, 'an instance of AbortSignal', value);
  }
}
