// Errors of the wire layer. A ProtocolError from a decoder means the peer sent something the reference would not
// have accepted either ("Can't deserialize message"): the server closes the connection. From an encoder it means
// the value has no form in the encoding (the reference's "Unpicklable response").

export class ProtocolError extends Error {
  override name = 'ProtocolError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
