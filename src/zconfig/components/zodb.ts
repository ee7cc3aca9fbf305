// ZODB's database configuration as data, for clients: ZODB/config.xml (the top level: <zodb> sections),
// ZODB's component.xml (<zodb>, <zeoclient>) and, for `%import ZEO`, ZEO's component.xml (<clientstorage>
// and its <ssl>). What a `zodb.config.databaseFromString` text may hold, read as ZODB reads it.
import {
  boolean,
  byteSize,
  existingDirpath,
  integer,
  socketConnectionAddress,
  string,
  timeInterval,
} from '../datatypes.js';
import { key as k, keys, type KeyInfo, type Schema, type SectionType } from '../schema.js';

// ZODB's component.xml
const ZODB_DATABASE: SectionType = {
  name: 'zodb',
  implements: 'zodb.database',
  keys: [
    ...keys(integer, {
      'cache-size': '5000',
      'pool-size': '7',
      'historical-pool-size': '3',
      'historical-cache-size': '1000',
    }),
    ...keys(byteSize, {
      'cache-size-bytes': '0',
      'large-record-size': '16MB',
      'historical-cache-size-bytes': '0',
    }),
    ...keys(timeInterval, { 'pool-timeout': null, 'historical-timeout': '5m' }),
    k('allow-implicit-cross-references', boolean),
    // class-factory is a Python dotted name ZODB imports
    ...keys(string, { 'database-name': null, 'class-factory': null }),
  ],
  sections: [{ type: 'zodb.storage', attr: 'storage' }],
};

// the keys ZODB's <zeoclient> and ZEO's <clientstorage> share
const CLIENT_KEYS: KeyInfo[] = [
  k('server', socketConnectionAddress, { required: true, multi: true }),
  k('cache-size', byteSize, { default: '20MB' }),
  k('blob-dir', string),
  k('shared-blob-dir', boolean, { default: 'no' }),
  k('blob-cache-size', byteSize),
  k('blob-cache-size-check', integer),
  k('read-only', boolean, { default: 'off' }),
  k('read-only-fallback', boolean, { default: 'off' }),
  k('client-label', string),
  k('storage', string, { default: '1' }),
  k('name', string, { default: '' }),
];

// ZODB's component.xml: ZODB's own section for a ZEO ClientStorage
const ZEOCLIENT: SectionType = {
  name: 'zeoclient',
  implements: 'zodb.storage',
  keys: [
    ...CLIENT_KEYS,
    ...keys(string, { client: null, var: null, username: null, password: null, realm: null }),
    k('min-disconnect-poll', integer, { default: '5' }),
    k('max-disconnect-poll', integer, { default: '300' }),
    k('wait', boolean, { default: 'on' }),
    k('drop-cache-rather-verify', boolean, { default: 'off' }),
  ],
  sections: [],
};

// ZEO's component.xml
const CLIENT_SSL: SectionType = {
  name: 'ssl',
  keys: [
    k('certificate', existingDirpath, { required: true }),
    k('key', existingDirpath),
    k('password-function', string),
    k('authenticate', existingDirpath),
    k('check-hostname', boolean, { default: 'true' }),
    k('server-hostname', string),
  ],
  sections: [],
};

const CLIENTSTORAGE: SectionType = {
  name: 'clientstorage',
  implements: 'zodb.storage',
  keys: [
    ...CLIENT_KEYS,
    k('cache-path', string),
    k('server-sync', boolean, { default: 'off' }),
    k('wait-timeout', integer, { default: '30' }),
  ],
  sections: [{ type: 'ssl', attr: 'ssl' }],
};

/** ZODB/config.xml: one or more <zodb> sections, each with its storage (`%import ZEO` for <clientstorage>). */
export const ZODB_CONFIG_SCHEMA: Schema = {
  top: {
    name: '(top level)',
    keys: [],
    sections: [{ type: 'zodb.database', attr: 'database', required: true, multi: true }],
  },
  types: [ZODB_DATABASE, ZEOCLIENT],
  abstractTypes: ['zodb.storage', 'zodb.database'],
  packages: {
    ZODB: {},
    ZEO: { types: [CLIENT_SSL, CLIENTSTORAGE] },
  },
  unknownPackage: (pkg) => `%import ${pkg}: zeo-ts cannot load Python packages; it knows ZODB and ZEO`,
};
