// zeo-ts's ZConfig: a reader for ZConfig's syntax against a schema given as data, and ZConfig's datatypes.
export * from './datatypes.js';
export { ConfigError, convFail, DatatypeError, fail, type Position } from './errors.js';
export { readConfig, substitute, type ReadOptions, type SectionValue } from './reader.js';
export {
  key,
  keys,
  type ImportablePackage,
  type KeyInfo,
  type Schema,
  type SectionSlot,
  type SectionType,
} from './schema.js';
export { ZODB_CONFIG_SCHEMA } from './components/zodb.js';
