// zeo-ts/client: the Node client of a ZEO server. So far the connection layer (the wire protocol's client side).
export {
  ClientConnection,
  type CallOptions,
  type ClientConnectionOptions,
  type ServerAddress,
  type ServerCallHandler,
} from './connection.js';
export { CallTimeoutError, ClientDisconnected } from './errors.js';
export {
  ConflictResolverRegistry,
  defaultResolvers,
  PersistentReference,
  type StateResolver,
} from './conflict.js';
export {
  clientOptionsFromConfig,
  clientOptionsFromSection,
  parseZeoUrl,
  resolveZeoUrl,
  ZeoUrlError,
  type ClientConfigOptions,
  type DatabaseConfig,
} from './config.js';
