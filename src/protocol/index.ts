// zeo-ts/protocol: ZEO's wire protocol without sockets: framing, the handshake, the message codecs (pickle 'Z'
// and msgpack 'M', byte for byte as ZEO 5/6) and the marshalling of exceptions.
export { MessageRefused, ProtocolError } from './errors.js';
export {
  FrameDecoder,
  FrameTooLargeError,
  MAX_FRAME_LENGTH,
  encodeFrame,
  frame,
  frameHeader,
} from './framing.js';
export {
  PROTOCOL_VERSION,
  chooseClientProtocol,
  parseClientHello,
  serverGreeting,
  type ClientHello,
  type Encoding,
} from './handshake.js';
export {
  REPLY,
  REPLY_ERROR,
  REPLY_OK,
  codecFor,
  isAsync,
  isHeartbeat,
  msgpackCodec,
  pickleCodec,
  pyTruthy,
  type Message,
  type MessageCodec,
} from './message.js';
export {
  LoadBeforeAt,
  loadBeforeReplyLength,
  readLoadBefore,
  scanLoadBefore,
  writeLoadBeforeReply,
  type LoadBeforeCall,
  type LoadBeforeFound,
} from './fastcall.js';
export { MsgpackWriter, unpack as unpackMsgpack } from './msgpack.js';
export {
  PythonError,
  ServerException,
  UNENCODABLE_RESPONSE,
  errorPayload,
  marshalError,
  recordClassName,
  replyParts,
  replyPayload,
  type UnencodableHandler,
  unmarshalError,
  type MarshaledError,
} from './exceptions.js';
