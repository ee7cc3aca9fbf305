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
import { key as k, type Schema, type SectionType } from '../schema.js';

// ZODB's component.xml
const ZODB_DATABASE: SectionType = {
  name: 'zodb',
  implements: 'zodb.database',
  keys: [
    k('cache-size', integer, { default: '5000' }),
    k('cache-size-bytes', byteSize, { default: '0' }),
    k('large-record-size', byteSize, { default: '16MB' }),
    k('pool-size', integer, { default: '7' }),
    k('pool-timeout', timeInterval),
    k('historical-pool-size', integer, { default: '3' }),
    k('historical-cache-size', integer, { default: '1000' }),
    k('historical-cache-size-bytes', byteSize, { default: '0' }),
    k('historical-timeout', timeInterval, { default: '5m' }),
    k('database-name', string),
    k('allow-implicit-cross-references', boolean),
    // a Python dotted name ZODB imports
    k('class-factory', string),
  ],
  sections: [{ type: 'zodb.storage', attr: 'storage' }],
};

// ZODB's component.xml: ZODB's own section for a ZEO ClientStorage
const ZEOCLIENT: SectionType = {
  name: 'zeoclient',
  implements: 'zodb.storage',
  keys: [
    k('server', socketConnectionAddress, { required: true, multi: true }),
    k('blob-dir', string),
    k('shared-blob-dir', boolean, { default: 'no' }),
    k('blob-cache-size', byteSize),
    k('blob-cache-size-check', integer),
    k('storage', string, { default: '1' }),
    k('cache-size', byteSize, { default: '20MB' }),
    k('name', string, { default: '' }),
    k('client', string),
    k('var', string),
    k('min-disconnect-poll', integer, { default: '5' }),
    k('max-disconnect-poll', integer, { default: '300' }),
    k('wait', boolean, { default: 'on' }),
    k('read-only', boolean, { default: 'off' }),
    k('read-only-fallback', boolean, { default: 'off' }),
    k('username', string),
    k('password', string),
    k('realm', string),
    k('drop-cache-rather-verify', boolean, { default: 'off' }),
    k('client-label', string),
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
    k('server', socketConnectionAddress, { required: true, multi: true }),
    k('cache-size', byteSize, { default: '20MB' }),
    k('cache-path', string),
    k('blob-dir', string),
    k('shared-blob-dir', boolean, { default: 'no' }),
    k('blob-cache-size', byteSize),
    k('blob-cache-size-check', integer),
    k('read-only', boolean, { default: 'off' }),
    k('read-only-fallback', boolean, { default: 'off' }),
    k('server-sync', boolean, { default: 'off' }),
    k('wait-timeout', integer, { default: '30' }),
    k('client-label', string),
    k('storage', string, { default: '1' }),
    k('name', string, { default: '' }),
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
