// The client's own errors, under the names ZEO's client raises them.

/**
 * The connection to the server is gone (or never came): every call waiting on it fails with this. Transient,
 * as in ZEO 5: the application may retry once the client has reconnected.
 */
export class ClientDisconnected extends Error {
  /** the Python class a ZEO client raises for this error */
  readonly pythonName: string = 'ZEO.Exceptions.ClientDisconnected';
  override name = 'ClientDisconnected';
  /** ZODB's TransientError: retrying the transaction may succeed */
  readonly transient = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A call got no reply within its timeout; only that call fails (its late reply is ignored). */
export class CallTimeoutError extends Error {
  override name = 'TimeoutError';
  readonly transient = true;
  constructor(
    readonly call: string,
    readonly ms: number,
  ) {
    super(`no reply to ${call} within ${ms} ms`);
  }
}
