// Errors of the wire layer. A ProtocolError from a decoder means the peer sent something the reference would not
// have accepted either ("Can't deserialize message"): the server closes the connection. From an encoder it means
// the value has no form in the encoding (the reference's "Unpicklable response").

export class ProtocolError extends Error {
  override name = 'ProtocolError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * A message whose decoded form would be far larger than its bytes (containers nested too deeply, memo
 * references standing for millions of elements): refused whole, but its msgid, flag and name were read, so
 * the receiver can answer the call with an error and keep the connection.
 */
export class MessageRefused extends ProtocolError {
  override name = 'MessageRefused';
  constructor(
    readonly msgid: unknown,
    readonly flag: unknown,
    readonly call: string,
    readonly reason: string,
  ) {
    super(`message ${JSON.stringify(call)} refused: ${reason}`);
  }
}
