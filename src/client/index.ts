// zeo-ts/client: the Node client of a ZEO server. The connection layer (the wire protocol's client side) and the connection manager.
export {
  ClientConnection,
  DEFAULT_MAX_MESSAGE_SIZE,
  describeAddress,
  type CallOptions,
  type ClientConnectionOptions,
  type ServerAddress,
  type ServerCallHandler,
} from './connection.js';
export { CallTimeoutError, ClientDisconnected } from './errors.js';
export { ConnectionManager, type ConnectEvent, type ConnectionManagerOptions } from './manager.js';
